"""Input validation before training: samples converted once and checked by name (lengths,
emptiness, NaN/inf), as Keras's ``fit`` does."""

from __future__ import annotations

import numpy as np


def as_samples(x, y, what="the training data", dtype=np.float32, names=("x", "y")):
    """``x, y`` as arrays of samples and labels, checked before any training starts.

    Array-likes (lists, tuples) are converted once, as Keras's ``fit`` does: ``x`` to ``dtype``
    (the model's), ``y`` with NumPy's inferred type. NumPy arrays pass through uncopied (a
    large float64 array is not silently copied; the first layer asks for a conversion).

    Raises
    ------
    ValueError
        If either cannot be converted, ``x`` has no sample axis and feature axis, there are no
        samples, or ``x`` and ``y`` have different lengths; the message names ``what`` and calls
        the arrays by ``names``.
    """
    xn, yn = names
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x, dtype=dtype)
        except (ValueError, TypeError) as e:
            raise ValueError(
                f"{what}: {xn} could not be converted to a {np.dtype(dtype)} array ({e}); "
                "pass a numpy array of shape (samples, features)"
            ) from None
    if not isinstance(y, np.ndarray):
        try:
            y = np.asarray(y)
        except (ValueError, TypeError) as e:
            raise ValueError(
                f"{what}: {yn} could not be converted to an array ({e}); pass integer labels of shape (samples,)"
            ) from None
    if x.ndim and len(x) == 0:
        raise ValueError(f"{what} is empty ({xn} has shape {x.shape}): training needs at least one sample")
    if x.ndim < 2:
        hint = f"; for a single feature use {xn}.reshape(-1, 1)" if x.ndim == 1 else ""
        raise ValueError(
            f"{what}: {xn} must have one row per sample, shape (samples, features), got shape {x.shape}{hint}"
        )
    if y.ndim not in (1, 2):
        raise ValueError(
            f"{what}: {yn} must be integer labels of shape (samples,) or one-hot of shape "
            f"(samples, classes), got shape {y.shape}"
        )
    if len(x) != len(y):
        raise ValueError(f"{what}: {xn} and {yn} have different lengths: {len(x)} samples but {len(y)} labels")
    return x, y


def check_finite(x, what="the training data"):
    """Raise if the float array ``x`` holds NaN or inf.

    Cheap: a min and a max over the array (NaN propagates through both, inf shows in one), no
    temporary array; only a failing check looks for the offending rows.
    """
    if x.dtype.kind not in "fc" or x.size == 0:
        return
    with np.errstate(invalid="ignore"):
        if np.isfinite(x.min()) and np.isfinite(x.max()):
            return
    bad = np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))
    raise ValueError(
        f"{what} contains NaN or inf in {bad.size} of {len(x)} samples (first: index {int(bad[0])}); "
        "the data is bad, not the learning rate: fix or drop those samples before training"
    )
