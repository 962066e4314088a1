"""unet_core: the napari-unet engine (numpy, torch, scikit-image; no Qt, no napari).

>>> from unet_core import load_model, Predictor
>>> pred = Predictor(load_model("nuclei"), device="cpu")
>>> labels = pred.segment(image)        # uint32 (H, W) instance ids
"""
from .errors import ImageFileError, InputError, ModelFileError, UNetError
from .model import UNet, UNetConfig
from .modelio import Model, list_models, load_model, make_card, save_model
from .options import PRESETS, PredictOptions
from .predict import Predictor
from .progress import Progress, run_to_end

__all__ = [
    "ImageFileError", "InputError", "Model", "ModelFileError", "PRESETS", "PredictOptions",
    "Predictor", "Progress", "UNet", "UNetConfig", "UNetError", "list_models", "load_model",
    "make_card", "run_to_end", "save_model",
]
__version__ = "0.1.0"
