"""The engine's shape: layers as sub-packages, no import cycles, no hidden imports,
short modules and functions (``tools/import_graph.py`` is the same check by hand)."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from pathlib import Path

import unet_core

TOOL = Path(__file__).resolve().parents[2] / "tools" / "import_graph.py"


def _tool():
    spec = importlib.util.spec_from_file_location("import_graph", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_cycles_no_local_imports_no_long_modules_or_functions():
    tool = _tool()
    problems, summary = tool.report(tool.load())
    assert problems == [], "\n".join(problems)
    assert summary["cycles"] == 0


def test_every_sub_package_says_what_it_holds():
    packages = [m for m in pkgutil.iter_modules(unet_core.__path__) if m.ispkg]
    assert {m.name for m in packages} >= {"files", "models", "inference", "segmentation",
                                          "scaleout", "training", "commands"}
    for m in packages:
        doc = importlib.import_module(f"unet_core.{m.name}").__doc__
        assert doc and len(doc.split()) >= 8, f"unet_core.{m.name} has no docstring"


def test_the_public_api_stays_where_it_was():
    from unet_core import Predictor, load_model  # noqa: F401

    assert callable(load_model) and isinstance(Predictor, type)
