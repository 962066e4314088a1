"""unet_core: the napari-unet engine (numpy, torch, scikit-image; no Qt, no napari).

>>> from unet_core import load_model, Predictor
>>> pred = Predictor(load_model("nuclei"), device="cpu")
>>> labels = pred.segment(image)        # uint32 (H, W) instance ids

The layers, lowest first: :mod:`~unet_core.errors` and :mod:`~unet_core.progress`
(what every layer speaks), :mod:`~unet_core.files` (images and results in and out),
:mod:`~unet_core.models` (the network and its files), :mod:`~unet_core.inference`
(the Predictor: options, engines, tiling, per-image settings),
:mod:`~unet_core.segmentation` (instances and their numbers), :mod:`~unet_core.scaleout`
(large images, folders, clusters), :mod:`~unet_core.training`, :mod:`~unet_core.data`
(synthetic images) and :mod:`~unet_core.commands` (the ``napari-unet`` command).
"""
from .errors import ImageFileError, InputError, ModelFileError, UNetError
from .inference.options import PRESETS, PredictOptions
from .inference.predict import Predictor
from .models.model import UNet, UNetConfig
from .models.modelio import Model, list_models, load_model, make_card, save_model
from .progress import Progress, run_to_end

__all__ = [
    "ImageFileError", "InputError", "Model", "ModelFileError", "PRESETS", "PredictOptions",
    "Predictor", "Progress", "UNet", "UNetConfig", "UNetError", "list_models", "load_model",
    "make_card", "run_to_end", "save_model",
]
__version__ = "0.1.0"
