"""Model builders (:func:`build_mlp`, :func:`build_cnn`, :func:`build_lstm`, :func:`build_vit`) and the known-good
training configurations
("recipes").

A recipe is one YAML file in this folder (``fashion_mnist_best.yaml``, ...): a mapping of the
options of :mod:`tinygrad_free.config` (``dataset``, ``optimizer``, ``num_layers``, ...). Adding
a recipe is adding one file; :func:`load_config` finds it by its stem. The files ship inside the
package (package data), so they are found after a plain ``pip install`` from any folder.
"""

from pathlib import Path

import yaml

from .cnn import build_cnn
from .lstm import build_lstm
from .mlp import build_mlp
from .vit import build_vit

CONFIG_DIR = Path(__file__).resolve().parent


def available():
    """The names of the shipped recipes (the YAML files' stems), sorted."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_config(name_or_path):
    """A configuration dict from ``tinygrad_free/recipes/<name>.yaml`` or a path to a YAML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no config {str(name_or_path)!r}; known configs: {available()}, or pass a .yaml path")
    with open(path) as f:
        config = yaml.safe_load(f) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a mapping of option: value")
    return config


__all__ = ["CONFIG_DIR", "available", "build_cnn", "build_lstm", "build_mlp", "build_vit", "load_config"]
