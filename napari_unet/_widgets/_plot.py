"""A live plot of training loss and validation scores for the Fine-tune widget."""
from __future__ import annotations

import math

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, MaxNLocator
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

#: Least time between two redraws, ms: at most ~4 redraws a second keep the GUI responsive.
REDRAW_MS = 250
#: Weight of the newest loss in the smoothed curve.
SMOOTHING = 0.1
LOSS_COLOR, DICE_COLOR, AP_COLOR = "#5aa9e6", "#f4a259", "#8cd790"
#: Margins of the axes in px at 100 dpi (left, right, bottom, top): fixed, because a layout engine
#: (constrained / tight) would double the cost of every redraw.
MARGINS = (46, 42, 36, 24)
#: (background, text) colours when the viewer's theme cannot be read: napari's dark theme.
DARK = ("#23242b", "#f0f1f2")


def theme_colors(viewer) -> tuple[str, str]:
    """(background, text) colours of the viewer's theme, for the plot."""
    from napari.utils.theme import get_theme

    try:
        theme = get_theme(viewer.theme)
    except (AttributeError, ValueError, KeyError):
        return DARK
    return theme.background.as_hex(), theme.text.as_hex()


class TrainingPlot(QWidget):
    """Training loss per step (raw and smoothed, left axis) and validation Dice / AP50
    (right axis, 0..1), redrawn at most every :data:`REDRAW_MS` ms.

    Parameters
    ----------
    background, foreground : str
        Colours of the figure and of its text and axes (napari's theme).
    """

    def __init__(self, background: str = DARK[0], foreground: str = DARK[1], parent=None):
        super().__init__(parent)
        self._steps: list[int] = []
        self._loss: list[float] = []
        self._smooth: list[float] = []
        self._val: list[tuple[int, float, float]] = []
        self.redraws = 0
        self.figure = Figure(figsize=(3.6, 2.4), dpi=100, facecolor=background)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(240)
        self.canvas.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.canvas.setStyleSheet(f"background-color: {background};")
        ax = self.figure.add_subplot(111)
        twin = ax.twinx()
        for a in (ax, twin):
            a.set_facecolor(background)
            a.tick_params(colors=foreground, labelsize=7, length=3)
            for spine in a.spines.values():
                spine.set_color(foreground)
                spine.set_alpha(0.4)
        ax.set_xlabel("step", color=foreground, fontsize=8)
        ax.set_ylabel("loss", color=LOSS_COLOR, fontsize=8)
        twin.set_ylabel("validation", color=foreground, fontsize=8)
        twin.set_ylim(0, 1)
        ax.grid(True, color=foreground, alpha=0.12, linewidth=0.5)
        ax.yaxis.set_major_formatter(FormatStrFormatter("%.2f"))   # labels of fixed width
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        twin.yaxis.set_major_locator(MaxNLocator(nbins=5))
        (self._raw_line,) = ax.plot([], [], color=LOSS_COLOR, alpha=0.3, linewidth=0.8)
        (self._loss_line,) = ax.plot([], [], color=LOSS_COLOR, linewidth=1.6, label="loss")
        (self._dice_line,) = twin.plot([], [], "o-", color=DICE_COLOR, markersize=3,
                                       linewidth=1.2, label="Dice")
        (self._ap_line,) = twin.plot([], [], "s-", color=AP_COLOR, markersize=3,
                                     linewidth=1.2, label="AP50")
        lines = [self._loss_line, self._dice_line, self._ap_line]
        legend = self.figure.legend(lines, [line.get_label() for line in lines], ncol=3,
                                    loc="upper center", fontsize=7, frameon=False,
                                    borderaxespad=0.2, handlelength=1.5)
        for text in legend.get_texts():
            text.set_color(foreground)
        self._ax, self._twin = ax, twin
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self._on_redraw_due)
        self.canvas.mpl_connect("resize_event", self._on_resize)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self._on_resize()
        self.redraw()

    def reset(self) -> None:
        """Forget all points (a new run starts)."""
        for data in (self._steps, self._loss, self._smooth, self._val):
            data.clear()
        self._schedule()

    def add_step(self, step: int, loss: float, val: dict | None = None) -> None:
        """Record one training step (and its validation scores, if it has them)."""
        self._steps.append(step)
        self._loss.append(loss)
        last = self._smooth[-1] if self._smooth else loss
        self._smooth.append(last + SMOOTHING * (loss - last))
        if val:
            self.add_validation(step, val)
        self._schedule()

    def add_validation(self, step: int, val: dict) -> None:
        """Record validation scores (``dice``, ``ap50`` in 0..1) at ``step``."""
        point = (step, float(val.get("dice", float("nan"))), float(val.get("ap50", float("nan"))))
        self._val = sorted([v for v in self._val if v[0] != step] + [point])
        self._schedule()

    def _on_resize(self, event=None) -> None:
        width, height = self.figure.bbox.width, self.figure.bbox.height
        left, right, bottom, top = (m * self.figure.dpi / 100 for m in MARGINS)   # HiDPI
        if width > 2 * (left + right) and height > 2 * (bottom + top):
            self.figure.subplots_adjust(left=left / width, right=1 - right / width,
                                        bottom=bottom / height, top=1 - top / height)

    def _schedule(self) -> None:
        if not self._timer.isActive():
            self._timer.start()

    def _on_redraw_due(self) -> None:
        self.redraw()

    def redraw(self) -> None:
        """Put the recorded points into the lines and repaint (when Qt is next idle)."""
        self._raw_line.set_data(self._steps, self._loss)
        self._loss_line.set_data(self._steps, self._smooth)
        steps = [v[0] for v in self._val]
        self._dice_line.set_data(steps, [v[1] for v in self._val])
        self._ap_line.set_data(steps, [v[2] for v in self._val])
        last = max(self._steps[-1] if self._steps else 1, steps[-1] if steps else 1, 1)
        self._ax.set_xlim(0, last)
        if self._loss:
            low, high = min(self._loss), max(self._loss)
            pad = 0.05 * (high - low) or 0.05 * abs(high) or 0.1
            bottom, top = max(low - pad, 0.0), high + pad
            self._ax.set_ylim(bottom, top)
            # as many decimals as the tick spacing needs: no two ticks read the same
            gaps = np.diff(self._ax.yaxis.get_majorticklocs())
            step = float(gaps.min()) if gaps.size else top - bottom
            digits = min(max(2, -math.floor(math.log10(step))), 6) if step > 0 else 2
            self._ax.yaxis.set_major_formatter(FormatStrFormatter(f"%.{digits}f"))
        self.canvas.draw_idle()
        self.redraws += 1
