"""Training configurations: checking them, resolving a command line against a recipe, and naming them.

``scripts/train.py`` and every sweep trial (:mod:`tinygrad_free.sweep`) go through here, so a
run means the same thing whichever started it; :func:`tinygrad_free.training_run.build_run`
turns the result into a model, an optimizer and a training run.

A configuration is a mapping of the options of :data:`tinygrad_free.options.OPTIONS`
(``dataset``, ``epochs``, ``optimizer``, ``num_layers``, ...), the one table that says what each
option accepts, its default and where it applies. Names are resolved to the canonical name run
names use (``mse``, ``linear``, ``glorot``, ``kaiming``, ``nesterov`` included).

``architecture`` chooses the network: ``mlp`` (from ``num_layers`` and ``hidden_size``),
``cnn`` (from ``conv_channels`` and ``kernel_size``) or ``lstm`` (from ``num_layers`` and
``hidden_size``). An option that does not apply to the
architecture is refused when it is given (whatever its value), and is None in a checked
configuration.
"""

from __future__ import annotations

from . import optim
from .options import (
    ARCHITECTURE_OPTIONS,
    ARCHITECTURES,
    DATASETS,
    DEFAULTS,
    HYPER,
    OPTIONS,
    REQUIRED,
    RUN_NAME_ORDER,
    aliases,
    as_dict,
    canonical_names,
    format_value,
    optimizers_with,
)

# --------------------------------------------------------------------------------------------
# Checking a configuration
# --------------------------------------------------------------------------------------------


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
        ``glorot`` -> ``xavier``, ``mse`` -> ``mean_squared_error``, ``nesterov`` -> ``nag``),
        ints for counts, floats for rates.

    Raises
    ------
    ValueError
        Naming the option, the bad value and what is allowed.
    """
    if key not in OPTIONS:
        raise ValueError(f"unknown option {key!r}; a trial configuration may set: {', '.join(DEFAULTS)}")
    return OPTIONS[key].check(value, key)


def check_architecture_options(architecture, given):
    """Refuse the options in ``given`` that do not apply to ``architecture``, whatever their value
    (``conv_channels`` with ``mlp``, ``hidden_size`` with ``cnn``): the one rule for flags,
    configurations and sweeps.

    Parameters
    ----------
    architecture : str or None
        Canonical; None: the default architecture.
    given : iterable of str
        The options the user set (typed flags, keys present in a configuration, a sweep's
        parameters); recipes' values and defaults are not given.

    Raises
    ------
    ValueError
        Naming the options, the architectures they apply to, the architecture and its own options.
    """
    arch = architecture or DEFAULTS["architecture"]
    wrong = [k for k, o in OPTIONS.items() if k in given and arch not in o.architectures]
    if wrong:
        homes = " or ".join(a for a in ARCHITECTURES if any(a in OPTIONS[k].architectures for k in wrong))
        names = ARCHITECTURE_OPTIONS[arch]
        own = (", ".join(names[:-1]) + " and " if len(names) > 1 else "") + names[-1] if names else "every option"
        raise ValueError(
            f"{', '.join(wrong)} {'applies' if len(wrong) == 1 else 'apply'} to architecture {homes} only, "
            f"but the architecture is {arch} (whose network is set by {own}); "
            f"set architecture {homes} or leave {' and '.join(wrong)} out"
        )


def normalize_config(config):
    """A complete, validated configuration: :data:`DEFAULTS` updated with ``config``.

    A key of ``config`` is given when its value is not None; an option that does not apply to
    the architecture is None in the result (and may be None in ``config``), so a checked
    configuration checks again unchanged.

    Raises
    ------
    ValueError
        For an unknown option (the message lists the known ones), a bad value, or a given option
        of another architecture (:func:`check_architecture_options`).
    """
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; a trial configuration may set: {', '.join(DEFAULTS)}")
    arch = check_value("architecture", config.get("architecture", DEFAULTS["architecture"]))
    check_architecture_options(arch, [k for k, v in config.items() if v is not None])
    return {
        key: check_value(key, config.get(key, o.default)) if arch in o.architectures else None
        for key, o in OPTIONS.items()
    }


def command_line_options(given, recipe=None, name="recipe"):
    """The options of a run started from the command line: those the user typed over the recipe's
    over the options' own (:attr:`tinygrad_free.options.Option.unset`).

    Parameters
    ----------
    given : mapping
        The options the user typed (flags; None: not given), values as parsed.
    recipe : mapping, optional
        The recipe's options (a YAML file): checked on their own; those that do not apply to
        the architecture a flag chose are dropped (the user did not give them).
    name : str
        The recipe's name, for messages.

    Returns
    -------
    dict
        Every option of :data:`DEFAULTS`, canonical; None for an option that does not apply to
        the architecture, and for an unset option the library defaults (an optimizer's own
        momentum, seed 0, no weight decay, a constant rate).

    Raises
    ------
    ValueError
        A bad value in the recipe (``config NAME: ...``) or given, a given option the
        architecture does not take, a required option neither sets.
    """
    recipe = {k: v for k, v in (recipe or {}).items() if k in OPTIONS}
    try:
        recipe = {k: v for k, v in normalize_config(recipe).items() if k in recipe}
    except ValueError as e:
        raise ValueError(f"config {name}: {e}") from None
    given = {k: check_value(k, v) for k, v in given.items() if v is not None}
    arch = given.get("architecture") or recipe.get("architecture") or DEFAULTS["architecture"]
    check_architecture_options(arch, given)
    options, missing = {}, []
    for key, o in OPTIONS.items():
        value = given.get(key, recipe.get(key))
        if arch not in o.architectures:
            value = None
        elif value is None and o.unset == "default":
            value = o.default
        elif value is None and o.unset == "required":
            missing.append(key)
        options[key] = value
    if missing:
        raise ValueError(f"config {name} does not set {missing}; pass them as flags")
    return options


def ignored_hyperparameters(given, optimizer):
    """Warnings for the optimizer options in ``given`` that ``optimizer`` does not have
    (``-o sgd -m 0.9``): a PyTorch user writes ``SGD(lr, momentum=0.9)`` and expects ``-m`` to
    act, but here momentum is its own optimizer. A recipe's values are not the user's: a recipe
    sets them for whichever optimizer it names."""
    own = optim.get(optimizer).defaults
    return [
        f"{'/'.join(OPTIONS[key].flags)} {given[key]} is ignored: optimizer {optimizer} has no {hyper}; "
        f"it is used by {', '.join(optimizers_with(hyper)) or 'no registered optimizer'}"
        for key, hyper in HYPER.items()
        if given.get(key) is not None and hyper not in own
    ]


# --------------------------------------------------------------------------------------------
# Run names
# --------------------------------------------------------------------------------------------


def run_name(config):
    """The configuration in a run name, e.g. ``hl_3_sz_128_bs_16_ac_tanh_opt_nadam_lr_1e-3_wd_0_init_xavier_ep_5``.

    ``config`` is a mapping or a namespace holding canonical names (as
    :func:`command_line_options` and :func:`normalize_config` give them). Each option's
    :attr:`~tinygrad_free.options.Option.tag` joined in
    :data:`~tinygrad_free.options.RUN_NAME_ORDER`: a ``cosine``/``linear`` schedule, a shift, a
    flip, BatchNorm, dropout and the squared-error loss are appended (``_cosine``, ``_shift1``,
    ``_flip``, ``_bn``, ``_do0.3``, ``_mse``). A CNN's name starts with its channels instead of
    the hidden layers (``cnn_32-64_bs_64_...``, ``cnn_32-64_k5_...`` for a kernel other than 3).
    """
    c = as_dict(config)
    arch = c.get("architecture") or DEFAULTS["architecture"]
    parts = []
    for key in RUN_NAME_ORDER:
        o, value = OPTIONS[key], c.get(key)
        if arch not in o.architectures:
            continue
        if value is None and o.unset == "required":
            raise ValueError(f"run_name: the configuration does not set {key}")
        parts.append(o.tag(o.default if value is None and o.unset == "default" else value))
    return "_".join(p for p in parts if p)


def trial_run_name(config, varied=()):
    """:func:`run_name` of the completed configuration (:func:`normalize_config`), plus the options in
    ``varied`` that it does not show (``momentum``, ``seed``, ...), appended as ``_mom_0.9``."""
    config = normalize_config(config)
    name = run_name(config)
    for key in varied:
        o = OPTIONS.get(key)
        if o is not None and o.tag is None and config[key] is not None:
            name += f"_{o.short or key}_{format_value(config[key])}"
    return name


__all__ = [
    "DEFAULTS",
    "REQUIRED",
    "HYPER",
    "DATASETS",
    "ARCHITECTURES",
    "ARCHITECTURE_OPTIONS",
    "OPTIONS",
    "canonical_names",
    "aliases",
    "check_value",
    "normalize_config",
    "check_architecture_options",
    "command_line_options",
    "ignored_hyperparameters",
    "run_name",
    "trial_run_name",
]
