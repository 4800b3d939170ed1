"""A recurrent classifier of images read row by row: an LSTM over the rows, its last step, a Dense."""

import numpy as np

from .. import nn
from .dropout import check_dropout, dropout_seed


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"build_lstm: {name} must be a positive integer, got {value!r}")
    return int(value)


def build_lstm(
    input_shape=(28, 28),
    num_classes=10,
    hidden_size=128,
    num_layers=1,
    dropout=0.0,
    weight_init="xavier",
    dtype=np.float32,
    rng=None,
):
    """``Sequential(LSTM(features, hidden_size, num_layers, return_sequences=False), [Dropout],
    Dense(hidden_size, num_classes))``: each input is a sequence of ``input_shape[0]`` steps of
    ``input_shape[1]`` features (a 28x28 image as 28 rows of 28 pixels), the LSTM's output at
    the last step goes to the linear classifier. With the defaults it has 82,186 parameters:
    4 * 128 * (28 + 128 + 2) for the LSTM (PyTorch's two biases), 1,290 for the Dense. The
    PyTorch network is ``nn.LSTM(28, 128, batch_first=True)``, its ``output[:, -1]``, then
    ``nn.Linear(128, 10)``.

    Parameters
    ----------
    input_shape : (steps, features)
    num_classes : int
    hidden_size : int
        The LSTM's units.
    num_layers : int
        Stacked LSTM layers.
    dropout : float in [0, 1)
        Dropout between stacked LSTM layers (the LSTM's own) and before the output layer (0: none).
    weight_init : str
        The output layer's initialiser (the LSTM takes PyTorch's, U(-1/sqrt(H), 1/sqrt(H))).
    dtype : numpy dtype
    rng : int, Generator or None
        Seeds the weights and the dropout masks.

    Returns
    -------
    nn.Sequential
    """
    shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else ()
    if len(shape) != 2:
        raise ValueError(f"build_lstm: input_shape must be (steps, features), got {input_shape!r}")
    steps, features = (_positive_int(n, "input_shape") for n in shape)
    hidden = _positive_int(hidden_size, "hidden_size")
    layers = _positive_int(num_layers, "num_layers")
    dropout = check_dropout(dropout, "build_lstm")
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    recurrent = nn.LSTM(
        features, hidden, layers, dropout=dropout, return_sequences=False, dtype=dtype, rng=dropout_seed(rng)
    )
    head = [nn.Dropout(dropout, rng=dropout_seed(rng))] if dropout else []
    return nn.Sequential(recurrent, *head, nn.Dense(hidden, num_classes, init=weight_init, dtype=dtype, rng=rng))
