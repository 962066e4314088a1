"""Commands given values a new user may try: each refused with a reason (exit 2), or
handled, and the rest of the run carried on."""
import numpy as np
import pytest

from conftest import make_example
from unet_core.commands import cli
from unet_core.errors import explain
from unet_core.files.fileio import write_tiff
from unet_core.segmentation.metrics import evaluate


def test_evaluate_handles_a_million_objects_per_image(tmp_path, capsys):
    many = np.arange(1, 1_000_001, dtype=np.uint32).reshape(1000, 1000)   # 1 px objects
    shifted = many.copy()
    shifted[:, :500] = 0
    result = evaluate(shifted, many)
    assert result["n_true"] == 1_000_000 and result["n_pred"] == 500_000
    assert result["ap50"] == pytest.approx(0.5)
    labels, truth = tmp_path / "labels", tmp_path / "truth"
    write_tiff(labels / "many_labels.tif", many)
    write_tiff(truth / "many.tif", many)
    _, small = make_example(0, 64)
    write_tiff(labels / "small_labels.tif", small)
    write_tiff(truth / "small.tif", small)
    rc = cli.main(["evaluate", "--labels", str(labels), "--truth", str(truth), "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert '"image": "many"' in out.out and '"image": "small"' in out.out


@pytest.mark.parametrize("args, reason", [
    (["--size", "0"], "--size"), (["--size", "-5"], "--size"), (["--count", "-1"], "--count"),
    (["--count", "0"], "--count"),
])
def test_sample_refuses_sizes_and_counts_that_make_nothing(tmp_path, capsys, args, reason):
    with pytest.raises(SystemExit) as stop:
        cli.main(["sample", "-o", str(tmp_path / "s"), *args])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and reason in err and "must be" in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()


def test_out_of_memory_names_what_helps_not_the_tile():
    text = explain(MemoryError("Unable to allocate 3.73 GiB for an array with shape (1, 10000, 10000)"))
    assert "--tile" not in text and "3.73 GiB" in text and "block by block" in text
