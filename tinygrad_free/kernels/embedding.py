"""The embedding's backward: the scatter-add of the output's gradient into the table's rows.

    dW[idx[k]] += g[k]  for every position k in order, except where idx[k] == padding_idx

(the forward is a gather, ``np.take``, done by the layer). A row that several positions use gets
their sum, added in the positions' order (C order of the indices), the same order in both twins,
so they agree bit for bit; one thread, so the thread count changes nothing.
"""

import numpy as np

from ._nb import NJIT, njit


def embedding_backward_numpy(idx, g, dW, padding_idx):
    """dW (V, D) += the rows of g (K, D) at rows idx (K,) (int64), skipping ``padding_idx`` (-1:
    none). ``np.add.at`` adds repeated rows one position at a time, in order."""
    if padding_idx >= 0:
        keep = idx != padding_idx
        idx, g = idx[keep], g[keep]
    np.add.at(dW, idx, g)
    return dW


@njit(**NJIT)
def _scatter_add(idx, g, dW, padding_idx):
    if g.shape[0] != idx.shape[0] or g.shape[1] != dW.shape[1]:
        raise ValueError("embedding_backward: g must be (K, D) for idx (K,) and dW (V, D)")
    width = dW.shape[1]
    for k in range(idx.shape[0]):
        row = idx[k]
        if row == padding_idx:
            continue
        target, source = dW[row], g[k]
        for j in range(width):
            target[j] += source[j]


def embedding_backward_numba(idx, g, dW, padding_idx):
    """numba twin of ``embedding_backward_numpy`` (the same sums in the same order)."""
    _scatter_add(idx, g, dW, int(padding_idx))
    return dW


from .registry import kernel, warmup_case  # noqa: E402

kernel("embedding_backward", embedding_backward_numpy, embedding_backward_numba)


@warmup_case
def _warm_up(dtype):
    g = np.ones((3, 2), dtype)
    embedding_backward_numba(np.array([0, 2, 0], np.int64), g, np.zeros((4, 2), dtype), -1)
