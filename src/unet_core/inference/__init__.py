"""The network run over images.

The Predictor and its options, the engines (PyTorch, ONNX Runtime, OpenVINO) and devices, exact tiling, normalization and resampling by window, and the per-image settings decided once (stain, nucleus size, scale).
"""
