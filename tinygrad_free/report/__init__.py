"""The report's figures and the numbers behind them, drawn from data, never hard-coded.

Every ``plot_*`` function writes one PNG (matplotlib's Agg renderer through ``Figure``
objects, so pyplot's global state and the user's backend are left alone), logs it to wandb
when a run is active, and returns the PNG's path. Files are written to a temporary name and
renamed into place, so an interrupted report never leaves a truncated image.

Sweep figures read the records of a results JSONL written by :mod:`tinygrad_free.sweep`
(one dict per trial with ``params``, ``status``, ``val_accuracy``, ``history``, ...).

One concept per module: :mod:`.figures` (figure files and wandb), :mod:`.samples`,
:mod:`.sweep_analysis` (statistics), :mod:`.stats` (gaps beyond the noise between runs),
:mod:`.sweep_figures`, :mod:`.findings` (prose),
:mod:`.confusion`, :mod:`.architectures` (networks compared),
:mod:`.losses`, :mod:`.transfer`, :mod:`.tables` and :mod:`.document`
(report.md). Everything is importable from here as before.
"""

from ..fileio import atomic_open, atomic_write_text
from ..sweep import best_record, read_results
from .architectures import (
    RUN_KEYS,
    architecture_section,
    architecture_table,
    group_runs,
    plot_architecture_confusions,
)
from .confusion import most_confused_pairs, plot_confused_pairs, plot_confusion
from .document import SECTIONS, assemble_report, write_section
from .figures import log_to_wandb, new_figure, save_figure
from .findings import sweep_findings, top_runs_table
from .losses import LOSS_LABELS, loss_conclusion, loss_summary, plot_loss_comparison
from .samples import plot_class_samples
from .sweep_analysis import (
    GOALS,
    NEAR_CHANCE,
    analysis_rows,
    metric_goal,
    optuna_importance,
    param_effects,
    varied_params,
)
from .sweep_figures import STATUS_COLORS, plot_parallel_coordinates, plot_param_importance, plot_sweep_timeline
from .tables import markdown_table, plot_table
from .transfer import TRANSFER_KEYS, choose_transfer_configs

__all__ = [
    "GOALS",
    "NEAR_CHANCE",
    "SECTIONS",
    "STATUS_COLORS",
    "LOSS_LABELS",
    "TRANSFER_KEYS",
    "new_figure",
    "save_figure",
    "log_to_wandb",
    "plot_class_samples",
    "metric_goal",
    "analysis_rows",
    "varied_params",
    "param_effects",
    "optuna_importance",
    "plot_sweep_timeline",
    "plot_parallel_coordinates",
    "plot_param_importance",
    "sweep_findings",
    "top_runs_table",
    "most_confused_pairs",
    "RUN_KEYS",
    "group_runs",
    "architecture_table",
    "architecture_section",
    "plot_architecture_confusions",
    "plot_confusion",
    "plot_confused_pairs",
    "plot_loss_comparison",
    "loss_summary",
    "loss_conclusion",
    "choose_transfer_configs",
    "markdown_table",
    "plot_table",
    "write_section",
    "assemble_report",
    "read_results",
    "best_record",
    "atomic_write_text",
    "atomic_open",
]
