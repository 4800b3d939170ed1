"""Networks compared on one test set: the runs of ``scripts/train.py --results`` grouped by
configuration, their test accuracy over seeds, seconds per epoch and confusion matrices."""

from __future__ import annotations

import textwrap

import numpy as np

from .confusion import confusion_heatmap
from .figures import new_figure, save_figure

#: Keys a line of ``scripts/train.py --results`` must have for the comparison.
RUN_KEYS = ("run_name", "recipe", "config", "dataset", "seed", "test_accuracy", "epoch_seconds", "confusion")


def group_runs(records):
    """The runs of ``records`` grouped by configuration: one group per (dataset, run name), so the
    seeds of one configuration are pooled and anything else tells groups apart.

    Parameters
    ----------
    records : list of dict
        Lines of ``scripts/train.py --results`` (:func:`tinygrad_free.train_cli.result_record`).

    Returns
    -------
    list of dict
        In the order the configurations first appear: ``label`` (the recipe's name, with the run
        name when two groups share a recipe), ``recipe``, ``run_name``, ``dataset``,
        ``architecture``, ``parameters``, ``seeds``, ``runs``, ``test_accuracy`` (mean),
        ``test_accuracy_std`` (population standard deviation, 0 for one run),
        ``epoch_seconds`` (median over every epoch of every run: one epoch stalled by the machine
        does not move it), ``confusion`` (summed over the
        runs) and ``class_names``.

    Raises
    ------
    ValueError
        For a record without one of :data:`RUN_KEYS` (naming it and the run), or runs of one
        dataset whose confusion matrices differ in size.
    """
    groups: dict = {}
    for n, r in enumerate(records, 1):
        missing = [k for k in RUN_KEYS if k not in r]
        if missing:
            raise ValueError(
                f"run {n} ({r.get('run_name', 'no run_name')}) lacks {missing}: "
                "expected lines of scripts/train.py --results"
            )
        groups.setdefault((r["dataset"], r["run_name"]), []).append(r)
    recipes = [runs[0]["recipe"] for runs in groups.values()]
    out = []
    for (dataset, name), runs in groups.items():
        confusions = [np.asarray(r["confusion"], np.int64) for r in runs]
        if len({c.shape for c in confusions}) != 1:
            raise ValueError(f"{name} on {dataset}: the runs' confusion matrices differ in size")
        acc = np.array([r["test_accuracy"] for r in runs], float)
        seconds = [s for r in runs for s in r["epoch_seconds"]]
        recipe = runs[0]["recipe"]
        out.append(
            {
                "label": recipe if recipes.count(recipe) == 1 else f"{recipe}: {name}",
                "recipe": recipe,
                "run_name": name,
                "dataset": dataset,
                "architecture": runs[0]["config"].get("architecture") or "mlp",
                "parameters": runs[0].get("parameters"),
                "seeds": sorted({r["seed"] for r in runs}),
                "runs": len(runs),
                "test_accuracy": float(acc.mean()),
                "test_accuracy_std": float(acc.std()),
                "epoch_seconds": float(np.median(seconds)) if seconds else float("nan"),
                "confusion": sum(confusions),
                "class_names": runs[0].get("class_names") or [str(i) for i in range(len(confusions[0]))],
            }
        )
    return out


def architecture_table(groups):
    """``(columns, rows)`` of the comparison, one row per group, best test accuracy first."""
    columns = ["network", "architecture", "dataset", "parameters", "runs (seeds)", "test accuracy %", "s / epoch"]
    rows = [
        [
            g["label"],
            g["architecture"],
            g["dataset"],
            f"{g['parameters']:,}" if g["parameters"] is not None else None,
            f"{g['runs']} ({', '.join(str(s) for s in g['seeds'])})",
            f"{100 * g['test_accuracy']:.2f} ± {100 * g['test_accuracy_std']:.2f}",
            f"{g['epoch_seconds']:.2f}",
        ]
        for g in sorted(groups, key=lambda g: -g["test_accuracy"])
    ]
    return columns, rows


def plot_architecture_confusions(groups, path):
    """One row-normalised test confusion matrix per group, side by side (summed over its runs).

    Cell ``(i, j)`` is the percentage of the test images of class ``i`` predicted as ``j``; the
    title gives the mean test accuracy over the group's runs.
    """
    fig = new_figure((7.2 * len(groups), 6.4))
    axes = np.atleast_1d(fig.subplots(1, len(groups)))
    for ax, g in zip(axes, groups):
        cm = g["confusion"]
        with np.errstate(invalid="ignore", divide="ignore"):
            rates = np.nan_to_num(cm / cm.sum(axis=1, keepdims=True))
        confusion_heatmap(
            ax,
            rates,
            g["class_names"],
            lambda v: f"{100 * v:.0f}" if v >= 0.005 else "",
            # A label that carries the run name is long: wrapped, it stays over its own panel.
            textwrap.fill(g["label"], 48) + f"\n{100 * g['test_accuracy']:.2f}% test accuracy ({g['runs']} run(s))",
            "Blues",
            vmax=1.0,
        )
    fig.suptitle("test confusion matrices (% of each true class)")
    return save_figure(fig, path)


def architecture_section(groups, figure, sources):
    """report.md's section comparing the groups: a table and the confusion-matrix figure.

    ``figure`` is the figure's path relative to report.md; ``sources`` names the results files.
    """
    from .tables import markdown_table

    columns, rows = architecture_table(groups)
    lines = [
        "## Architectures compared",
        "",
        f"Runs of `scripts/train.py --results` from {', '.join(f'`{s}`' for s in sources)}, grouped by "
        "configuration: the test accuracy is the mean ± standard deviation over the runs (seeds), the "
        "seconds per epoch are the median over the runs' epochs, training time only (no validation, no kernel "
        "compilation).",
        "",
        markdown_table(columns, rows),
        "",
        f"![confusion matrices]({figure})",
        "",
    ]
    lines += [f"- **{g['label']}**: `{g['run_name']}`" for g in groups]
    return "\n".join(lines)
