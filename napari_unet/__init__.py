"""napari-unet: the napari plugin (thin Qt/napari glue over :mod:`unet_core`).

Importing this package loads no Qt; napari imports the widgets named in
``napari.yaml`` when the user opens them.
"""
__version__ = "0.1.0"
