"""Synthetic fluorescence nuclei with exact labels.

The images the bundled model was first trained on, the napari sample data and the tests' images, drawn in named steps from one seed.
"""
