"""The confusion matrix of a model on the test set, and its most confused pairs of classes."""

from __future__ import annotations

import numpy as np

from ..metrics import confusion_matrix, per_class_accuracy
from .figures import new_figure, save_figure
from .samples import as_image


def most_confused_pairs(cm, k=5):
    """The ``k`` largest off-diagonal cells as ``(true, predicted, count)``, largest first."""
    cm = np.asarray(cm)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(off, axis=None)[::-1][:k]
    return [(int(i), int(j), int(off[i, j])) for i, j in zip(*np.unravel_index(flat, cm.shape)) if off[i, j] > 0]


def confusion_heatmap(ax, data, labels, fmt, title, cmap, vmax=None):
    """Draw the class-by-class matrix ``data`` on ``ax`` (true classes down, predicted across), each
    non-zero cell labelled ``fmt(value)``; returns the image (for a colour bar)."""
    im = ax.imshow(data, cmap=cmap, vmin=0, vmax=vmax)
    k = len(labels)
    ax.set_xticks(range(k), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    top = np.nanmax(data) if vmax is None else vmax
    for i in range(k):
        for j in range(k):
            v = data[i, j]
            if v:
                ax.text(
                    j, i, fmt(v), ha="center", va="center", fontsize=6.5, color="white" if v > 0.55 * top else "black"
                )
    return im


def plot_confusion(y_true, y_pred, class_names, path, title=None):
    """Confusion matrix as counts and as row-normalised rates, plus each class's accuracy."""
    k = len(class_names)
    cm = confusion_matrix(y_true, y_pred, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = cm / cm.sum(axis=1, keepdims=True)
    rates = np.nan_to_num(rates)
    acc = per_class_accuracy(cm)
    fig = new_figure((18, 6.2))
    ax1, ax2, ax3 = fig.subplots(1, 3, width_ratios=[1, 1, 0.6])
    im1 = confusion_heatmap(ax1, cm, class_names, lambda v: f"{int(v)}", "counts", "Blues")
    fig.colorbar(im1, ax=ax1, shrink=0.8)
    im2 = confusion_heatmap(
        ax2,
        rates,
        class_names,
        lambda v: f"{100 * v:.0f}" if v >= 0.005 else "",
        "row-normalised (% of each true class)",
        "Blues",
        vmax=1.0,
    )
    fig.colorbar(im2, ax=ax2, shrink=0.8)
    order = np.argsort(acc)
    ax3.barh(range(k), acc[order], color=["#d62728" if a < np.nanmean(acc) else "#2ca02c" for a in acc[order]])
    ax3.set_yticks(range(k), [class_names[i] for i in order], fontsize=8)
    for pos, a in enumerate(acc[order]):
        ax3.text(min(a, 1.0) - 0.01, pos, f"{100 * a:.1f}%", ha="right", va="center", fontsize=7, color="white")
    ax3.axvline(float(np.trace(cm) / max(cm.sum(), 1)), color="black", ls="--", lw=1, label="overall")
    ax3.set_xlim(0, 1)
    ax3.set_title("per-class accuracy (recall)")
    ax3.legend(fontsize=8, loc="lower left")
    overall = np.trace(cm) / max(cm.sum(), 1)
    fig.suptitle(title or f"test accuracy {100 * overall:.2f}% on {int(cm.sum())} images")
    return save_figure(fig, path)


def plot_confused_pairs(x, y_true, y_pred, class_names, path, n_pairs=4, n_examples=6):
    """Example images of the most confused (true, predicted) pairs, one row per pair."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    cm = confusion_matrix(y_true, y_pred, len(class_names))
    pairs = most_confused_pairs(cm, n_pairs)
    rows = max(len(pairs), 1)
    fig = new_figure((1.5 * n_examples + 2.5, 1.7 * rows + 0.6))
    axes = np.atleast_2d(fig.subplots(rows, n_examples))
    for ax in axes.ravel():
        ax.set_axis_off()
    if not pairs:
        axes[0, 0].text(0, 0.5, "no mistakes", transform=axes[0, 0].transAxes)
    for r, (i, j, count) in enumerate(pairs):
        idx = np.flatnonzero((y_true == i) & (y_pred == j))[:n_examples]
        for c, n in enumerate(idx):
            axes[r, c].imshow(as_image(x[n]), cmap="gray_r")
        axes[r, 0].set_title(
            f"true {class_names[i]} -> predicted {class_names[j]}: {count} "
            f"({100 * count / max(cm[i].sum(), 1):.1f}% of {class_names[i]})",
            fontsize=9,
            loc="left",
        )
    fig.suptitle("most confused pairs (test set)")
    return save_figure(fig, path)
