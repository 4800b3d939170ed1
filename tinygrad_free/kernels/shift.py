"""Whole-pixel image translation with zero fill, the kernel behind ``augment.RandomShift``.

``out[b, r, c] = x[b, r - dy_b, c - dx_b]``, and 0 where that source pixel lies outside the
image; ``shifts[b] = (dy_b, dx_b)`` moves image b's content down by dy_b and right by dx_b.
``x`` and ``out`` are (batch, height, width) and must not overlap. Both versions only copy
values, so they agree exactly.
"""

import numpy as np

from ._nb import NJIT, njit


def _span(d, n):
    """(first, stop) of the destination indices that have a source after a shift by d."""
    return min(max(d, 0), n), max(min(n + d, n), 0)


def shift_images_numpy(x, shifts, out):
    """NumPy version: one slice copy per distinct shift in the batch."""
    out.fill(0)
    _, H, W = x.shape
    # One integer per distinct (dy, dx): np.unique over rows (axis=0) is several times slower.
    codes = shifts[:, 0] * (2 * W + 1) + np.clip(shifts[:, 1], -W, W)
    _, first, group = np.unique(codes, return_index=True, return_inverse=True)
    for g, b in enumerate(first):
        rows = np.flatnonzero(group == g)
        dy, dx = int(shifts[b, 0]), int(shifts[b, 1])
        (r0, r1), (c0, c1) = _span(dy, H), _span(dx, W)
        if r0 < r1 and c0 < c1:
            out[rows, r0:r1, c0:c1] = x[rows, r0 - dy : r1 - dy, c0 - dx : c1 - dx]
    return out


@njit(**NJIT)
def shift_images_numba(x, shifts, out):
    """numba twin of ``shift_images_numpy``: one pass writing every output pixel once."""
    n_b, H, W = x.shape
    if shifts.shape[0] != n_b or out.shape != x.shape:
        raise ValueError("shift_images: shifts must be (batch, 2) and out the images' shape")
    zero = out.dtype.type(0)
    for b in range(n_b):
        dy, dx = shifts[b, 0], shifts[b, 1]
        for r in range(H):
            sr = r - dy
            if sr < 0 or sr >= H:
                for c in range(W):
                    out[b, r, c] = zero
                continue
            for c in range(W):
                sc = c - dx
                out[b, r, c] = x[b, sr, sc] if 0 <= sc < W else zero
    return out


from .registry import kernel, warmup_case  # noqa: E402

kernel("shift_images", shift_images_numpy, shift_images_numba)


@warmup_case
def _warm_up(dtype):
    images = np.ones((2, 3, 3), dtype)
    shift_images_numba(images, np.array([[1, -1], [0, 2]]), np.empty_like(images))
