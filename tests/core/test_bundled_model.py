"""The bundled nuclei model: installed, loadable by name, and actually segments nuclei."""
import numpy as np
import pytest

from unet_core import Predictor, list_models, load_model
from unet_core.data.synthetic import SAMPLE_SEED, synthetic_nuclei
from unet_core.segmentation.metrics import evaluate


def test_bundled_model_is_listed_and_loads_by_name():
    assert any(m["name"] == "nuclei" and m["source"] == "bundled" for m in list_models())
    model = load_model("nuclei")
    card = model.card
    assert card["outputs"] == ["foreground", "boundary", "centre"]
    assert [t["recipe"]["config"] for t in _stages(card)] == [f"weights/{s}" for s in STAGES]
    assert model.config.depth == 4 and model.config.halo == 96
    # the card names the data sets that went into the weights, with their licences
    licences = {d["group"]: d["licence"] for d in card["training"]["data"]}
    assert any("MoNuSeg" in g and "NC" in lic for g, lic in licences.items())
    assert "non-commercial" in card["licence"]


STAGES = ("nuclei.real.train.json", "nuclei.stage2.train.json", "nuclei.train.json")


def _stages(card) -> list[dict]:
    """The training records of a card, the last stage first (each stage's card holds
    the one it started from under ``init``)."""
    out, training = [], card["training"]
    while training:
        out.append(training)
        training = (training.get("init") or {}).get("training")
    return out


@pytest.mark.parametrize("stage", STAGES)
def test_bundled_model_card_matches_its_committed_recipe(stage):
    """Each of the three training stages on the card ran the parameters of its committed
    config (weights/nuclei.train.json; weights/nuclei.stage2.train.json from its weights;
    weights/nuclei.real.train.json from those) to the end."""
    import json
    from pathlib import Path

    from unet_core.training.scratch import parse_config

    config = Path(__file__).resolve().parents[2] / "weights" / stage
    if not config.exists():
        pytest.skip("an installed package without the repository's weights/ folder")
    cfg, params, _ = parse_config(json.loads(config.read_text()))
    card = load_model("nuclei").card
    training = _stages(card)[STAGES.index(stage)]
    assert training["recipe"]["config"] == f"weights/{stage}"
    assert card["config"] == cfg.to_dict()
    ran = {k: v for k, v in training["params"].items() if k != "max_seconds"}
    params = {k: v for k, v in params.items() if k != "max_seconds"}
    assert ran == params and training["steps"] == params["steps"]
    assert training["stopped_by"] == "steps"


def test_bundled_model_segments_unseen_synthetic_nuclei():
    image, truth = synthetic_nuclei((256, 256), seed=SAMPLE_SEED + 1000, dtype="uint16")
    labels = Predictor("nuclei", device="cpu").segment(image)
    r = evaluate(labels, truth)
    assert r["dice"] > 0.85 and r["ap50"] > 0.7, r


def test_bundled_model_finds_nothing_in_an_empty_image():
    pred = Predictor("nuclei", device="cpu")
    for img in (np.zeros((200, 300), np.uint16), np.full((200, 300), 1000, np.uint16)):
        assert pred.segment(img).max() == 0
