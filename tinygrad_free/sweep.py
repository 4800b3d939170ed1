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
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import socket
import sys
import tempfile
import time
import traceback
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import numpy as np

from .callbacks import Callback
from .fileio import atomic_write_text
from .tracking import start_wandb_run

try:  # POSIX advisory locks; without them the single O_APPEND write is still atomic on local disks
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

ROOT = Path(__file__).resolve().parents[1]

METHODS = ("random", "grid", "bayes")
GOALS = ("maximize", "minimize")
DISTRIBUTIONS = ("constant", "categorical", "int_uniform", "uniform", "q_uniform", "log_uniform",
                 "log_uniform_values", "q_log_uniform", "q_log_uniform_values")
# wandb knows these too, but they have no bounded Optuna counterpart.
WANDB_ONLY_DISTRIBUTIONS = ("inv_log_uniform", "inv_log_uniform_values", "normal", "q_normal",
                            "log_normal", "q_log_normal", "beta", "q_beta")
EARLY_TERMINATE = ("hyperband", "median")
SPEC_KEYS = ("value", "values", "min", "max", "distribution", "q", "probabilities")
METRICS = ("val_accuracy", "val_loss", "train_accuracy", "train_loss")
TOP_LEVEL_KEYS = ("name", "description", "method", "metric", "parameters", "early_terminate", "run_cap",
                  "program", "command", "project", "entity")

#: Values a trial uses for every option its sweep does not set. Kept here rather than taken from
#: models/fashion_mnist_best.yaml so that a sweep means the same thing after the best config changes.
DEFAULTS: dict[str, Any] = {
    "dataset": "fashion_mnist",
    "epochs": 5,
    "batch_size": 32,
    "loss": "cross_entropy",
    "optimizer": "nadam",
    "learning_rate": 1e-3,
    "momentum": 0.9,
    "beta": 0.9,
    "beta1": 0.9,
    "beta2": 0.999,
    "epsilon": 1e-8,
    "weight_decay": 0.0,
    "weight_init": "xavier",
    "num_layers": 3,
    "hidden_size": 128,
    "activation": "tanh",
    "lr_schedule": "constant",
    "shift": 0,
    "seed": 0,
}

ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu")
INITS = ("random", "xavier", "he")
LOSS_NAMES = {"cross_entropy": "cross_entropy", "crossentropy": "cross_entropy",
              "mean_squared_error": "mean_squared_error", "mse": "mean_squared_error",
              "squared_error": "mean_squared_error"}
DATASETS = {"fashion_mnist": "fashion_mnist", "fashion-mnist": "fashion_mnist", "mnist": "mnist"}

# Options scripts/train.py's run name already shows; others a sweep varies are appended.
_NAMED_IN_RUN_NAME = ("num_layers", "hidden_size", "batch_size", "activation", "optimizer", "learning_rate",
                      "weight_decay", "weight_init", "epochs", "loss", "lr_schedule", "shift")
_SHORT = {"momentum": "mom", "beta": "beta", "beta1": "b1", "beta2": "b2", "epsilon": "eps", "seed": "seed",
          "dataset": "ds"}

STATUSES = ("completed", "diverged", "pruned", "stopped", "failed")


# --------------------------------------------------------------------------------------------
# Trial configurations
# --------------------------------------------------------------------------------------------


def _number(key, value, kind=float):
    """``value`` as a number; YAML 1.1 reads ``1e-3`` (no dot) as a string, so strings are parsed."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{key} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{key} must be a number, got {value!r}")
    if kind is int:
        if float(value) != int(value):
            raise ValueError(f"{key} must be an integer, got {value!r}")
        return int(value)
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{key} must be finite, got {value!r}")
    return value


def _choice(key, value, table):
    name = str(value).strip().lower()
    if name not in table:
        names = list(dict.fromkeys(table.values() if isinstance(table, dict) else table))
        raise ValueError(f"{key}: unknown value {value!r}; choose one of {', '.join(names)} (any case)")
    return table[name] if isinstance(table, dict) else name


def check_value(key, value):
    """Validate and canonicalise one option of a trial configuration.

    Parameters
    ----------
    key : str
        One of :data:`DEFAULTS`.
    value : object
        Its value as written in YAML (strings of numbers are accepted, names in any case).

    Returns
    -------
    object
        The canonical value: lower-case names (``ReLU`` -> ``relu``, ``Xavier`` -> ``xavier``,
        ``mse`` -> ``mean_squared_error``), ints for counts, floats for rates.

    Raises
    ------
    ValueError
        Naming the option, the bad value and what is allowed.
    """
    if key not in DEFAULTS:
        raise ValueError(f"unknown option {key!r}; a trial configuration may set: {', '.join(DEFAULTS)}")
    if key == "activation":
        return _choice(key, value, ACTIVATIONS)
    if key == "weight_init":
        return _choice(key, value, {"random": "random", "xavier": "xavier", "glorot": "xavier", "he": "he"})
    if key == "loss":
        return _choice(key, value, LOSS_NAMES)
    if key == "dataset":
        return _choice(key, value, DATASETS)
    if key == "optimizer":
        from . import optim
        return _choice(key, value, optim.available())
    if key == "lr_schedule":
        from .optim import schedule
        return _choice(key, value, tuple(schedule.SCHEDULES))
    if key == "hidden_size" and isinstance(value, (list, tuple)):
        widths = [_number(key, v, int) for v in value]
        if not widths or min(widths) <= 0:
            raise ValueError(f"hidden_size: widths must be positive integers, got {value!r}")
        return widths
    if key in ("epochs", "batch_size", "hidden_size"):
        value = _number(key, value, int)
        if value <= 0:
            raise ValueError(f"{key} must be a positive integer, got {value}")
        return value
    if key in ("num_layers", "shift"):
        value = _number(key, value, int)
        if value < 0:
            raise ValueError(f"{key} must be a non-negative integer, got {value}")
        return value
    if key == "seed":
        return _number(key, value, int)
    value = _number(key, value)
    if key == "learning_rate" and not value > 0:
        raise ValueError(f"learning_rate must be positive, got {value}")
    if key in ("weight_decay", "epsilon") and value < 0:
        raise ValueError(f"{key} must be non-negative, got {value}")
    if key in ("momentum", "beta", "beta1", "beta2") and not 0 <= value < 1:
        raise ValueError(f"{key} must be in [0, 1), got {value}")
    return value


def normalize_config(config):
    """A complete, validated trial configuration: :data:`DEFAULTS` updated with ``config``.

    Raises
    ------
    ValueError
        For an unknown option (the message lists the known ones) or a bad value.
    """
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; a trial configuration may set: {', '.join(DEFAULTS)}")
    merged = {**DEFAULTS, **config}
    return {k: check_value(k, v) for k, v in merged.items()}


_TRAIN_CLI = None


def train_cli():
    """scripts/train.py as a module, so run names and optimizer arguments match the CLI exactly."""
    global _TRAIN_CLI
    if _TRAIN_CLI is None:
        path = ROOT / "scripts" / "train.py"
        spec = importlib.util.spec_from_file_location("_tinygrad_free_train_cli", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _TRAIN_CLI = module
    return _TRAIN_CLI


def _as_args(config):
    """An argparse namespace as scripts/train.py builds it: every flag present (None when unset),
    so its helpers keep working when it gains options the sweep does not know about."""
    try:
        base = vars(train_cli().build_parser().parse_args([]))
    except SystemExit:  # a future required flag; fall back to the config alone
        base = {}
    return SimpleNamespace(**{**base, **config})


def _format_value(value):
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "-".join(str(v) for v in value)
    return str(value)


def run_name(config, varied=()):
    """The configuration in a run name, in scripts/train.py's format.

    ``hl_3_sz_128_bs_16_ac_tanh_opt_nadam_lr_1e-3_wd_0_init_xavier_ep_5``; options in ``varied``
    that this format does not show (``momentum``, ``seed``, ...) are appended as ``_mom_0.9``.
    """
    config = normalize_config(config)
    args = dict(config)
    if isinstance(args["hidden_size"], list):
        args["hidden_size"] = _format_value(args["hidden_size"])
    name = train_cli().run_name(_as_args(args))
    for key in varied:
        if key not in _NAMED_IN_RUN_NAME and key in _SHORT:
            name += f"_{_SHORT[key]}_{_format_value(config[key])}"
    return name


# --------------------------------------------------------------------------------------------
# Training one configuration
# --------------------------------------------------------------------------------------------

_DATA_CACHE: dict = {}


def get_data(dataset="fashion_mnist", data_dir=None, seed=0):
    """The dataset's train/validation/test split, loaded once per process and reused by later trials."""
    from .data import load_split
    key = (dataset, str(data_dir) if data_dir else None, int(seed))
    if key not in _DATA_CACHE:
        if len(_DATA_CACHE) >= 2:  # a sweep rarely needs more than one split; bound the memory
            _DATA_CACHE.pop(next(iter(_DATA_CACHE)))
        _DATA_CACHE[key] = load_split(dataset, data_dir=data_dir, seed=int(seed))
    return _DATA_CACHE[key]


def _clean(value):
    """JSON-safe copy: numpy scalars to Python, NaN/inf to None (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def _finite(values):
    return [v for v in values if v is not None and isinstance(v, (int, float)) and math.isfinite(v)]


def run_trial(config, data=None, *, limit=None, data_dir=None, callbacks=(), evaluate_test=True, save=None):
    """Train one configuration and summarise the run.

    Parameters
    ----------
    config : dict
        Trial options (see :data:`DEFAULTS`; missing ones take the default).
    data : tinygrad_free.data.Split, optional
        The split to use; loaded with :func:`get_data` (seeded by ``config["seed"]``, as
        scripts/train.py does) when omitted.
    limit : int, optional
        Train on the first ``limit`` training images only (validation and test stay whole).
    data_dir : str, optional
        Where the datasets are, when ``data`` is omitted.
    callbacks : sequence of Callback
        Extra callbacks, e.g. a :class:`PruningCallback` or a ``WandbLogger``.
    evaluate_test : bool, default True
        Measure the final model's test accuracy (skipped for a diverged run).
    save : str, optional
        Save the final model to this ``.npz`` path.

    Returns
    -------
    dict
        ``status`` (``completed``, ``diverged``, ``pruned`` or ``stopped``), ``message``,
        ``history`` (per-epoch lists), ``val_accuracy`` (last epoch), ``val_accuracy_best``,
        ``val_loss``, ``train_loss``, ``train_accuracy``, ``test_accuracy``, ``epochs_run``,
        ``seconds`` (wall time including evaluation), ``train_seconds``, ``config``.
    """
    _ensure_root()
    from models import build_mlp
    from . import nn, optim
    from .augment import RandomShift
    from .train import Trainer

    cfg = normalize_config(config)
    if data is None:
        data = get_data(cfg["dataset"], data_dir, cfg["seed"])
    x_train, y_train = data.x_train, data.y_train
    if limit:
        x_train, y_train = x_train[:int(limit)], y_train[:int(limit)]
    start = time.perf_counter()
    model = build_mlp(x_train.shape[1], None if isinstance(cfg["hidden_size"], list) else cfg["num_layers"],
                      cfg["hidden_size"], cfg["activation"], cfg["weight_init"],
                      num_classes=len(data.class_names), rng=cfg["seed"])
    opt = optim.create(cfg["optimizer"], model.parameters(), **train_cli().optimizer_kwargs(_as_args(cfg)))
    trainer = Trainer(model, nn.get_loss(cfg["loss"]), opt, list(callbacks), progress=False)
    side = math.isqrt(x_train.shape[1])
    augment = RandomShift(cfg["shift"], (side, side)) if cfg["shift"] else None
    history = trainer.fit(x_train, y_train, epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                          validation_data=(data.x_val, data.y_val), seed=cfg["seed"],
                          lr_schedule=cfg["lr_schedule"], augment=augment)
    status = history.status
    if status == "stopped" and any(getattr(cb, "pruned_at", None) for cb in callbacks):
        status = "pruned"
    test_accuracy = float("nan")
    if evaluate_test and status != "diverged":
        test_accuracy = trainer.evaluate(data.x_test, data.y_test)[1]
    if save and status != "diverged":
        model.save(save)
    h = history.history
    val_acc = _finite(h.get("val_accuracy", []))
    return _clean({
        "status": status,
        "message": history.message,
        "config": cfg,
        "history": {k: list(v) for k, v in h.items()},
        "val_accuracy": history.last("val_accuracy"),
        "val_accuracy_best": max(val_acc) if val_acc else None,
        "val_loss": history.last("val_loss"),
        "train_loss": history.last("train_loss"),
        "train_accuracy": history.last("train_accuracy"),
        "test_accuracy": test_accuracy,
        "epochs_run": len(h.get("epoch", [])),
        "train_size": int(len(x_train)),
        "seconds": time.perf_counter() - start,
        "train_seconds": float(sum(h.get("train_seconds", []))),
        "compile_seconds": history.compile_seconds,
    })


class PruningCallback(Callback):
    """Report the sweep metric to an Optuna trial each epoch and stop training when it is pruned.

    Parameters
    ----------
    trial : optuna.trial.Trial
    metric : str
        Key of the epoch logs to report (``val_accuracy``).
    epochs : int, optional
        The run's last epoch: reported but never pruned, since the training is done by then.

    Attributes
    ----------
    pruned_at : int or None
        Epoch after which the pruner stopped the run.
    """

    def __init__(self, trial, metric="val_accuracy", epochs=None):
        self.trial, self.metric, self.epochs = trial, metric, epochs
        self.pruned_at = None

    def on_epoch_end(self, trainer, logs):
        value = logs.get(self.metric)
        if value is None or not math.isfinite(value):
            return
        self.trial.report(float(value), step=int(logs["epoch"]))
        if self.epochs is not None and logs["epoch"] >= self.epochs:
            return
        if self.trial.should_prune():
            self.pruned_at = int(logs["epoch"])
            trainer.stop_training = True
            trainer.stop_reason = f"pruned after epoch {self.pruned_at} ({self.metric} {value:.4f})"


# --------------------------------------------------------------------------------------------
# Sweep files
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """One parameter of a sweep, translated for Optuna.

    ``distribution`` is the Optuna distribution ``trial`` samples from (None for a constant);
    ``q`` rounds log-uniform samples (Optuna cannot step a log scale); ``encoded`` marks
    categorical choices Optuna cannot store (lists), kept as JSON strings and decoded on use.
    """

    name: str
    kind: str
    distribution: Any = None
    value: Any = None
    q: Optional[float] = None
    encoded: bool = False

    def choices(self):
        """Every value of a constant or categorical parameter (decoded)."""
        if self.kind == "constant":
            return [self.value]
        return [_decode(c) if self.encoded else c for c in self.distribution.choices]


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file.

    Attributes
    ----------
    name : str
    method : {"random", "grid", "bayes"}
    metric : str
    goal : {"maximize", "minimize"}
    params : dict of str to Param
    early_terminate : dict or None
    run_cap : int or None
    raw : dict
        The file as read, for ``wandb.sweep``.
    """

    name: str
    method: str
    metric: str
    goal: str
    params: dict
    early_terminate: Optional[dict] = None
    run_cap: Optional[int] = None
    raw: dict = field(default_factory=dict)

    @property
    def varied(self):
        """Parameters with more than one possible value."""
        return [n for n, p in self.params.items() if p.kind != "constant"
                and not (p.kind == "categorical" and len(p.distribution.choices) == 1)]

    def distributions(self):
        """``{name: optuna distribution}`` of the sampled (non-constant) parameters."""
        return {n: p.distribution for n, p in self.params.items() if p.distribution is not None}

    def grid(self):
        """``{name: [values]}`` for Optuna's GridSampler (grid method only)."""
        return {n: list(p.distribution.choices) for n, p in self.params.items() if p.distribution is not None}

    def grid_size(self):
        return int(np.prod([len(v) for v in self.grid().values()])) if self.method == "grid" else None

    def constants(self):
        return {n: p.value for n, p in self.params.items() if p.kind == "constant"}


def _encode(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value, False
    return "json:" + json.dumps(value), True


def _decode(value):
    if isinstance(value, str) and value.startswith("json:"):
        return json.loads(value[5:])
    return value


def _categorical(name, values, checked):
    import optuna
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"parameter {name!r}: 'values' must be a non-empty list, got {values!r}")
    choices, encoded = [], False
    for v in values:
        c, enc = _encode(checked(v))
        encoded |= enc
        if c in choices:
            raise ValueError(f"parameter {name!r}: value {v!r} is listed twice")
        choices.append(c)
    return Param(name, "categorical", optuna.distributions.CategoricalDistribution(choices), encoded=encoded)


def _parse_param(name, spec, method, checked):
    import optuna
    from optuna.distributions import FloatDistribution, IntDistribution

    if not isinstance(spec, dict):
        raise ValueError(f"parameter {name!r}: expected a mapping such as {{values: [...]}}, "
                         f"{{value: ...}} or {{min: ..., max: ...}}, got {spec!r}")
    if "parameters" in spec:
        raise ValueError(f"parameter {name!r}: nested parameters are not supported; flatten them")
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise ValueError(f"parameter {name!r}: unknown key(s) {unknown}; allowed: {', '.join(SPEC_KEYS)}")
    dist = spec.get("distribution")
    if dist is not None and dist not in DISTRIBUTIONS:
        if dist in WANDB_ONLY_DISTRIBUTIONS:
            raise ValueError(f"parameter {name!r}: distribution {dist!r} is supported by the wandb backend only; "
                             f"the local backend supports: {', '.join(DISTRIBUTIONS)}")
        raise ValueError(f"parameter {name!r}: unknown distribution {dist!r}; choose one of "
                         f"{', '.join(DISTRIBUTIONS)}")
    if "value" in spec:
        if len(spec) > 1 + (dist == "constant"):
            raise ValueError(f"parameter {name!r}: 'value' (a constant) cannot be combined with "
                             f"{sorted(set(spec) - {'value', 'distribution'})}")
        return Param(name, "constant", value=checked(spec["value"]))
    if "values" in spec:
        if dist not in (None, "categorical"):
            raise ValueError(f"parameter {name!r}: 'values' is a categorical parameter, not {dist!r}")
        if "probabilities" in spec:
            warnings.warn(f"parameter {name!r}: 'probabilities' is ignored by the local backend "
                          "(Optuna samples categorical values uniformly)", stacklevel=3)
        return _categorical(name, spec["values"], checked)
    if "min" not in spec or "max" not in spec:
        raise ValueError(f"parameter {name!r}: give 'value', 'values', or both 'min' and 'max' "
                         f"(got {sorted(spec)})")
    lo, hi = _number(f"{name}.min", spec["min"]), _number(f"{name}.max", spec["max"])
    if dist is None:
        both_int = all(isinstance(spec[k], int) and not isinstance(spec[k], bool) for k in ("min", "max"))
        dist = "int_uniform" if both_int else "uniform"
    if dist in ("constant", "categorical"):
        raise ValueError(f"parameter {name!r}: distribution {dist!r} needs 'value'/'values', not min/max")
    if lo > hi:
        raise ValueError(f"parameter {name!r}: min {lo:g} is greater than max {hi:g}")
    q = None
    if dist.startswith("q_"):
        q = _number(f"{name}.q", spec.get("q", 1.0))
        if q <= 0:
            raise ValueError(f"parameter {name!r}: q must be positive, got {q:g}")
    elif "q" in spec:
        raise ValueError(f"parameter {name!r}: 'q' only applies to the q_* distributions, not {dist!r}")
    if dist in ("log_uniform", "q_log_uniform"):
        # wandb's log_uniform takes the bounds as natural-log exponents.
        lo, hi = math.exp(lo), math.exp(hi)
    if dist == "int_uniform":
        lo_i, hi_i = _number(f"{name}.min", spec["min"], int), _number(f"{name}.max", spec["max"], int)
        for v in (lo_i, hi_i):
            checked(v)
        if method == "grid":
            return _categorical(name, list(range(lo_i, hi_i + 1)), checked)
        return Param(name, dist, IntDistribution(lo_i, hi_i))
    if "log" in dist and lo <= 0:
        raise ValueError(f"parameter {name!r}: {dist} needs min > 0, got {lo:g}")
    for v in (lo, hi):
        checked(v)
    if method == "grid":
        if dist == "q_uniform":
            n = int(math.floor((hi - lo) / q + 1e-9)) + 1
            return _categorical(name, [round(lo + i * q, 12) for i in range(n)], checked)
        raise ValueError(f"parameter {name!r}: grid search needs a finite set of values, but {dist} is "
                         "continuous; use 'values: [...]', int_uniform or q_uniform")
    if dist == "q_uniform":
        return Param(name, dist, FloatDistribution(lo, hi, step=q))
    if dist in ("log_uniform", "log_uniform_values", "q_log_uniform", "q_log_uniform_values"):
        return Param(name, dist, FloatDistribution(lo, hi, log=True), q=q)
    assert dist == "uniform", dist
    return Param(name, dist, optuna.distributions.FloatDistribution(lo, hi))


def _check_early_terminate(et):
    if et is None:
        return None
    if not isinstance(et, dict) or "type" not in et:
        raise ValueError(f"early_terminate must be a mapping with a 'type' ({', '.join(EARLY_TERMINATE)}), got {et!r}")
    allowed = {"hyperband": {"type", "min_iter", "max_iter", "s", "eta", "strict"},
               "median": {"type", "min_iter", "n_startup_trials"}}
    kind = et["type"]
    if kind not in allowed:
        raise ValueError(f"early_terminate: unknown type {kind!r}; choose one of {', '.join(EARLY_TERMINATE)}")
    unknown = sorted(set(et) - allowed[kind])
    if unknown:
        raise ValueError(f"early_terminate ({kind}): unknown key(s) {unknown}; allowed: {sorted(allowed[kind])}")
    if kind == "hyperband" and "min_iter" not in et and "max_iter" not in et:
        raise ValueError("early_terminate (hyperband): give min_iter, or max_iter with s")
    for key in ("min_iter", "max_iter", "s", "eta", "n_startup_trials"):
        if key in et:
            v = _number(f"early_terminate.{key}", et[key], int)
            if v < (0 if key in ("s", "n_startup_trials") else 1):
                raise ValueError(f"early_terminate.{key} must be a positive integer, got {et[key]!r}")
    return dict(et)


def parse_assignment(text):
    """``KEY=VALUE`` from the command line (``--set epochs=1``); VALUE is read as YAML, so numbers
    and lists work. For argparse: a bad one raises ``ArgumentTypeError`` naming the allowed keys."""
    import argparse

    import yaml
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    if key not in DEFAULTS:
        raise argparse.ArgumentTypeError(f"unknown option {key!r}; choose one of {', '.join(DEFAULTS)}")
    return key, yaml.safe_load(value)


def parse_sweep(raw, name=None, overrides=None, method=None):
    """Translate a wandb sweep configuration into a :class:`SweepSpec`.

    Parameters
    ----------
    raw : dict
        The sweep file's content.
    name : str, optional
        Sweep name when the file has none.
    overrides : dict, optional
        Parameters fixed to a constant, e.g. ``{"epochs": 1}`` for a quick try.
    method : str, optional
        Replaces the file's method (``random``, ``grid`` or ``bayes``).

    Raises
    ------
    ValueError
        For an unknown method, goal, metric, parameter specification or trial option; the
        message names what is allowed.
    """
    if not isinstance(raw, dict):
        raise ValueError(f"a sweep file must be a mapping with method, metric and parameters; got {type(raw).__name__}")
    raw = dict(raw)
    unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ValueError(f"unknown sweep key(s) {unknown}; allowed: {', '.join(TOP_LEVEL_KEYS)}")
    if method is not None:
        raw["method"] = method
    method = raw.get("method")
    if method not in METHODS:
        raise ValueError(f"unknown sweep method {method!r}; choose one of {', '.join(METHODS)}")
    metric = raw.get("metric") or {"name": "val_accuracy", "goal": "maximize"}
    if not isinstance(metric, dict) or "name" not in metric:
        raise ValueError(f"metric must be a mapping with 'name' and 'goal', got {metric!r}")
    if metric["name"] not in METRICS:
        raise ValueError(f"unknown metric {metric['name']!r}; each trial logs {', '.join(METRICS)}")
    goal = metric.get("goal", "minimize")  # wandb's default goal
    if goal not in GOALS:
        raise ValueError(f"unknown metric goal {goal!r}; choose one of {', '.join(GOALS)}")
    params_raw = dict(raw.get("parameters") or {})
    for key, value in (overrides or {}).items():
        params_raw[key] = {"value": value}
    raw["parameters"] = params_raw
    if not params_raw:
        raise ValueError("the sweep has no parameters")
    params = {}
    for pname, spec in params_raw.items():
        if pname not in DEFAULTS:
            raise ValueError(f"unknown parameter {pname!r}; a sweep may set: {', '.join(DEFAULTS)}")
        params[pname] = _parse_param(pname, spec, method, lambda v, k=pname: check_value(k, v))
    run_cap = raw.get("run_cap")
    if run_cap is not None:
        run_cap = _number("run_cap", run_cap, int)
        if run_cap <= 0:
            raise ValueError(f"run_cap must be a positive integer, got {run_cap}")
    return SweepSpec(name=str(raw.get("name") or name or "sweep"), method=method, metric=metric["name"],
                     goal=goal, params=params, early_terminate=_check_early_terminate(raw.get("early_terminate")),
                     run_cap=run_cap, raw=raw)


def load_sweep(path, overrides=None, method=None):
    """Read a sweep YAML file; see :func:`parse_sweep`. The name defaults to the file's stem."""
    import yaml
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no sweep file {str(path)!r}")
    with open(path) as f:
        raw = yaml.safe_load(f)
    try:
        return parse_sweep(raw, name=path.stem, overrides=overrides, method=method)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def make_sampler(spec, seed=None):
    """Optuna sampler for the sweep's method: random -> Random, grid -> Grid, bayes -> TPE."""
    import optuna
    if spec.method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.method == "grid":
        return optuna.samplers.GridSampler(spec.grid(), seed=seed)
    if spec.method == "bayes":
        # constant_liar keeps parallel workers from proposing the same point while trials run.
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    raise ValueError(f"unknown sweep method {spec.method!r}; choose one of {', '.join(METHODS)}")


def make_pruner(spec):
    """Optuna pruner for ``early_terminate``: HyperbandPruner, MedianPruner or NopPruner.

    wandb's hyperband brackets sit at ``max_iter / eta**k`` for ``k = 1..s``, so without
    ``min_iter`` the smallest resource is ``max_iter / eta**s``.
    """
    import optuna
    et = spec.early_terminate
    if not et:
        return optuna.pruners.NopPruner()
    if et["type"] == "hyperband":
        eta = int(et.get("eta", 3))
        max_iter = et.get("max_iter")
        if "min_iter" in et:
            min_resource = int(et["min_iter"])
        else:
            min_resource = max(1, int(int(max_iter) / eta ** int(et.get("s", 0))))
        return optuna.pruners.HyperbandPruner(min_resource=min_resource,
                                              max_resource=int(max_iter) if max_iter else "auto",
                                              reduction_factor=eta)
    return optuna.pruners.MedianPruner(n_startup_trials=int(et.get("n_startup_trials", 5)),
                                       n_warmup_steps=int(et.get("min_iter", 1)))


def suggest_params(trial, spec):
    """Sample every parameter of ``spec`` from an Optuna ``trial`` (constants included, decoded)."""
    params = {}
    for name, p in spec.params.items():
        if p.kind == "constant":
            value = p.value
        elif p.kind == "categorical":
            value = trial.suggest_categorical(name, p.distribution.choices)
            value = _decode(value) if p.encoded else value
        elif p.kind == "int_uniform":
            value = trial.suggest_int(name, p.distribution.low, p.distribution.high)
        else:
            d = p.distribution
            value = trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)
            if p.q:
                # Round on the log scale's samples as wandb's q_log_* do, staying inside the bounds.
                value = float(min(max(round(value / p.q) * p.q, d.low), d.high))
        params[name] = value
    return params


# --------------------------------------------------------------------------------------------
# Results file
# --------------------------------------------------------------------------------------------


def append_jsonl(path, record):
    """Append ``record`` as one JSON line.

    The line goes out in a single ``write`` on an ``O_APPEND`` descriptor under an exclusive
    ``flock``, so lines from many processes never interleave and a crash leaves at most one
    partial last line (which :func:`read_results` skips).
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    line = (json.dumps(_clean(record), sort_keys=False, allow_nan=False) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        written = os.write(fd, line)
        if written != len(line):  # pragma: no cover - only on a full disk
            raise OSError(f"{path}: short write ({written} of {len(line)} bytes)")
        os.fsync(fd)
    finally:
        os.close(fd)


def read_results(path):
    """The records of a results JSONL file (a torn last line from a crash is skipped)."""
    records = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                warnings.warn(f"{path}:{i}: skipping a line that is not valid JSON (torn write?)", stacklevel=2)
    return records


# --------------------------------------------------------------------------------------------
# wandb
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Local backend (Optuna)
# --------------------------------------------------------------------------------------------


def default_storage(sweep_path, study_name):
    """``sqlite:///<folder of the sweep file>/<study_name>.db``."""
    folder = Path(sweep_path).resolve().parent if sweep_path else Path.cwd()
    return f"sqlite:///{folder / (study_name + '.db')}"


def default_results(storage, study_name, sweep_path=None):
    """Results file next to the study: ``X.jsonl`` beside a SQLite ``X.db``."""
    if storage.startswith("sqlite:///") and storage[len("sqlite:///"):] not in ("", ":memory:"):
        db = Path(storage[len("sqlite:///"):])
        return str(db.with_name(f"{db.stem}.jsonl" if db.stem == study_name else f"{db.stem}-{study_name}.jsonl"))
    folder = Path(sweep_path).resolve().parent if sweep_path else Path.cwd()
    return str(folder / f"{study_name}.jsonl")


_HEARTBEAT_INTERVAL = 30  # seconds; a trial silent for _GRACE seconds belongs to a dead process
_GRACE = 90
_MAX_RETRY = 2


def _retry_callback():
    import optuna
    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # marked experimental
        return cls(max_retry=_MAX_RETRY)


#: What a machine installs to reach a PostgreSQL study (setup.cfg's ``postgres`` extra: psycopg 3).
POSTGRES_INSTALL = "pip install 'tinygrad_free[postgres]'"
# SQLAlchemy dialects for PostgreSQL with the module each imports, in the order tried for a plain
# ``postgresql://`` URL after SQLAlchemy's own default (psycopg2 up to SQLAlchemy 2.0, psycopg from 2.1).
_POSTGRES_DRIVERS = ("psycopg", "psycopg2")
_POSTGRES_PACKAGES = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary"}


def display_url(url):
    """``url`` with its password replaced by ``***``, for messages and logs."""
    if "://" not in url or url.startswith("sqlite"):
        return url
    try:
        from sqlalchemy.engine import make_url
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy parses; show the scheme only  # noqa: BLE001
        return url.split("://", 1)[0] + "://..."


def _dialect_dbapi_ok(drivername):
    """True when SQLAlchemy has the dialect ``drivername`` and its DBAPI module imports."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import NoSuchModuleError
    try:
        dialect = make_url(f"{drivername}://").get_dialect()
        importer = getattr(dialect, "import_dbapi", None) or dialect.dbapi  # SQLAlchemy 2.x / 1.4
        importer()
    except (ImportError, NoSuchModuleError):  # no driver module / no such dialect in this SQLAlchemy
        return False
    return True


def resolve_storage_url(url):
    """The URL SQLAlchemy opens for the storage ``url``, checking its database driver first.

    SQLite URLs come back unchanged. ``postgresql://user@host/db`` names no driver, and
    SQLAlchemy's default for it changed from psycopg2 (up to 2.0) to psycopg 3 (2.1), so the URL is
    pointed at whichever driver imports: SQLAlchemy's default first, then ``psycopg``, then
    ``psycopg2``; ``postgres://`` (Heroku's spelling) is read as ``postgresql://``. A URL naming
    its driver (``postgresql+psycopg2://``) is used as typed.

    Raises
    ------
    ImportError
        When no PostgreSQL driver imports, naming the URL (password hidden) and the extra that
        installs one, before any study is touched (Optuna would otherwise stop in a traceback).
    """
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "postgres":
        scheme, url = "postgresql", "postgresql" + url[len("postgres"):]
    if scheme.split("+", 1)[0] != "postgresql":
        return url
    if scheme == "postgresql":
        from sqlalchemy.engine import make_url
        default = make_url(url).get_dialect().driver
        candidates = [default] + [d for d in _POSTGRES_DRIVERS if d != default]
    else:
        candidates = [scheme.split("+", 1)[1]]
    for driver in candidates:
        if _dialect_dbapi_ok(f"postgresql+{driver}"):
            return url if scheme != "postgresql" or driver == candidates[0] else \
                f"postgresql+{driver}" + url[len(scheme):]
    if scheme != "postgresql":
        package = _POSTGRES_PACKAGES.get(candidates[0], candidates[0])
        raise ImportError(f"storage {display_url(url)} names the PostgreSQL driver {candidates[0]!r}, which is "
                          f"not installed: pip install '{package}', or write postgresql:// and "
                          f"{POSTGRES_INSTALL}")
    raise ImportError(f"storage {display_url(url)} needs a PostgreSQL driver ({' or '.join(candidates)}), "
                      f"and none is installed: {POSTGRES_INSTALL}")


def open_storage(url):
    """An Optuna storage for ``url`` with heartbeats, so trials of a dead process are retried.

    SQLite gets a long busy timeout because several worker processes write to one file;
    PostgreSQL URLs go through :func:`resolve_storage_url` (driver choice, clear missing-driver error)
    and get ``pool_pre_ping``, so a connection the server dropped while a long trial trained
    is replaced instead of failing the trial's ``tell``.
    """
    import optuna
    url = resolve_storage_url(url)
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    engine_kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else None
    if url.startswith("postgresql"):
        engine_kwargs = {"pool_pre_ping": True}
    params = {"heartbeat_interval": _HEARTBEAT_INTERVAL, "grace_period": _GRACE}
    import inspect
    names = inspect.signature(optuna.storages.RDBStorage.__init__).parameters
    key = "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in names else "failed_trial_callback"
    params[key] = _retry_callback()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # heartbeat options are marked experimental in some versions
        if url.startswith("sqlite"):
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **params)
        return _rdb_storage_racing_others(url, engine_kwargs, params)


def _rdb_storage_racing_others(url, engine_kwargs, params, attempts=5):
    """``RDBStorage(url)``, retried while other machines create the same tables.

    Optuna creates its tables and its version row when a storage opens, without ``IF NOT EXISTS``;
    on an empty server database, machines joining at once collide there (PostgreSQL: duplicate
    table or key). The loser retries and finds the winner's tables. SQLite processes take a file
    lock instead (``_FileLock``), which the machines of a server database cannot share.
    """
    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError
    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **params)
        except (IntegrityError, ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def _lock_path(storage_url, study_name):
    if storage_url.startswith("sqlite:///"):
        path = storage_url[len("sqlite:///"):]
        if path and path != ":memory:":
            folder, base = os.path.split(os.path.abspath(path))
            return os.path.join(folder, f".{base}.{study_name}.lock")
    import hashlib
    digest = hashlib.sha1(f"{storage_url}|{study_name}".encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"tinygrad_free-sweep-{digest}.lock")


class _FileLock:
    """An exclusive ``flock`` that can be released from inside the trial (release is idempotent).

    It serialises "count trials, then create one" between the processes of one machine, so N
    workers never start more trials than the target. A PostgreSQL study takes a
    :class:`_PostgresLock` instead, which holds across machines.
    """

    def __init__(self, path):
        self.path, self.fd = path, None

    def acquire(self):
        if self.fd is None:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if fcntl is not None:
                fcntl.flock(self.fd, fcntl.LOCK_EX)

    def release(self):
        if self.fd is not None:
            fd, self.fd = self.fd, None
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class _PostgresLock:
    """:class:`_FileLock` for a study on a PostgreSQL server: ``pg_advisory_lock`` on a session of its own.

    The lock lives in the server, so "count trials, then create one" is serialised between the
    workers of every machine and the study ends with exactly ``n_trials`` finished trials, not up
    to one more per machine. The server drops a session-level lock when its session ends, so a
    killed worker never leaves it held. The session is in autocommit: between trials it is idle,
    not idle in a transaction. The key is the first 8 bytes of SHA-1 of the study name.
    """

    def __init__(self, url, study_name):
        import hashlib
        digest = hashlib.sha1(f"tinygrad_free sweep {study_name}".encode()).digest()
        self.url, self.key = url, int.from_bytes(digest[:8], "big", signed=True)
        self.conn, self.held = None, False

    def _lock(self):
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool
        if self.conn is None:
            engine = create_engine(resolve_storage_url(self.url), poolclass=NullPool)
            self.conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        self.conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": self.key})

    def acquire(self):
        if self.held:
            return
        from sqlalchemy.exc import DBAPIError
        try:
            self._lock()
        except DBAPIError as e:
            if not e.connection_invalidated:
                raise
            self.conn = None  # the server dropped the idle session (restart, timeout): open a new one
            self._lock()
        self.held = True

    def release(self):
        if self.held:
            self.held = False
            from sqlalchemy import text
            try:
                self.conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
            except Exception:  # a lost session released its lock with it  # noqa: BLE001
                self.conn = None


def _study_lock(storage_url, study_name):
    """The lock that serialises starting trials of one study: server-wide for PostgreSQL, else per machine."""
    if storage_url.split("://", 1)[0].split("+", 1)[0] in ("postgresql", "postgres"):
        return _PostgresLock(storage_url, study_name)
    return _FileLock(_lock_path(storage_url, study_name))


def _machine_id():
    boot = ""
    with contextlib.suppress(OSError):
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()[:8]
    return f"{socket.gethostname()}:{boot}"


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":  # a zombie is dead, just not reaped yet
                return False
    return True


def fail_dead_trials(study):
    """Fail (and re-queue) RUNNING trials whose process on this machine no longer exists.

    Heartbeats catch dead processes on any machine, but only after the grace period; a sweep
    restarted on the same machine right after being killed should not wait for that.

    Returns
    -------
    int
        How many trials were failed.
    """
    from optuna.trial import TrialState
    me, n = _machine_id(), 0
    retry = _retry_callback()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("machine") != me or t.user_attrs.get("pid") in (None, os.getpid()):
            continue
        if _pid_alive(int(t.user_attrs["pid"])):
            continue
        try:
            if not study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except Exception:  # another process failed it first  # noqa: BLE001
            continue
        retry(study, study._storage.get_trial(t._trial_id))
        n += 1
    return n


def recover_dead_trials(study):
    """Fail and re-queue the RUNNING trials of dead workers, on this machine or any other.

    A worker killed mid-trial (SIGKILL, power loss, a lost machine) leaves its trial RUNNING in
    the shared database, where it would count towards ``n_trials`` forever. Every worker calls
    this before it counts the study's trials, and it uses two signals:

    * same machine: the trial's ``machine``/``pid`` user attributes name a process that no longer
      exists, so it is failed at once (:func:`fail_dead_trials`) -- a killed sweep restarted on
      its machine re-runs the trial without waiting;
    * any machine: the trial's heartbeat (written every ``_HEARTBEAT_INTERVAL`` s by Optuna's
      ``RDBStorage`` heartbeat thread) is older than ``_GRACE`` s, so
      ``optuna.storages.fail_stale_trials`` fails it -- this covers a machine that died, whose
      pids the others cannot check.

    Either way the storage's :class:`optuna.storages.RetryFailedTrialCallback` (at most
    ``_MAX_RETRY`` retries) enqueues the same parameters as a WAITING trial, which the next worker
    to start a trial picks up, so the study still reaches exactly ``n_trials`` finished trials with
    the configurations the sampler chose. The failed trial keeps its FAIL state and writes no
    results line (its process died before it could), so each finished trial is recorded once.

    Returns
    -------
    int
        How many trials this call failed on the pid check (heartbeat failures are not counted).
    """
    import optuna
    n = fail_dead_trials(study)
    optuna.storages.fail_stale_trials(study)
    return n


def _counts(study):
    from optuna.trial import TrialState
    trials = study.get_trials(deepcopy=False)
    finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return finished, running


def _sampler_seed(seed, worker, n_existing, process=None):
    # Different per worker and per resume, so parallel or restarted workers do not replay the
    # same random stream (which would re-run configurations already in the study). Machines that
    # join a server study at once see the same worker index and study size, so there the
    # process ("machine:pid") is mixed in too.
    if seed is None:
        return None
    entropy = [int(seed), int(worker), int(n_existing)]
    if process is not None:
        entropy.append(zlib.crc32(str(process).encode()))
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def _process_salt(storage_url):
    """What tells this process's sampler apart from other machines' (None for SQLite, one machine)."""
    return None if storage_url.startswith("sqlite") else f"{_machine_id()}:{os.getpid()}"


def _set_single_thread_env():
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = "1"


@contextlib.contextmanager
def _child_env(**extra):
    """Environment the spawned workers inherit: one BLAS/numba thread each, set before numpy loads."""
    saved = dict(os.environ)
    _set_single_thread_env()
    os.environ.update(extra)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _ensure_root():
    # models/ and scripts/ live beside the package in the repository.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def _status_value(spec, status, value):
    """The objective value Optuna records; a diverged run gets the worst value so the sweep goes on."""
    if status == "diverged" or value is None or not math.isfinite(value):
        if spec.goal == "maximize":
            return 0.0 if spec.metric.endswith("accuracy") else -math.inf
        return math.inf
    return float(value)


#: The trial user attribute holding a finished trial's whole result (see :func:`results_record`).
RESULT_ATTR = "result"


def results_record(study_name, frozen, result, metric, machine=None, pid=None):
    """The results-file line of the finished trial ``frozen``.

    The worker that ran the trial appends it to its machine's results file; :func:`export_results`
    rebuilds the same line from the study, so both give one shape to :mod:`tinygrad_free.report`.

    Parameters
    ----------
    study_name : str
    frozen : optuna.trial.FrozenTrial
        The trial after Optuna stored its final state.
    result : dict or None
        What :func:`run_trial` returned plus ``run_name``, ``params``, ``started_at``,
        ``finished_at``, ``value``, ``limit`` and ``worker`` (the trial's ``result`` user
        attribute). None for a trial stored without one (a study from before the attribute),
        whose line is rebuilt from its parameters, value and other user attributes.
    metric : str
        The sweep's metric.
    machine, pid : optional
        The worker's; default: the trial's ``machine`` and ``pid`` user attributes.

    Returns
    -------
    dict
        ``study``, ``trial``, ``backend``, ``run_name``, ``status`` (``failed`` for a FAIL trial,
        ``pruned`` for a PRUNED one, else the run's own), ``metric``, ``value`` (Optuna's), then
        the result's entries, then ``limit``, ``machine``, ``pid`` and ``worker``.
    """
    from optuna.trial import TrialState
    result = dict(result or {})
    attrs = frozen.user_attrs
    if not result.get("status") and frozen.state == TrialState.COMPLETE:  # no stored result
        result.setdefault(metric, frozen.value)
        for key in ("test_accuracy", "val_accuracy_best", "seconds"):
            result.setdefault(key, attrs.get(key))
    status = result.pop("status", None) or attrs.get("status") or "completed"
    if frozen.state == TrialState.FAIL:
        status = "failed"
    elif frozen.state == TrialState.PRUNED:
        status = "pruned"
    stored_value = result.pop("value", None)
    value = frozen.value if frozen.value is not None else stored_value
    result.setdefault("params", frozen.params)
    run_name = result.pop("run_name", None) or attrs.get("run_name")
    limit, worker = result.pop("limit", None), result.pop("worker", None)
    return {"study": study_name, "trial": frozen.number, "backend": "local", "run_name": run_name,
            "status": status, "metric": metric, "value": value, **result, "limit": limit,
            "machine": machine if machine is not None else attrs.get("machine"),
            "pid": pid if pid is not None else attrs.get("pid"), "worker": worker}


def export_results(storage, study_name, path, metric="val_accuracy"):
    """Write every finished trial of a study to a results JSONL file, whichever machine ran it.

    Each machine's workers append to their own machine's results file; the study in the shared
    database holds every trial's whole result (its ``result`` user attribute), so this gathers a
    sweep run on many machines into one file for :mod:`tinygrad_free.report`. The lines are
    those :func:`results_record` gives the workers, in trial order; ``path`` is replaced
    atomically.

    Exported: COMPLETE and PRUNED trials, and FAIL trials whose run raised (status ``failed``).
    Left out: RUNNING and WAITING trials, and FAIL trials without a result -- those of a worker
    that was killed, whose parameters were re-queued and re-run as another trial.

    Returns
    -------
    dict
        ``records`` (lines written), ``skipped`` (trials left out) and ``machines`` (lines per
        machine).

    Raises
    ------
    ValueError
        When the storage holds no study ``study_name`` (the message lists those it holds).
    """
    import optuna
    from optuna.trial import TrialState
    if storage.startswith("sqlite:///") and not os.path.exists(storage[len("sqlite:///"):]):
        raise ValueError(f"no study database at {storage}; give the --storage URL the sweep ran with")
    store = open_storage(storage)
    names = [s.study_name for s in store.get_all_studies()]
    if study_name not in names:
        raise ValueError(f"storage {display_url(storage)} holds no study {study_name!r}; "
                         f"its studies: {', '.join(sorted(names)) or 'none'}")
    study = optuna.load_study(study_name=study_name, storage=store)
    records, skipped, machines = [], 0, {}
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        stored = t.user_attrs.get(RESULT_ATTR)
        if not (t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (t.state == TrialState.FAIL and stored)):
            skipped += 1
            continue
        record = _clean(results_record(study_name, t, stored, metric))
        records.append(json.dumps(record, allow_nan=False) + "\n")
        machines[record["machine"]] = machines.get(record["machine"], 0) + 1
    atomic_write_text(path, "".join(records))
    return {"records": len(records), "skipped": skipped, "machines": machines}


class _LocalTrial:
    """The objective and the per-trial bookkeeping of one worker."""

    def __init__(self, job, spec, lock, worker):
        self.job, self.spec, self.lock, self.worker = job, spec, lock, worker
        self.machine = _machine_id()
        self.current = None
        self.result = None
        self.consecutive_failures = 0

    def objective(self, trial):
        import optuna
        self.current, self.result = trial.number, None
        # Claim the trial before letting other workers look: a re-queued trial carries the user
        # attributes of the dead process it came from, and fail_dead_trials would fail it again.
        trial.set_user_attr("machine", self.machine)
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr(RESULT_ATTR, None)
        # The trial exists in the database now, so other workers can count it.
        self.lock.release()
        job, spec = self.job, self.spec
        started = time.time()
        params = suggest_params(trial, spec)
        config, name, run = params, None, None
        try:
            config = normalize_config(params)
            name = run_name(config, spec.varied)
            callbacks = []
            pruner = PruningCallback(trial, spec.metric, config["epochs"]) if spec.early_terminate else None
            if pruner:
                callbacks.append(pruner)
            run = start_wandb_run(job["wandb_mode"], project=job["wandb_project"], entity=job["wandb_entity"],
                                  group=job["study_name"], job_type="sweep", name=name,
                                  config={**config, "trial": trial.number, "study": job["study_name"]})
            if run is not None:
                from .callbacks import WandbLogger
                callbacks.append(WandbLogger(run))
            result = run_trial(config, get_data(config["dataset"], job["data_dir"], config["seed"]),
                               limit=job["limit"], callbacks=callbacks)
        except Exception as e:
            self.result = {"status": "failed", "message": f"{type(e).__name__}: {e}", "config": config,
                           "error": traceback.format_exc(limit=5), "run_name": name, "started_at": started,
                           "finished_at": time.time(), "params": params}
            with contextlib.suppress(Exception):  # the trial's own error is the one to report
                trial.set_user_attr(RESULT_ATTR, self.stored_result())
            if run is not None:
                run.finish(exit_code=1)
            raise
        value = result.get(spec.metric)
        result.update(run_name=name, params=params, started_at=started, finished_at=time.time(),
                      value=_status_value(spec, result["status"], value))
        self.result = result
        for key in ("run_name", "status", "test_accuracy", "val_accuracy_best", "seconds"):
            trial.set_user_attr(key, result.get(key))
        trial.set_user_attr(RESULT_ATTR, self.stored_result())
        if run is not None:
            run.summary.update({"status": result["status"], "test_accuracy": result["test_accuracy"],
                                "val_accuracy_best": result["val_accuracy_best"], "seconds": result["seconds"]})
            run.finish(exit_code=0 if result["status"] != "diverged" else 1)
        if result["status"] == "pruned":
            raise optuna.TrialPruned(result["message"])
        return result["value"]

    def stored_result(self):
        """The trial's result as kept in the study (user attribute ``result``), JSON-safe.

        With it, :func:`export_results` rebuilds this worker's results line on any machine.
        """
        return _clean({**(self.result or {}), "limit": self.job["limit"], "worker": self.worker})

    def record(self, study, frozen):
        """Study callback (runs after Optuna stored the trial's state): append the results line."""
        from optuna.trial import TrialState
        if frozen.state == TrialState.FAIL:
            self.consecutive_failures += 1
        else:
            self.consecutive_failures = 0
        result = self.stored_result() if frozen.number == self.current else \
            {"limit": self.job["limit"], "worker": self.worker}
        record = results_record(study.study_name, frozen, result, self.spec.metric, machine=self.machine,
                                pid=os.getpid())
        append_jsonl(self.job["results"], record)
        if self.job["verbose"]:
            finished, _ = _counts(study)
            acc, test = (record.get(k) for k in ("val_accuracy", "test_accuracy"))
            acc, test = ("-" if v is None else f"{v:.4f}" for v in (acc, test))
            tail = f"  {record.get('message')}" if record["status"] in ("failed", "diverged", "pruned") else ""
            print(f"[w{self.worker}] trial {frozen.number:>3} {record['status']:<9} "
                  f"val_acc {acc}  test_acc {test}  "
                  f"{record.get('seconds') or 0:.1f}s  {record['run_name']}  ({finished}/{self.job['n_trials']} done)"
                  + tail, flush=True)
        if self.consecutive_failures >= 3:
            study.stop()


def _local_worker(job, worker=0):
    """One worker: start trials until the study holds ``n_trials`` finished ones.

    Returns
    -------
    dict
        ``started`` (trials this worker ran) and ``error`` (None or a message).
    """
    _ensure_root()
    import optuna
    from optuna.trial import TrialState

    # Failures are reported on the trial's own line and in the results file.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    spec = parse_sweep(job["raw"], name=job["study_name"])
    lock = _study_lock(job["storage"], job["study_name"])
    lock.acquire()
    try:
        # Under the lock: two processes creating the tables of a new SQLite file at once collide.
        storage = open_storage(job["storage"])
        study = optuna.create_study(storage=storage, study_name=job["study_name"], load_if_exists=True,
                                    direction=spec.goal, pruner=make_pruner(spec),
                                    sampler=make_sampler(spec, None))
        n_existing = len(study.get_trials(deepcopy=False))
        study.sampler = make_sampler(spec, _sampler_seed(job["seed"], worker, n_existing,
                                                         _process_salt(job["storage"])))
    finally:
        lock.release()
    runner = _LocalTrial(job, spec, lock, worker)
    started = 0
    while True:
        lock.acquire()
        try:
            recover_dead_trials(study)
            finished, running = _counts(study)
            if finished >= job["n_trials"] or runner.consecutive_failures >= 3:
                break
            if finished + running >= job["n_trials"]:
                # The remaining trials are running elsewhere; wait in case one of them dies.
                lock.release()
                time.sleep(job["poll"])
                continue
            try:
                study.optimize(runner.objective, n_trials=1, catch=(Exception,), callbacks=[runner.record])
            except ValueError as e:
                # Another worker declared this trial dead (heartbeat lost, e.g. a suspended machine)
                # and re-queued it; its result cannot be stored any more, the re-run will be.
                if "Cannot tell" not in str(e):
                    raise
                print(f"[w{worker}] trial {runner.current} was failed by another worker meanwhile: {e}",
                      file=sys.stderr, flush=True)
            except KeyboardInterrupt:
                # Optuna marked the interrupted trial FAIL; queue its parameters again so a resumed
                # sweep re-runs it instead of sampling a new configuration.
                if runner.current is not None:
                    t = study.get_trials(deepcopy=False)[runner.current]
                    if t.state == TrialState.FAIL:
                        _retry_callback()(study, t)
                raise
            started += 1
        finally:
            lock.release()
    error = None
    if runner.consecutive_failures >= 3:
        error = f"worker {worker}: 3 trials in a row failed; last: {(runner.result or {}).get('message')}"
    return {"started": started, "error": error}


def _worker_entry(job, worker, queue):
    try:
        queue.put((worker, _local_worker(job, worker)))
    except KeyboardInterrupt:
        queue.put((worker, {"started": 0, "error": "interrupted"}))
    except BaseException as e:  # report, do not hang the parent  # noqa: BLE001
        queue.put((worker, {"started": 0, "error": f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=8)}"}))


def run_workers(target, jobs, workers):
    """Run ``target(job, worker, queue)`` in ``workers`` spawned processes with one BLAS thread each.

    Returns
    -------
    list
        What each worker put on the queue, by worker index.
    """
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = []
    with _child_env():
        for w in range(workers):
            p = ctx.Process(target=target, args=(jobs[w], w, queue), daemon=False)
            p.start()
            procs.append(p)
    out = [None] * workers
    try:
        pending = set(range(workers))
        while pending:
            try:
                w, res = queue.get(timeout=1.0)
                out[w] = res
                pending.discard(w)
            except Exception:  # queue.Empty: check for workers that died without a word  # noqa: BLE001
                for w in list(pending):
                    if not procs[w].is_alive() and procs[w].exitcode not in (None, 0):
                        out[w] = {"started": 0, "error": f"worker {w} exited with code {procs[w].exitcode}"}
                        pending.discard(w)
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        # The workers got the same SIGINT and are re-queueing their trials; give them a moment.
        for p in procs:
            p.join(timeout=15)
            if p.is_alive():
                p.terminate()
        raise
    return out


def _train_task(task):
    _ensure_root()
    config, limit, data_dir = task
    try:
        return run_trial(config, limit=limit, data_dir=data_dir)
    except Exception as e:  # one bad configuration should not sink the batch  # noqa: BLE001
        return {"status": "failed", "message": f"{type(e).__name__}: {e}", "config": config}


def map_trials(configs, *, workers=1, limit=None, data_dir=None, verbose=True):
    """Train each configuration (:func:`run_trial`) and return the results in order.

    With ``workers > 1`` the runs are spread over that many spawned processes, each with one
    BLAS thread; a configuration that raises comes back with ``status: failed``.
    """
    tasks = [(dict(c), limit, data_dir) for c in configs]
    results = []

    def show(i, r):
        if verbose:
            acc = r.get("val_accuracy")
            print(f"  [{i + 1}/{len(tasks)}] {r.get('status')} val_acc "
                  f"{'-' if acc is None else f'{acc:.4f}'} {run_name(tasks[i][0], ('seed',))}", flush=True)

    if workers <= 1 or len(tasks) <= 1:
        for i, t in enumerate(tasks):
            results.append(_train_task(t))
            show(i, results[-1])
        return results
    import multiprocessing as mp
    with _child_env():
        pool = mp.get_context("spawn").Pool(min(workers, len(tasks)))
    with pool:
        for i, r in enumerate(pool.imap(_train_task, tasks)):
            results.append(r)
            show(i, r)
    return results


@dataclass
class SweepSummary:
    """What :func:`run_local_sweep` returns."""

    study_name: str
    storage: str
    results: str
    n_finished: int
    seconds: float
    best: Optional[dict]
    errors: list


def best_record(records, metric="val_accuracy", goal="maximize"):
    """The finished record with the best ``metric`` (diverged/failed/pruned runs excluded)."""
    ok = [r for r in records if r.get("status") == "completed" and r.get(metric) is not None]
    if not ok:
        return None
    return (max if goal == "maximize" else min)(ok, key=lambda r: r[metric])


def run_local_sweep(spec, *, n_trials=None, workers=1, storage=None, study_name=None, results=None,
                    limit=None, data_dir=None, seed=0, wandb_mode="disabled", wandb_project="tinygrad_free",
                    wandb_entity=None, sweep_path=None, verbose=True, poll=2.0):
    """Run (or resume, or join) a sweep with Optuna until ``n_trials`` trials have finished.

    Parameters
    ----------
    spec : SweepSpec
    n_trials : int, optional
        Total number of finished (complete or pruned) trials the study should hold; trials from
        earlier or concurrent runs count. Default: ``run_cap``, the grid size, else 20.
    workers : int, default 1
        Trials run at once, each in its own process with one BLAS thread (1 = in this process).
    storage : str, optional
        Optuna storage URL; default ``sqlite:///<sweep folder>/<study_name>.db``. Machines
        sharing one sweep give the same ``postgresql://user:password@host/db`` URL.
    study_name : str, optional
        Default: the sweep's name.
    results : str, optional
        Results JSONL; default next to the study (``<study>.jsonl``).
    limit : int, optional
        Train each trial on this many training images.
    data_dir : str, optional
    seed : int or None, default 0
        Seeds the samplers (mixed with the worker index and the study's size, and for a server
        storage such as PostgreSQL with the machine and process, so that machines joining at
        once do not sample the same configurations).
    wandb_mode : {"online", "offline", "disabled"}
        Each trial is a wandb run in group ``study_name``.
    verbose : bool
        One line per finished trial.

    Returns
    -------
    SweepSummary

    Raises
    ------
    ImportError
        Before anything runs, when ``storage`` is a PostgreSQL URL and no driver is installed
        (see :func:`resolve_storage_url`).
    """
    study_name = study_name or spec.name
    if n_trials is None:
        n_trials = spec.run_cap or spec.grid_size() or 20
    if spec.method == "grid" and n_trials > spec.grid_size():
        if verbose:
            print(f"grid has {spec.grid_size()} points: running {spec.grid_size()} trials, not {n_trials}")
        n_trials = spec.grid_size()
    if isinstance(workers, bool) or int(workers) < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if int(n_trials) < 1:
        raise ValueError(f"n_trials must be a positive integer, got {n_trials!r}")
    storage = storage or default_storage(sweep_path, study_name)
    resolve_storage_url(storage)  # a missing database driver stops here, with the extra to install
    results = results or default_results(storage, study_name, sweep_path)
    job = {"raw": spec.raw, "study_name": study_name, "storage": storage, "results": results,
           "n_trials": int(n_trials), "limit": limit, "data_dir": data_dir, "seed": seed,
           "wandb_mode": wandb_mode, "wandb_project": wandb_project, "wandb_entity": wandb_entity,
           "verbose": verbose, "poll": poll}
    if verbose:
        print(f"sweep {study_name!r}: {spec.method} over {', '.join(spec.varied) or 'nothing'}; "
              f"{n_trials} trials, {workers} worker(s)\n  study:   {display_url(storage)}\n  results: {results}",
              flush=True)
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    lock = _study_lock(storage, study_name)
    lock.acquire()
    try:
        optuna.create_study(storage=open_storage(storage), study_name=study_name, load_if_exists=True,
                            direction=spec.goal)
    finally:
        lock.release()
    start = time.perf_counter()
    if workers == 1:
        outs = [_local_worker(job, 0)]
    else:
        outs = run_workers(_worker_entry, [job] * workers, workers)
    seconds = time.perf_counter() - start
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    finished, _ = _counts(study)
    records = [r for r in read_results(results) if r.get("study") == study_name] if os.path.exists(results) else []
    errors = [o["error"] for o in outs if o and o.get("error")]
    return SweepSummary(study_name, storage, results, finished, seconds,
                        best_record(records, spec.metric, spec.goal), errors)


# --------------------------------------------------------------------------------------------
# wandb backend
# --------------------------------------------------------------------------------------------


def wandb_sweep_config(spec):
    """The sweep file as ``wandb.sweep`` takes it (with overrides applied)."""
    return {k: v for k, v in spec.raw.items() if v is not None}


def _wandb_trial(job):
    """The function ``wandb.agent`` calls: one run with the configuration wandb chose."""
    import wandb
    spec = parse_sweep(job["raw"], name=job["sweep_id"])
    run = wandb.init(settings=wandb.Settings(silent=True))
    started = time.time()
    sampled = {k: v for k, v in dict(run.config).items() if k in DEFAULTS}
    config = normalize_config(sampled)
    name = run_name(config, spec.varied)
    run.name = name
    from .callbacks import WandbLogger
    status, result = "failed", {"config": config}
    try:
        result = run_trial(config, get_data(config["dataset"], job["data_dir"], config["seed"]),
                           limit=job["limit"], callbacks=[WandbLogger(run)])
        status = result["status"]
        run.summary.update({"status": status, "test_accuracy": result["test_accuracy"],
                            "val_accuracy_best": result["val_accuracy_best"], "seconds": result["seconds"]})
    except Exception as e:
        result = {"message": f"{type(e).__name__}: {e}", "config": config, "error": traceback.format_exc(limit=5)}
        raise
    finally:
        value = result.get(spec.metric) if status != "failed" else None
        append_jsonl(job["results"], {
            "study": job["sweep_id"], "trial": getattr(run, "id", None), "backend": "wandb",
            "run_name": name, "status": status, "metric": spec.metric,
            "value": _status_value(spec, status, value) if status != "failed" else None,
            **result, "params": sampled, "started_at": started, "finished_at": time.time(),
            "limit": job["limit"], "machine": _machine_id(), "pid": os.getpid()})
        run.finish(exit_code=0 if status == "completed" else 1)


def _wandb_agent(job, worker=0, queue=None):
    _ensure_root()
    import wandb
    try:
        wandb.agent(job["sweep_id"], function=lambda: _wandb_trial(job), count=job["count"],
                    project=job["project"], entity=job["entity"])
        out = {"started": None, "error": None}
    except BaseException as e:  # noqa: BLE001
        if queue is None:
            raise
        out = {"started": None, "error": f"{type(e).__name__}: {e}"}
    if queue is not None:
        queue.put((worker, out))
    return out


def run_wandb_sweep(spec, *, sweep_id=None, count=None, n_trials=None, workers=1, project="tinygrad_free",
                    entity=None, results=None, limit=None, data_dir=None, sweep_path=None, verbose=True):
    """Create (or join) a wandb sweep and run ``workers`` agents on this machine.

    Parameters
    ----------
    spec : SweepSpec
    sweep_id : str, optional
        Join this sweep instead of creating one (``wandb.sweep``).
    count : int, optional
        Runs per agent (wandb's ``--count``); None runs until the sweep is done.
    n_trials : int, optional
        When creating a sweep: its ``run_cap`` (total runs over all agents).
    workers : int
        Agents started here, each in its own process.
    results : str, optional
        Results JSONL; default ``<sweep folder>/<sweep id>.jsonl``.

    Returns
    -------
    str
        The sweep id.
    """
    import wandb
    if sweep_id is None:
        config = wandb_sweep_config(spec)
        if n_trials:
            config["run_cap"] = int(n_trials)
        sweep_id = wandb.sweep(config, project=project, entity=entity)
        if verbose:
            print(f"created wandb sweep {sweep_id}; more agents join with --sweep_id {sweep_id}", flush=True)
    folder = Path(sweep_path).resolve().parent if sweep_path else Path.cwd()
    results = results or str(folder / f"{str(sweep_id).split('/')[-1]}.jsonl")
    job = {"raw": spec.raw, "sweep_id": sweep_id, "count": count, "project": project, "entity": entity,
           "results": results, "limit": limit, "data_dir": data_dir}
    if workers == 1:
        _wandb_agent(job)
    else:
        outs = run_workers(_wandb_agent, [job] * workers, workers)
        errors = [o["error"] for o in outs if o and o.get("error")]
        if errors:
            raise RuntimeError("; ".join(errors))
    return sweep_id


__all__ = ["DEFAULTS", "METHODS", "DISTRIBUTIONS", "Param", "SweepSpec", "SweepSummary", "PruningCallback",
           "parse_sweep", "load_sweep", "make_sampler", "make_pruner", "suggest_params", "check_value",
           "normalize_config", "run_name", "run_trial", "get_data", "append_jsonl", "read_results",
           "atomic_write_text", "open_storage", "resolve_storage_url", "display_url", "fail_dead_trials",
           "recover_dead_trials", "results_record", "export_results", "run_local_sweep", "run_wandb_sweep",
           "default_storage", "default_results", "best_record",
           "run_workers", "map_trials"]
