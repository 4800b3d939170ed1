"""Model builders and the known-good configurations (YAML files beside this one)."""
from pathlib import Path

import numpy as np
import yaml

from tinygrad_free import nn

CONFIG_DIR = Path(__file__).resolve().parent


def build_mlp(input_size=784, num_layers=3, hidden_size=128, activation="tanh", weight_init="xavier",
              num_classes=10, dtype=np.float32, rng=None):
    """The assignment's feedforward network: ``num_layers`` hidden Dense layers with the
    activation fused in, then a linear output layer producing logits.

    ``hidden_size`` is one width for every hidden layer, or a list of widths (then
    ``num_layers`` must be None or equal to its length).
    """
    if isinstance(hidden_size, (list, tuple)):
        widths = [int(w) for w in hidden_size]
        if num_layers is not None and num_layers != len(widths):
            raise ValueError(f"num_layers={num_layers} but hidden_size lists {len(widths)} widths")
    else:
        if isinstance(num_layers, bool) or not isinstance(num_layers, (int, np.integer)) or num_layers < 0:
            raise ValueError(f"num_layers must be a non-negative integer, got {num_layers!r}")
        widths = [hidden_size] * num_layers
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    sizes = [input_size, *widths]
    layers = [nn.Dense(a, b, activation=activation, init=weight_init, dtype=dtype, rng=rng)
              for a, b in zip(sizes[:-1], sizes[1:])]
    layers.append(nn.Dense(sizes[-1], num_classes, init=weight_init, dtype=dtype, rng=rng))
    return nn.Sequential(*layers)


def load_config(name_or_path):
    """A configuration dict from ``models/<name>.yaml`` or a path to a YAML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"no config {str(name_or_path)!r}; known configs: {known}, or pass a .yaml path")
    with open(path) as f:
        config = yaml.safe_load(f) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a mapping of option: value")
    return config
