"""PredictOptions: the one place of the inference options, read by the Predictor, the
command line and the dask workers."""
import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch

from unet_core import InputError, PredictOptions, Predictor
from unet_core.commands.cli import build_parser, main
from unet_core.commands.cli_options import predict_options
from unet_core.models.model import UNet, UNetConfig
from unet_core.scaleout.distributed import predictor_spec, worker_predictor


def _help(command: str) -> str:
    out = subprocess.run([sys.executable, "-m", "unet_core.commands.cli", command, "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _flags(command: str) -> set[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return {s for a in sub.choices[command]._actions for s in a.option_strings}


def test_batch_offers_every_inference_option_of_predict():
    inference = {"--" + name.replace("_", "-") for name in PredictOptions.names(cli=True)}
    assert {"--tile", "--halo", "--preset", "--batch-size", "--backend", "--precision",
            "--diameter", "--stain", "--device", "--tta"} <= inference
    assert inference <= _flags("predict")
    assert inference <= _flags("batch")
    assert _flags("predict") <= _flags("batch")      # and the rest: --model, --prob, --zarr
    text = _help("batch")            # what a user reads from napari-unet batch --help
    assert all(flag in text for flag in inference | {"--model"})


@pytest.mark.parametrize("command", [["predict", "x.tif"], ["batch", "indir"]])
def test_command_defaults_are_the_dataclass_defaults(command):
    args = build_parser().parse_args(command + ["-o", "out"])
    assert predict_options(args) == PredictOptions()
    args = build_parser().parse_args(command + ["-o", "out", "--tile", "64", "--halo", "0",
                                                "--batch-size", "2", "--tta", "--diameter", "12",
                                                "--preset", "classic", "--backend", "torch"])
    assert predict_options(args) == PredictOptions(tile=64, halo=0, batch_size=2, tta=True,
                                                   diameter=12.0, preset="classic",
                                                   backend="torch")


@pytest.mark.parametrize("changes, words", [
    ({"tile": 0}, "tile must be >= 1, a whole number"),
    ({"halo": -8}, "halo must be >= 0, a whole number"),
    ({"batch_size": 0}, "batch_size must be >= 1, a whole number"),
    ({"batch_size": 1.5}, "batch_size must be >= 1, a whole number"),
    ({"tile": True}, "tile must be >= 1, a whole number"),
    ({"preset": "fast"}, "Unknown preset 'fast'; use one of exact, classic"),
    ({"border": "zero"}, "Unknown border 'zero'; use one of none, reflect"),
    ({"backend": "tensorrt"}, "Unknown backend 'tensorrt'"),
    ({"precision": "fp8"}, "Unknown precision 'fp8'; use one of auto, f32, bf16"),
    ({"device": 3}, "device must be a name"),
    ({"tta": "yes"}, "tta must be True or False"),
    ({"diameter": 0}, "diameter 0 px is outside"),
    ({"stain": "dab"}, "Unknown stain 'dab'"),
])
def test_bad_options_are_refused_with_what_to_give(changes, words):
    with pytest.raises(InputError, match=words.replace("(", r"\(")):
        PredictOptions(**changes)
    with pytest.raises(InputError, match=words.replace("(", r"\(")):
        PredictOptions().replace(**changes)


def test_unknown_option_names_are_refused():
    net = UNet(UNetConfig(depth=2, base_filters=4))
    with pytest.raises(InputError, match=r"Unknown inference options \['tiles'\]"):
        Predictor(net, device="cpu", tiles=64)
    with pytest.raises(InputError, match="Unknown inference options"):
        PredictOptions.from_dict({"halo_px": 8})
    with pytest.raises(InputError, match="options must be a PredictOptions.*by name"):
        Predictor(net, "cpu")


def test_options_are_normalised():
    opts = PredictOptions(diameter="12", stain="H&E", backend="Torch", tile=np.int64(64))
    assert (opts.diameter, opts.stain, opts.backend, opts.tile) == (12.0, "he", "torch", 64)
    assert PredictOptions(diameter="none").diameter is None
    assert PredictOptions(device=torch.device("cpu")).device == "cpu"
    assert PredictOptions(preset="classic").tiling() == (128, 64, "reflect")
    assert PredictOptions(preset="classic", halo=32).tiling() == (128, 32, "reflect")
    assert PredictOptions().tiling() == (None, None, "none")


def test_bad_option_on_the_command_line_is_a_clear_error(tmp_path, capsys):
    for command in (["predict", "x.tif"], ["batch", str(tmp_path)]):
        with pytest.raises(SystemExit) as stop:
            main(command + ["-o", str(tmp_path / "out"), "--halo", "-1"])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and "argument --halo: halo must be >= 0" in err
        assert "Traceback" not in err
    code = main(["batch", str(tmp_path), "-o", str(tmp_path / "out"), "--diameter", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "diameter 2 px is outside" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_predictor_from_its_options_runs_alike(small_net, one_torch_thread):
    pred = Predictor(small_net, device="cpu", tile=48, backend="torch", diameter=None, tta=True)
    assert Predictor.from_options(small_net, PredictOptions(
        device="cpu", tile=48, backend="torch", diameter=None, tta=True)).options == pred.options
    resolved = pred.options
    assert (resolved.tile, resolved.halo, resolved.border, resolved.backend, resolved.tta) == \
        (pred.tile, pred.halo, pred.border, "torch", True)
    again = Predictor(small_net, resolved)
    image = np.random.default_rng(0).random((100, 90), np.float32)
    np.testing.assert_array_equal(again.predict(image), pred.predict(image))
    # what a dask worker receives: the resolved options, and the same predictor from them
    spec = predictor_spec(pred.with_options(diameter=20))
    assert spec["options"] == dataclasses.replace(resolved, diameter=20.0)
    worker = worker_predictor(spec)
    assert worker.options == spec["options"] and worker.tile == pred.tile
    assert worker_predictor(spec) is worker
