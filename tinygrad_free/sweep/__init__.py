"""Hyperparameter sweeps from one wandb sweep YAML, run on wandb or locally with Optuna.

The sweep file is wandb's format (``method``, ``metric``, ``parameters``, ``early_terminate``),
so the same file drives both backends:

* ``wandb``: :func:`run_wandb_sweep` hands the file to ``wandb.sweep`` and runs ``wandb.agent``;
  wandb's server picks the configurations.
* ``local``: :func:`run_local_sweep` translates the file into an Optuna study (``random`` ->
  ``RandomSampler``, ``grid`` -> ``GridSampler``, ``bayes`` -> ``TPESampler``, ``early_terminate``
  -> ``HyperbandPruner`` or ``MedianPruner``) kept in a database (SQLite by default), so several
  processes or machines can share a study and a killed sweep resumes where it stopped. Machines
  share one through PostgreSQL (``postgresql://`` storage, the ``postgres`` extra's driver); a
  killed worker's trial is re-run (:func:`recover_dead_trials`).

Every finished trial is appended as one JSON line to a results file next to the study: the
configuration, the per-epoch history, the final metrics and how the run ended (``completed``,
``diverged``, ``pruned`` or ``failed``). :mod:`tinygrad_free.report` draws its figures from it.
The study keeps the same record with each trial, so :func:`export_results` writes the lines of
all machines' trials to one file.

Supported parameter specifications (``parameters: {name: spec}``):

=========================  =====================================================================
``value: v``               constant
``values: [a, b, ...]``    categorical (``distribution: categorical`` optional)
``min, max``               ``int_uniform`` when both are integers, else ``uniform``
``distribution:``          ``int_uniform``, ``uniform``, ``q_uniform`` (``q``), ``log_uniform``
                           (bounds are natural-log exponents), ``log_uniform_values``,
                           ``q_log_uniform`` and ``q_log_uniform_values`` (``q``)
=========================  =====================================================================

``early_terminate`` takes ``type: hyperband`` with wandb's ``min_iter``/``max_iter``/``s``/``eta``,
and, for the local backend only, ``type: median`` with ``min_iter`` (warm-up epochs) and
``n_startup_trials``.

One concept per module: :mod:`.spec` (sweep files), :mod:`.samplers` (Optuna's sampler, pruner
and one trial's parameters), :mod:`.trial` (training one configuration), :mod:`.results` (the
results file), :mod:`.storage` (SQLite and PostgreSQL studies), :mod:`.locks` (starting trials
one at a time), :mod:`.recovery` (dead workers' trials), :mod:`.export` (one results file from
a shared study), :mod:`.workers` (processes), :mod:`.local` and :mod:`.wandb_backend` (the two
backends). The option schema, its names and run names are :mod:`tinygrad_free.config`'s.
Everything is importable from here as before (``from tinygrad_free.sweep import run_local_sweep``).
"""

from ..config import DEFAULTS, check_value, normalize_config
from ..config import trial_run_name as run_name
from ..fileio import atomic_write_text
from .export import export_results
from .local import SweepSummary, run_local_sweep
from .recovery import fail_dead_trials, recover_dead_trials
from .results import RESULT_ATTR, append_jsonl, best_record, json_safe, read_results, results_record
from .samplers import make_pruner, make_sampler, suggest_params
from .spec import (
    DISTRIBUTIONS,
    EARLY_TERMINATE,
    GOALS,
    METHODS,
    METRICS,
    Param,
    SweepSpec,
    load_sweep,
    parse_assignment,
    parse_sweep,
)
from .storage import POSTGRES_INSTALL, default_results, default_storage, display_url, open_storage, resolve_storage_url
from .trial import STATUSES, PruningCallback, get_data, run_trial
from .wandb_backend import run_wandb_sweep, wandb_sweep_config
from .workers import THREAD_VARIABLES, map_trials, run_workers

__all__ = [
    # options and run names (tinygrad_free.config's)
    "DEFAULTS",
    "check_value",
    "normalize_config",
    "run_name",
    # sweep files
    "METHODS",
    "GOALS",
    "METRICS",
    "DISTRIBUTIONS",
    "EARLY_TERMINATE",
    "Param",
    "SweepSpec",
    "parse_sweep",
    "parse_assignment",
    "load_sweep",
    # Optuna's sampler and pruner
    "make_sampler",
    "make_pruner",
    "suggest_params",
    # one trial
    "STATUSES",
    "PruningCallback",
    "run_trial",
    "get_data",
    # results files
    "RESULT_ATTR",
    "json_safe",
    "append_jsonl",
    "read_results",
    "results_record",
    "best_record",
    "atomic_write_text",
    # studies
    "POSTGRES_INSTALL",
    "open_storage",
    "resolve_storage_url",
    "display_url",
    "default_storage",
    "default_results",
    "fail_dead_trials",
    "recover_dead_trials",
    "export_results",
    # backends and processes
    "SweepSummary",
    "run_local_sweep",
    "run_wandb_sweep",
    "wandb_sweep_config",
    "THREAD_VARIABLES",
    "run_workers",
    "map_trials",
]
