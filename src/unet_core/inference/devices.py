"""Devices: which one "auto" means, and how much memory a batch of tiles may use."""
from __future__ import annotations

import os

import torch

from ..errors import InputError

#: Where the engine runs unless told otherwise: the GPU when there is one, else the CPU.
DEFAULT_DEVICE = "auto"


def resolve_device(device: str | torch.device = DEFAULT_DEVICE) -> torch.device:
    """"auto" picks CUDA, then Apple MPS, then the CPU; others must be available."""
    name = str(device).lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name in ("gpu",):
        name = "cuda"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputError(f"Unknown device {device!r}; use auto, cpu, cuda or mps.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("CUDA was asked for but no CUDA GPU is available to PyTorch here; "
                         "use device 'auto' or 'cpu'.")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("MPS was asked for but is not available here; use 'auto' or 'cpu'.")
    return dev


def memory_budget(device: torch.device) -> int:
    """Bytes one batch of tiles may use: half the free GPU memory, or a quarter of
    the physical memory (0.5 to 8 GB) on the CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return int(min(max(total // 4, 512 << 20), 8 << 30))
