"""Cross-entropy against squared error: the curves, a summary per loss, and the conclusion they support."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from .figures import new_figure, save_figure
from .stats import gap_is_clear, mean_std_n

LOSS_LABELS = {"cross_entropy": "cross-entropy", "mean_squared_error": "squared error"}


def _curves(runs, key):
    """``{(label, loss): (epochs, mean, lo, hi, n)}`` over seeds, for runs with ``key`` in history."""
    groups = defaultdict(list)
    for r in runs:
        h = (r.get("history") or {}).get(key)
        if h:
            groups[(r["label"], r["loss"])].append([np.nan if v is None else v for v in h])
    out = {}
    for g, series in groups.items():
        n = min(len(s) for s in series)
        arr = np.array([s[:n] for s in series], float)
        out[g] = (np.arange(1, n + 1), np.nanmean(arr, 0), np.nanmin(arr, 0), np.nanmax(arr, 0), len(series))
    return out


def plot_loss_comparison(runs, path):
    """Validation accuracy and loss per epoch for each configuration trained with each loss.

    Parameters
    ----------
    runs : list of dict
        ``label`` (configuration), ``loss`` (``cross_entropy`` or ``mean_squared_error``),
        ``seed`` and ``history`` (per-epoch lists with ``val_accuracy``, ``val_loss``). Seeds
        of one (label, loss) are drawn as their mean with a min-max band.
    """
    from matplotlib import colormaps
    from matplotlib.ticker import MaxNLocator

    labels = sorted({r["label"] for r in runs})
    color = {lab: colormaps["tab10"](i % 10) for i, lab in enumerate(labels)}
    style = {"cross_entropy": "-", "mean_squared_error": "--"}
    fig = new_figure((16, 5))
    axes = fig.subplots(1, 3)
    panels = [
        ("val_accuracy", None, "validation accuracy"),
        ("val_loss", "cross_entropy", "validation loss: cross-entropy runs"),
        ("val_loss", "mean_squared_error", "validation loss: squared-error runs"),
    ]
    for ax, (key, only, title) in zip(axes, panels):
        for (label, loss), (ep, mean, lo, hi, n) in sorted(_curves(runs, key).items()):
            if only and loss != only:
                continue
            ax.plot(
                ep,
                mean,
                style.get(loss, ":"),
                color=color[label],
                marker="o",
                ms=3,
                label=f"{label} / {LOSS_LABELS.get(loss, loss)} (n={n})",
            )
            if n > 1:
                ax.fill_between(ep, lo, hi, color=color[label], alpha=0.15)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("cross-entropy (solid) vs squared error (dashed): mean over seeds, band = min to max")
    return save_figure(fig, path)


def loss_summary(runs):
    """``{label: {loss: (mean, std, n)}}`` of the final validation accuracy, and of epoch 1's."""
    final, first = defaultdict(dict), defaultdict(dict)
    groups = defaultdict(list)
    for r in runs:
        acc = [v for v in (r.get("history") or {}).get("val_accuracy", []) if v is not None]
        if r.get("status") == "diverged" or not acc:
            acc = [0.0]
        groups[(r["label"], r["loss"])].append(acc)
    for (label, loss), accs in groups.items():
        final[label][loss] = mean_std_n([a[-1] for a in accs])
        first[label][loss] = mean_std_n([a[0] for a in accs])
    return dict(final), dict(first)


def loss_conclusion(runs):
    """The conclusion the curves support, in one paragraph computed from ``runs``."""
    final, first = loss_summary(runs)
    pairs = [
        (lab, d["cross_entropy"], d["mean_squared_error"])
        for lab, d in final.items()
        if "cross_entropy" in d and "mean_squared_error" in d
    ]
    if not pairs:
        return "Both losses are needed for a comparison; no configuration was trained with both."
    ce_wins = [lab for lab, ce, se in pairs if ce[0] > se[0] and gap_is_clear(ce, se, 0.005)]
    se_wins = [lab for lab, ce, se in pairs if se[0] > ce[0] and gap_is_clear(ce, se, 0.005)]
    diffs = ", ".join(
        f"{100 * (ce[0] - se[0]):+.1f} points for {lab} (seed spread ±{100 * max(ce[1], se[1]):.1f})"
        for lab, ce, se in pairs
    )
    early = [(lab, first[lab]["cross_entropy"][0] - first[lab]["mean_squared_error"][0]) for lab, _, _ in pairs]
    early_text = ", ".join(f"{100 * d:+.1f}" for _, d in early)
    n = len(pairs)
    every = "the one configuration" if n == 1 else f"all {n} configurations"
    if len(ce_wins) == n:
        verdict = f"Cross-entropy ends with a clearly higher validation accuracy than squared error in {every}"
    elif len(se_wins) == n:
        verdict = f"Squared error ends with a clearly higher validation accuracy than cross-entropy in {every}"
    elif not ce_wins and not se_wins:
        verdict = (
            f"The final validation accuracies of the two losses are within the seed-to-seed spread in {every}, "
            "so these runs do not separate them"
        )
    else:
        verdict = (
            f"Cross-entropy is clearly better in {len(ce_wins)} and squared error in {len(se_wins)} "
            f"of {n} configuration(s)"
        )
    faster = sum(d > 0 for _, d in early)
    speed = f"After the first epoch cross-entropy is ahead in {faster} of {n} ({early_text} points), " + (
        "consistent with its larger gradients when the softmax output is confidently wrong."
        if faster > n / 2
        else "so it does not learn faster in these runs."
    )
    return f"{verdict} (cross-entropy minus squared error: {diffs}). {speed}"
