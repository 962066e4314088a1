"""napari-unet: the napari plugin (thin Qt/napari glue over :mod:`unet_core`).

Importing this package loads no Qt; napari imports the widgets named in
``napari.yaml`` when the user opens them.
"""
from importlib.metadata import PackageNotFoundError, version

#: The distribution name on PyPI and the npe2 manifest's ``name`` (they must be equal):
#: "napari-unet" belongs to another project there.
PLUGIN_NAME = "napari-nuclei-unet"

try:
    __version__ = version(PLUGIN_NAME)   # one source: unet_core.__version__, via setup.cfg
except PackageNotFoundError:   # a source tree that is not installed
    __version__ = "unknown"
