"""The options of a training run, each declared once in :data:`OPTIONS`: its name, its command-line
flags, how its values are checked, its default, its help, the architectures it applies to, the
names it accepts and how run names show it.

Everything else is derived from this table: :mod:`tinygrad_free.config` checks values and makes
run names with it, ``scripts/train.py`` builds its parser with :func:`add_arguments`, sweeps
check their search spaces with it, and :mod:`tinygrad_free.training_run` passes the optimizer's
hyperparameters on by it. Adding an option is adding one :class:`Option` here (and using its
value where the run is built).

Names (losses, activations, initialisers, learning-rate schedules, optimizers) come from the
library's own registries (``nn.loss.LOSSES``, ``nn.activation.CODES``, ``init.INITIALIZERS``,
``optim.schedule.SCHEDULES``, ``optim.available()``), aliases included, each resolved to one
canonical name (``mse`` -> ``mean_squared_error``, ``nesterov`` -> ``nag``).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import init, nn, optim
from .optim import schedule
from .recipes.vit import POOLINGS, STEMS

#: Network families, by the ``architecture`` option's value.
ARCHITECTURES = {"mlp": "mlp", "cnn": "cnn", "lstm": "lstm", "vit": "vit"}

#: Dataset names, with the spellings accepted for them.
DATASETS = {"fashion_mnist": "fashion_mnist", "fashion-mnist": "fashion_mnist", "mnist": "mnist"}

# --------------------------------------------------------------------------------------------
# Checks of values. Each takes a value (from YAML, a dict, a sweep or a flag's text) and the
# option's name, and returns the canonical value or raises ValueError. With the name the message
# starts with it (a configuration's error); without it, it is a flag's (argparse names the flag).
# --------------------------------------------------------------------------------------------


def _error(key, message):
    return ValueError(f"{key} {message}" if key else message)


def number(key, value, kind=float):
    """``value`` as a finite float (or an int, ``kind=int``). Strings are parsed: YAML 1.1 reads
    ``1e-3`` (no dot) as a string, and a flag's value is one."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise _error(key, f"must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise _error(key, f"must be a number, got {value!r}")
    if kind is int and isinstance(value, (int, np.integer)):
        return int(value)
    if not math.isfinite(value):
        raise _error(key, f"must be finite, got {value!r}")
    if kind is int:
        if float(value) != int(value):
            raise _error(key, f"must be an integer, got {value!r}")
        return int(value)
    return float(value)


def integer(minimum):
    """An integer of at least ``minimum`` (0 or 1)."""
    what = {0: "a non-negative integer", 1: "a positive integer"}[minimum]

    def check(value, key=None):
        value = number(key, value, int)
        if value < minimum:
            raise _error(key, f"must be {what}, got {value}")
        return value

    return check


def positive(value, key=None):
    value = number(key, value)
    if not value > 0:
        raise _error(key, f"must be positive, got {value:g}")
    return value


def non_negative(value, key=None):
    value = number(key, value)
    if value < 0:
        raise _error(key, f"must be non-negative, got {value:g}")
    return value


def unit_interval(value, key=None):
    value = number(key, value)
    if not 0 <= value < 1:
        raise _error(key, f"must be in [0, 1), got {value:g}")
    return value


def boolean(value, key=None):
    flag = {"true": True, "false": False}.get(value.strip().lower()) if isinstance(value, str) else value
    if not isinstance(flag, (bool, np.bool_)):
        raise _error(key, f"must be true or false, got {value!r}")
    return bool(flag)


def odd_size(value, key=None):
    value = number(key, value, int)
    if value <= 0 or value % 2 == 0:
        raise _error(key, f"must be a positive odd integer (padding k // 2 keeps the size), got {value}")
    return value


def channels(value, key=None):
    message = f"must be a non-empty list of positive integers, got {value!r}"
    if not isinstance(value, (list, tuple)) or not value:
        raise _error(key, message)
    values = [number(key, v, int) for v in value]
    if min(values) <= 0:
        raise _error(key, message)
    return values


def widths(value, key=None):
    """One width, or a list of them (one per hidden layer)."""
    if not isinstance(value, (list, tuple)):
        return integer(1)(value, key)
    values = [number(key, v, int) for v in value]
    if not values or min(values) <= 0:
        raise _error(key, f"must be a positive integer or a non-empty list of them, got {value!r}")
    return values


def choice(names):
    """One of the names of ``names()`` (``{accepted lower-case name: canonical name}``), any case;
    returns the canonical name. A flag's error lists every accepted name, a configuration's the
    canonical ones."""

    def check(value, key=None):
        table = names()
        name = str(value).strip().lower()
        if name in table:
            return table[name]
        if key is None:
            raise ValueError(f"invalid choice {value!r} (choose from {', '.join(table)})")
        canonical = list(dict.fromkeys(table.values()))
        raise ValueError(f"{key}: unknown value {value!r}; choose one of {', '.join(canonical)} (any case)")

    check.names = names
    return check


# --------------------------------------------------------------------------------------------
# Alias tables, built from the registries on each call (an optimizer a plugin registered counts)
# --------------------------------------------------------------------------------------------


def canonical_names(registry):
    """``{accepted lower-case name: canonical name}`` of one of the library's registries
    (``nn.loss.LOSSES``, ``init.INITIALIZERS``, ...): ``MSE`` gives ``mean_squared_error``, ``glorot``
    gives ``xavier``."""
    return registry.aliases()


def optimizer_names():
    """``{accepted name: canonical name}`` of the optimizers (``nesterov`` -> ``nag``), a plugin's
    included."""
    return optim.OPTIMIZERS.aliases()


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------

#: Values an option takes when nothing sets it: "required" (a run cannot do without it),
#: "library" (left None: the library's own default, e.g. the optimizer's own momentum) or
#: "default" (the option's default).
UNSET = ("required", "library", "default")


@dataclass(frozen=True)
class Option:
    """One option of a training configuration.

    Attributes
    ----------
    name : str
        The configuration key (and the flag's ``dest``).
    flags : tuple of str
        Its command-line flags, short and long (``("-e", "--epochs")``).
    check : callable
        ``check(value, key=None)``: the canonical value, or ValueError (see :func:`number`).
    default : object
        The value of a configuration that does not set it (:data:`DEFAULTS`).
    help : str
        What it does; the flag's help adds the accepted names, the optimizers a
        hyperparameter reaches and the architectures it applies to.
    architectures : tuple of str
        The architectures it applies to; given with another one, it is refused.
    unset : str
        What scripts/train.py uses when neither a flag nor the recipe sets it (:data:`UNSET`).
    hyperparameter : str, optional
        The keyword of ``optim.create`` it sets (only for optimizers that have it).
    tag : callable, optional
        ``tag(value)``: its part of a run name ("" for none); the parts are joined in
        :data:`RUN_NAME_ORDER`.
    short : str, optional
        Its label in a sweep trial's run name when the sweep varies it and it has no tag
        (``_mom_0.9``; default: the name).
    argument : dict
        Extra ``add_argument`` keywords (``nargs``, ``metavar``, ``action``); a ``type`` there
        checks each word of the flag alone, and ``check`` the whole value with the other options.
    """

    name: str
    flags: tuple[str, ...]
    check: Callable[..., Any]
    default: Any
    help: str = ""
    architectures: tuple[str, ...] = tuple(ARCHITECTURES)
    unset: str = "default"
    hyperparameter: str | None = None
    tag: Callable[[Any], str] | None = None
    short: str | None = None
    argument: dict = field(default_factory=dict)

    @property
    def names(self):
        """The alias table of a name option (``{accepted lower-case name: canonical}``), else None."""
        names = getattr(self.check, "names", None)
        return names() if names else None


def format_value(v):
    """A value as a run name shows it: ``0.3``, ``32-64``."""
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "-".join(str(x) for x in v)
    return str(v)


def _rate(lr):
    return f"{lr:.0e}".replace("e-0", "e-").replace("e+0", "e")


def _squared_error(loss):
    return "mse" if nn.loss.LOSSES.get(loss) is nn.SoftmaxMSELoss else ""


_FLAG = {"action": argparse.BooleanOptionalAction}

#: Every option of a training configuration, in the order configurations and ``--help`` list them.
# fmt: off
OPTIONS = {
    o.name: o
    for o in (
        Option("dataset", ("-d", "--dataset"), choice(lambda: dict(DATASETS)), "fashion_mnist", "", unset="required",
               short="ds"),
        Option("epochs", ("-e", "--epochs"), integer(1), 5, "passes over the training set", unset="required",
               tag=lambda v: f"ep_{v}"),
        Option("batch_size", ("-b", "--batch_size"), integer(1), 32, "images per step", unset="required",
               tag=lambda v: f"bs_{v}"),
        Option("loss", ("-l", "--loss"), choice(lambda: canonical_names(nn.loss.LOSSES)), "cross_entropy",
               unset="required", tag=_squared_error),
        Option("optimizer", ("-o", "--optimizer"), choice(optimizer_names), "nadam", unset="required",
               tag=lambda v: f"opt_{v}"),
        Option("learning_rate", ("-lr", "--learning_rate"), positive, 1e-3, "the base learning rate",
               unset="required", tag=lambda v: f"lr_{_rate(v)}"),
        Option("momentum", ("-m", "--momentum"), unit_interval, 0.9, unset="library", hyperparameter="momentum",
               short="mom"),
        Option("beta", ("-beta", "--beta"), unit_interval, 0.9, unset="library", hyperparameter="beta"),
        Option("beta1", ("-beta1", "--beta1"), unit_interval, 0.9, unset="library", hyperparameter="beta1",
               short="b1"),
        Option("beta2", ("-beta2", "--beta2"), unit_interval, 0.999, unset="library", hyperparameter="beta2",
               short="b2"),
        Option("epsilon", ("-eps", "--epsilon"), non_negative, 1e-8, unset="library", hyperparameter="eps",
               short="eps"),
        Option("weight_decay", ("-w_d", "--weight_decay"), non_negative, 0.0,
               "weight decay: coupled L2 (decoupled for adamw)",
               unset="library", tag=lambda v: f"wd_{v or 0:g}"),
        Option("weight_init", ("-w_i", "--weight_init"), choice(lambda: canonical_names(init.INITIALIZERS)),
               "xavier", unset="required", tag=lambda v: f"init_{v}"),
        Option("num_layers", ("-nhl", "--num_layers"), integer(0), 3,
               "number of hidden layers (mlp) or of stacked LSTM layers (lstm)", ("mlp", "lstm"), unset="required",
               tag=lambda v: f"hl_{v}"),
        Option("hidden_size", ("-sz", "--hidden_size"), widths, 128,
               "units per hidden layer (mlp: one width, or one per layer) or the LSTM's units (lstm)", ("mlp", "lstm"),
               unset="required", tag=lambda v: f"sz_{format_value(v)}"),
        Option("activation", ("-a", "--activation"), choice(lambda: canonical_names(nn.activation.CODES)), "tanh",
               "", ("mlp", "cnn", "vit"), unset="required", tag=lambda v: f"ac_{v}"),
        Option("lr_schedule", ("--lr_schedule",), choice(lambda: canonical_names(schedule.SCHEDULES)), "constant",
               "learning-rate schedule over the whole run", unset="library",
               tag=lambda v: "" if v in (None, "constant") else v),
        Option("shift", ("--shift",), integer(0), 0,
               "augment: shift each training image by up to PIXELS in x and y, zero fill (0: off)",
               tag=lambda v: f"shift{v}" if v else "", argument={"metavar": "PIXELS"}),
        Option("flip", ("--flip",), boolean, False,
               "augment: mirror each training image left-right with probability 1/2 (clothes, not digits)",
               tag=lambda v: "flip" if v else "", argument=_FLAG),
        Option("seed", ("--seed",), integer(0), 0, "seeds the initial weights, the validation split and the batch "
               "order", unset="library"),
        Option("architecture", ("--architecture",), choice(lambda: dict(ARCHITECTURES)), "mlp", "the network",
               tag=lambda v: "" if v == "mlp" else v),
        Option("conv_channels", ("--conv_channels",), channels, [32, 64],
               "output channels of each convolution block, e.g. 32 64", ("cnn",), tag=format_value,
               argument={"nargs": "+", "metavar": "C", "type": integer(1)}),
        Option("kernel_size", ("--kernel_size",), odd_size, 3, "odd kernel size of the convolutions", ("cnn",),
               tag=lambda v: "" if v == 3 else f"k{v}", argument={"metavar": "K", "type": integer(1)}),
        Option("batch_norm", ("--batch_norm",), boolean, False,
               "BatchNorm after every hidden layer or convolution, before its activation", ("mlp", "cnn"),
               tag=lambda v: "bn" if v else "", argument=_FLAG),
        Option("dropout", ("--dropout",), unit_interval, 0.0,
               "dropout probability (mlp: after every hidden layer; cnn: before the output layer; lstm: between "
               "stacked layers and before the output layer; vit: in every encoder layer, attention weights "
               "included; 0: none)",
               tag=lambda v: f"do{v:g}" if v else "", argument={"metavar": "P"}),
        Option("stem", ("--stem",), choice(lambda: {s: s for s in STEMS}), "patch",
               "how the image becomes tokens: patch (one Conv2D of kernel and stride patch_size) or conv "
               "(two stride-2 3x3 convolutions, 28x28 -> 7x7)", ("vit",), tag=lambda v: "" if v == "patch" else "stem"),
        Option("patch_size", ("--patch_size",), integer(1), 4, "side of the square patches (stem patch)", ("vit",),
               tag=lambda v: f"p{v}", argument={"metavar": "P"}),
        Option("d_model", ("--d_model",), integer(1), 64, "features per token", ("vit",), tag=lambda v: f"d{v}"),
        Option("depth", ("--depth",), integer(1), 4, "Transformer encoder layers", ("vit",), tag=lambda v: f"L{v}"),
        Option("heads", ("--heads",), integer(1), 4, "attention heads (must divide d_model)", ("vit",),
               tag=lambda v: f"h{v}"),
        Option("mlp_ratio", ("--mlp_ratio",), positive, 2.0, "feed-forward width over d_model", ("vit",),
               tag=lambda v: f"mlp{v:g}"),
        Option("pooling", ("--pooling",), choice(lambda: {s: s for s in POOLINGS}), "mean",
               "mean of the tokens, or a class token (cls)", ("vit",), tag=lambda v: "" if v == "mean" else "cls"),
        Option("label_smoothing", ("--label_smoothing",), unit_interval, 0.0,
               "cross-entropy's label smoothing (the target (1 - e) onehot + e / classes)",
               tag=lambda v: f"ls{v:g}" if v else "", argument={"metavar": "E"}),
    )
}
# fmt: on

#: The options with a run-name tag, in the order the run name shows them:
#: ``hl_3_sz_128_bs_32_ac_tanh_opt_nadam_lr_1e-3_wd_0_init_xavier_ep_5`` (an MLP) or
#: ``cnn_32-64_k5_bs_...`` (a CNN), ``lstm_hl_1_sz_128_bs_...`` (an LSTM), then ``_cosine``, ``_shift1``,
#: ``_flip``, ``_bn``, ``_do0.3``, ``_mse``.
RUN_NAME_ORDER = (
    "architecture",
    "conv_channels",
    "kernel_size",
    "stem",
    "patch_size",
    "d_model",
    "depth",
    "heads",
    "mlp_ratio",
    "pooling",
    "num_layers",
    "hidden_size",
    "batch_size",
    "activation",
    "optimizer",
    "learning_rate",
    "weight_decay",
    "weight_init",
    "epochs",
    "lr_schedule",
    "shift",
    "flip",
    "batch_norm",
    "dropout",
    "label_smoothing",
    "loss",
)

#: Values a configuration takes for the options it does not set. Kept here rather than taken from
#: the recipe fashion_mnist_best.yaml so that a sweep means the same thing after the best recipe
#: changes.
DEFAULTS: dict[str, Any] = {name: o.default for name, o in OPTIONS.items()}

#: Options a training run cannot do without (scripts/train.py refuses a recipe that leaves one unset).
REQUIRED = tuple(name for name, o in OPTIONS.items() if o.unset == "required")

#: The optimizer's hyperparameters, by the option that sets them.
HYPER = {name: o.hyperparameter for name, o in OPTIONS.items() if o.hyperparameter}

#: The options of each architecture that not every architecture has (its network's), by architecture.
ARCHITECTURE_OPTIONS = {
    arch: tuple(
        name for name, o in OPTIONS.items() if arch in o.architectures and o.architectures != tuple(ARCHITECTURES)
    )
    for arch in ARCHITECTURES
}


def aliases():
    """The alias tables of the name options: ``{option: {accepted lower-case name: canonical name}}``.

    Built on each call from the registries, so an optimizer a plugin registered is included.
    """
    return {name: o.names for name, o in OPTIONS.items() if o.names is not None}


def as_dict(config):
    """A plain dict of a configuration given as a mapping or an argparse namespace."""
    return dict(config) if isinstance(config, Mapping) else dict(vars(config))


def applies(name, architecture):
    """Whether option ``name`` applies to ``architecture`` (None: the default architecture)."""
    return (architecture or DEFAULTS["architecture"]) in OPTIONS[name].architectures


def optimizers_with(hyperparameter):
    """The canonical names of the registered optimizers that have ``hyperparameter``, sorted."""
    return sorted({name for key, name in optimizer_names().items() if hyperparameter in optim.get(key).defaults})


# --------------------------------------------------------------------------------------------
# Command-line flags
# --------------------------------------------------------------------------------------------


def _flag_type(check):
    def parse(text):
        try:
            return check(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = getattr(check, "__name__", "value")
    return parse


def help_text(option):
    """The flag's help: the option's, the names it accepts, the optimizers it reaches, where it applies."""
    parts = [option.help] if option.help else []
    names = option.names
    if names is not None:
        parts.append(f"one of {', '.join(names)} (any case)")
    if option.hyperparameter:
        parts.append(f"{option.hyperparameter} of {', '.join(optimizers_with(option.hyperparameter)) or 'none'}")
    text = "; ".join(parts)
    if option.architectures != tuple(ARCHITECTURES):
        text += f" (architecture {' or '.join(option.architectures)})"
    return text or None


def add_arguments(parser):
    """Add a flag for every option of :data:`OPTIONS` to ``parser``.

    A flag not given leaves no attribute on the parsed namespace (``argparse.SUPPRESS``), so what
    the user typed is told apart from recipes and defaults (``given``: the namespace's entries
    that are options).
    """
    for o in OPTIONS.values():
        kwargs = {"dest": o.name, "default": argparse.SUPPRESS, "help": help_text(o), **o.argument}
        if "action" not in kwargs:
            kwargs["type"] = _flag_type(kwargs.get("type", o.check))
        parser.add_argument(*o.flags, **kwargs)
    return parser


__all__ = [
    "ARCHITECTURES",
    "DATASETS",
    "UNSET",
    "Option",
    "OPTIONS",
    "RUN_NAME_ORDER",
    "DEFAULTS",
    "REQUIRED",
    "HYPER",
    "ARCHITECTURE_OPTIONS",
    "aliases",
    "applies",
    "as_dict",
    "canonical_names",
    "optimizer_names",
    "optimizers_with",
    "add_arguments",
    "format_value",
    "help_text",
    "number",
]
