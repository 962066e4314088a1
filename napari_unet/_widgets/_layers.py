"""napari layer helpers of the Segment widget."""
from __future__ import annotations

import numpy as np
from napari.layers import Labels


def warm_up_labels() -> None:
    """Create (and drop) a 1 px Labels layer.

    napari's first Labels layer of a session costs ~0.6 s of lazy imports and colour
    maps on the GUI thread.  Paying it when the dock opens keeps the first result from
    freezing the viewer (see benchmarks/bench_responsiveness.py).
    """
    Labels(np.zeros((1, 1), np.uint8))
