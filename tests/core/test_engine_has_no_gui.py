"""The engine imports and predicts without Qt, napari or magicgui (cluster nodes)."""
import subprocess
import sys
import textwrap
from pathlib import Path


def test_engine_imports_no_gui_packages():
    code = textwrap.dedent("""
        import sys, numpy as np, torch
        import unet_core
        from unet_core import Predictor, UNet, UNetConfig
        from unet_core.commands import cli
        from unet_core.segmentation import metrics, instances
        from unet_core.files import fileio
        torch.manual_seed(0)
        p = Predictor(UNet(UNetConfig(depth=2, base_filters=4)).eval(), device="cpu", tile=32)
        p.segment(np.random.default_rng(0).random((70, 50)))
        bad = [m for m in sys.modules if m.split(".")[0] in
               ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "superqt", "vispy")]
        assert not bad, bad
        print("clean")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "clean" in out.stdout, out.stderr


def test_engine_source_has_no_gui_imports():
    import re

    root = Path(__file__).resolve().parents[2] / "src" / "unet_core"
    pat = re.compile(r"^\s*(from|import)\s+(qtpy|napari|magicgui|superqt|PyQt5|PyQt6|PySide\d?)\b", re.M)
    offenders = [p.name for p in root.rglob("*.py") if pat.search(p.read_text())]
    assert not offenders
