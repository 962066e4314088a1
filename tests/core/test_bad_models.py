"""Model folders and cards a new user may meet: each refused with what is wrong, and a
bad user model never hides the others from ``napari-unet models``."""
import json
import os
import subprocess
import sys

import pytest

from conftest import make_example
from unet_core import ModelFileError, load_model
from unet_core.commands import cli


def _edit(folder, change):
    card = json.loads((folder / "model.json").read_text())
    change(card)
    (folder / "model.json").write_text(json.dumps(card))


@pytest.mark.parametrize("change, reason", [
    (lambda c: c.update(format_version=99), "format_version 99"),
    (lambda c: c.update(outputs=["foreground", "nuclei", "spots"]), "outputs"),
    (lambda c: c.update(architecture="resnet50"), "architecture 'resnet50'"),
    (lambda c: c.update(architecture=["unet"]), "architecture"),
])
def test_cards_this_version_cannot_honour_are_refused(saved_model, change, reason):
    _edit(saved_model, change)
    with pytest.raises(ModelFileError, match=reason):
        load_model(saved_model)


def test_a_file_given_as_model_is_named_a_file(saved_model, tmp_path, capsys):
    afile = tmp_path / "notes.txt"
    afile.write_text("not a model")
    rc = cli.main(["predict", str(afile), "-o", str(tmp_path / "out"), "--model", str(afile)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "notes.txt is a file, not a model folder" in err
    assert "model.safetensors" in err and "model.json" in err


def test_models_lists_the_others_beside_unreadable_cards(saved_model, tmp_path):
    """A card nested 200000 deep, a 2 MiB card and a FIFO named model.json: each listed
    as unreadable (the FIFO never opened), the good model listed too."""
    users = tmp_path / "users"
    for name in ("deep", "huge", "fifo"):
        (users / name).mkdir(parents=True)
    (users / "deep" / "model.json").write_text("[" * 200_000)
    (users / "huge" / "model.json").write_text('{"description": "' + "x" * (2 << 20) + '"}')
    os.mkfifo(users / "fifo" / "model.json")
    os.symlink(saved_model, users / "good")
    proc = subprocess.run([sys.executable, "-m", "unet_core.commands.cli", "models"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "NAPARI_UNET_MODELS": str(users)})
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines() if " user " in line}
    assert set(rows) == {"deep", "huge", "fifo", "good"}
    assert "unreadable" in rows["deep"] and "nested" in rows["deep"]
    assert "unreadable" in rows["huge"] and "MiB" in rows["huge"]
    assert "unreadable" in rows["fifo"] and "not a regular file" in rows["fifo"]
    assert "unreadable" not in rows["good"]


def test_a_huge_card_is_refused_by_its_size(saved_model):
    card = (saved_model / "model.json").read_text()
    (saved_model / "model.json").write_text(card[:-2] + ', "notes": "' + "x" * (2 << 20) + '"}')
    with pytest.raises(ModelFileError, match=r"larger than 1 MiB"):
        load_model(saved_model)


def test_a_training_config_out_of_range_is_refused_before_anything_is_built(tmp_path, capsys):
    config = tmp_path / "big.json"
    config.write_text(json.dumps({"model": {"base_filters": 100000}}))
    rc = cli.main(["train", "--config", str(config), "--synthetic", "1", "--synthetic-size", "64",
                   "-o", str(tmp_path / "m"), "--device", "cpu", "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "model.base_filters must be between 1 and 512, got 100000" in err
    assert not (tmp_path / "m").exists()


def test_finetune_on_a_full_disk_says_so_and_leaves_nothing(base_model, tmp_path):
    """A file size limit (what a full disk looks like to the writer) below the size of
    the weights: the run fails with the reason, and no checkpoints, lock or part files
    are left behind."""
    import resource
    import signal

    from unet_core.files.fileio import write_tiff

    images, labels = tmp_path / "images", tmp_path / "labs"
    for k in range(2):
        image, lab = make_example(k, 64)
        write_tiff(images / f"s{k}.tif", image)
        write_tiff(labels / f"s{k}.tif", lab)
    out = tmp_path / "m"
    limit = (base_model / "model.safetensors").stat().st_size // 2

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # EFBIG instead of a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run([sys.executable, "-m", "unet_core.commands.cli", "finetune", "--images", str(images),
                           "--labels", str(labels), "-o", str(out), "--base", str(base_model),
                           "--steps", "2", "--checkpoint-every", "1", "--crop", "64",
                           "--batch-size", "1", "--device", "cpu", "-q"],
                          capture_output=True, text=True, preexec_fn=small_files, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "File too large" in proc.stderr and "check the disk" in proc.stderr
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*")) if out.exists() else []
    assert left == [], left
