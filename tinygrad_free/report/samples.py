"""Figure 1: one sample image per class."""

from __future__ import annotations

import numpy as np

from .figures import new_figure, save_figure


def as_image(x):
    """A sample as an image for ``imshow``: a flat 784-vector as 28x28, any other array as it is."""
    x = np.asarray(x)
    return x.reshape(28, 28) if x.size == 784 else x


def plot_class_samples(x, y, class_names, path, title=None, seed=0):
    """One image per class in a labelled grid.

    Parameters
    ----------
    x : ndarray
        Images, ``(N, 28, 28)`` or flattened ``(N, 784)``.
    y : ndarray
        Integer labels.
    class_names : sequence of str
    path : str
        PNG to write.
    seed : int or None
        Which example of each class is shown (None: the first one).
    """
    y = np.asarray(y)
    k = len(class_names)
    cols = min(5, k)
    rows = -(-k // cols)
    fig = new_figure((2.0 * cols, 2.25 * rows + 0.4))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    rng = np.random.default_rng(seed) if seed is not None else None
    for c, ax in enumerate(axes):
        ax.set_axis_off()
        if c >= k:
            continue
        idx = np.flatnonzero(y == c)
        if idx.size == 0:
            ax.set_title(f"{c}: {class_names[c]}\n(no example)", fontsize=9)
            continue
        i = idx[0] if rng is None else rng.choice(idx)
        ax.imshow(as_image(x[i]), cmap="gray_r")
        ax.set_title(f"{c}: {class_names[c]}", fontsize=10)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
