#!/usr/bin/env python3
"""Train a feedforward or convolutional network on Fashion-MNIST or MNIST with the assignment's flags.

The defaults are the best configuration found on the validation set
(tinygrad_free/recipes/fashion_mnist_best.yaml), so ``python scripts/train.py`` trains the best model.
``--config NAME_OR_PATH`` starts from another configuration (``--config fashion_mnist_cnn``: a
CNN); flags given explicitly win. The last line printed is ``test_accuracy: <fraction>``.
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from tinygrad_free import config as C  # noqa: E402
from tinygrad_free import init, nn, optim, tracking  # noqa: E402
from tinygrad_free.cli import (  # noqa: E402
    add_plugin_option,
    load_plugins,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    table_choice,
    unit_interval,
    writable_file,
)
from tinygrad_free.config import run_name  # noqa: E402,F401  (the script's API)
from tinygrad_free.optim import schedule  # noqa: E402
from tinygrad_free.recipes import load_config  # noqa: E402
from tinygrad_free.train_cli import run  # noqa: E402
from tinygrad_free.training_run import optimizer_kwargs  # noqa: E402,F401  (the script's API)

DEFAULT_CONFIG = "fashion_mnist_best"
# The names the library accepts, from its own tables (aliases such as mse, linear, glorot too).
LOSSES = nn.loss.LOSSES
ACTIVATIONS = nn.activation.CODES
INITS = init.INITIALIZERS
SCHEDULES = schedule.SCHEDULES
HYPER = C.HYPER
#: Options of the network a recipe may leave out; they take :data:`tinygrad_free.config.DEFAULTS`.
NETWORK_OPTIONS = ("architecture", "conv_channels", "kernel_size", "batch_norm", "dropout")


def optimizer_name(text):
    key = text.lower()
    if key not in optim.available():
        raise argparse.ArgumentTypeError(f"invalid choice {text!r} (choose from {', '.join(optim.available())})")
    return key


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a(
        "--config",
        default=DEFAULT_CONFIG,
        help="recipe name in tinygrad_free/recipes/ or a YAML path (default: %(default)s)",
    )
    a("-wp", "--wandb_project", default="tinygrad_free", help="wandb project")
    a("-we", "--wandb_entity", default=None, help="wandb entity (user or team)")
    a("-d", "--dataset", type=table_choice(C.DATASETS), help="mnist or fashion_mnist")
    a("-e", "--epochs", type=positive_int)
    a("-b", "--batch_size", type=positive_int)
    a("-l", "--loss", type=table_choice(LOSSES), help=f"one of {', '.join(LOSSES)} (any case)")
    a("-o", "--optimizer", type=optimizer_name, help=f"one of {', '.join(optim.available())}")
    a("-lr", "--learning_rate", type=positive_float)
    a("-m", "--momentum", type=unit_interval, help="momentum of momentum and nag")
    a("-beta", "--beta", type=unit_interval, help="beta of rmsprop")
    a("-beta1", "--beta1", type=unit_interval, help="beta1 of adam and nadam")
    a("-beta2", "--beta2", type=unit_interval, help="beta2 of adam and nadam")
    a("-eps", "--epsilon", type=non_negative_float, help="epsilon of rmsprop, adam, nadam")
    a("-w_d", "--weight_decay", type=non_negative_float)
    a("-w_i", "--weight_init", type=table_choice(INITS), help=f"one of {', '.join(INITS)} (any case)")
    a("-nhl", "--num_layers", type=non_negative_int, help="number of hidden layers (architecture mlp)")
    a("-sz", "--hidden_size", type=positive_int, help="units per hidden layer (architecture mlp)")
    a("--architecture", type=table_choice(C.ARCHITECTURES), help="mlp or cnn (default from the config, else mlp)")
    a(
        "--conv_channels",
        type=positive_int,
        nargs="+",
        metavar="C",
        help="output channels of each convolution block, e.g. 32 64 (architecture cnn)",
    )
    a("--kernel_size", type=positive_int, metavar="K", help="odd kernel size of the convolutions (architecture cnn)")
    a(
        "--batch_norm",
        action=argparse.BooleanOptionalAction,
        help="BatchNorm after every hidden layer or convolution, before its activation",
    )
    a(
        "--dropout",
        type=unit_interval,
        metavar="P",
        help="dropout probability (mlp: after every hidden layer; cnn: before the output layer; 0: none)",
    )
    a("-a", "--activation", type=table_choice(ACTIVATIONS), help=f"one of {', '.join(ACTIVATIONS)} (any case)")
    a(
        "--lr_schedule",
        type=table_choice(SCHEDULES),
        help="learning-rate schedule over the whole run (default from the config)",
    )
    a(
        "--shift",
        type=non_negative_int,
        default=0,
        metavar="PIXELS",
        help="augment: shift each training image by up to PIXELS in x and y, zero fill "
        "(default from the config; 0: off)",
    )
    a(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="augment: mirror each training image left-right with probability 1/2 (clothes, not digits; "
        "default from the config: off)",
    )
    a("--seed", type=non_negative_int, help="seeds the initial weights, the validation split and the batch order")
    a(
        "--threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="threads of BLAS and of the numba kernels (default: measured, see tinygrad_free.threads; "
        "OMP_NUM_THREADS and the like cap it)",
    )
    a("--data_dir", default=None, help="folder with fashion-mnist/ and mnist/ IDX files")
    a(
        "--results",
        type=writable_file,
        default=None,
        metavar="JSONL",
        help="append one JSON line for the run (options, test accuracy, seconds per epoch, confusion matrix), "
        "for scripts/report.py architectures",
    )
    a(
        "--save",
        type=writable_file,
        default=None,
        metavar="PATH",
        help="save the best model (by validation accuracy) to PATH (.npz)",
    )
    a(
        "--backup",
        type=writable_file,
        default=None,
        metavar="PATH",
        help="write the training state to PATH (.npz) after every epoch; if PATH exists, resume from it "
        "(same seed and options: the result is the uninterrupted run's); deleted when the run ends",
    )
    add_plugin_option(p)
    a("--wandb_mode", choices=tracking.WANDB_MODES, default=None, help="default: online with credentials, else offline")
    a("--limit", type=positive_int, default=None, help=argparse.SUPPRESS)  # train on a subset (tests)
    return p


def parse_args(argv=None):
    try:
        load_plugins(argv)  # before the parser is built: a plugin adds choices for -o
    except ValueError as e:
        build_parser().error(str(e))
    parser = build_parser()
    pre, _ = parser.parse_known_args(argv)
    try:
        config = load_config(pre.config)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    unknown = sorted(set(config) - {a.dest for a in parser._actions})
    if unknown:
        parser.error(f"config {pre.config}: unknown option(s) {unknown}")
    try:  # the file's values skip the flags' parsing: check them (and fill the network options) here
        C.normalize_config({k: v for k, v in config.items() if k in C.DEFAULTS})
    except ValueError as e:
        parser.error(f"config {pre.config}: {e}")
    parser.set_defaults(**config)
    args = parser.parse_args(argv)
    explicit = build_parser().parse_args(argv)
    for key in NETWORK_OPTIONS:  # unset (the assignment's recipes leave them out): the default
        value = getattr(args, key)
        try:
            setattr(args, key, C.DEFAULTS[key] if value is None else C.check_value(key, value))
        except ValueError as e:
            parser.error(str(e))
    unused = C.ARCHITECTURE_OPTIONS["mlp" if args.architecture == "cnn" else "cnn"]
    missing = [k for k in C.REQUIRED if getattr(args, k) is None and k not in unused]
    if missing:
        parser.error(f"config {args.config} does not set {missing}; pass them as flags")
    try:
        C.check_architecture_options(vars(args), {k: getattr(explicit, k) for k in unused})
    except ValueError as e:
        parser.error(str(e))
    warn_unused_hyperparameters(parser, explicit, args.optimizer)
    return args


def warn_unused_hyperparameters(parser, explicit, optimizer):
    """Warn (stderr) about each optimizer flag given on the command line that ``optimizer``
    does not have (``-o sgd -m 0.9``): a PyTorch user writes ``SGD(lr, momentum=0.9)`` and
    expects ``-m`` to act, but here momentum is its own optimizer. Values that come from a
    config file are not flagged: a config sets them for whichever optimizer it names."""
    flags = {a.dest: "/".join(a.option_strings) for a in parser._actions}
    own = optim.get(optimizer).defaults
    for dest, key in HYPER.items():
        if getattr(explicit, dest) is None or key in own:
            continue
        users = sorted({optim.get(name).name for name in optim.available() if key in optim.get(name).defaults})
        print(
            f"warning: {flags[dest]} {getattr(explicit, dest)} is ignored: optimizer {optimizer} has no {key}; "
            f"it is used by {', '.join(users) or 'no registered optimizer'}",
            file=sys.stderr,
        )


def main(argv=None):
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
