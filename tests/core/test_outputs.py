"""Output names: one distinct stem per input, for predict's files and batch's folders."""
from pathlib import Path

from unet_core.files.outputs import output_paths, output_stems


def test_files_keep_their_stem_unless_two_share_it(tmp_path):
    paths = [tmp_path / "a" / "img.tif", tmp_path / "b" / "img.tif", tmp_path / "c.png"]
    stems, notes = output_stems(paths)
    assert [stems[p] for p in paths] == ["a_img_tif", "b_img_tif", "c"]
    assert len(notes) == 2


def test_a_folder_names_inputs_by_their_path_inside_it(tmp_path):
    names = ["a/img.tif", "b/img.tif", "img.png", "img.tif", "x.ome.tif", "y.ome.zarr"]
    paths = [tmp_path / n for n in names]
    stems, _ = output_stems(paths, root=tmp_path)
    assert [stems[p] for p in paths] == ["a/img", "b/img", "img_png", "img_tif", "x", "y"]
    assert output_paths("a/img", tmp_path, ("labels", "prob"), as_zarr=True) == {
        "labels": tmp_path / "a" / "img_labels.zarr", "prob": Path(tmp_path, "a/img_prob.zarr")}
