"""All four docks together in a 1600 x 1000 window: the window keeps its size, and every
button and choice of every dock can be scrolled into view at its full height."""
import pytest
from qtpy.QtWidgets import QAbstractButton, QApplication, QComboBox

pytestmark = pytest.mark.gui

DOCKS = ("Segment", "Curate", "Fine-tune", "Batch")


def test_four_docks_fit_a_1000_px_window_and_every_control_can_be_reached(make_napari_viewer,
                                                                         qtbot):
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1600, 1000)
    widgets = [viewer.window.add_plugin_dock_widget("napari-nuclei-unet", name)[1]
               for name in DOCKS]
    qtbot.wait(200)
    assert window.height() <= 1000, window.height()
    for widget in widgets:
        controls = [c for c in widget.findChildren(QAbstractButton) + widget.findChildren(QComboBox)
                    if c.isVisibleTo(widget)]
        assert controls
        for control in controls:
            widget.scroll.ensureWidgetVisible(control)
            QApplication.processEvents()
            shown = control.visibleRegion().boundingRect()
            assert shown.height() >= 0.8 * min(control.sizeHint().height(), control.height()), \
                (type(widget).__name__, control.text() if hasattr(control, "text") else
                 control.currentText(), shown)
            assert control.height() >= 0.8 * control.sizeHint().height()   # not squashed
