"""Fine-tuning: a new model folder and card, the held-back band of a single example,
validation within a time budget, never below the base, and a real crash mid-run.

Shares the tiny networks and the one-thread setting of :mod:`test_training`.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import FAST, TINY, make_example, steps_of, tiny_net, tree_hash
from unet_core import load_model, make_card, save_model
from unet_core.commands import cli
from unet_core.errors import InputError
from unet_core.models.modelio import bundled_model_dir
from unet_core.progress import ExampleScored
from unet_core.training import TrainingSet, finetune, train_iter
from unet_core.training.checkpoint import latest_checkpoint
from unet_core.training.dataset import as_example
from unet_core.training.finetune import hold_back_band

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_finetune_refuses_to_write_into_the_base_folder(base_model, tmp_path):
    before = tree_hash(base_model)
    examples = [make_example(i) for i in range(2)]
    for out in (base_model, base_model / "sub", bundled_model_dir() / "tiny-ft"):
        with pytest.raises(InputError, match="base model|bundled"):
            finetune(base_model, examples, out, steps=1, **FAST)
    assert tree_hash(base_model) == before
    assert not (bundled_model_dir() / "tiny-ft").exists() and not (base_model / "sub").exists()


def test_finetune_makes_a_new_model_with_its_own_card(base_model, tmp_path):
    before = tree_hash(base_model)
    ts = TrainingSet(tmp_path / "set")
    for i in range(3):
        ts.add(*make_example(i), source=f"img{i}.tif")
    out = tmp_path / "new"
    result = finetune(base_model, ts, out, steps=3, val_fraction=0.34, **FAST)
    assert tree_hash(base_model) == before
    assert result.model_dir == out.resolve() and not (out / "checkpoints").exists()
    model = load_model(out)
    card = model.card
    assert card["parent"] == "tiny-base"
    assert card["training"]["parent_sha256"] == load_model(base_model).card["sha256"]
    assert len(card["training"]["examples"]) == 2 and len(card["training"]["val_examples"]) == 1
    assert card["training"]["steps"] == 3 and card["training"]["date"]
    for key in ("before", "after"):
        assert set(card["metrics"][key]) >= {"dice", "ap50"}
    with pytest.raises(InputError, match="already holds"):
        finetune(base_model, ts, out, steps=1, **FAST)


def test_one_example_holds_back_a_band_of_itself(base_model, tmp_path):
    # one corrected image: its last fifth (along the longer side) is scored, never trained on
    image, labels = make_example(2, size=250, n=50)
    result = finetune(base_model, [(image, labels)], tmp_path / "one", steps=2, **FAST)
    assert result.held_back
    card = load_model(tmp_path / "one").card
    (val,) = card["training"]["val_examples"]
    assert val["id"].endswith("(held-back band)") and card["metrics"]["held_back"]
    ex = as_example((image, labels))
    train, val = hold_back_band(ex, 0.2)
    assert val.image.shape == (50, 250) and not train.mask[200:].any() and train.mask[:200].all()
    assert np.array_equal(val.labels, labels[200:])
    # too small a band to score: the example is used for both, and the result says so
    small = finetune(base_model, [make_example(1)], tmp_path / "small", steps=1, **FAST)
    assert not small.held_back


def test_a_timed_run_validates_before_its_end(tmp_path):
    # steps set high and a time budget: validations fall at tenths of the time, so a
    # fine-tune stopped by time can still keep its best weights
    examples = [make_example(i) for i in range(2)]
    gen = train_iter(tiny_net(), examples[:1], examples[1:], steps=100000, max_seconds=3,
                     val_every=100000, **FAST)
    seen = list(gen)
    validated = [p.done for p in seen if p.stage == "train" and p.info.val]
    assert len(validated) >= 3
    # each scored example is named: the one held back, each time
    scored = {p.info for p in seen if p.stage == "validate" and p.done}
    assert len(scored) == 1 and isinstance(scored.pop(), ExampleScored)


# -- a real crash ----------------------------------------------------------------------

def test_sigkill_mid_finetune_loses_nothing_and_resumes(base_model, tmp_path):
    ts = TrainingSet(tmp_path / "set")
    for i in range(3):
        ts.add(*make_example(i), source=f"img{i}.tif")
    out = tmp_path / "out"
    base_hash, set_hash = tree_hash(base_model), tree_hash(ts.folder)
    args = ["finetune", "--training-set", str(ts.folder), "--base", str(base_model), "-o", str(out),
            "--crop", "64", "--batch-size", "1", "--checkpoint-every", "2", "--device", "cpu", "-q"]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with open(tmp_path / "stderr.txt", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "unet_core.commands.cli"] + args + ["--steps", "100000"],
                                stdout=subprocess.DEVNULL, stderr=err, env=env)
        try:
            deadline = time.monotonic() + 60
            while not list(out.glob("checkpoints/step-*/checkpoint.json")):
                assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
                assert time.monotonic() < deadline, "no checkpoint within 60 s"
                time.sleep(0.05)
            time.sleep(0.3)  # let it get into the middle of later steps / checkpoint writes
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert tree_hash(base_model) == base_hash and load_model(base_model).name == "tiny-base"
    assert tree_hash(ts.folder) == set_hash and len(ts.load()[0]) == 3
    for card in out.rglob("model.json"):  # no half-written model anywhere
        load_model(card.parent)
    last = latest_checkpoint(out / "checkpoints")
    step = int(last.name.split("-")[1])
    assert step >= 2
    rc = cli.main(args + ["--resume", "--steps", str(step + 2)])
    assert rc == 0
    card = load_model(out).card
    assert card["training"]["steps"] == step + 2 and card["training"]["resumed_from"] == step


def test_finetune_never_ends_below_its_base(tmp_path):
    """A destructive learning rate cannot make the new model worse than the base on the
    held-back examples: the best weights seen (the base's included) are kept."""
    examples = [make_example(i) for i in range(4)]
    net = tiny_net(2)
    steps_of(train_iter(net, examples[:3], steps=80, lr=3e-3, batch_size=2, crop=64, seed=0))
    base = save_model(net, tmp_path / "good", make_card(TINY, "good"))
    result = finetune(base, examples[:3], tmp_path / "ft", steps=4, lr=5.0, val_examples=examples[3:],
                      val_every=2, batch_size=2, crop=64, seed=0)
    assert result.before["dice"] > 0.5  # a base worth keeping
    assert (result.after["ap50"], result.after["dice"]) >= (result.before["ap50"],
                                                        result.before["dice"])
    card = load_model(result.model_dir).card
    assert card["metrics"]["after"] == result.after and "kept_step" in card["training"]
