"""A model folder is checked before anything is built from it: card schema, required
hash, weights' shapes from their header, regular files of the declared size."""
import hashlib
import json
import os
import resource
import threading
import time

import pytest

from unet_core import ModelFileError, load_model


def _edit(folder, change, rehash=False):
    """Change the card with ``change(card)``; with ``rehash`` the hash stays valid."""
    card = json.loads((folder / "model.json").read_text())
    change(card)
    if rehash:
        card["sha256"] = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    (folder / "model.json").write_text(json.dumps(card))


def _load_within(folder, seconds=30):
    """load_model in a thread: the error it raised, or a failure if it hangs."""
    out = []

    def target():
        try:
            load_model(folder)
            out.append(None)
        except ModelFileError as err:
            out.append(err)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert out, f"load_model hung for {seconds} s"
    return out[0]


@pytest.mark.parametrize("filters", [100_000, 1200])
def test_huge_architectures_are_refused_before_allocating(saved_model, filters):
    _edit(saved_model, lambda c: c["config"].update(base_filters=filters))   # hash still valid
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(ModelFileError, match="config.base_filters must be between 1 and 512"):
        load_model(saved_model)
    assert time.perf_counter() - t0 < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 200_000   # kB


@pytest.mark.parametrize("key, value, message", [
    ("depth", 2.5, "config.depth must be an integer"), ("depth", "2", "config.depth must be an integer"),
    ("base_filters", True, "config.base_filters must be an integer"),
    ("dropout", 1.5, "config.dropout must be between"), ("colour", 1, "config.colour is not a known field")])
def test_config_values_are_typed_and_bounded(saved_model, key, value, message):
    _edit(saved_model, lambda c: c["config"].update({key: value}))
    with pytest.raises(ModelFileError, match=message):
        load_model(saved_model)


@pytest.mark.parametrize("section, value, message", [
    ("instances", {"sigma": "wide"}, "instances.sigma must be a number"),
    ("instances", {"min_size": -1}, "instances.min_size must be between"),
    ("instances", {"min_sise": 10}, "instances.min_sise is not a known field"),
    ("instances", [1, 2], "instances must be an object"),
    ("normalization", {"low": 99.0, "high": 1.0}, "normalization.low .99.0. must be below"),
    ("normalization", {"low": 1.0, "high": 300}, "normalization.high must be between"),
    ("normalization", {"high": 99.8}, "normalization.low is missing"),
    ("diameter", "big", "diameter must be a number"), ("diameter", 0, "diameter must be a number"),
    ("diameter_range", [30, 10], "diameter_range must be")])
def test_values_read_at_predict_time_are_checked_at_load_time(saved_model, section, value, message):
    _edit(saved_model, lambda c: c.update({section: value}))
    with pytest.raises(ModelFileError, match=message):
        load_model(saved_model)


def test_the_hash_is_required(saved_model):
    _edit(saved_model, lambda c: c.pop("sha256"))
    with pytest.raises(ModelFileError, match="sha256 .* is missing"):
        load_model(saved_model)


def test_weights_must_be_a_regular_file_of_the_declared_size(saved_model, tmp_path):
    weights = saved_model / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data + b"\0" * 16)
    _edit(saved_model, lambda c: None, rehash=True)
    assert "not a complete safetensors file" in str(_load_within(saved_model))
    weights.write_bytes(data[:-16])
    _edit(saved_model, lambda c: None, rehash=True)
    assert "not a complete safetensors file" in str(_load_within(saved_model))
    weights.unlink()
    weights.symlink_to("/dev/zero")
    assert "not a regular file" in str(_load_within(saved_model))
    weights.unlink()
    os.mkfifo(weights)
    assert "not a regular file" in str(_load_within(saved_model))


def test_a_valid_model_still_loads(saved_model):
    assert load_model(saved_model).config.base_filters == 4
    assert load_model("nuclei").config.depth == 4
