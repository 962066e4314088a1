"""Nucleus size and stain controls of the Segment and Batch widgets."""
from __future__ import annotations

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QDoubleSpinBox, QHBoxLayout, QPushButton, QWidget

from unet_core.inference.scale import MAX_DIAMETER
from unet_core.inference.stain import STAIN_CHOICES, STAIN_NAMES


class ScaleControls(QWidget):
    """Nucleus size (a diameter in px, or "auto") with an Estimate button, and the stain.

    ``size_row`` and ``stain_combo`` go in a form; ``estimate`` is the button's signal.
    """

    estimate = Signal()

    def __init__(self, parent=None, estimate: bool = True):
        super().__init__(parent)
        self.diameter_spin = QDoubleSpinBox()
        self.diameter_spin.setRange(0.0, MAX_DIAMETER)
        self.diameter_spin.setDecimals(1)
        self.diameter_spin.setSuffix(" px")
        self.diameter_spin.setSpecialValueText("auto")
        self.diameter_spin.setToolTip(
            "Typical nucleus diameter in the image's pixels. The image is resampled so its "
            "nuclei come to the size the model was trained at.\nauto: estimated from each "
            "image (Estimate shows the value, which you may then change).")
        self.estimate_button = QPushButton("Estimate")
        self.estimate_button.setToolTip("Estimate the nucleus diameter of the chosen image")
        self.estimate_button.clicked.connect(self.estimate)
        self.size_row = QWidget(self)
        row = QHBoxLayout(self.size_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.diameter_spin, 1)
        row.addWidget(self.estimate_button)
        self.estimate_button.setVisible(estimate)
        self.stain_combo = QComboBox()
        for choice in STAIN_CHOICES:
            self.stain_combo.addItem(choice, choice)
        self.stain_combo.setToolTip(
            "auto: decided from the channels and the background\nfluorescence: bright nuclei "
            "on dark\nbrightfield: dark nuclei on bright (inverted)\nhe: H&E colour image "
            "(hematoxylin by colour deconvolution)")

    def diameter(self):
        """"auto" or the diameter in px."""
        value = self.diameter_spin.value()
        return "auto" if value == 0 else float(value)

    def stain(self) -> str:
        return self.stain_combo.currentData()

    def show_estimate(self, settings) -> None:
        """Fill in an estimate (an :class:`~unet_core.inference.image_settings.ImageSettings`)."""
        if settings.diameter:
            self.diameter_spin.setValue(round(settings.diameter, 1))
        self.show_resolved(settings)

    def show_resolved(self, settings) -> None:
        """Show what "auto" resolved to for the last image (an
        :class:`~unet_core.inference.image_settings.ImageSettings`): "auto: H&E", "auto: 24 px"."""
        stain = STAIN_NAMES.get(settings.stain, settings.stain)
        self.stain_combo.setItemText(0, f"auto: {stain}")
        self.stain_combo.setToolTip(f"auto chose {stain} for the last image")
        if settings.diameter and settings.estimated:
            self.diameter_spin.setSpecialValueText(f"auto: {settings.diameter:.0f} px")
        else:
            self.diameter_spin.setSpecialValueText("auto")
