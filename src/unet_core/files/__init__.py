"""Files and arrays in and out.

Reading images of any format and checking them, writing every result atomically (a temporary file, then rename), output names, zarr and OME-Zarr stores, lazy windows and pyramids of images larger than memory, and the locks that keep two runs from writing one folder.
"""
