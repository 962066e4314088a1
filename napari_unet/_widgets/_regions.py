"""Which pixels of a layer were reviewed: the plane on screen, and the region shapes.

Non-Qt helpers of the Curate widget.  A huge (lazy or not) image is read only inside the
box around its region shapes (plus some context), never whole.
"""
from __future__ import annotations

import numpy as np

from unet_core import InputError
from unet_core.files.lazyio import SMALL_PIXELS
from unet_core.training.identity import example_identity

from ._common import layer_pixels

#: Layer metadata key that ties a layer opened from the training set to its example.
EXAMPLE_KEY = "napari_unet_example"
#: Shapes that enclose pixels (lines and paths do not).
AREA_SHAPES = ("rectangle", "polygon", "ellipse")


def current_plane(layer, world_point) -> tuple[int, ...]:
    """Index of the displayed plane of ``layer`` on its leading (non-YX) axes.

    Parameters
    ----------
    layer : napari layer
        Its last two data axes are (Y, X) (RGB / multichannel layers: ``layer.ndim``
        does not count the channel axis).
    world_point : sequence of float
        ``viewer.dims.point``.
    """
    lead = layer.ndim - 2
    if lead <= 0:
        return ()
    data = np.asarray(layer.world_to_data(world_point))[:lead]
    shape = np.asarray(layer.data.shape[:lead])
    return tuple(int(i) for i in np.clip(np.round(data), 0, shape - 1))


def _plane_of(data, plane: tuple[int, ...]):
    """The (H, W[, C]) plane ``plane`` of layer data, not read yet (``data[()]`` would
    read a whole zarr array)."""
    return data[plane] if plane else data


def _region_shapes(shapes, image, plane: tuple[int, ...]):
    """(kind, (N, 2) y/x vertices in ``image``'s pixels) of the area shapes on ``plane``
    (shapes of a 2D Shapes layer count on every plane of a stack)."""
    for verts, kind in zip(shapes.data, shapes.shape_type):
        if kind not in AREA_SHAPES:
            continue
        pix = np.array([image.world_to_data(shapes.data_to_world(v))
                        for v in np.asarray(verts, float)])
        if plane and pix.shape[1] > 2 and shapes.ndim > 2 and \
                np.any(np.round(pix[:, :len(plane)].mean(axis=0)) != plane):
            continue
        yield kind, pix[:, -2:]


def rectangles_mask(shapes, image, plane: tuple[int, ...], shape: tuple[int, int],
                    offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Rasterize the shapes of a Shapes layer into a reviewed-region mask of ``image``.

    Rectangles and polygons are filled, ellipses drawn in their bounding box; lines and
    paths enclose nothing and are skipped.

    Parameters
    ----------
    shapes : napari.layers.Shapes
    image : napari layer
        The layer whose pixel grid the mask is in (its scale / translate are used).
    plane : tuple of int
        Index of the plane on the image's leading axes (see :func:`current_plane`).
    shape : (H, W)
        Of the mask: the image's plane, or a box of it starting at ``offset`` (y, x).

    Returns
    -------
    ndarray, bool (H, W)
    """
    from skimage.draw import ellipse, polygon

    mask = np.zeros(shape, bool)
    for kind, yx in _region_shapes(shapes, image, plane):
        yx = yx - np.asarray(offset, float)
        if kind == "ellipse":
            (y0, x0), (y1, x1) = yx.min(axis=0), yx.max(axis=0)
            rr, cc = ellipse((y0 + y1) / 2, (x0 + x1) / 2, (y1 - y0) / 2, (x1 - x0) / 2, shape)
        else:
            # napari puts pixel centres at integer coordinates: pixels whose centre is
            # inside (or on) the outline count as reviewed
            rr, cc = polygon(yx[:, 0], yx[:, 1], shape)
        mask[rr, cc] = True
    return mask


def shapes_box(shapes, image, plane: tuple[int, ...], shape: tuple[int, int],
               margin: int = 64) -> tuple[int, int, int, int] | None:
    """(y0, x0, y1, x1): the pixels of ``image`` (plane ``plane``, ``shape`` (H, W))
    that the region shapes cover, ``margin`` px of context around them, clipped; None
    when no shape encloses any pixel.  A huge image is read in this box only."""
    boxes = [np.concatenate([yx.min(axis=0), yx.max(axis=0)])
             for _, yx in _region_shapes(shapes, image, plane)]
    if not boxes:
        return None
    lo = np.floor(np.min(boxes, axis=0)[:2]).astype(int) - margin
    hi = np.ceil(np.max(boxes, axis=0)[2:]).astype(int) + 1 + margin
    y0, x0 = (int(v) for v in np.clip(lo, 0, shape))
    y1, x1 = (int(v) for v in np.clip(hi, 0, shape))
    return (y0, x0, y1, x1) if y1 > y0 and x1 > x0 else None


def _planes(viewer, image, labels):
    """(plane index, image plane, labels plane) on screen, not read yet."""
    if image is None or labels is None:
        raise InputError("Choose an image and its corrected Labels layer first.")
    if image.ndim > 2 and viewer.dims.ndisplay == 3:
        raise InputError("Switch to the 2D view: a stack is added one plane at a time.")
    point = viewer.dims.point
    plane = current_plane(image, point)
    img = _plane_of(layer_pixels(image), plane)           # lazy layers stay lazy here
    if labels.ndim != 2 and labels.ndim != image.ndim:
        raise InputError(f"'{labels.name}' is {labels.ndim}D but '{image.name}' is "
                         f"{image.ndim}D; choose the labels of this image.")
    lab = _plane_of(layer_pixels(labels), current_plane(labels, point) if labels.ndim > 2 else ())
    if tuple(lab.shape) != tuple(img.shape[:2]):
        raise InputError(f"The labels '{labels.name}' {tuple(lab.shape)} do not match the "
                         f"image '{image.name}' {tuple(img.shape[:2])}; choose the labels "
                         "of this image.")
    return plane, img, lab


def reviewed_example(viewer, image, labels, shapes=False):
    """(image plane, labels plane, mask, source, region) of the plane on screen.

    Parameters
    ----------
    viewer : napari.Viewer
    image, labels : napari Image and Labels layers, or None (not chosen)
    shapes : napari Shapes layer, None (not chosen) or False (the whole plane is reviewed)

    Raises InputError with a message for the user when something is missing.
    """
    plane, img, lab = _planes(viewer, image, labels)
    huge = img.shape[0] * img.shape[1] > SMALL_PIXELS     # lazy or not: read by region
    mask, box = None, None
    if shapes is None:
        raise InputError("Choose the Shapes layer of the reviewed region, or press "
                         "'Add review-region layer' and draw rectangles on it.")
    if shapes is not False:
        none = InputError(f"No reviewed region: draw rectangles on '{shapes.name}' around "
                          "what you corrected.")
        if huge:     # read and keep only the reviewed part (and some context)
            box = shapes_box(shapes, image, plane, tuple(lab.shape))
            if box is None:          # nothing to read
                raise none
            y0, x0, y1, x1 = box
            if (y1 - y0) * (x1 - x0) > SMALL_PIXELS:     # never more than a small image
                raise InputError(
                    f"The reviewed region of '{image.name}' is {y1 - y0} x {x1 - x0} px, too "
                    "large to add at once: draw smaller rectangles around what you corrected "
                    "and add them one at a time.")
            img, lab = img[y0:y1, x0:x1], lab[y0:y1, x0:x1]
        mask = rectangles_mask(shapes, image, plane, lab.shape, box[:2] if box else (0, 0))
        if not mask.any():
            raise none
    elif huge:
        raise InputError(f"'{image.name}' is too large to add whole: press 'Add "
                         "review-region layer' and draw rectangles around what you "
                         "corrected; only those parts are read and added.")
    img, lab = np.asarray(img), np.asarray(lab)
    if not lab.any():
        raise InputError(f"'{labels.name}' has no objects here: segment and correct the "
                         "image first.")
    source, region = example_identity(img, plane, getattr(image.source, "path", None),
                                      image.name, image.metadata.get(EXAMPLE_KEY), box)
    return img, lab, mask, source, region
