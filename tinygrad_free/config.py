"""Training configurations: the option schema, the names it accepts and run names.

``scripts/train.py`` and every sweep trial (:mod:`tinygrad_free.sweep`) go through here, so a
run means the same thing whichever started it; :func:`tinygrad_free.training_run.build_run`
turns a configuration into a model, an optimizer and a training run.

A configuration is a mapping of the options in :data:`DEFAULTS` (``dataset``, ``epochs``,
``optimizer``, ``num_layers``, ...). The names it takes (losses, activations, initialisers,
learning-rate schedules, optimizers) come from the library's own registries
(``nn.loss.LOSSES``, ``nn.activation.CODES``, ``init.INITIALIZERS``, ``optim.schedule.SCHEDULES``,
``optim.available()``), aliases included (``mse``, ``linear``, ``glorot``, ``kaiming``,
``nesterov``), each resolved to the canonical name run names use.

``architecture`` chooses the network: ``mlp`` (:func:`tinygrad_free.recipes.build_mlp`, from
``num_layers`` and ``hidden_size``) or ``cnn`` (:func:`tinygrad_free.recipes.build_cnn`, from
``conv_channels`` and ``kernel_size``; ``num_layers`` and ``hidden_size`` are not used). Both take
``batch_norm`` and ``dropout``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import init, nn, optim
from .optim import schedule

#: Values a sweep trial uses for every option its sweep does not set. Kept here rather than taken
#: from the recipe fashion_mnist_best.yaml so that a sweep means the same thing after the best
#: recipe changes. Its keys are the options a configuration may set.
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
    "flip": False,
    "seed": 0,
    "architecture": "mlp",
    "conv_channels": [32, 64],
    "kernel_size": 3,
    "batch_norm": False,
    "dropout": 0.0,
}

#: Options a training run cannot do without (scripts/train.py refuses a config that leaves one unset).
REQUIRED = (
    "dataset",
    "epochs",
    "batch_size",
    "loss",
    "optimizer",
    "learning_rate",
    "weight_init",
    "num_layers",
    "hidden_size",
    "activation",
)

#: The optimizer's hyperparameters, by the option that sets them.
HYPER = {"momentum": "momentum", "beta": "beta", "beta1": "beta1", "beta2": "beta2", "epsilon": "eps"}

#: Dataset names, with the spellings accepted for them.
DATASETS = {"fashion_mnist": "fashion_mnist", "fashion-mnist": "fashion_mnist", "mnist": "mnist"}

#: Network families, by the ``architecture`` option's value.
ARCHITECTURES = {"mlp": "mlp", "cnn": "cnn"}

#: Options only one architecture uses: set to a non-default value with the other, they are refused.
ARCHITECTURE_OPTIONS = {"cnn": ("conv_channels", "kernel_size"), "mlp": ("num_layers", "hidden_size")}


def canonical_names(table):
    """``{lower-case name: canonical name}`` of a name table of the library.

    ``table`` maps names (aliases included) to one object per entry (``nn.loss.LOSSES``,
    ``init.INITIALIZERS``, ...); the canonical name of an entry is the first name the table
    lists for it, so ``MSE`` gives ``mean_squared_error`` and ``glorot`` gives ``xavier``.
    """
    canonical = {}
    for key, value in table.items():
        canonical.setdefault(key.lower(), next(k for k, v in table.items() if v is value or v == value))
    return canonical


def aliases():
    """The one alias table: ``{option: {accepted lower-case name: canonical name}}``.

    Built on each call from the registries, so an optimizer a plugin registered is included.
    """
    return {
        "loss": canonical_names(nn.loss.LOSSES),
        "activation": canonical_names(nn.activation.CODES),
        "weight_init": canonical_names(init.INITIALIZERS),
        "lr_schedule": canonical_names(schedule.SCHEDULES),
        "optimizer": {name: name for name in optim.available()},
        "dataset": dict(DATASETS),
        "architecture": dict(ARCHITECTURES),
    }


# --------------------------------------------------------------------------------------------
# Checking a configuration
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
        names = list(dict.fromkeys(table.values()))
        raise ValueError(f"{key}: unknown value {value!r}; choose one of {', '.join(names)} (any case)")
    return table[name]


def check_value(key, value):
    """Validate and canonicalise one option of a configuration.

    Parameters
    ----------
    key : str
        One of :data:`DEFAULTS`.
    value : object
        Its value as written in YAML (strings of numbers are accepted, names in any case).

    Returns
    -------
    object
        The canonical value: the canonical names of :func:`aliases` (``ReLU`` -> ``relu``,
        ``glorot`` -> ``xavier``, ``mse`` -> ``mean_squared_error``), ints for counts, floats
        for rates.

    Raises
    ------
    ValueError
        Naming the option, the bad value and what is allowed.
    """
    if key not in DEFAULTS:
        raise ValueError(f"unknown option {key!r}; a trial configuration may set: {', '.join(DEFAULTS)}")
    if key in ("activation", "weight_init", "loss", "dataset", "optimizer", "lr_schedule", "architecture"):
        return _choice(key, value, aliases()[key])
    if key == "conv_channels":
        if not isinstance(value, (list, tuple)) or not value:
            raise ValueError(f"conv_channels must be a non-empty list of positive integers, got {value!r}")
        channels = [_number(key, v, int) for v in value]
        if min(channels) <= 0:
            raise ValueError(f"conv_channels must be a non-empty list of positive integers, got {value!r}")
        return channels
    if key == "kernel_size":
        value = _number(key, value, int)
        if value <= 0 or value % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer (padding k // 2 keeps the size), got {value}")
        return value
    if key in ("batch_norm", "flip"):
        flag = {"true": True, "false": False}.get(str(value).lower()) if isinstance(value, str) else value
        if not isinstance(flag, (bool, np.bool_)):
            raise ValueError(f"{key} must be true or false, got {value!r}")
        return bool(flag)
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
    if key in ("momentum", "beta", "beta1", "beta2", "dropout") and not 0 <= value < 1:
        raise ValueError(f"{key} must be in [0, 1), got {value}")
    return value


def normalize_config(config):
    """A complete, validated configuration: :data:`DEFAULTS` updated with ``config``.

    Raises
    ------
    ValueError
        For an unknown option (the message lists the known ones) or a bad value.
    """
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; a trial configuration may set: {', '.join(DEFAULTS)}")
    merged = {k: check_value(k, v) for k, v in {**DEFAULTS, **config}.items()}
    check_architecture_options(merged, {k: v for k, v in merged.items() if k in config})
    return merged


def check_architecture_options(config, given):
    """Refuse options of the other architecture: ``conv_channels`` or ``kernel_size`` in an
    ``mlp`` configuration, ``num_layers`` or ``hidden_size`` in a ``cnn`` one.

    Parameters
    ----------
    config : mapping
        The configuration (its ``architecture``; None or missing: ``mlp``).
    given : mapping
        The options the user set, canonical; one equal to its :data:`DEFAULTS` value is allowed
        (a complete configuration lists every option).

    Raises
    ------
    ValueError
        Naming the options, the architecture and what to do.
    """
    arch = config.get("architecture") or "mlp"
    other = "cnn" if arch == "mlp" else "mlp"
    wrong = [k for k in ARCHITECTURE_OPTIONS[other] if given.get(k) is not None and given[k] != DEFAULTS[k]]
    if wrong:
        raise ValueError(
            f"{', '.join(wrong)} {'applies' if len(wrong) == 1 else 'apply'} to architecture {other} only, "
            f"but the architecture is {arch}; set architecture {other} or leave {' and '.join(wrong)} out"
        )


def _options(config):
    """A plain dict of a configuration given as a mapping or an argparse namespace."""
    return dict(config) if isinstance(config, Mapping) else dict(vars(config))


# --------------------------------------------------------------------------------------------
# Run names
# --------------------------------------------------------------------------------------------

# Options run_name already shows; others a sweep varies are appended by trial_run_name.
_NAMED_IN_RUN_NAME = (
    "num_layers",
    "hidden_size",
    "batch_size",
    "activation",
    "optimizer",
    "learning_rate",
    "weight_decay",
    "weight_init",
    "epochs",
    "loss",
    "lr_schedule",
    "shift",
    "flip",
    "architecture",
    "conv_channels",
    "kernel_size",
    "batch_norm",
    "dropout",
)
_SHORT = {
    "momentum": "mom",
    "beta": "beta",
    "beta1": "b1",
    "beta2": "b2",
    "epsilon": "eps",
    "seed": "seed",
    "dataset": "ds",
}


def _format_value(value):
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "-".join(str(v) for v in value)
    return str(value)


def run_name(config):
    """The configuration in a run name, e.g. ``hl_3_sz_128_bs_16_ac_tanh_opt_nadam_lr_1e-3_wd_0_init_xavier_ep_5``.

    ``config`` is a mapping or a namespace holding canonical names (as scripts/train.py's parser
    and :func:`normalize_config` give them); a ``cosine``/``linear`` schedule, a shift, a flip,
    BatchNorm, dropout and the squared-error loss are appended (``_cosine``, ``_shift1``, ``_flip``, ``_bn``,
    ``_do0.3``, ``_mse``). A CNN's name starts with its channels instead of the hidden layers
    (``cnn_32-64_bs_64_...``, ``cnn_32-64_k5_...`` for a kernel other than 3).
    """
    c = _options(config)
    lr = f"{c['learning_rate']:.0e}".replace("e-0", "e-").replace("e+0", "e")
    if c.get("architecture") == "cnn":
        channels = _format_value(c.get("conv_channels") or DEFAULTS["conv_channels"])
        k = c.get("kernel_size") or DEFAULTS["kernel_size"]
        layers = f"cnn_{channels}" + (f"_k{k}" if k != DEFAULTS["kernel_size"] else "")
    else:
        layers = f"hl_{c['num_layers']}_sz_{_format_value(c['hidden_size'])}"
    name = (
        f"{layers}_bs_{c['batch_size']}_ac_{c['activation']}"
        f"_opt_{c['optimizer']}_lr_{lr}_wd_{c['weight_decay']:g}_init_{c['weight_init']}_ep_{c['epochs']}"
    )
    if c.get("lr_schedule") and c["lr_schedule"] != "constant":
        name += f"_{c['lr_schedule']}"
    if c.get("shift"):
        name += f"_shift{c['shift']}"
    if c.get("flip"):
        name += "_flip"
    if c.get("batch_norm"):
        name += "_bn"
    if c.get("dropout"):
        name += f"_do{c['dropout']:g}"
    return name + ("_mse" if nn.loss.LOSSES[str(c["loss"]).lower()] is nn.MSELoss else "")


def trial_run_name(config, varied=()):
    """:func:`run_name` of the completed configuration (:func:`normalize_config`), plus the options in
    ``varied`` that it does not show (``momentum``, ``seed``, ...), appended as ``_mom_0.9``."""
    config = normalize_config(config)
    name = run_name(config)
    for key in varied:
        if key not in _NAMED_IN_RUN_NAME and key in _SHORT:
            name += f"_{_SHORT[key]}_{_format_value(config[key])}"
    return name


__all__ = [
    "DEFAULTS",
    "REQUIRED",
    "HYPER",
    "DATASETS",
    "ARCHITECTURES",
    "ARCHITECTURE_OPTIONS",
    "canonical_names",
    "aliases",
    "check_value",
    "normalize_config",
    "check_architecture_options",
    "run_name",
    "trial_run_name",
]
