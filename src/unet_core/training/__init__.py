"""Training: the training set on disk, augmentation, loss, the training loop and fine-tuning.

>>> from unet_core.training import TrainingSet, finetune
>>> ts = TrainingSet("my_corrections")
>>> ts.add(image, labels, region_mask=reviewed, source="cells.tif", region=(0, 0, 256, 256))
>>> examples, problems = ts.load()
>>> result = finetune("nuclei", examples, "models/nuclei-v2", steps=300)
"""
from .config import FinetuneConfig, TrainConfig
from .dataset import Example, TrainingSet, examples_from_folders
from .finetune import finetune, finetune_iter
from .loss import masked_bce_dice_loss
from .results import FinetuneResult, ScratchResult, TrainResult
from .scratch import train_from_scratch, train_from_scratch_iter
from .train import Trainer, train_iter

__all__ = [
    "Example", "FinetuneConfig", "FinetuneResult", "ScratchResult", "TrainConfig", "TrainResult",
    "Trainer", "TrainingSet", "examples_from_folders", "finetune", "finetune_iter",
    "masked_bce_dice_loss", "train_from_scratch", "train_from_scratch_iter", "train_iter",
]
