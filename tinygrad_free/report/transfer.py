"""Transfer to MNIST: the sweep's best configurations that differ enough to be worth a run each."""

from __future__ import annotations

from .sweep_analysis import metric_goal

TRANSFER_KEYS = (
    "optimizer",
    "activation",
    "num_layers",
    "hidden_size",
    "batch_size",
    "learning_rate",
    "weight_init",
    "weight_decay",
)


def choose_transfer_configs(records, k=3, metric="val_accuracy", min_differences=2, goal=None):
    """``k`` good and different configurations from a sweep, with the reason each was chosen.

    The best run first; then, going down the ranking, runs that differ from every run chosen
    so far in at least ``min_differences`` of :data:`TRANSFER_KEYS`, so the three test more
    than one idea; the next best runs fill up if too few differ. The ranking puts the highest
    ``metric`` first, or the lowest when ``goal`` is ``"minimize"`` (None: see :func:`metric_goal`).

    Returns
    -------
    list of (dict, str)
        The records and why each was picked.
    """
    ok = sorted(
        (r for r in records if r.get("status") == "completed" and r.get(metric) is not None),
        key=lambda r: r[metric],
        reverse=metric_goal(metric, records, goal) == "maximize",
    )
    cfg = [r.get("config") or r.get("params") or {} for r in ok]
    chosen = []
    for i, r in enumerate(ok):
        if len(chosen) == k:
            break
        if not chosen:
            chosen.append((i, f"best on Fashion-MNIST ({metric} {r[metric]:.4f})"))
            continue
        diffs = [[key for key in TRANSFER_KEYS if cfg[i].get(key) != cfg[j].get(key)] for j, _ in chosen]
        if all(len(d) >= min_differences for d in diffs):
            d0 = diffs[0]
            chosen.append((i, f"rank {i + 1} ({metric} {r[metric]:.4f}); differs from the best in {', '.join(d0)}"))
    for i, r in enumerate(ok):
        if len(chosen) == k:
            break
        if i not in [c for c, _ in chosen]:
            chosen.append((i, f"rank {i + 1} ({metric} {r[metric]:.4f})"))
    return [(ok[i], why) for i, why in chosen]
