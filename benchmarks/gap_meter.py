"""The GUI's gaps: how long napari's event loop was blocked (see bench_responsiveness.py)."""
from __future__ import annotations

import gc
import time

import numpy as np

TICK_MS = 10


class GapMeter:
    """Records the gaps between the ticks of a 10 ms timer (ms)."""

    def __init__(self, context=None):
        from qtpy.QtCore import Qt, QTimer

        self.context = context or (lambda: "")   # what was showing (the progress text)

        self.timer = QTimer()
        self.timer.setTimerType(Qt.PreciseTimer)
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._on_tick)
        self.gaps: list[float] = []
        self.ends: list[float] = []      # when each gap ended (s after start)
        self.after: list[str] = []       # the context when each gap ended
        self.gc_ms: list[float] = []     # full garbage collections (ms)
        self.result_at = None            # when the job's result slot began (s after start)
        self._gc_t0 = None
        self._last = None
        self._t0 = 0.0

    def _on_gc(self, phase: str, info: dict) -> None:
        """Python's garbage collector stops every thread: time its full (gen-2) passes."""
        if info["generation"] != 2:
            return
        if phase == "start":
            self._gc_t0 = time.perf_counter()
        elif self._gc_t0 is not None:
            self.gc_ms.append(1000.0 * (time.perf_counter() - self._gc_t0))
            self._gc_t0 = None

    def _on_tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.gaps.append(1000.0 * (now - self._last))
            self.ends.append(now - self._t0)
            self.after.append(self.context() if self.gaps[-1] > 100 else "")
        self._last = now

    def mark_result(self) -> None:
        """The job's result reaches the GUI now: later gaps are the result's."""
        if self.result_at is None:
            self.result_at = time.perf_counter() - self._t0

    def start(self) -> None:
        self.gaps, self.ends, self.after, self._last = [], [], [], None
        self.result_at = None
        self.gc_ms, self._gc_t0 = [], None
        gc.callbacks.append(self._on_gc)
        self._t0 = time.perf_counter()
        self.timer.start()

    def stop(self) -> dict:
        self.timer.stop()
        gc.callbacks.remove(self._on_gc)
        gaps = np.asarray(self.gaps or [0.0])
        worst = int(gaps.argmax())
        split = {}
        if self.result_at is not None:     # while computing / from the result on
            ends = np.asarray(self.ends)
            before, after = gaps[ends <= self.result_at], gaps[ends > self.result_at]
            split = {"computing_max_ms": round(float(before.max(initial=0.0)), 1),
                     "result_max_ms": round(float(after.max(initial=0.0)), 1)}
        return {"ticks": len(self.gaps), "max_ms": round(float(gaps.max()), 1),
                "max_ended_s": round(self.ends[worst], 2) if self.ends else 0.0,
                "max_ended_during": self.after[worst] if self.after else "",
                "full_gc": len(self.gc_ms),
                "full_gc_max_ms": round(max(self.gc_ms, default=0.0), 1),
                "p99_ms": round(float(np.percentile(gaps, 99)), 1),
                "median_ms": round(float(np.median(gaps)), 1), **split}


def run_event_loop(until, timeout_s: float) -> float:
    """Run the Qt event loop until ``until()`` is true (polled every 50 ms); returns seconds."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop, t0 = QEventLoop(), time.perf_counter()
    poll = QTimer()
    poll.setInterval(50)
    poll.timeout.connect(lambda: (until() or time.perf_counter() - t0 > timeout_s) and loop.quit())
    poll.start()
    loop.exec_()
    poll.stop()
    return time.perf_counter() - t0


def measure(meter: GapMeter, start, until, timeout_s: float, tail_s: float = 0.0,
            force_gc_s: float | None = None) -> dict:
    """Gaps while ``start()`` runs until ``until()``; with ``force_gc_s``, a full
    ``gc.collect()`` on the GUI thread that many seconds in (if still running)."""
    from qtpy.QtCore import QTimer

    meter.start()
    start()
    if force_gc_s is not None:
        QTimer.singleShot(int(1000 * force_gc_s), lambda: until() or gc.collect())
    seconds = run_event_loop(until, timeout_s)
    if tail_s:
        run_event_loop(lambda: False, tail_s)     # the new layer is added and drawn
    return {**meter.stop(), "seconds": round(seconds, 1)}
