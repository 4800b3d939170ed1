"""The Dropout options the model builders share: the probability checked, and each Dropout
layer's seed drawn from the builder's generator."""

import numpy as np


def check_dropout(dropout, who):
    """``dropout`` as a float in [0, 1), or a :class:`ValueError` naming the builder ``who``."""
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.integer, np.floating)):
        raise ValueError(f"{who}: dropout must be a probability in [0, 1), got {dropout!r}")
    if not 0 <= dropout < 1:
        raise ValueError(f"{who}: dropout must be a probability in [0, 1), got {dropout!r}")
    return float(dropout)


def dropout_seed(rng):
    """An int seed drawn from ``rng``, so that a Dropout layer is reproducible and saved with its seed."""
    return int(rng.integers(2**31 - 1))
