"""Model files: round trip and every kind of bad file gives a clear error."""
import hashlib
import json
import pickle

import numpy as np
import pytest
import torch

from conftest import lively_unet
from unet_core import ModelFileError, Predictor, list_models, load_model, make_card, save_model


def test_round_trip(tmp_path):
    net = lively_unet(depth=2, base_filters=4)
    card = make_card(net.config, "tiny", description="a test model", metrics={"ap50": 0.5})
    folder = save_model(net, tmp_path / "tiny", card)
    m = load_model(folder)
    assert m.name == "tiny" and m.card["metrics"]["ap50"] == 0.5 and len(m.card["sha256"]) == 64
    img = np.random.default_rng(0).random((40, 40))
    np.testing.assert_array_equal(Predictor(m, device="cpu").predict(img),
                                  Predictor(net, device="cpu").predict(img))
    assert load_model(folder / "model.safetensors").name == "tiny"
    assert not list(tmp_path.rglob("*.part"))


def test_user_models_are_listed(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_MODELS", str(tmp_path))
    save_model(lively_unet(depth=2, base_filters=4), tmp_path / "mine")
    assert "mine" in [m["name"] for m in list_models() if m["source"] == "user"]
    assert load_model("mine").path == tmp_path / "mine"


def test_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_MODELS", str(tmp_path))
    with pytest.raises(ModelFileError, match="No model named 'nope'"):
        load_model("nope")
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "a" / "b")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match="has no model.safetensors"):
        load_model(tmp_path / "empty")


def test_corrupt_weights(saved_model):
    w = saved_model / "model.safetensors"
    w.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    card = json.loads((saved_model / "model.json").read_text())
    card["sha256"] = hashlib.sha256(w.read_bytes()).hexdigest()   # the card vouches for it
    (saved_model / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match="not a complete safetensors file"):
        load_model(saved_model)


def test_changed_weights_fail_the_hash(saved_model):
    w = saved_model / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="do not match the hash"):
        load_model(saved_model)


def test_card_that_does_not_fit(saved_model):
    card = json.loads((saved_model / "model.json").read_text())
    card["config"]["base_filters"] = 8
    (saved_model / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match="do not fit the architecture"):
        load_model(saved_model)
    (saved_model / "model.json").write_text("{broken")
    with pytest.raises(ModelFileError, match="not valid"):
        load_model(saved_model)


def test_pickles_are_refused(tmp_path, saved_model):
    net = lively_unet(depth=2, base_filters=4)
    torch.save(net.state_dict(), saved_model / "model.safetensors")
    with pytest.raises(ModelFileError, match="pickle"):
        load_model(saved_model)
    other = tmp_path / "old"
    other.mkdir()
    (other / "weights.pkl").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ModelFileError, match="pickle"):
        load_model(other)
