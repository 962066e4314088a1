"""The network and its files.

The U-Net itself, model folders (safetensors weights and a JSON card), the checks a card passes before anything is built from it, and bioimage.io packages for other tools.
"""
