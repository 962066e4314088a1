"""The folder a fine-tune writes into: never a user's files, one training at a time,
and a finished model replaced whole or not at all."""
import hashlib
import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import make_example
from unet_core import InputError, load_model
from unet_core.commands import cli
from unet_core.training import TrainingSet, finetune

finetune_module = importlib.import_module("unet_core.training.finetune")   # the module, not the function


def _tree(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def training_set(tmp_path):
    ts = TrainingSet(tmp_path / "set")
    for i in range(3):
        ts.add(*make_example(i), source=f"img{i}.tif")
    return ts.folder


def _args(saved_model, training_set, out, *more):
    return ["finetune", "--training-set", str(training_set), "--base", str(saved_model), "-o", str(out),
            "--crop", "64", "--batch-size", "1", "--device", "cpu", "-q", *more]


def test_a_folder_with_someone_elses_files_is_refused(saved_model, training_set, tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "notes.txt").write_text("my own checkpoints")
    (out / "model.safetensors").write_bytes(b"weights of another program")
    before = _tree(out)
    assert cli.main(_args(saved_model, training_set, out, "--steps", "1")) == 2
    assert "not a model of this program" in capsys.readouterr().err
    assert cli.main(_args(saved_model, training_set, out, "--steps", "1", "--overwrite")) == 2
    assert _tree(out) == before


def test_overwrite_replaces_our_own_model(saved_model, training_set, tmp_path):
    out = tmp_path / "m"
    assert cli.main(_args(saved_model, training_set, out, "--steps", "1")) == 0
    assert load_model(out).card["training"]["steps"] == 1
    assert cli.main(_args(saved_model, training_set, out, "--steps", "2", "--overwrite")) == 0
    assert load_model(out).card["training"]["steps"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.safetensors"]
    # nothing left beside the model: no old copy, and no lock once the training ended
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".m.")] == []


def test_a_crash_while_saving_keeps_the_previous_model_whole(saved_model, training_set, tmp_path,
                                                            monkeypatch):
    out = tmp_path / "m"
    assert cli.main(_args(saved_model, training_set, out, "--steps", "1")) == 0
    before = _tree(out)
    real_save = finetune_module.save_model

    def save_then_die(net, folder, card):
        real_save(net, folder, card)
        raise KeyboardInterrupt       # the process ends between writing and putting in place

    monkeypatch.setattr(finetune_module, "save_model", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        finetune(str(saved_model), training_set, out, steps=1, crop=64, batch_size=1, overwrite=True)
    after = {k: v for k, v in _tree(out).items() if not k.startswith("checkpoints/")}
    assert after == before and load_model(out).card["training"]["steps"] == 1   # + checkpoints to resume
    assert not [p for p in tmp_path.iterdir() if ".new-" in p.name or ".old-" in p.name]


def test_an_interrupted_swap_is_finished_by_the_next_run(saved_model, training_set, tmp_path):
    """Killed between the two renames: the complete new model waits beside; the next
    run into that folder puts it in place."""
    out = tmp_path / "m"
    assert cli.main(_args(saved_model, training_set, out, "--steps", "1")) == 0
    os.replace(out, tmp_path / ".m.new-0a1b2c3d")
    with pytest.raises(InputError, match="already holds a finished model"):
        finetune(str(saved_model), training_set, out, steps=1, crop=64, batch_size=1)
    assert load_model(out).card["training"]["steps"] == 1


def test_two_fine_tunes_into_one_folder(saved_model, training_set, tmp_path):
    """The second is refused while the first runs; the first is unharmed; after a SIGKILL
    of the first the folder is free again (the kernel drops the lock)."""
    out = tmp_path / "m"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "unet_core.commands.cli", *_args(
        saved_model, training_set, out, "--steps", "100000", "--checkpoint-every", "2")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("checkpoints/step-*/checkpoint.json")):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        with pytest.raises(InputError, match=rf"Another training \(process {proc.pid}\) is writing"):
            finetune(str(saved_model), training_set, out, steps=1, crop=64, batch_size=1, resume=True)
        assert proc.poll() is None and list(out.glob("checkpoints/step-*"))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    result = finetune(str(saved_model), training_set, out, steps=3, crop=64, batch_size=1, resume=True)
    assert load_model(result.model_dir).card["training"]["resumed_from"] >= 2
