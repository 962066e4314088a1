"""How long the napari event loop is blocked while the plugin's widgets work.

A real napari viewer with the plugin's dock widgets; a ``QTimer`` firing every 10 ms
records the time between its ticks.  The largest gap is the longest the GUI was
frozen (nothing repainted, no click answered).  Measured in three phases:

- ``idle``:      the viewer showing a 2048 x 2048 image, nothing running (baseline)
- ``segment``:   the Segment widget segments that image on the CPU with a depth-4,
  16-filter U-Net (random weights: the work is the same as a trained one's); its end
  adds a 2048 x 2048 Labels layer to the viewer
- ``segment-2``: the same again (the Labels layer exists: its data is replaced)
- ``finetune``:  the Fine-tune widget trains that U-Net (30 steps, 256 px crops,
  batch 2) on three 384 px synthetic examples, validating every 3 steps, in its
  child process (started with spawn; napari's process only receives the progress)
- ``finetune-2``: the same again (steady state)
- ``add_labels``: after the segment phases, napari's own ``viewer.add_labels`` of the
  same labels array (the reference for the cost of showing a result)
- ``arrival``: with ``--repeats N``, N rounds of (Segment into a new Labels layer, then
  napari's ``viewer.add_labels`` of the array that run produced), the layers of earlier
  rounds renamed and hidden; the medians of the result's gap and of the reference's gap,
  measured in the same process (``--model nuclei`` for a trained model, whose labels are
  not empty on the synthetic image)
- ``segment-lazy``: with ``--lazy-size N``, Segment on an N x N zarr-backed (dask)
  layer: read by window, segmented block by block, shown as a lazy multiscale Labels
  layer (with ``--lazy-model threshold``: the depth-2 hand-set network of
  bench_memory.py, so the CPU cost is the pipeline's, not the network's; with
  ``--lazy-pyramid`` the image layer is multiscale, as a pyramidal OME-Zarr opens)

The segment phases are timed until the result layer has been added and drawn: the
meter keeps running for ``--tail`` s (default 1.5) after the worker has finished.  Each
phase also says when its longest gap ended and what the Segment widget's progress showed
then, and the lazy phases the process's RSS before and at its peak.

Run under a display::

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/bench_responsiveness.py

The segment phases split their gaps at the moment the result reaches the GUI thread:
``computing`` (the job running) and ``result`` (adding and drawing the layer).
``--force-gc S`` runs a full ``gc.collect()`` on the GUI thread S s into each segment
phase (what Python does by itself every few seconds while a job allocates);
``--no-freeze`` measures the jobs without ``gc.freeze()``.

Target: max gap < 200 ms while computing; the first result's gap at most 1.25x that of
``add_labels``.  The numbers are noisy on a loaded machine.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from gap_meter import GapMeter, measure, run_event_loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--phases", nargs="+", default=["segment", "segment-2", "finetune",
                                                         "finetune-2"])
    parser.add_argument("--lazy-size", type=int, help="also segment a zarr layer of this size")
    parser.add_argument("--lazy-model", default="threshold", help="'threshold' or a model name")
    parser.add_argument("--lazy-pyramid", action="store_true",
                        help="show the zarr image as a multiscale layer (level 0 and halves), "
                             "as a pyramidal OME-Zarr opens; the Segment widget reads level 0")
    parser.add_argument("--model", help="segment with this model name or folder instead of "
                                            "the random depth-4 16-filter U-Net")
    parser.add_argument("--repeats", type=int, default=0,
                        help="rounds of the arrival phase (new result layer against add_labels)")
    parser.add_argument("--tail", type=float, default=1.5)
    parser.add_argument("--screenshot", help="PNG of the viewer after the lazy run")
    parser.add_argument("--force-gc", type=float, metavar="S",
                        help="a full gc.collect() on the GUI thread S s into each segment phase")
    parser.add_argument("--no-freeze", action="store_true",
                        help="jobs leave the garbage collector as it is (no gc.freeze)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="napari-unet-bench-"))
    os.environ["NAPARI_UNET_MODELS"] = str(tmp / "models")
    os.environ["NAPARI_UNET_TRAINING_SET"] = str(tmp / "set")

    import napari
    import napari._qt.qt_main_window as qt_main_window
    import torch
    from qtpy.QtCore import QTimer

    from unet_core import UNet, UNetConfig, save_model
    from unet_core.data.synthetic import synthetic_nuclei
    from unet_core.models.modelio import resolve_model_path
    from unet_core.training.dataset import TrainingSet

    qt_main_window.SHOW_QT_WARNING = False
    from napari_unet._widgets import _jobs

    _jobs.FREEZE_GC = not args.no_freeze
    torch.manual_seed(0)
    model = save_model(UNet(UNetConfig(depth=4, base_filters=16)).eval(), tmp / "models" / "bench16")
    ts = TrainingSet(tmp / "set")
    for k in range(3):
        ts.add(*synthetic_nuclei((384, 384), seed=k), source=f"train{k}")
    image = synthetic_nuclei((args.size, args.size), seed=7)[0]

    viewer = napari.Viewer()
    viewer.window.resize(1500, 900)
    viewer.add_image(image, name="big")
    _, segment = viewer.window.add_plugin_dock_widget("napari-nuclei-unet", "Segment")
    _, finetune = viewer.window.add_plugin_dock_widget("napari-nuclei-unet", "Fine-tune", tabify=True)
    segment.model_picker.set_model(resolve_model_path(args.model) if args.model else model)
    segment.device_combo.setCurrentText("cpu")
    finetune.model_picker.set_model(model)
    finetune.device_combo.setCurrentText("cpu")
    finetune.steps_spin.setValue(args.steps)
    finetune.crop_spin.setValue(args.crop)
    finetune.batch_spin.setValue(args.batch)
    run_event_loop(lambda: False, 2.0)      # let the window settle

    meter, results = GapMeter(lambda: f"{segment.run_bar.bar.format()} | "
                                      f"{segment.run_bar.status.text()}"), {}
    results["idle"] = measure(meter, lambda: None, lambda: False, 5.0)
    shown = segment.jobs._result
    segment.jobs._result = lambda value: (meter.mark_result(), shown(value))[1]
    for phase, widget in (("segment", segment), ("segment-2", segment),
                          ("finetune", finetune), ("finetune-2", finetune)):
        if phase not in args.phases:
            continue
        seg = phase.startswith("segment")
        results[phase] = measure(meter, widget.run_bar.run_button.click,
                                 lambda w=widget: not w.running, 1800,
                                 args.tail if seg else 0.0, args.force_gc if seg else None)
        results[phase]["status"] = widget.run_bar.status.text()
    if "big labels" in viewer.layers:     # napari's own add_labels of the same array
        same = np.asarray(viewer.layers["big labels"].data)
        results["add_labels"] = measure(meter, *in_event_loop(
            lambda: viewer.add_labels(same, name="reference")), 60, args.tail)
        viewer.layers.remove("reference")
    if args.repeats:
        results.update(arrival(viewer, segment, meter, args.repeats, args.tail))
    if args.lazy_size:
        import dask.array as da
        import psutil
        import zarr
        from bench_memory import patches, tiny_model, write_zarr

        src = tmp / f"mosaic{args.lazy_size}.zarr"
        write_zarr(src, args.lazy_size, patches(3))
        # Hidden, not removed: on napari 0.9.2 / vispy 0.17 (Xvfb, PyQt5 and PyQt6) removing
        # an image and a Labels layer and then adding both again crashes the process in
        # glDrawArrays at the next draw, with napari alone (no plugin involved).
        for layer in viewer.layers:
            layer.visible = False
        data = da.from_zarr(zarr.open_array(str(src), mode="r"))
        if args.lazy_pyramid:           # as an OME-Zarr reader shows one: level 0 and halves
            levels = [data]
            while levels[-1].shape[0] > 1024:
                half = da.coarsen(np.mean, levels[-1], {0: 2, 1: 2}).astype(np.uint16)
                path = tmp / f"level{len(levels)}.zarr"
                half.rechunk(1024).to_zarr(str(path))
                levels.append(da.from_zarr(zarr.open_array(str(path), mode="r")))
            data = levels
        viewer.add_image(data, name="lazy", contrast_limits=(0, 4000),
                         multiscale=bool(args.lazy_pyramid))
        lazy_model = tiny_model(tmp) if args.lazy_model == "threshold" else args.lazy_model
        segment.model_picker.set_model(lazy_model)
        segment.image_combo.setCurrentText("lazy")
        proc = psutil.Process()
        peak = [proc.memory_info().rss]
        sampler = QTimer()
        sampler.timeout.connect(lambda: peak.append(proc.memory_info().rss))
        sampler.start(100)
        for phase in ("segment-lazy", "segment-lazy-2"):     # the 2nd replaces the layer's data
            peak[:] = [proc.memory_info().rss]
            before = peak[0]
            results[phase] = measure(meter, segment.run_bar.run_button.click,
                                     lambda: not segment.running, 3600, args.tail)
            results[phase]["status"] = segment.run_bar.status.text()
            results[phase]["peak_rss_gb"] = round(max(peak) / 2**30, 2)
            results[phase]["rss_before_gb"] = round(before / 2**30, 2)
            results[phase]["labels_layer"] = repr(viewer.layers[-1].data)[:120]
        sampler.stop()
        if args.screenshot:
            viewer.screenshot(path=args.screenshot, canvas_only=False)
    viewer.close()

    results["load_average"] = {"ticks": 0, "max_ms": 0, "p99_ms": 0, "median_ms": 0,
                               "seconds": round(os.getloadavg()[0], 2)}
    print(f"torch threads {torch.get_num_threads()}, cpu count {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'phase':<12}{'seconds':>9}{'ticks':>8}{'max gap ms':>12}{'ended at s':>12}"
          f"{'p99 ms':>9}{'median ms':>11}")
    for phase, r in results.items():
        print(f"{phase:<12}{r['seconds']:>9}{r['ticks']:>8}{r['max_ms']:>12}"
              f"{r.get('max_ended_s', ''):>12}{r['p99_ms']:>9}"
              f"{r['median_ms']:>11}")
    for phase, r in results.items():
        if "status" in r:
            print(f"{phase}: {r['status']}")
        if r.get("max_ended_during"):
            print(f"{phase}: longest gap ended during: {r['max_ended_during']}")
        if r.get("full_gc"):
            print(f"{phase}: {r['full_gc']} full garbage collections, longest "
                  f"{r['full_gc_max_ms']} ms")
        if "computing_max_ms" in r:
            print(f"{phase}: max gap {r['computing_max_ms']} ms while computing, "
                  f"{r['result_max_ms']} ms from the result on")
        if "rounds_ms" in r:
            print(f"{phase}: gaps per round {r['rounds_ms']} ms, median {r['max_ms']} ms"
                  + (f", {r['ratio_to_add_labels']}x add_labels"
                     if "ratio_to_add_labels" in r else ""))
        if "peak_rss_gb" in r:
            print(f"{phase}: RSS {r['rss_before_gb']} GB before, peak {r['peak_rss_gb']} GB")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))


def in_event_loop(call):
    """(start, until) for :func:`measure` that make ``call`` once the meter's timer ticks:
    a call made before the first tick would not be inside any measured gap."""
    from qtpy.QtCore import QTimer

    done = []
    return (lambda: QTimer.singleShot(50, lambda: done.append(call())), lambda: bool(done))


def arrival(viewer, segment, meter, repeats: int, tail: float) -> dict:
    """Rounds of a Segment result added as a new layer, then napari's own ``add_labels``
    of the same array; the layers of each round are renamed and hidden afterwards."""
    rows = {"arrival-segment": [], "arrival-add_labels": []}
    for k in range(repeats):
        if "big labels" in viewer.layers:     # the next result becomes a new layer
            viewer.layers["big labels"].name = f"big labels {k}"
        for layer in viewer.layers:
            layer.visible = layer.name == "big"
        run = measure(meter, segment.run_bar.run_button.click, lambda: not segment.running,
                      1800, tail)
        result = viewer.layers["big labels"]
        result.visible = False
        same = np.asarray(result.data)
        ref = measure(meter, *in_event_loop(
            lambda same=same, k=k: viewer.add_labels(same, name=f"reference {k}")), 60, tail)
        viewer.layers[f"reference {k}"].visible = False
        rows["arrival-segment"].append({**run, "max_ms": run["result_max_ms"],
                                        "status": segment.run_bar.status.text()})
        rows["arrival-add_labels"].append({**ref, "objects": int(same.max())})
    out = {}
    for phase, runs in rows.items():
        gaps = [r["max_ms"] for r in runs]
        out[phase] = {**runs[-1], "max_ms": round(float(np.median(gaps)), 1), "rounds_ms": gaps}
    ratio = out["arrival-segment"]["max_ms"] / max(out["arrival-add_labels"]["max_ms"], 1e-3)
    out["arrival-segment"]["ratio_to_add_labels"] = round(ratio, 2)
    return out


if __name__ == "__main__":
    main()
