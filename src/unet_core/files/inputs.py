"""Checking and arranging input images: every bad input gets a clear message."""
from __future__ import annotations

import warnings

import numpy as np

from ..errors import InputError


class ChannelOrderWarning(UserWarning):
    """A (3 or 4, H, W) array: a 3-plane stack, or a channel-first colour image?"""


#: A last axis this short, on an image at least :data:`CHANNEL_RATIO` times wider and
#: taller, holds channels: (256, 256, 5) is one 5-channel image, not 256 planes of 256 x 5.
MAX_CHANNELS = 8
CHANNEL_RATIO = 8


def _channels_last(shape) -> bool:
    """Whether the last axis of an (H, W, C) / (Z, H, W, C) shape holds channels (a
    4-D array has no other reading: any short last axis)."""
    c = shape[-1]
    return c <= 4 or (c <= MAX_CHANNELS and (len(shape) == 4 or
                                             c * CHANNEL_RATIO <= min(shape[-3], shape[-2])))


AXES_HELP = ("Give a 2D image (H, W), a colour image (H, W, 3 or 4), or a stack of planes "
             "(Z, H, W) or (Z, H, W, C).")


def arrange_planes(image) -> tuple[np.ndarray, bool]:
    """Check an image and arrange it as planes (Z, H, W, C) of its own channels.

    Accepts (H, W), (H, W, C) with C <= 4, (Z, H, W) and (Z, H, W, C), any real or
    bool dtype, numpy or array-likes (dask / zarr arrays are not read here).  A last
    axis of up to :data:`MAX_CHANNELS` on a far larger image holds channels too.

    Returns
    -------
    planes : array-like, (Z, H, W, C)
        A view of the input; nothing is copied or converted.
    is_stack : bool
        Whether the input had a plane axis.
    """
    if image is None:
        raise InputError("No image was given. " + AXES_HELP)
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        try:
            image = np.asarray(image)
        except (ValueError, TypeError) as err:
            raise InputError(f"Cannot read the input as an array ({err}). " + AXES_HELP) from None
    dtype = np.dtype(image.dtype)
    if dtype.kind not in "biuf":
        raise InputError(f"Images must hold numbers, got dtype {dtype}. "
                         "Convert complex or text data to real numbers first.")
    if 0 in image.shape:
        raise InputError(f"The image is empty (shape {tuple(image.shape)}). " + AXES_HELP)
    shape, stack = planes_shape(image.shape)
    if image.ndim == 2:
        planes = image[None, :, :, None]
    elif image.ndim == 3 and not stack:
        planes = image[None]
    elif image.ndim == 3:
        if image.shape[0] in (3, 4):
            warnings.warn(
                f"An image of shape {tuple(image.shape)} is taken as a stack of {image.shape[0]} "
                f"planes (Z, H, W). If it is one colour image with its channels first, move them "
                f"last first (numpy.moveaxis(image, 0, -1)).", ChannelOrderWarning, stacklevel=3)
        planes = image[..., None]
    else:
        planes = image
    return planes, stack


def planes_shape(shape) -> tuple[tuple[int, int, int, int], bool]:
    """The (Z, H, W, C) shape :func:`arrange_planes` makes of an image of ``shape``, and
    whether it is a stack; from the shape alone (nothing is read)."""
    shape = tuple(int(s) for s in shape)
    nd = len(shape)
    if nd == 2:
        return (1, *shape, 1), False
    if nd == 3 and _channels_last(shape):
        return (1, *shape), False
    if nd == 3:
        return (*shape, 1), True
    if nd == 4 and _channels_last(shape):
        return shape, True
    raise InputError(f"Cannot segment an array of shape {shape} ({nd}-D). "
                     + AXES_HELP + " Select a single channel or time point first.")


#: Images (planes) thinner than this are refused: a nucleus is some 10 to 30 px across,
#: so a thinner strip holds no whole nucleus, and its "objects" would be noise.
MIN_SIDE = 16


def check_image_size(shape) -> None:
    """Refuse an image whose planes are thinner than :data:`MIN_SIDE` px (a 1 x 100000
    line), or of a shape that cannot be segmented; from the shape alone."""
    (_, h, w, _), _ = planes_shape(shape)
    if min(h, w) < MIN_SIDE:
        raise InputError(f"The image is {h} x {w} px; images must be at least {MIN_SIDE} px high "
                         f"and wide (a nucleus is some 10 to 30 px across). Check that the axes "
                         "are right, or segment a larger region.")


def as_planes(image, in_channels: int) -> tuple[np.ndarray, bool]:
    """Arrange an image as planes of (H, W, C) with ``C == in_channels``.

    Accepts (H, W), (H, W, C) with C <= 4, (Z, H, W) and (Z, H, W, C), any real or
    bool dtype, numpy or array-likes (dask / zarr arrays are indexed lazily by the
    caller when possible).  RGB(A) meets a grey model as the mean of R, G, B; grey
    meets an RGB model repeated three times.  Other channel counts are an error.

    Returns
    -------
    planes : ndarray or array-like, (Z, H, W, C)
        A view where possible; no float copy is made here.
    is_stack : bool
        Whether the input had a plane axis.
    """
    planes, stack = arrange_planes(image)
    c = planes.shape[-1]
    if c == in_channels:
        return planes, stack
    if in_channels == 1 and c in (3, 4):
        return _grey(planes), stack
    if in_channels == 3 and c == 1:
        return np.repeat(np.asarray(planes), 3, axis=-1), stack
    if in_channels == 3 and c == 4:
        return planes[..., :3], stack
    raise InputError(f"The model expects {in_channels} channel(s) but the image has {c}. "
                     "Pick a model made for this kind of image, or select the channel(s) to "
                     "segment first.")


def _grey(planes) -> np.ndarray:
    rgb = np.asarray(planes[..., :3])
    return rgb.astype(np.float32).mean(axis=-1, keepdims=True)
