"""The assignment's split of a dataset (54,000 train / 6,000 validation / 10,000 test), ready to train on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .locate import load_dataset
from .preprocess import flatten_and_scale, train_val_split


@dataclass(frozen=True)
class Split:
    """Train / validation / test arrays ready for training.

    Images are flattened to ``(N, 784)`` and scaled to ``[0, 1]``; labels
    are ``int64``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]


def load_split(name: str, data_dir=None, val_fraction: float = 0.1, seed: int = 0, dtype=np.float32) -> Split:
    """Load a dataset and split it the assignment's way.

    Parameters
    ----------
    name : str
        See :func:`load_dataset`.
    data_dir : str or os.PathLike, optional
        See :func:`load_dataset`.
    val_fraction : float, default 0.1
        Share of the training set held out for validation (60000 -> 54000
        train / 6000 validation).
    seed : int, default 0
        Seed of the train/validation split.
    dtype : numpy float dtype, default ``np.float32``
        Precision of the image arrays.

    Returns
    -------
    Split
    """
    (x_train, y_train), (x_test, y_test), class_names = load_dataset(name, data_dir)
    x_tr, y_tr, x_val, y_val = train_val_split(x_train, y_train, val_fraction, seed)
    return Split(
        x_train=flatten_and_scale(x_tr, dtype),
        y_train=y_tr.astype(np.int64),
        x_val=flatten_and_scale(x_val, dtype),
        y_val=y_val.astype(np.int64),
        x_test=flatten_and_scale(x_test, dtype),
        y_test=y_test.astype(np.int64),
        class_names=class_names,
    )
