"""Mini-batches: seeded shuffles per epoch, and a gathering iterator that reuses its buffers."""

from __future__ import annotations

import operator
from collections.abc import Iterator

import numpy as np


def _check_batch_args(x, y, batch_size):
    if isinstance(batch_size, bool):
        raise TypeError("batch_size must be an int, got bool")
    try:
        batch_size = operator.index(batch_size)
    except TypeError:
        raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}") from None
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if len(x) != len(y):
        raise ValueError(f"x and y have different lengths: {len(x)} vs {len(y)}")
    return batch_size


def _epoch_order(n: int, shuffle: bool, seed: int, epoch: int) -> np.ndarray:
    if not shuffle:
        return np.arange(n)
    # A seed sequence over (seed, epoch) gives independent, reproducible
    # streams per epoch without carrying RNG state between epochs, so any
    # epoch can be replayed on its own.
    return np.random.default_rng([seed, epoch]).permutation(n)


def iterate_minibatches(
    x, y, batch_size: int, shuffle: bool = True, seed: int = 0, epoch: int = 0, drop_last: bool = False
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(xb, yb)`` mini-batches for one epoch.

    Parameters
    ----------
    x, y : numpy.ndarray
        Samples and labels with the same length.
    batch_size : int
        Positive batch size.
    shuffle : bool, default True
        Visit samples in a random order derived from ``(seed, epoch)``.
    seed : int, default 0
        Non-negative seed.
    epoch : int, default 0
        Epoch number; different epochs give different orders.
    drop_last : bool, default False
        Skip the final batch if it is smaller than ``batch_size``.

    Yields
    ------
    xb, yb : numpy.ndarray
        Fresh copies (safe to keep).
    """
    batch_size = _check_batch_args(x, y, batch_size)
    for idx in _batch_indices(len(x), batch_size, shuffle, seed, epoch, drop_last):
        yield x[idx], y[idx]


def _batch_indices(n, batch_size, shuffle, seed, epoch, drop_last):
    """The index array of each batch of one epoch."""
    order = _epoch_order(n, shuffle, seed, epoch)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]


class BatchIterator:
    """Re-iterable mini-batch source that reshuffles every epoch.

    Each ``iter()`` call runs the next epoch: epoch ``e`` visits the samples
    in the order ``default_rng([seed, e]).permutation(N)``, so two iterators
    built with the same seed produce the same batches epoch by epoch.

    Parameters
    ----------
    x, y : numpy.ndarray
        Samples and labels with the same length.
    batch_size : int
        Positive batch size.
    shuffle : bool, default True
        If False, every epoch visits samples in their stored order.
    seed : int, default 0
        Non-negative seed.
    drop_last : bool, default False
        Skip a final batch smaller than ``batch_size``.
    reuse_buffers : bool, default False
        If True, gather each batch into two preallocated buffers with
        :func:`numpy.take` instead of allocating new arrays. Faster, but the
        arrays yielded are **overwritten by the next batch**: use them before
        advancing and copy anything you want to keep.
    transform : callable, optional
        Applied to every batch of samples as ``transform(xb, rng)`` (for
        example :class:`tinygrad_free.augment.RandomShift`); ``rng`` is a
        generator seeded from ``(seed, epoch)``, so augmented epochs are
        reproducible too. The labels pass through unchanged.

    Attributes
    ----------
    epoch : int
        Number of the epoch the next ``iter()`` call will run.

    Examples
    --------
    >>> it = BatchIterator(np.zeros((10, 3)), np.arange(10), batch_size=4)
    >>> len(it), [len(yb) for _, yb in it]
    (3, [4, 4, 2])
    """

    def __init__(
        self,
        x,
        y,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        *,
        reuse_buffers: bool = False,
        transform=None,
    ):
        self.batch_size = _check_batch_args(x, y, batch_size)
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be a callable (xb, rng) -> xb, got {type(transform).__name__}")
        self.x, self.y = x, y
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.reuse_buffers = reuse_buffers
        self.transform = transform
        self.epoch = 0
        self._xbuf = self._ybuf = None

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        return self.iter_epoch(epoch)

    def iter_epoch(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield the batches of a given epoch without advancing :attr:`epoch`."""
        if self.transform is not None:
            # A stream of its own (the third key), so augmenting leaves the batch order as it was.
            rng = np.random.default_rng([self.seed, epoch, 1])
            for xb, yb in self._gather(epoch):
                xt = self.transform(xb, rng)
                # Without reuse_buffers every batch is the caller's to keep, and a transform
                # may return a buffer of its own that the next batch overwrites.
                yield (xt if self.reuse_buffers or xt is xb else xt.copy()), yb
        else:
            yield from self._gather(epoch)

    def _gather(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if not self.reuse_buffers:
            yield from iterate_minibatches(
                self.x, self.y, self.batch_size, self.shuffle, self.seed, epoch, self.drop_last
            )
            return
        x, y, bs = self.x, self.y, self.batch_size
        if self._xbuf is None:
            self._xbuf = np.empty((bs,) + x.shape[1:], dtype=x.dtype)
            self._ybuf = np.empty((bs,) + y.shape[1:], dtype=y.dtype)
        for idx in _batch_indices(len(x), bs, self.shuffle, self.seed, epoch, self.drop_last):
            m = len(idx)
            # mode="clip" skips numpy's bounds-check buffering; the indices
            # come from a permutation of range(N), so they are valid.
            xb = np.take(x, idx, axis=0, out=self._xbuf[:m], mode="clip")
            yb = np.take(y, idx, axis=0, out=self._ybuf[:m], mode="clip")
            yield xb, yb
