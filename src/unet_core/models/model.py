"""The U-Net of Ronneberger et al. (2015), config-driven and translation-equivariant.

Same-padded 3x3 convolutions (two per level), 2x2 max pooling, 2x2 transposed
convolutions for up-sampling, skip concatenation and a 1x1 output convolution.
Only translation-equivariant layers are used (optional BatchNorm, which is a
per-channel affine map in eval mode, and dropout, which is the identity in eval
mode), so a tiled forward pass can reproduce a whole-image pass exactly.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of a :class:`UNet`.

    Attributes
    ----------
    in_channels : int
        Channels of the input image (1 for grey, 3 for RGB).
    out_channels : int
        Channels of the output (logits, one per output map; the instance models
        predict foreground, boundary and centre, see :mod:`unet_core.segmentation.instances`).
    depth : int
        Number of 2x2 poolings; inputs must be multiples of ``2**depth``.
    base_filters : int
        Filters of the first level; doubled at each level down.
    batch_norm : bool
        BatchNorm after every 3x3 convolution.
    dropout : float
        Dropout probability at the two deepest levels (0 disables it).
    """

    in_channels: int = 1
    out_channels: int = 3
    depth: int = 4
    base_filters: int = 32
    batch_norm: bool = False
    dropout: float = 0.0

    def __post_init__(self):
        if not 1 <= self.depth <= 7:
            raise ValueError(f"depth must be between 1 and 7, got {self.depth}")
        for name in ("in_channels", "out_channels", "base_filters"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown U-Net config keys: {sorted(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def alignment(self) -> int:
        """Tile origins and sizes must be multiples of this (``2**depth``)."""
        return 2 ** self.depth

    @property
    def receptive_radius(self) -> int:
        """How far (px) the zero padding at a tile border reaches into the output.

        Tile borders always sit on the pooling grid (multiples of ``2**depth``), so
        the reach is followed through the network from such a border, in pixels of
        each level: a 3x3 convolution adds 1, a 2x2 pooling halves (rounding up), a
        2x2 up-sampling doubles, a skip concatenation takes the larger reach.  For
        depth >= 2 this is ``6 * 2**depth - 2`` (94 px at depth 4); an arbitrary
        position would reach further (``7 * 2**depth - 5``), but the tiler never cuts
        there.  ``tests/core/test_model.py`` measures it on real networks.
        """
        reach, skips = 0, []
        for _ in range(self.depth):
            reach += 2
            skips.append(reach)
            reach = -(-reach // 2)
        reach += 2
        for skip in reversed(skips):
            reach = max(2 * reach, skip) + 2
        return reach

    @property
    def halo(self) -> int:
        """Smallest exact halo: the receptive radius rounded up to ``2**depth``.

        A multiple of ``2**depth`` keeps the pooling grid on the image's own
        pixel grid whatever the halo, so results with different halos compare.
        """
        a = self.alignment
        return -(-self.receptive_radius // a) * a


class _DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, batch_norm: bool, dropout: float):
        layers: list[nn.Module] = []
        for i in range(2):
            layers.append(nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.ReLU(inplace=True))
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class UNet(nn.Module):
    """U-Net mapping (N, in_channels, H, W) to logits (N, out_channels, H, W).

    H and W must be multiples of ``config.alignment``.
    """

    def __init__(self, config: UNetConfig | None = None, **kwargs):
        super().__init__()
        if config is None:
            config = UNetConfig(**kwargs)
        elif kwargs:
            raise TypeError("give either a UNetConfig or keyword arguments, not both")
        self.config = config
        f, d = config.base_filters, config.depth
        drop = lambda level: config.dropout if level >= d - 1 else 0.0  # noqa: E731
        self.down = nn.ModuleList()
        cin = config.in_channels
        for level in range(d):
            self.down.append(_DoubleConv(cin, f * 2**level, config.batch_norm, drop(level)))
            cin = f * 2**level
        self.pool = nn.MaxPool2d(2)
        self.bottom = _DoubleConv(cin, f * 2**d, config.batch_norm, drop(d))
        self.up = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        for level in reversed(range(d)):
            self.up.append(nn.ConvTranspose2d(f * 2 ** (level + 1), f * 2**level, 2, stride=2))
            self.up_conv.append(_DoubleConv(f * 2 ** (level + 1), f * 2**level, config.batch_norm, 0.0))
        self.head = nn.Conv2d(f, config.out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for up, conv, skip in zip(self.up, self.up_conv, reversed(skips)):
            x = conv(torch.cat([up(x), skip], dim=1))
        return self.head(x)
