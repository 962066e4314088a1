"""Memory of a large TIFF opened with File > Open through the plugin's reader, then segmented.

Writes an N x N uint16 tiled TIFF (512 px zlib tiles, a mosaic of synthetic nuclei
fields; see bench_memory.py) without holding it whole, opens it in a real napari
viewer with ``viewer.open(path, plugin="napari-nuclei-unet")`` (what File > Open does
once the plugin's reader is chosen) and reports the process's RSS:

- ``open``: after the layer is added and drawn (the whole-image view reads the
  coarsest levels, built from the file tile by tile);
- ``before``: just before Segment starts;
- ``peak``: the highest RSS while Segment runs and its result is drawn (Linux's VmHWM,
  reset before the run, and a 50 ms sampler).

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/bench_reader.py --size 16384
    xvfb-run -a ... python benchmarks/bench_reader.py --size 4096 --model threshold

Targets: multiscale layer, RSS < 1 GB before Segment and < 2 GB at its peak.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

GB = 2**30


def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def vm_hwm() -> int:
    """Peak RSS since the last reset (bytes), from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def reset_hwm() -> None:
    Path("/proc/self/clear_refs").write_text("5")     # Linux: VmHWM back to the current RSS


class Sampler(threading.Thread):
    """The largest RSS seen every 50 ms, and the largest in each stage: ``stage()`` (the
    Segment widget's progress text, read on the GUI thread every 100 ms) names it."""

    def __init__(self, stage):
        from qtpy.QtCore import QTimer

        super().__init__(daemon=True)
        self.peak, self.stop = rss(), threading.Event()
        self.current, self.stages = "start", {}
        self.timer = QTimer()
        self.timer.timeout.connect(lambda: self._on_stage(stage()))
        self.timer.start(100)
        self.t0 = time.perf_counter()

    def _on_stage(self, now: str) -> None:
        if now != self.current:       # said as it happens: a long run can be read mid-way
            print(f"{time.perf_counter() - self.t0:7.0f} s  {self.current}: peak "
                  f"{self.stages.get(self.current, 0) / GB:.2f} GB", flush=True)
            self.current = now

    def run(self) -> None:
        while not self.stop.wait(0.05):
            now = rss()
            self.peak = max(self.peak, now)
            self.stages[self.current] = max(self.stages.get(self.current, 0), now)

    def finish(self) -> dict:
        """{stage: its largest RSS in GB}, in the order the stages came."""
        self.stop.set()
        self.timer.stop()
        return {k: round(v / GB, 2) for k, v in self.stages.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16384)
    parser.add_argument("--model", default="nuclei",
                        help="a model name or folder, or 'threshold' (bench_memory's tiny net)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", help="the Device box's backend (default: its first "
                                          "choice for --device)")
    parser.add_argument("--workdir", help="keep the TIFF here (default: a temporary folder)")
    parser.add_argument("--screenshot", help="PNG of the viewer after Segment")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    import napari
    import napari._qt.qt_main_window as qt_main_window
    from bench_memory import patches, tiny_model, write_tiff
    from gap_meter import run_event_loop

    work = Path(args.workdir or tempfile.mkdtemp(prefix="napari-unet-reader-"))
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"mosaic{args.size}.tif"
    if not path.exists():
        t0 = time.perf_counter()
        write_tiff(path, args.size, patches(3))
        print(f"wrote {path} ({path.stat().st_size / GB:.2f} GB) in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    model = str(tiny_model(work)) if args.model == "threshold" else args.model

    qt_main_window.SHOW_QT_WARNING = False
    viewer = napari.Viewer()
    viewer.window.resize(1500, 900)
    results = {"size": args.size, "model": args.model, "rss_start_gb": round(rss() / GB, 2)}
    t0 = time.perf_counter()
    [layer] = viewer.open(path, plugin="napari-nuclei-unet")
    run_event_loop(lambda: False, 2.0)       # drawn
    results["open_s"] = round(time.perf_counter() - t0 - 2.0, 1)
    results["multiscale"] = bool(layer.multiscale)
    results["levels"] = [tuple(level.shape) for level in layer.data]
    results["rss_open_gb"] = round(rss() / GB, 2)

    _, segment = viewer.window.add_plugin_dock_widget("napari-nuclei-unet", "Segment")
    segment.model_picker.set_model(model)
    segment.device_combo.setCurrentIndex(next(
        i for i in range(segment.device_combo.count())
        if segment.device_combo.itemData(i)[0] == args.device
        and args.backend in (None, segment.device_combo.itemData(i)[1])))
    segment.image_combo.setCurrentText(layer.name)
    run_event_loop(lambda: False, 1.0)
    results["rss_before_gb"] = round(rss() / GB, 2)
    reset_hwm()
    sampler = Sampler(lambda: segment.run_bar.bar.format().split("%")[0].strip())
    sampler.start()
    t0 = time.perf_counter()
    segment.run_bar.run_button.click()
    run_event_loop(lambda: not segment.running, 4 * 3600)
    run_event_loop(lambda: False, 2.0)       # the result drawn
    results["peak_by_stage_gb"] = sampler.finish()
    results["segment_s"] = round(time.perf_counter() - t0 - 2.0, 1)
    results["status"] = segment.run_bar.status.text()
    results["peak_gb"] = round(max(sampler.peak, vm_hwm()) / GB, 2)
    results["labels_multiscale"] = bool(viewer.layers[-1].multiscale)
    results["load_average"] = round(os.getloadavg()[0], 2)
    if args.screenshot:
        viewer.screenshot(path=args.screenshot, canvas_only=False)
    viewer.close()
    for key, value in results.items():
        print(f"{key}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
