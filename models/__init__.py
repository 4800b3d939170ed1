"""Backward-compatible name for :mod:`tinygrad_free.recipes`, for code run from the repository.

The builders and the YAML recipes moved into the package (``tinygrad_free/recipes/``) so they
ship with ``pip install``; import them from there (``from tinygrad_free.recipes import build_mlp``).
"""

from tinygrad_free.recipes import CONFIG_DIR, available, build_cnn, build_mlp, load_config

__all__ = ["CONFIG_DIR", "available", "build_cnn", "build_mlp", "load_config"]
