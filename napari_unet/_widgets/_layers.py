"""napari layer helpers of the Segment widget."""
from __future__ import annotations

import numpy as np
from napari.layers import Labels


def warm_up_labels() -> None:
    """Pay the one-time costs of napari's first Labels layer when the dock opens.

    - napari's first Labels object of a session: ~0.6 s of lazy imports and colour maps.
    - vispy's dash-pattern atlas, which the first line visual builds in pure Python
      (~0.15-0.2 s here): every Labels layer has line overlays (its polygon tool).

    Paying them when the dock opens keeps the first result from freezing the viewer
    that much longer than later ones (see benchmarks/bench_responsiveness.py).
    """
    Labels(np.zeros((1, 1), np.uint8))
    try:
        from vispy.visuals.line.dash_atlas import DashAtlas
    except ImportError:         # another vispy layout: nothing to warm, nothing lost
        return
    DashAtlas()     # its patterns are cached for the process (functools.lru_cache)
