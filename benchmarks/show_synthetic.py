"""Save a montage of synthetic nuclei images (left) and their label outlines (right).

    python benchmarks/show_synthetic.py /tmp/synthetic.png [--seed 0] [--size 512] [--count 6]
"""
from __future__ import annotations

import argparse
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402

from unet_core.data.synthetic import synthetic_nuclei  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="PNG path")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--count", type=int, default=6)
    args = ap.parse_args(argv)

    cols = 2
    rows = (args.count + cols - 1) // cols
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(8 * cols, 4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k in range(args.count):
        t = time.perf_counter()
        dtype = "uint8" if k % 3 == 2 else "uint16"
        image, labels, info = synthetic_nuclei((args.size, args.size), seed=args.seed + k, dtype=dtype,
                                               return_info=True)
        dt = time.perf_counter() - t
        lo, hi = np.percentile(image, [0.5, 99.9])   # like an auto-contrast viewer
        shown = np.clip((image.astype(np.float32) - lo) / max(hi - lo, 1), 0, 1)
        rgb = np.repeat(shown[..., None], 3, axis=2)
        rgb[find_boundaries(labels, mode="inner")] = (1.0, 0.2, 0.2)
        ax_raw, ax_lab = axes[k // cols, 2 * (k % cols)], axes[k // cols, 2 * (k % cols) + 1]
        ax_raw.imshow(shown, cmap="gray", interpolation="nearest")
        ax_lab.imshow(rgb, interpolation="nearest")
        ax_raw.set_title(f"seed {args.seed + k}  {image.dtype}  max {image.max()}  ({dt * 1000:.0f} ms)",
                         fontsize=8)
        ax_lab.set_title(f"r0 {info['radius']:.1f}  n {info['n']}  noise {info['noise']:.3f}  "
                         f"blur {info['blur']:.1f}  mitotic {info['mitotic']}", fontsize=8)
        print(f"seed {args.seed + k}: {dt * 1000:.0f} ms, n={info['n']}, r0={info['radius']:.1f}, "
              f"fg={np.mean(labels > 0):.2f}")
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
