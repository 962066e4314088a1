"""Training: loss, augmentation, the training loop, checkpoints, fine-tuning and the CLI.

Tiny depth-2 U-Nets on 64 px crops.  The machine is shared with other jobs, and two
OpenMP threads spin-waiting on a busy core make each tiny step ~100x slower, so the
in-process tests run torch on one thread (restored afterwards).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from conftest import FAST, TINY, make_example, steps_of, tiny_net, tree_hash
from unet_core import load_model
from unet_core.commands import cli
from unet_core.errors import InputError
from unet_core.training import masked_bce_dice_loss, train_from_scratch, train_iter
from unet_core.training.augment import AugmentConfig, augment, random_crop
from unet_core.training.checkpoint import latest_checkpoint, load_checkpoint
from unet_core.training.train import lr_at

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- loss and augmentation ---------------------------------------------------------------

def test_loss_ignores_pixels_outside_the_mask():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 32, 32, requires_grad=True)
    targets = (torch.rand(2, 2, 32, 32) > 0.5).float()
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, 8:24, 8:24] = 1
    loss = masked_bce_dice_loss(logits, targets, mask)
    loss.backward()
    outside = (mask == 0).expand_as(logits)
    assert torch.all(logits.grad[outside] == 0)
    assert torch.all(logits.grad[~outside] != 0)
    # changing anything outside the mask changes nothing
    other_logits = torch.where(outside, torch.randn_like(logits) * 10, logits.detach())
    other_targets = torch.where(outside, 1 - targets, targets)
    assert torch.allclose(masked_bce_dice_loss(other_logits, other_targets, mask), loss.detach())
    # a confident, correct prediction scores near zero
    good = masked_bce_dice_loss((targets * 2 - 1) * 20, targets, mask)
    assert float(good) < 1e-3


def test_augment_moves_image_labels_and_mask_together():
    rng = np.random.default_rng(0)
    _, lab = make_example(3)
    img = (lab > 0).astype(np.float32)[..., None]
    geo_only = AugmentConfig(elastic_p=1.0, erase_p=0, intensity_p=0, noise_p=0, blur_p=0)
    for _ in range(5):
        a_img, a_lab, a_mask = augment(img, lab, np.ones(lab.shape, bool), rng, geo_only)
        assert a_img.shape == (64, 64, 1) and a_img.dtype == np.float32
        assert a_lab.dtype == lab.dtype and set(np.unique(a_lab)) <= set(np.unique(lab))
        assert np.mean((a_img[..., 0] > 0.5) == (a_lab > 0)) > 0.97
    full = AugmentConfig(erase_p=1.0)
    a_img, a_lab, a_mask = augment(img, lab, np.ones(lab.shape, bool), rng, full)
    assert not a_mask.all() and np.isfinite(a_img).all()


def test_random_crop_of_a_small_image_pads_unreviewed():
    rng = np.random.default_rng(0)
    _, lab = make_example(0, size=40)
    img = np.zeros((40, 40, 1), np.float32)
    c_img, c_lab, c_mask = random_crop(img, lab, np.ones(lab.shape, bool), 64, rng)
    assert c_img.shape == (64, 64, 1) and c_lab.shape == c_mask.shape == (64, 64)
    assert c_mask.sum() == 40 * 40 and c_lab.max() == lab.max()


def test_lr_schedule():
    assert lr_at(0, 100, 1e-3) == pytest.approx(1e-3)
    assert lr_at(99, 100, 1e-3) == pytest.approx(1e-5)
    assert lr_at(50, 100, 1e-3, "restarts", restart_period=50) == pytest.approx(1e-3)
    assert lr_at(0, 100, 1e-3, warmup=10) == pytest.approx(1e-4)


# -- training loop -----------------------------------------------------------------------

def test_training_reduces_loss_on_a_trivial_task():
    examples = [make_example(i) for i in range(3)]
    seen, result = steps_of(train_iter(tiny_net(), examples, steps=40, augment=False, seed=0, **FAST))
    losses = [p.info.loss for p in seen]
    assert [p.done for p in seen] == list(range(1, 41)) and seen[0].total == 40
    assert all(np.isfinite(losses)) and seen[0].info.lr > 0
    assert set(seen[0].info.parts) == {"bce", "dice"}
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])
    assert result.step == 40 and result.stopped_by == "steps"


def test_validation_and_time_budget():
    examples = [make_example(i) for i in range(2)]
    gen = train_iter(tiny_net(), examples, [make_example(7)], steps=10**6, max_seconds=1.0,
                     val_every=3, seed=0, **FAST)
    t0 = time.monotonic()
    seen, result = steps_of(gen)
    assert time.monotonic() - t0 < 15
    assert result.stopped_by == "time" and 0 < result.step < 10**6
    vals = [p.info.val for p in seen if p.info.val is not None]
    assert vals and set(vals[0]) >= {"dice", "ap50"} and 0 <= vals[0]["dice"] <= 1
    assert result.val is not None


def test_a_run_stopped_by_its_time_budget_has_annealed_its_learning_rate():
    """The cosine schedule follows the time spent when the budget runs out before the
    steps: the last steps run near the lowest rate, not at the start's."""
    examples = [make_example(i) for i in range(2)]
    fast = dict(FAST, lr=1e-3)
    seen, result = steps_of(train_iter(tiny_net(), examples, steps=10**6, max_seconds=2.0,
                                       seed=0, **fast))
    lrs = [p.info.lr for p in seen]
    assert result.stopped_by == "time" and len(lrs) > 5
    assert lrs[0] > 0.9e-3
    assert lrs[-1] < 0.15e-3          # 1e-5 at the very end of the budget
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    # with no time budget the schedule follows the steps, as before
    seen, _ = steps_of(train_iter(tiny_net(), examples, steps=4, seed=0, **fast))
    assert [p.info.lr for p in seen] == [lr_at(k, 4, 1e-3) for k in range(4)]


def test_stopping_mid_run_leaves_a_loadable_checkpoint_and_resume_is_exact(tmp_path):
    examples = [make_example(i) for i in range(2)]
    kw = dict(steps=8, seed=3, checkpoint_every=4, **FAST)
    # reference: 8 uninterrupted steps
    ref, _ = steps_of(train_iter(tiny_net(), examples, checkpoint_dir=tmp_path / "ref", **kw))
    # interrupted after step 6: the step-4 checkpoint remains and loads
    ck = tmp_path / "ck"
    _, stopped = steps_of(train_iter(tiny_net(), examples, checkpoint_dir=ck, **kw), stop_after=6)
    assert stopped is None
    last = latest_checkpoint(ck)
    assert last.name == "step-0000004" and not list(ck.glob(".tmp-*"))
    assert load_model(last).config == TINY
    # resuming on a fresh network continues at step 5 and repeats the reference exactly
    seen, result = steps_of(train_iter(tiny_net(99), examples, checkpoint_dir=ck, resume=True, **kw))
    assert [p.done for p in seen] == [5, 6, 7, 8] and result.start_step == 4
    np.testing.assert_allclose([p.info.loss for p in seen], [p.info.loss for p in ref[4:]],
                               rtol=1e-4)
    assert latest_checkpoint(ck).name == "step-0000008"
    doc = load_checkpoint(latest_checkpoint(ck), tiny_net())
    assert doc["step"] == 8 and len(doc["history"]) == 8


def test_weight_averaging_is_the_mean_of_snapshots_and_survives_a_resume(tmp_path):
    examples = [make_example(i) for i in range(2)]
    kw = dict(steps=8, seed=3, checkpoint_every=1, average_from=4, average_every=2, **FAST)
    net = tiny_net()
    _, result = steps_of(train_iter(net, examples, checkpoint_dir=tmp_path / "ref",
                                    keep_checkpoints=20, **kw))
    assert result.averaged == 3  # steps 4, 6 and 8
    snaps = [load_model(tmp_path / "ref" / f"step-{s:07d}").net.state_dict() for s in (4, 6, 8)]
    for key, value in net.state_dict().items():
        np.testing.assert_allclose(value.numpy(), np.mean([s[key].numpy() for s in snaps], axis=0),
                                   rtol=1e-5, atol=1e-6, err_msg=key)
    # the checkpoints keep the raw weights: the last one is step 8's, not the mean
    assert not torch.equal(snaps[2][next(iter(snaps[2]))], net.state_dict()[next(iter(snaps[2]))])
    # stopped after step 5 (one snapshot taken) and resumed: the same mean
    ck = tmp_path / "ck"
    steps_of(train_iter(tiny_net(), examples, checkpoint_dir=ck, **kw), stop_after=5)
    again = tiny_net(7)
    _, resumed = steps_of(train_iter(again, examples, checkpoint_dir=ck, resume=True, **kw))
    assert resumed.start_step == 5 and resumed.averaged == 3
    for key, value in net.state_dict().items():
        np.testing.assert_allclose(again.state_dict()[key].numpy(), value.numpy(), rtol=1e-4, atol=1e-6)
    with pytest.raises(InputError, match="average_from"):
        steps_of(train_iter(tiny_net(), examples, steps=2, average_from=0))


# -- fine-tuning and training from scratch -------------------------------------------------

def test_train_from_scratch(tmp_path):
    config = {"model": {"depth": 2, "base_filters": 4}, "training": {"steps": 2, "crop": 64},
              "name": "scratch"}
    result = train_from_scratch(config, [make_example(i) for i in range(2)], tmp_path / "m",
                                seed=1, batch_size=1)
    model = load_model(result.model_dir)
    assert model.config.base_filters == 4 and model.card["training"]["steps"] == 2
    assert model.name == "scratch"
    with pytest.raises(InputError, match="Unknown keys"):
        train_from_scratch({"dept": 2}, [make_example(0)], tmp_path / "x")


# -- command line ------------------------------------------------------------------------

def write_folders(root: Path, n: int = 3, size: int = 64):
    images, labels = root / "images", root / "labels"
    images.mkdir(parents=True)
    labels.mkdir()
    for i in range(n):
        img, lab = make_example(i, size=size)
        tifffile.imwrite(images / f"s{i}.tif", img)
        tifffile.imwrite(labels / f"s{i}_labels.tif", lab)
    return images, labels


def test_cli_finetune_end_to_end(base_model, tmp_path, capsys):
    images, labels = write_folders(tmp_path)
    out = tmp_path / "out"
    common = ["--base", str(base_model), "--steps", "3", "--crop", "64", "--batch-size", "1",
              "--device", "cpu", "-q"]
    rc = cli.main(["finetune", "--images", str(images), "--labels", str(labels), "-o", str(out)] + common)
    assert rc == 0
    assert "model saved to" in capsys.readouterr().out
    assert load_model(out).card["training"]["steps"] == 3
    # a corrupt image: trained on the rest, reported, exit code 1
    (images / "s1.tif").write_bytes(b"broken")
    rc = cli.main(["finetune", "--images", str(images), "--labels", str(labels), "-o",
                   str(tmp_path / "out2")] + common)
    assert rc == 1 and "s1: SKIPPED" in capsys.readouterr().err
    # bad arguments
    assert cli.main(["finetune", "--images", str(tmp_path / "nope"), "--labels", str(labels),
                     "-o", str(tmp_path / "out3")] + common) == 2
    assert cli.main(["finetune", "--images", str(images), "--labels", str(labels),
                     "-o", str(base_model)] + common) == 2
    assert "base model" in capsys.readouterr().err


def test_cli_train_synthetic(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model": {"depth": 2, "base_filters": 4},
                               "training": {"crop": 64, "batch_size": 1}}))
    rc = cli.main(["train", "--config", str(cfg), "-o", str(tmp_path / "m"), "--synthetic", "2",
                   "--synthetic-size", "64", "--steps", "2", "--device", "cpu", "-q"])
    assert rc == 0 and load_model(tmp_path / "m").card["training"]["steps"] == 2


def test_cli_train_from_an_existing_model(tmp_path, capsys):
    """--init starts from a model's weights (a staged recipe) and leaves that model as it was."""
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model": {"depth": 2, "base_filters": 4},
                               "training": {"crop": 64, "batch_size": 1, "lr": 1e-9, "warmup": 0}}))
    common = ["--synthetic", "2", "--synthetic-size", "64", "--steps", "1", "--device", "cpu", "-q"]
    assert cli.main(["train", "--config", str(cfg), "-o", str(tmp_path / "a"), "--seed", "1"] + common) == 0
    before = tree_hash(tmp_path / "a")
    assert cli.main(["train", "--config", str(cfg), "-o", str(tmp_path / "b"), "--seed", "2",
                     "--init", str(tmp_path / "a")] + common) == 0
    a, b = load_model(tmp_path / "a"), load_model(tmp_path / "b")
    assert tree_hash(tmp_path / "a") == before
    assert b.card["training"]["init"]["sha256"] == a.card["sha256"]
    for (key, wa), wb in zip(a.net.state_dict().items(), b.net.state_dict().values()):
        assert torch.allclose(wa, wb, atol=1e-6), key  # lr 1e-9: one step barely moves them
    # another architecture is refused with a clear message
    cfg.write_text(json.dumps({"model": {"depth": 2, "base_filters": 8}, "training": {"crop": 64}}))
    assert cli.main(["train", "--config", str(cfg), "-o", str(tmp_path / "c"),
                     "--init", str(tmp_path / "a")] + common) == 2
    assert "another architecture" in capsys.readouterr().err
