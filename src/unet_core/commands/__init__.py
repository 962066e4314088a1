"""The ``napari-unet`` command line.

One module per group of subcommands; each returns an exit code and prints messages, never tracebacks.
"""
