"""Preprocessing: images flattened and scaled to [0, 1], a seeded train/validation split, one-hot labels."""

from __future__ import annotations

import numpy as np


def flatten_and_scale(x, dtype=np.float32) -> np.ndarray:
    """Flatten images to rows and scale uint8 pixels to ``[0, 1]``.

    Parameters
    ----------
    x : numpy.ndarray
        uint8 array of shape ``(N, H, W)`` (or already ``(N, H*W)``).
    dtype : numpy float dtype, default ``np.float32``
        Output precision; ``np.float64`` on request.

    Returns
    -------
    numpy.ndarray
        New C-contiguous array of shape ``(N, H*W)`` equal to ``x / 255``.

    Raises
    ------
    TypeError
        If ``dtype`` is not a floating type or ``x`` is not uint8 (scaling
        data that is already scaled would silently divide by 255 twice).
    """
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"dtype must be a floating type such as float32 or float64, got {dtype}")
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {x.dtype}; is the data already scaled?")
    if x.ndim < 2:
        raise ValueError(f"expected an array of images (N, H, W), got shape {x.shape}")
    out = x.reshape(len(x), -1).astype(dtype)
    # Division, not multiplication by 1/255, so the values match the usual
    # ``x.astype("float32") / 255`` bit for bit.
    np.divide(out, dtype.type(255), out=out)
    return out


def train_val_split(x, y, val_fraction: float = 0.1, seed: int = 0):
    """Split off a seeded random validation set.

    Parameters
    ----------
    x, y : numpy.ndarray
        Samples and labels with the same length.
    val_fraction : float, default 0.1
        Share of samples for validation, ``0 <= val_fraction < 1``; the
        count is rounded to the nearest integer (60000 -> 54000 / 6000).
    seed : int, default 0
        Seed for :func:`numpy.random.default_rng`; the same seed gives the
        same split.

    Returns
    -------
    x_train, y_train, x_val, y_val : numpy.ndarray
        New arrays. Each part keeps the original order of its samples.
    """
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x and y have different lengths: {len(x)} vs {len(y)}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n = len(x)
    n_val = int(round(n * val_fraction))
    perm = np.random.default_rng(seed).permutation(n)
    # Sorting keeps memory access sequential and makes each part depend only
    # on which samples it holds; shuffling is the batch iterator's job.
    val_idx = np.sort(perm[:n_val])
    train_idx = np.sort(perm[n_val:])
    return x[train_idx], y[train_idx], x[val_idx], y[val_idx]


def one_hot(y, num_classes: int = 10, dtype=np.float32) -> np.ndarray:
    """One-hot encode integer labels.

    Parameters
    ----------
    y : array_like of int
        Labels in ``0 .. num_classes-1``, any shape.
    num_classes : int, default 10
    dtype : numpy dtype, default ``np.float32``

    Returns
    -------
    numpy.ndarray
        Shape ``y.shape + (num_classes,)``.

    Raises
    ------
    ValueError
        If a label lies outside ``0 .. num_classes-1`` (the message shows the
        first offending value and its position).
    TypeError
        If the labels are not integers.
    """
    y = np.asarray(y)
    if y.dtype.kind not in "ui":
        raise TypeError(f"labels must be integers, got {y.dtype}")
    flat = y.reshape(-1)
    bad = np.flatnonzero((flat < 0) | (flat >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{bad.size} label(s) out of range 0..{num_classes - 1}; first is {int(flat[i])} at flat index {i}"
        )
    out = np.zeros((flat.size, num_classes), dtype=dtype)
    out[np.arange(flat.size), flat] = 1
    return out.reshape(y.shape + (num_classes,))
