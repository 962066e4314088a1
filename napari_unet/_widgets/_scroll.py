"""Docks that scroll inside themselves instead of growing napari's window."""
from __future__ import annotations

from qtpy.QtCore import QEvent
from qtpy.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget

#: Least height of a dock's visible part, px: with four docks on a 1000 px screen each
#: keeps a useful view and scrolls the rest.
DOCK_MIN_HEIGHT = 160


class _VerticalScroll(QScrollArea):
    """A scroll area that asks to be as wide as its contents need (so it scrolls up and
    down, and sideways only when the dock is made narrower than that)."""

    def _width(self, hint) -> int:
        inner = self.widget()
        bar = self.verticalScrollBar().sizeHint().width()
        return max(hint.width(), (inner.minimumSizeHint().width() if inner else 0) + bar)

    def eventFilter(self, obj, event):
        # the contents' size changed (a longer layer name, say): ask the dock again
        if obj is self.widget() and event.type() == QEvent.LayoutRequest:
            self.updateGeometry()
        return super().eventFilter(obj, event)

    def minimumSizeHint(self):
        hint = super().minimumSizeHint()
        hint.setWidth(self._width(hint))
        return hint

    def sizeHint(self):
        hint = super().sizeHint()
        inner = self.widget()
        if inner is not None:
            hint.setHeight(inner.sizeHint().height() + 2 * self.frameWidth())
        hint.setWidth(max(self._width(hint), inner.sizeHint().width() if inner else 0))
        return hint


def scroll_body(widget: QWidget) -> QVBoxLayout:
    """The layout to fill with ``widget``'s controls, inside a scroll area that fills
    ``widget``: a dock can then be shorter than its controls (it scrolls) instead of
    forcing napari's window taller than the screen.  The area is ``widget.scroll``."""
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    area = _VerticalScroll(widget)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.NoFrame)
    body = QWidget(area)
    area.setWidget(body)
    body.installEventFilter(area)
    outer.addWidget(area)
    widget.scroll = area
    widget.setMinimumHeight(DOCK_MIN_HEIGHT)
    return QVBoxLayout(body)
