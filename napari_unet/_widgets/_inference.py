"""What runs the network: the device, backend and precision choices of the widgets."""
from __future__ import annotations

from qtpy.QtWidgets import QCheckBox, QComboBox


def available_devices() -> list[str]:
    """Devices to offer: "auto", "cpu", then "cuda" / "mps" when PyTorch sees them."""
    import torch

    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def inference_choices() -> list[tuple[str, tuple[str, str, str]]]:
    """What can run the network here, as (text, (device, backend, precision)).

    "auto" first, with what it resolves to ("auto: cpu, OpenVINO f32"); then the
    CPU with each installed backend and precision, then the GPUs (PyTorch).
    """
    from unet_core.inference import backends
    from unet_core.inference.devices import resolve_device

    auto_device = resolve_device("auto")
    auto = backends.describe(*backends.resolve("auto", "auto", auto_device))
    choices = [(f"auto: {auto_device.type}, {auto}", ("auto", "auto", "auto"))]
    for backend in backends.installed():
        precisions = ["f32"] + (["bf16"] if backend == "openvino" and backends.cpu_bf16() else [])
        choices += [(f"cpu, {backends.describe(backend, p)}"
                     + (f" ({backends.BF16_COST})" if p == "bf16" else ""), ("cpu", backend, p))
                    for p in precisions]
    choices += [(f"{d}, PyTorch", (d, "torch", "auto")) for d in available_devices()[2:]]
    return choices


def device_combo(parent=None) -> QComboBox:
    """A combo of the devices PyTorch can use here ("auto" first)."""
    combo = QComboBox(parent)
    combo.addItems(available_devices())
    combo.setToolTip("auto: the GPU when there is one, else the CPU")
    return combo


def inference_combo(parent=None) -> QComboBox:
    """The device and backend choice of Segment and Batch: "auto" (showing what it
    resolved to), the CPU with each installed backend and precision, then the GPUs.
    Item data: (device, backend, precision)."""
    from unet_core.inference.backends import INSTALL_HINT, installed

    combo = QComboBox(parent)
    for text, data in inference_choices():
        combo.addItem(text, data)
    tip = ("What runs the network. auto: the GPU when there is one (PyTorch), else the fastest "
           "CPU backend installed, in f32. bf16 (offered only where this CPU executes it "
           "natively) is faster, but changes some labels.")
    if installed() == ["torch"]:
        tip += f"\n{INSTALL_HINT}."
    combo.setToolTip(tip)
    return combo


def tta_check(parent=None) -> QCheckBox:
    """The test-time augmentation box (unticked: one pass per tile)."""
    box = QCheckBox("test-time augmentation (4x slower)", parent)
    box.setToolTip("Average the network over each image and its mirror images: fewer split or "
                   "merged nuclei, four times the compute")
    return box
