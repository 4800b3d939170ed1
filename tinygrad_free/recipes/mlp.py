"""The assignment's feedforward network (a multilayer perceptron of fused Dense layers), and its
regularised form (BatchNorm and Dropout after every hidden layer)."""

import numpy as np

from .. import nn
from .dropout import check_dropout, dropout_seed


def build_mlp(
    input_size=784,
    num_layers=3,
    hidden_size=128,
    activation="tanh",
    weight_init="xavier",
    num_classes=10,
    dtype=np.float32,
    rng=None,
    batch_norm=False,
    dropout=0.0,
):
    """The assignment's feedforward network: ``num_layers`` hidden layers, then a linear output
    layer producing logits.

    Parameters
    ----------
    input_size : int
        Features per input row (784 for 28x28 images).
    num_layers : int or None
        Hidden layers; None when ``hidden_size`` lists the widths.
    hidden_size : int or list of int
        One width for every hidden layer, or a list of widths (then ``num_layers`` must be None
        or equal to its length).
    activation : str
        A name of ``nn.activation.CODES`` (any case).
    weight_init : str
        A name of ``tinygrad_free.init.INITIALIZERS``.
    num_classes : int
        Outputs (logits).
    dtype : numpy dtype
    rng : int, Generator or None
        Seeds the weights, and the Dropout layers' masks (each gets an int seed drawn from it).
    batch_norm : bool, default False
        Each hidden layer becomes ``Dense -> BatchNorm -> activation`` (the Dense layer linear),
        as in Ioffe & Szegedy (2015), instead of a Dense layer with the activation fused in.
    dropout : float, default 0.0
        Probability of a ``Dropout`` layer after each hidden layer's activation (0: none).

    Returns
    -------
    nn.Sequential
        Taking ``(N, input_size)`` rows. With neither option the layers (and, for a given
        ``rng``, the weights) are exactly those of the plain network.
    """
    if isinstance(hidden_size, (list, tuple)):
        widths = [int(w) for w in hidden_size]
        if num_layers is not None and num_layers != len(widths):
            raise ValueError(f"num_layers={num_layers} but hidden_size lists {len(widths)} widths")
    else:
        if isinstance(num_layers, bool) or not isinstance(num_layers, (int, np.integer)) or num_layers < 0:
            raise ValueError(f"num_layers must be a non-negative integer, got {num_layers!r}")
        widths = [hidden_size] * num_layers
    dropout = check_dropout(dropout, "build_mlp")
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    sizes = [input_size, *widths]
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        if batch_norm:
            layers += [
                nn.Dense(a, b, init=weight_init, dtype=dtype, rng=rng),
                nn.BatchNorm(b, dtype=dtype),
                nn.activation.get(activation),
            ]
        else:
            layers.append(nn.Dense(a, b, activation=activation, init=weight_init, dtype=dtype, rng=rng))
        if dropout:
            layers.append(nn.Dropout(dropout, rng=dropout_seed(rng)))
    layers.append(nn.Dense(sizes[-1], num_classes, init=weight_init, dtype=dtype, rng=rng))
    return nn.Sequential(*layers)
