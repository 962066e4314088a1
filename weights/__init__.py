"""Bundled models: one folder per model with model.safetensors and model.json."""
