"""Sweep files: wandb's sweep YAML (``method``, ``metric``, ``parameters``, ``early_terminate``)
parsed into a :class:`SweepSpec` whose parameters carry their Optuna distributions."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import DEFAULTS, check_architecture_options, check_value
from ..options import number as _number

METHODS = ("random", "grid", "bayes")


GOALS = ("maximize", "minimize")


DISTRIBUTIONS = (
    "constant",
    "categorical",
    "int_uniform",
    "uniform",
    "q_uniform",
    "log_uniform",
    "log_uniform_values",
    "q_log_uniform",
    "q_log_uniform_values",
)


# wandb knows these too, but they have no bounded Optuna counterpart.
WANDB_ONLY_DISTRIBUTIONS = (
    "inv_log_uniform",
    "inv_log_uniform_values",
    "normal",
    "q_normal",
    "log_normal",
    "q_log_normal",
    "beta",
    "q_beta",
)


EARLY_TERMINATE = ("hyperband", "median")


SPEC_KEYS = ("value", "values", "min", "max", "distribution", "q", "probabilities")


METRICS = ("val_accuracy", "val_loss", "train_accuracy", "train_loss")


TOP_LEVEL_KEYS = (
    "name",
    "description",
    "method",
    "metric",
    "parameters",
    "early_terminate",
    "run_cap",
    "program",
    "command",
    "project",
    "entity",
)


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
    q: float | None = None
    encoded: bool = False

    def choices(self):
        """Every value of a constant or categorical parameter (decoded)."""
        if self.kind == "constant":
            return [self.value]
        return [decode_choice(c) if self.encoded else c for c in self.distribution.choices]


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
    early_terminate: dict | None = None
    run_cap: int | None = None
    raw: dict = field(default_factory=dict)

    @property
    def varied(self):
        """Parameters with more than one possible value."""
        return [
            n
            for n, p in self.params.items()
            if p.kind != "constant" and not (p.kind == "categorical" and len(p.distribution.choices) == 1)
        ]

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


def _encode_choice(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value, False
    return "json:" + json.dumps(value), True


def decode_choice(value):
    """A categorical choice as the sweep file wrote it: Optuna keeps only scalar choices, so a list or
    mapping is stored as a ``"json:..."`` string (``_encode_choice``) and decoded here."""
    if isinstance(value, str) and value.startswith("json:"):
        return json.loads(value[5:])
    return value


def _categorical(name, values, checked):
    import optuna

    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"parameter {name!r}: 'values' must be a non-empty list, got {values!r}")
    choices, encoded = [], False
    for v in values:
        c, enc = _encode_choice(checked(v))
        encoded |= enc
        if c in choices:
            raise ValueError(f"parameter {name!r}: value {v!r} is listed twice")
        choices.append(c)
    return Param(name, "categorical", optuna.distributions.CategoricalDistribution(choices), encoded=encoded)


def _parse_param(name, spec, method, checked):
    import optuna
    from optuna.distributions import FloatDistribution, IntDistribution

    if not isinstance(spec, dict):
        raise ValueError(
            f"parameter {name!r}: expected a mapping such as {{values: [...]}}, "
            f"{{value: ...}} or {{min: ..., max: ...}}, got {spec!r}"
        )
    if "parameters" in spec:
        raise ValueError(f"parameter {name!r}: nested parameters are not supported; flatten them")
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise ValueError(f"parameter {name!r}: unknown key(s) {unknown}; allowed: {', '.join(SPEC_KEYS)}")
    dist = spec.get("distribution")
    if dist is not None and dist not in DISTRIBUTIONS:
        if dist in WANDB_ONLY_DISTRIBUTIONS:
            raise ValueError(
                f"parameter {name!r}: distribution {dist!r} is supported by the wandb backend only; "
                f"the local backend supports: {', '.join(DISTRIBUTIONS)}"
            )
        raise ValueError(f"parameter {name!r}: unknown distribution {dist!r}; choose one of {', '.join(DISTRIBUTIONS)}")
    if "value" in spec:
        if len(spec) > 1 + (dist == "constant"):
            raise ValueError(
                f"parameter {name!r}: 'value' (a constant) cannot be combined with "
                f"{sorted(set(spec) - {'value', 'distribution'})}"
            )
        return Param(name, "constant", value=checked(spec["value"]))
    if "values" in spec:
        if dist not in (None, "categorical"):
            raise ValueError(f"parameter {name!r}: 'values' is a categorical parameter, not {dist!r}")
        if "probabilities" in spec:
            warnings.warn(
                f"parameter {name!r}: 'probabilities' is ignored by the local backend "
                "(Optuna samples categorical values uniformly)",
                stacklevel=3,
            )
        return _categorical(name, spec["values"], checked)
    if "min" not in spec or "max" not in spec:
        raise ValueError(f"parameter {name!r}: give 'value', 'values', or both 'min' and 'max' (got {sorted(spec)})")
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
        raise ValueError(
            f"parameter {name!r}: grid search needs a finite set of values, but {dist} is "
            "continuous; use 'values: [...]', int_uniform or q_uniform"
        )
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
    allowed = {
        "hyperband": {"type", "min_iter", "max_iter", "s", "eta", "strict"},
        "median": {"type", "min_iter", "n_startup_trials"},
    }
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


def _check_architectures(params):
    """Refuse a parameter that does not apply to an architecture the sweep's trials can have
    (``num_layers`` in a sweep of CNNs): every trial with that architecture would be refused."""
    arch = params.get("architecture")
    for architecture in arch.choices() if arch is not None else [DEFAULTS["architecture"]]:
        try:
            check_architecture_options(architecture, [name for name in params if name != "architecture"])
        except ValueError as e:
            raise ValueError(f"parameters: {e}") from None


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
    _check_architectures(params)
    run_cap = raw.get("run_cap")
    if run_cap is not None:
        run_cap = _number("run_cap", run_cap, int)
        if run_cap <= 0:
            raise ValueError(f"run_cap must be a positive integer, got {run_cap}")
    return SweepSpec(
        name=str(raw.get("name") or name or "sweep"),
        method=method,
        metric=metric["name"],
        goal=goal,
        params=params,
        early_terminate=_check_early_terminate(raw.get("early_terminate")),
        run_cap=run_cap,
        raw=raw,
    )


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
