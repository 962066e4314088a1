"""bioimage.io export: packages that bioimageio.spec validates and bioimageio.core runs,
whose weights give back our probabilities."""
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from unet_core import Model, Predictor, UNet, load_model
from unet_core.commands.cli import main
from unet_core.models.export_assets import package_input, sample_image, spdx_licence

PACKAGE_FILES = {"rdf.yaml", "README.md", "cover.png", "test_input.npy", "test_output.npy",
                 "weights_torchscript.pt", "weights_state_dict.pt", "unet_architecture.py",
                 "model.json", "model.safetensors"}


def _bioimageio():
    pytest.importorskip("bioimageio.core")


def _predictor(model):
    # the network on the whole image as it is: no resampling, no stain conversion, PyTorch
    return Predictor(model, device="cpu", diameter=None, stain="fluorescence", backend="torch")


def _reimported(zip_path: Path, model: Model, tmp_path: Path):
    """(state-dict re-import as a Model, TorchScript module) read back from the package."""
    with zipfile.ZipFile(zip_path) as z:
        z.extract("weights_state_dict.pt", tmp_path)
        z.extract("weights_torchscript.pt", tmp_path)
    net = UNet(model.config)
    net.load_state_dict(torch.load(tmp_path / "weights_state_dict.pt", weights_only=True))
    return Model(net=net.eval(), card=model.card), torch.jit.load(tmp_path / "weights_torchscript.pt")


def _check_package(out: Path, model: Model, tmp_path: Path, ts_tolerance: float):
    from bioimageio.spec import load_description

    with zipfile.ZipFile(out) as z:
        assert set(z.namelist()) >= PACKAGE_FILES
    # a validation of the zip as written (files and their hashes), apart from the export's
    assert load_description(out, perform_io_checks=True).validation_summary.status == "valid-format"

    image = sample_image(model)
    ours = _predictor(model).predict(image)
    again, traced = _reimported(out, model, tmp_path)
    # the state dict read back runs the same network: bit-identical probabilities
    assert np.array_equal(_predictor(again).predict(image), ours)
    with torch.no_grad():
        ts = traced(torch.from_numpy(package_input(image, model))).numpy()[0]
    # TorchScript runs in contiguous memory, our PyTorch engine channels-last, and the
    # package's scale_range adds 1e-6 to (high - low): float32 rounding, nothing more
    assert np.abs(ts - ours).max() < ts_tolerance
    return ours


def test_tiny_model_exports_validates_and_reimports(saved_model, tmp_path):
    _bioimageio()
    from unet_core.models.export_bioimageio import export_bioimageio

    out = tmp_path / "pkg" / "tiny.zip"
    out.parent.mkdir()
    lines = []
    result = export_bioimageio(saved_model, out, report=lines.append)
    assert result.ok and result.validation == "valid-format" and result.test == "passed"
    assert result.licence == "CC-BY-4.0"          # no training data with a licence
    assert {"torchscript", "pytorch_state_dict"} <= set(result.weights)
    assert any("bioimageio.core" in line for line in lines)
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny.zip"]   # no temporary left
    _check_package(out, load_model(saved_model), tmp_path, 1e-5)


@pytest.mark.slow
def test_bundled_model_exports_from_the_command_line(tmp_path, capsys):
    _bioimageio()
    out = tmp_path / "nuclei.zip"
    assert main(["export", "nuclei", str(out)]) == 0
    said = capsys.readouterr().out
    assert "bioimageio.spec: valid-format" in said and "bioimageio.core test: passed" in said
    assert "CC-BY-NC-SA-4.0" in said                 # MoNuSeg is among the training data
    with zipfile.ZipFile(out) as z:
        readme = z.read("README.md").decode()
    assert "MoNuSeg" in readme and "CC BY-NC-SA 4.0" in readme
    _check_package(out, load_model("nuclei"), tmp_path, 1e-5)


@pytest.mark.parametrize("case", ["folder", "name", "suffix"])
def test_bad_arguments_exit_2_with_a_message(case, tmp_path, capsys):
    model, out = {"folder": ("nuclei", tmp_path), "name": ("no-such-model", tmp_path / "a.zip"),
                  "suffix": ("nuclei", tmp_path / "a.tif")}[case]
    assert main(["export", model, str(out)]) == 2
    err = capsys.readouterr().err
    assert {"folder": "is a folder; give the path of a .zip", "name": "No model named",
            "suffix": "must end in .zip"}[case] in err
    assert "Traceback" not in err and not list(tmp_path.glob("*.zip"))


def test_missing_extra_names_the_pip_command(tmp_path):
    # a real process in which bioimageio cannot be imported
    code = ("import sys; sys.modules['bioimageio'] = None; from unet_core.commands.cli import main; "
            f"sys.exit(main(['export', 'nuclei', {str(tmp_path / 'a.zip')!r}]))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert 'pip install "napari-nuclei-unet[bioimageio]"' in run.stderr
    assert "Traceback" not in run.stderr


def test_licence_follows_the_training_data():
    assert spdx_licence(["CC0 1.0", "CC BY-NC-SA 4.0 (MoNuSeg; NON-COMMERCIAL, share-alike)"]) \
        == "CC-BY-NC-SA-4.0"
    assert spdx_licence(["CC BY-NC 4.0"]) == "CC-BY-NC-4.0"
    assert spdx_licence(["CC0 1.0", "UNSTATED"]) == "CC-BY-4.0"
    model = load_model("nuclei")
    from unet_core.models.export_assets import licence_notes, training_data

    assert spdx_licence(licence_notes(model)) == "CC-BY-NC-SA-4.0"
    assert any("MoNuSeg" in r["group"] for r in training_data(model))


def test_author_names_the_package_authors(saved_model, tmp_path, capsys):
    _bioimageio()
    from bioimageio.spec import load_description

    out = tmp_path / "mine.zip"
    assert main(["export", str(saved_model), str(out), "--author", " Ada Lovelace ",
                 "--no-test"]) == 0
    assert [a.name for a in load_description(out).authors] == ["Ada Lovelace"]
    assert main(["export", str(saved_model), str(tmp_path / "b.zip"), "--author", " "]) == 2
    err = capsys.readouterr().err
    assert "--author is empty" in err and "Traceback" not in err
    assert not (tmp_path / "b.zip").exists()
