"""Annotated image/mask pairs as training data: loading, sampling, stain jitter, a real
training run on a folder of pairs, and the plausibility check of results."""
import json

import numpy as np
import pytest
import tifffile

from unet_core.commands import cli
from unet_core.data.synthetic import render_he, synthetic_nuclei
from unet_core.inference.image_settings import ImageSettings
from unet_core.inference.plausibility import check_labels
from unet_core.inference.stain import hed_density
from unet_core.models.modelio import load_model
from unet_core.training.augment import AugmentConfig, stain_jitter
from unet_core.training.pairs import group_summary, load_pairs, sampling_weights
from unet_core.training.scaling import pair_at_model_scale


def write_pairs(folder, manifest=True):
    """Two fluorescence sources (3 + 1 pairs) and one H&E source (1 pair)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    specs = [("fa", "fluorescence", "Lab A", 3), ("fb", "fluorescence", "Lab B", 1),
             ("he", "he", "Lab C (binary mask -> components)", 1)]
    for prefix, modality, source, n in specs:
        for i in range(n):
            img, lab = synthetic_nuclei((96, 96), seed=10 * i + len(prefix), radius_range=(5.0, 7.0))
            if modality == "he":
                img = render_he(img, lab)
            name = f"{prefix}_{i}"
            tifffile.imwrite(folder / f"{name}_img.tif", img)
            tifffile.imwrite(folder / f"{name}_mask.tif", lab.astype(np.uint16))
            rows.append(f"{name},{modality},{source},CC0 1.0")
    if manifest:
        (folder / "MANIFEST.csv").write_text("name,modality,source_dataset,licence\n"
                                             + "\n".join(rows) + "\n")
    (folder / "orphan_img.tif").write_bytes(b"")       # no mask: not a pair
    return folder


def test_pairs_are_read_with_their_source_stain_and_true_size(tmp_path):
    folder = write_pairs(tmp_path / "pairs")
    pairs = load_pairs(folder)
    assert [p.id for p in pairs] == ["fa_0", "fa_1", "fa_2", "fb_0", "he_0"]
    he = pairs[-1]
    assert he.record["stain"] == "he" and he.record["merged"] and he.image.ndim == 3
    assert pairs[0].record["group"] == "Lab A" and pairs[0].record["licence"] == "CC0 1.0"
    assert 8 < pairs[0].record["diameter"] < 16
    assert [p.id for p in load_pairs(folder, groups=["Lab A"])] == ["fa_0", "fa_1", "fa_2"]
    assert [p.id for p in load_pairs(folder, exclude_groups=["Lab *"])] == []
    assert "he_0" not in [p.id for p in load_pairs(folder, per_nucleus_only=True)]
    rows = {r["group"]: r for r in group_summary(pairs)}
    assert rows["Lab A"]["pairs"] == 3 and rows["Lab C (binary mask -> components)"]["stain"] == "he"
    # without a manifest: the stain is read from the image, each pair is its own source
    bare = load_pairs(write_pairs(tmp_path / "bare", manifest=False))
    assert {p.record["stain"] for p in bare} == {"fluorescence", "he"}
    assert len({p.record["group"] for p in bare}) == len(bare)


def test_sampling_is_even_over_stains_and_sources(tmp_path):
    pairs = load_pairs(write_pairs(tmp_path / "pairs"))
    p = sampling_weights(pairs)
    by = lambda key: {k: p[[i for i, e in enumerate(pairs) if key(e) == k]].sum()  # noqa: E731
                      for k in {key(e) for e in pairs}}
    np.testing.assert_allclose(sorted(by(lambda e: e.record["stain"]).values()), [0.5, 0.5])
    # within a stain, sources by the square root of their nuclei
    groups = by(lambda e: e.record["group"])
    nuclei = {g: sum(e.record["n_objects"] for e in pairs if e.record["group"] == g)
              for g in ("Lab A", "Lab B")}
    assert groups["Lab A"] / groups["Lab B"] == pytest.approx(np.sqrt(nuclei["Lab A"] / nuclei["Lab B"]))


def test_he_pairs_keep_their_stain_densities_and_are_jittered(tmp_path):
    pairs = load_pairs(write_pairs(tmp_path / "pairs"))
    he = pairs[-1]
    model = load_model("nuclei")
    at = pair_at_model_scale(he, model.diameter, model.diameter_range)
    assert at.record["hed"] and at.image.shape[-1] == 3 and at.image.dtype == np.float32
    hed = hed_density(he.image, 255.0)
    h = hed[..., 0]
    assert h[he.labels > 0].mean() > 2 * h[he.labels == 0].mean()   # hematoxylin in nuclei
    rng = np.random.default_rng(0)
    plain = stain_jitter(hed, rng, None, 0.0, 1.0)
    np.testing.assert_allclose(plain[..., 0], np.maximum(h, 0), rtol=1e-6)
    jittered = [stain_jitter(hed, rng, AugmentConfig(stain_p=1.0), 0.0, 1.0) for _ in range(3)]
    assert all(j.shape == plain.shape and not np.allclose(j, plain) for j in jittered)
    # fluorescence pairs are converted as the Predictor converts them, one channel
    fl = pair_at_model_scale(pairs[0], model.diameter, model.diameter_range)
    assert not fl.record["hed"] and fl.image.shape[-1] == 1


def test_cli_trains_on_a_folder_of_pairs(tmp_path, capsys):
    folder = write_pairs(tmp_path / "pairs")
    cfg = tmp_path / "recipe.json"
    cfg.write_text(json.dumps({
        "model": {"depth": 2, "base_filters": 4},
        "diameter": 12.0,
        "data": {"pairs": str(folder), "exclude_groups": ["Lab B"], "val_groups": ["Lab B"]},
        "training": {"crop": 64, "batch_size": 2}}))
    rc = cli.main(["train", "--config", str(cfg), "-o", str(tmp_path / "m"), "--steps", "2",
                   "--device", "cpu", "-q"])
    assert rc == 0, capsys.readouterr().err
    card = load_model(tmp_path / "m").card
    assert card["diameter"] == 12.0
    assert {e["id"] for e in card["training"]["examples"]} == {"fa_0", "fa_1", "fa_2", "he_0"}
    assert [e["id"] for e in card["training"]["val_examples"]] == ["fb_0"]
    assert card["metrics"]["val"]["n"] == 1
    assert {r["group"]: r["licence"] for r in card["training"]["data"]}["Lab A"] == "CC0 1.0"


def _settings(d):
    return ImageSettings(d, 1.0, "he", np.zeros(1), np.ones(1), estimated=True)


def test_fragments_and_overfull_foregrounds_are_flagged():
    good = np.zeros((200, 200), np.uint32)
    k = 0
    for y in range(10, 190, 25):
        for x in range(10, 190, 25):
            k += 1
            good[y:y + 20, x:x + 20] = k
    assert check_labels(good, _settings(22.0)) is None
    # the same foreground cut into 5 px pieces: flagged, and the message names the settings
    frag = np.zeros_like(good)
    frag[good > 0] = (np.arange(200)[:, None] // 5 * 40 + np.arange(200)[None, :] // 5)[good > 0] + 1
    msg = check_labels(frag, _settings(22.0))
    assert msg and "Nucleus size" in msg and "Stain" in msg and "H&E" in msg
    # too few objects say nothing
    assert check_labels(frag[:20, :40], _settings(22.0)) is None
