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
from tinygrad_free import tracking  # noqa: E402
from tinygrad_free.cli import add_plugin_option, load_plugins, positive_int, writable_file  # noqa: E402
from tinygrad_free.config import run_name  # noqa: E402,F401  (the script's API)
from tinygrad_free.options import add_arguments  # noqa: E402
from tinygrad_free.recipes import load_config  # noqa: E402
from tinygrad_free.train_cli import run  # noqa: E402
from tinygrad_free.training_run import optimizer_kwargs  # noqa: E402,F401  (the script's API)

DEFAULT_CONFIG = "fashion_mnist_best"


def build_parser():
    """The training options' flags come from the option table (tinygrad_free.options); the rest
    say where the run reads, logs and saves."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a(
        "--config",
        default=DEFAULT_CONFIG,
        help="recipe name in tinygrad_free/recipes/ or a YAML path (default: %(default)s); "
        "the training options' defaults come from it",
    )
    a("-wp", "--wandb_project", default="tinygrad_free", help="wandb project")
    a("-we", "--wandb_entity", default=None, help="wandb entity (user or team)")
    add_arguments(p)
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
    """The options of the command line over the recipe's (``--config``); see
    :func:`tinygrad_free.config.command_line_options`."""
    try:
        load_plugins(argv)  # before the parser is built: a plugin adds choices for -o
    except ValueError as e:
        build_parser().error(str(e))
    parser = build_parser()
    pre, _ = parser.parse_known_args(argv)
    try:
        recipe = load_config(pre.config)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    unknown = sorted(set(recipe) - {a.dest for a in parser._actions})
    if unknown:
        parser.error(f"config {pre.config}: unknown option(s) {unknown}")
    parser.set_defaults(**{k: v for k, v in recipe.items() if k not in C.OPTIONS})  # e.g. threads
    args = parser.parse_args(argv)
    given = {k: v for k, v in vars(args).items() if k in C.OPTIONS}  # only typed flags are set
    try:
        options = C.command_line_options(given, recipe, name=args.config)
    except ValueError as e:
        parser.error(str(e))
    for warning in C.ignored_hyperparameters(given, options["optimizer"]):
        print(f"warning: {warning}", file=sys.stderr)
    return argparse.Namespace(**{**vars(args), **options})


def main(argv=None):
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
