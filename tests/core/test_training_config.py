"""One source of defaults (the config dataclasses) and the training loop in small steps."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conftest import FAST, make_example, tiny_net
from unet_core import load_model
from unet_core.commands import cli
from unet_core.errors import InputError
from unet_core.progress import Stage
from unet_core.training import FinetuneConfig, TrainConfig, Trainer, train_iter
from unet_core.training.outdir import discard_unfinished, finished_model, new_model_dir

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _parse(*words):
    return cli.build_parser().parse_args(list(words))


def test_finetune_cli_defaults_are_the_config_defaults():
    args = _parse("finetune", "-o", "out")
    parsed = FinetuneConfig(**{k: getattr(args, k) for k in FinetuneConfig.names()})
    assert parsed == FinetuneConfig()
    assert args.base == "nuclei"
    # every field has its option, named after it
    flags = {a.dest: a.option_strings for a in cli.build_parser()._subparsers._group_actions[0]
             .choices["finetune"]._actions}
    assert flags["augment"] == ["--no-augment"] and flags["batch_size"] == ["--batch-size"]
    assert not _parse("finetune", "-o", "out", "--no-augment").augment


def test_train_cli_options_override_the_config_only_when_given():
    args = _parse("train", "--config", "c.json", "-o", "out")
    assert (args.steps, args.seed, args.max_seconds) == (None, None, None)
    assert args.device == FinetuneConfig().device
    args = _parse("train", "--config", "c.json", "-o", "out", "--steps", "7", "--max-seconds", "2")
    assert TrainConfig().replace(steps=args.steps, max_seconds=args.max_seconds).steps == 7


def test_config_replace_checks_names_and_keeps_unset_values():
    cfg = FinetuneConfig(steps=40)
    assert cfg.replace(lr=None, crop=64) == dataclasses.replace(cfg, crop=64)
    with pytest.raises(InputError, match="stepz"):
        cfg.replace(stepz=3)
    assert cfg.validation_interval == 4 and FinetuneConfig(steps=5).validation_interval == 1
    loop = cfg.train_config()
    assert (loop.steps, loop.lr, loop.crop, loop.val_every) == (40, cfg.lr, cfg.crop, 4)
    assert loop.schedule == TrainConfig().schedule


def test_new_model_dir_strips_an_earlier_stamp_and_never_reuses_a_folder(tmp_path):
    first = new_model_dir("nuclei-ft-20260101-120000", tmp_path)
    assert first.name.startswith("nuclei-ft-") and first.name.count("-ft-") == 1
    first.mkdir()
    second = new_model_dir(tmp_path / "nuclei", tmp_path)
    assert second != first and second.name.startswith("nuclei-ft-")
    # clean-up: a folder of checkpoints only goes, a finished model or foreign files stay
    (first / "checkpoints" / "step-0000001").mkdir(parents=True)
    assert not finished_model(first) and discard_unfinished(first) and not first.exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert not discard_unfinished(mine) and (mine / "notes.txt").exists()


def test_train_step_by_step_equals_the_run_and_stops_with_a_checkpoint_at_any_step(tmp_path):
    examples = [make_example(i) for i in range(2)]
    kw = dict(steps=6, checkpoint_every=1, seed=3, **FAST)
    ref = tmp_path / "ref"
    result = None
    gen = train_iter(tiny_net(), examples, checkpoint_dir=ref, keep_checkpoints=10, **kw)
    while result is None:
        try:
            next(gen)
        except StopIteration as stop:
            result = stop.value
    assert result.step == 6 and [r["step"] for r in result.history] == list(range(1, 7))
    for k in (1, 4):
        trainer = Trainer(tiny_net(), examples, checkpoint_dir=tmp_path / f"k{k}", **kw)
        records = [trainer.train_step() for _ in range(k)]
        assert [r["step"] for r in records] == list(range(1, k + 1))
        path = trainer.save_checkpoint()
        assert path.name == f"step-{k:07d}"
        got = load_model(path).net.state_dict()
        want = load_model(ref / f"step-{k:07d}").net.state_dict()
        for key, value in want.items():
            np.testing.assert_allclose(got[key].numpy(), value.numpy(), rtol=1e-5, atol=1e-7)
    # the generator stops at any step: closed after step 2, the trainer is at step 2
    trainer = Trainer(tiny_net(), examples, **kw)
    run = trainer.run_training()
    seen = [next(run) for _ in range(2)]
    run.close()
    assert [p.done for p in seen] == [1, 2] and seen[0].stage == Stage.TRAIN
    assert trainer.step == 2 and not trainer.net.training
    assert trainer.result().step == 2 and trainer.result().loss == seen[-1].info.loss
