"""Large images and many files.

One image larger than memory block by block, a folder of images in one run, the same on a dask.distributed cluster, and long work in a child process.
"""
