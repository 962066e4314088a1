"""Scoring a network on whole examples, exactly as it will be used: Predictor + instances."""
from __future__ import annotations

import copy
from collections.abc import Generator, Sequence

import numpy as np

from ..inference.predict import Predictor
from ..models.modelio import Model
from ..progress import ExampleScored, Progress, Stage
from ..segmentation.metrics import evaluate
from .dataset import Example

SCORES = ("dice", "ap50", "map")


def evaluate_iter(model: Model, examples: Sequence[Example], device="cpu", stage: str = Stage.VALIDATE
                  ) -> Generator[Progress, None, dict]:
    """Segment each example's whole image and score it against its labels.

    The network is copied first, so the caller's network (possibly mid-training) is
    left untouched.  Scores use only reviewed pixels: outside the mask both the
    prediction and the truth are set to background.

    Parameters
    ----------
    model : Model
        Network plus card (normalization and instance parameters are taken from it).
    examples : sequence of Example
    device : str
    stage : str
        Stage name of the yielded Progress.

    Returns
    -------
    dict
        Mean ``dice``, ``ap50`` and ``map`` over the examples, and ``n`` (examples);
        empty when there are no examples.
    """
    if not examples:
        return {}
    net = copy.deepcopy(model.net).eval()
    # examples are already at the network's size and stain (training.scaling); PyTorch,
    # because the weights change between validations (an exported graph would be made,
    # compiled and cached anew each time)
    pred = Predictor(Model(net=net, card=model.card, path=None), device=device, diameter=None,
                     stain="fluorescence", backend="torch")
    rows = []
    yield Progress(0, len(examples), stage)
    for i, ex in enumerate(examples):
        image = np.maximum(ex.image[..., 0], 0) if ex.record.get("hed") else ex.image
        labels = pred.segment(image)
        truth = np.where(ex.mask, ex.labels, 0)
        rows.append(evaluate(np.where(ex.mask, labels, 0), truth))
        yield Progress(i + 1, len(examples), stage, ExampleScored(ex.id))
    out = {k: float(np.mean([r[k] for r in rows])) for k in SCORES}
    out["n"] = len(rows)
    return out
