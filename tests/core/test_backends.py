"""Inference backends: exact tiles on ONNX Runtime and OpenVINO, the export cache, fine-tuned
models, bf16 labels, and the fallback to PyTorch when a backend cannot be used."""
import sys
import warnings

import numpy as np
import pytest
import torch

from conftest import lively_unet, make_example
from unet_core import InputError, Predictor, load_model
from unet_core.inference import backends
from unet_core.inference.backends import (
    ENV_BACKEND,
    ENV_PRECISION,
    BackendWarning,
    cpu_bf16,
    installed,
    network_hash,
    resolve,
)

FAST = [b for b in backends.CPU_ORDER if b in installed()]
needs_fast = pytest.mark.skipif(not FAST, reason="neither openvino nor onnxruntime is installed")


def _image(shape=(150, 170), seed=0):
    return np.random.default_rng(seed).gamma(2.0, 500.0, shape).astype(np.uint16)


def _onnx_files():
    return sorted((backends.cache_dir() / "onnx").glob("*.onnx"))


def test_all_backends_of_the_testing_extra_are_installed():
    # CI installs .[testing], which brings both: the tests below must not silently skip there
    assert installed() == ["torch", "openvino", "onnxruntime"]


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("depth,bn", [(2, False), (3, True)])
def test_tiled_fast_backend_equals_whole_image_torch(backend, depth, bn):
    net = lively_unet(depth=depth, base_filters=4, batch_norm=bn, seed=depth)
    image = _image()
    whole = Predictor(net, device="cpu", backend="torch", tile=4096)
    assert len(whole.grid(image.shape)) == 1
    expect = whole.predict(image)
    tiled = Predictor(net, device="cpu", backend=backend, precision="f32", tile=48)
    assert len(tiled.grid(image.shape)) >= 9
    got = tiled.predict(image)
    assert (tiled.backend, tiled.precision) == (backend, "f32")
    assert np.abs(got - expect).max() <= 1e-4
    # test-time augmentation runs the same mirrored windows
    tta = Predictor(net, device="cpu", backend=backend, precision="f32", tile=48, tta=True)
    ref = Predictor(net, device="cpu", backend="torch", tile=4096, tta=True)
    assert np.abs(tta.predict(image) - ref.predict(image)).max() <= 1e-4


def test_resolution_of_auto_and_bad_names(monkeypatch):
    for name in (ENV_BACKEND, ENV_PRECISION):
        monkeypatch.delenv(name, raising=False)
    best = FAST[0] if FAST else "torch"
    # f32 on every CPU: bf16 changes some labels, so it is never the default
    assert resolve("auto", "auto", "cpu") == (best, "f32")
    assert resolve("torch", "auto", "cpu") == ("torch", "f32")
    # GPUs keep PyTorch with its mixed precision (resolution does not need the GPU itself)
    assert resolve("auto", "auto", torch.device("cuda")) == ("torch", "amp")
    assert resolve("auto", "f32", torch.device("cuda")) == ("torch", "f32")
    with pytest.raises(InputError, match="runs on the CPU"):
        resolve("openvino", "auto", torch.device("cuda"))
    with pytest.raises(InputError, match="Unknown backend 'tensorrt'"):
        Predictor(lively_unet(depth=2, base_filters=4), device="cpu", backend="tensorrt")
    with pytest.raises(InputError, match="Unknown precision 'fp8'"):
        resolve("auto", "fp8", "cpu")
    with pytest.raises(InputError, match="bf16 on the CPU runs only on OpenVINO"):
        resolve("onnxruntime", "bf16", "cpu")
    if not cpu_bf16():
        with pytest.raises(InputError, match="does not"):
            resolve("auto", "bf16", "cpu")


@needs_fast
def test_export_is_cached_per_content_hash_and_first_call_cost_is_reported():
    net = lively_unet(depth=2, base_filters=4, seed=11)
    key = network_hash(net)
    pred = Predictor(net, device="cpu", backend=FAST[0], precision="f32")
    assert pred.engine is None     # nothing exported before the first image
    gen = pred.predict_iter(_image((64, 64)))
    compile_steps = [p for p in gen if p.stage == "compile"]
    # export and load first, then the compile for the tile shape (OpenVINO compiles per shape)
    assert [p.done for p in compile_steps] in ([0, 1], [0, 1, 0, 1])
    info = compile_steps[-1].info
    assert info.backend == FAST[0] and info.exported and info.seconds > 0
    assert [f.name for f in _onnx_files() if f.name.startswith(key)] == [f"{key}.v1.onnx"]
    # a second predictor of the same weights reuses the file, and pays no compile once ready
    again = Predictor(net, device="cpu", backend=FAST[0], precision="f32")
    list(again.predict_iter(_image((64, 64))))
    assert again.engine_info["exported"] is False
    assert [p.stage for p in again.predict_iter(_image((64, 64)))].count("compile") == 0
    # a damaged cache file is exported again, silently
    path = backends.cache_dir() / "onnx" / f"{key}.v1.onnx"
    path.write_bytes(b"not an onnx graph")
    with warnings.catch_warnings():
        warnings.simplefilter("error", BackendWarning)
        third = Predictor(net, device="cpu", backend=FAST[0], precision="f32")
        np.testing.assert_allclose(third.predict(_image((64, 64))),
                                   again.predict(_image((64, 64))), atol=1e-6)
    assert third.backend == FAST[0] and path.stat().st_size > 1000


@needs_fast
def test_a_fine_tuned_model_runs_on_the_fast_backend(tmp_path):
    from unet_core import save_model
    from unet_core.training import TrainingSet, finetune

    torch.manual_seed(0)
    base = save_model(lively_unet(depth=2, base_filters=4, seed=5), tmp_path / "base")
    ts = TrainingSet(tmp_path / "set")
    for i in range(3):
        ts.add(*make_example(i), source=f"img{i}.tif")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        finetune(base, ts, tmp_path / "tuned", steps=4, val_fraction=0.34, crop=64, batch_size=2,
                 lr=1e-2)
    finally:
        torch.set_num_threads(before)
    tuned = load_model(tmp_path / "tuned")
    assert network_hash(tuned.net) != network_hash(load_model(base).net)
    image = make_example(7, size=96)[0]
    for backend in FAST:
        fast = Predictor(load_model(tmp_path / "tuned"), device="cpu", backend=backend,
                         precision="f32", tile=32)
        got = fast.predict(image)
        assert fast.backend == backend
        expect = Predictor(tuned, device="cpu", backend="torch").predict(image)
        assert np.abs(got - expect).max() <= 1e-4
    assert any(f.name.startswith(network_hash(tuned.net)) for f in _onnx_files())


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_a_backend_whose_import_fails_falls_back_with_one_warning(backend, monkeypatch):
    # an install that is present but does not load (e.g. a missing shared library)
    monkeypatch.setitem(sys.modules, backend, None)
    net = lively_unet(depth=2, base_filters=4, seed=3)
    image = _image((80, 96))
    expect = Predictor(net, device="cpu", backend="torch").predict(image)
    pred = Predictor(net, device="cpu", backend=backend, precision="f32")
    with pytest.warns(BackendWarning) as record:
        got = pred.predict(image)
        pred.predict(image)     # the fallback is decided once: no second warning
    assert len(record) == 1
    message = str(record[0].message)
    assert backends.LABELS[backend] in message and "PyTorch" in message and "pip install" in message
    assert pred.backend == "torch"
    assert pred.engine_info["fallback"].startswith(("ImportError", "ModuleNotFoundError"))
    np.testing.assert_array_equal(got, expect)


@needs_fast
def test_an_unusable_cache_folder_falls_back_with_a_warning(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("the cache folder cannot be made under a file")
    monkeypatch.setenv("NAPARI_UNET_CACHE", str(blocker / "cache"))
    net = lively_unet(depth=2, base_filters=4, seed=4)
    image = _image((64, 80))
    pred = Predictor(net, device="cpu", backend=FAST[0], precision="f32")
    with pytest.warns(BackendWarning, match="could not be used"):
        labels = pred.segment(image)
    assert pred.backend == "torch"
    np.testing.assert_array_equal(labels, Predictor(net, device="cpu", backend="torch").segment(image))


@pytest.mark.skipif(not cpu_bf16(), reason="this CPU does not execute bf16 natively (OpenVINO)")
def test_bf16_labels_agree_with_f32_labels():
    from unet_core.data.synthetic import SAMPLE_PARAMS, synthetic_nuclei
    from unet_core.segmentation.metrics import evaluate

    image, _ = synthetic_nuclei((256, 256), seed=3, dtype="uint16", **SAMPLE_PARAMS)
    model = load_model("nuclei")
    f32 = Predictor(model, device="cpu", backend="openvino", precision="f32").segment(image)
    bf16 = Predictor(model, device="cpu", backend="openvino", precision="bf16")
    assert bf16.precision == "bf16"
    assert evaluate(bf16.segment(image), f32)["ap50"] >= 0.99


@pytest.mark.skipif("onnxruntime" not in FAST, reason="onnxruntime is not installed")
def test_cli_backend_options(saved_model, tmp_path, capsys, monkeypatch):
    import tifffile

    from unet_core.commands.cli import main

    image = make_example(2, size=96)[0]
    tifffile.imwrite(tmp_path / "img.tif", image)
    args = ["predict", str(tmp_path / "img.tif"), "--model", str(saved_model), "--device", "cpu",
            "--prob"]
    assert main(args + ["-o", str(tmp_path / "torch"), "--backend", "torch"]) == 0
    assert main(args + ["-o", str(tmp_path / "ort"), "--backend", "onnxruntime",
                        "--precision", "f32"]) == 0
    err = capsys.readouterr().err
    assert "network on ONNX Runtime f32, ready in" in err and "once per model" in err
    ref, got = (tifffile.imread(tmp_path / d / "img_prob.tif") for d in ("torch", "ort"))
    assert np.abs(got - ref).max() <= 1e-4
    # a broken install: one readable warning line, and the job still succeeds on PyTorch
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert main(args + ["-o", str(tmp_path / "fallback"), "--backend", "onnxruntime"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: The ONNX Runtime backend could not be used") == 1
    assert "Traceback" not in err
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "fallback" / "img_prob.tif"), ref)
    if not cpu_bf16():
        assert main(args + ["-o", str(tmp_path / "bf16"), "--precision", "bf16"]) == 2
        assert "error: bf16 on the CPU runs only on OpenVINO" in capsys.readouterr().err


def test_openvino_keeps_only_the_last_compiled_shapes():
    """Each compiled shape holds its own buffers: blocks of a large image come in
    several window shapes, so only the last MAX_COMPILED stay; a shape that comes back
    is compiled again and gives the same numbers."""
    from unet_core.inference.engines import MAX_COMPILED

    net = lively_unet(depth=2, base_filters=4, out_channels=3)
    pred = Predictor(net, device="cpu", backend="openvino", precision="f32")
    ref = Predictor(net, device="cpu", backend="torch")
    images = [make_example(k, size=s)[0].astype(np.float32) for k, s in enumerate((40, 72, 100, 40))]
    for image in images:
        np.testing.assert_allclose(pred.predict(image), ref.predict(image), atol=1e-4)
        assert len(pred.engine._compiled) <= MAX_COMPILED



def test_the_environment_says_what_auto_means(monkeypatch):
    """NAPARI_UNET_BACKEND / NAPARI_UNET_PRECISION replace "auto" (a name given by hand
    still wins), so a whole suite can run on one backend and precision."""
    monkeypatch.setenv(ENV_BACKEND, "torch")
    monkeypatch.setenv(ENV_PRECISION, "f32")
    assert resolve("auto", "auto", "cpu") == ("torch", "f32")
    if FAST:
        assert resolve(FAST[0], "f32", "cpu") == (FAST[0], "f32")
    monkeypatch.setenv(ENV_BACKEND, "tensorrt")
    with pytest.raises(InputError, match="Unknown backend 'tensorrt'"):
        resolve("auto", "auto", "cpu")
