"""The assignment's feedforward network (a multilayer perceptron of fused Dense layers)."""

import numpy as np

from .. import nn


def build_mlp(
    input_size=784,
    num_layers=3,
    hidden_size=128,
    activation="tanh",
    weight_init="xavier",
    num_classes=10,
    dtype=np.float32,
    rng=None,
):
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
    layers = [
        nn.Dense(a, b, activation=activation, init=weight_init, dtype=dtype, rng=rng)
        for a, b in zip(sizes[:-1], sizes[1:])
    ]
    layers.append(nn.Dense(sizes[-1], num_classes, init=weight_init, dtype=dtype, rng=rng))
    return nn.Sequential(*layers)
