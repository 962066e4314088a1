"""Network outputs to instances, and instances to numbers.

Seeds, basins and flooding (on the CPU and as tensors on a GPU), per-object measurements and the metrics that compare labels with the truth.
"""
