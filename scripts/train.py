#!/usr/bin/env python3
"""Train a feedforward network on Fashion-MNIST or MNIST with the assignment's flags.

The defaults are the best configuration found on the validation set
(models/fashion_mnist_best.yaml), so ``python scripts/train.py`` trains the best model.
``--config NAME_OR_PATH`` starts from another configuration; flags given explicitly win.
The last line printed is ``test_accuracy: <fraction>``.
"""
import argparse
import math
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# One thread unless the user says otherwise (--threads N, which the Trainer applies to BLAS and
# numba alike, or OMP_NUM_THREADS and the like): two make an epoch 6-15% shorter
# (benchmarks/results/train.md), but make results depend on the thread count and collapse (10x
# slower steps) when another process is busy on the second core. Must happen before numpy is
# imported.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


from models import build_mlp, load_config  # noqa: E402
from tinygrad_free import init, nn, optim  # noqa: E402
from tinygrad_free.optim import schedule  # noqa: E402
from tinygrad_free.augment import RandomShift  # noqa: E402
from tinygrad_free.cli import (add_plugin_option, load_plugins, lower_choice, non_negative_float,  # noqa: E402
                               non_negative_int, positive_float, positive_int, table_choice, unit_interval,
                               writable_file)
from tinygrad_free.callbacks import BackupAndRestore, ModelCheckpoint, PrintLogger, WandbLogger  # noqa: E402
from tinygrad_free.data import load_split  # noqa: E402
from tinygrad_free.tracking import resolve_mode, start_wandb_run  # noqa: E402
from tinygrad_free.train import Trainer  # noqa: E402

DEFAULT_CONFIG = "fashion_mnist_best"
# The names the library accepts, from its own tables (aliases such as mse, linear, glorot too).
LOSSES = nn.loss.LOSSES
ACTIVATIONS = nn.activation.CODES
INITS = init.INITIALIZERS
SCHEDULES = schedule.SCHEDULES
# The optimizer's hyperparameters, by the flag that sets them.
HYPER = {"momentum": "momentum", "beta": "beta", "beta1": "beta1", "beta2": "beta2", "epsilon": "eps"}


def optimizer_name(text):
    key = text.lower()
    if key not in optim.available():
        raise argparse.ArgumentTypeError(f"invalid choice {text!r} (choose from {', '.join(optim.available())})")
    return key


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--config", default=DEFAULT_CONFIG, help="configuration name in models/ or a YAML path (default: %(default)s)")
    a("-wp", "--wandb_project", default="tinygrad_free", help="wandb project")
    a("-we", "--wandb_entity", default=None, help="wandb entity (user or team)")
    a("-d", "--dataset", type=lower_choice(("mnist", "fashion_mnist")), help="mnist or fashion_mnist")
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
    a("-nhl", "--num_layers", type=non_negative_int, help="number of hidden layers")
    a("-sz", "--hidden_size", type=positive_int, help="units per hidden layer")
    a("-a", "--activation", type=table_choice(ACTIVATIONS), help=f"one of {', '.join(ACTIVATIONS)} (any case)")
    a("--lr_schedule", type=table_choice(SCHEDULES),
      help="learning-rate schedule over the whole run (default from the config)")
    a("--shift", type=non_negative_int, default=0, metavar="PIXELS",
      help="augment: shift each training image by up to PIXELS in x and y, zero fill (default from the config; 0: off)")
    a("--seed", type=non_negative_int, help="seeds the initial weights, the validation split and the batch order")
    a("--threads", type=positive_int, default=None, metavar="N",
      help="threads of BLAS and of the numba kernels (default: 1, or what OMP_NUM_THREADS etc. set)")
    a("--data_dir", default=None, help="folder with fashion-mnist/ and mnist/ IDX files")
    a("--save", type=writable_file, default=None, metavar="PATH",
      help="save the best model (by validation accuracy) to PATH (.npz)")
    a("--backup", type=writable_file, default=None, metavar="PATH",
      help="write the training state to PATH (.npz) after every epoch; if PATH exists, resume from it "
           "(same seed and options: the result is the uninterrupted run's); deleted when the run ends")
    add_plugin_option(p)
    a("--wandb_mode", choices=("online", "offline", "disabled"), default=None,
      help="default: online with credentials, else offline")
    a("--limit", type=positive_int, default=None, help=argparse.SUPPRESS)  # train on a subset (tests)
    return p


def parse_args(argv=None):
    try:
        load_plugins(argv)      # before the parser is built: a plugin adds choices for -o
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
    parser.set_defaults(**config)
    args = parser.parse_args(argv)
    missing = [k for k in ("dataset", "epochs", "batch_size", "loss", "optimizer", "learning_rate",
                           "weight_init", "num_layers", "hidden_size", "activation") if getattr(args, k) is None]
    if missing:
        parser.error(f"config {args.config} does not set {missing}; pass them as flags")
    warn_unused_hyperparameters(parser, build_parser().parse_args(argv), args.optimizer)
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
        print(f"warning: {flags[dest]} {getattr(explicit, dest)} is ignored: optimizer {optimizer} has no {key}; "
              f"it is used by {', '.join(users) or 'no registered optimizer'}", file=sys.stderr)


def run_name(args):
    """The config in a run name, e.g. hl_3_bs_16_ac_tanh_opt_nadam_lr_1e-3."""
    lr = f"{args.learning_rate:.0e}".replace("e-0", "e-").replace("e+0", "e")
    name = (f"hl_{args.num_layers}_sz_{args.hidden_size}_bs_{args.batch_size}_ac_{args.activation}"
            f"_opt_{args.optimizer}_lr_{lr}_wd_{args.weight_decay:g}_init_{args.weight_init}_ep_{args.epochs}")
    if args.lr_schedule and args.lr_schedule != "constant":
        name += f"_{args.lr_schedule}"
    if args.shift:
        name += f"_shift{args.shift}"
    return name + ("_mse" if LOSSES[args.loss] is nn.MSELoss else "")


def optimizer_kwargs(args):
    allowed = optim.get(args.optimizer).defaults
    kw = {"lr": args.learning_rate, "weight_decay": args.weight_decay or 0.0}
    for flag, key in HYPER.items():
        value = getattr(args, flag)
        if value is not None and key in allowed:
            kw[key] = value
    return kw


def start_wandb(args):
    """A wandb run, or None. Never waits for a login prompt (see tinygrad_free.tracking)."""
    mode = resolve_mode(args.wandb_mode)
    config = {k: v for k, v in vars(args).items() if k not in ("wandb_project", "wandb_entity", "wandb_mode")}
    run = start_wandb_run(mode, project=args.wandb_project, entity=args.wandb_entity, name=run_name(args),
                          config=config)
    if run is None and mode != "disabled":
        print("wandb not installed: not logging (pip install wandb)")
    return run


def main(argv=None):
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else 0
    data = load_split(args.dataset, data_dir=args.data_dir, seed=seed)
    x_train, y_train = data.x_train, data.y_train
    if args.limit:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    model = build_mlp(x_train.shape[1], args.num_layers, args.hidden_size, args.activation, args.weight_init,
                      num_classes=len(data.class_names), rng=seed)
    opt = optim.create(args.optimizer, model.parameters(), **optimizer_kwargs(args))
    print(f"{run_name(args)} on {args.dataset}: {len(x_train)} train / {len(data.x_val)} validation images")
    print(model)
    run = start_wandb(args)
    callbacks = [PrintLogger()]
    if run is not None:
        callbacks.append(WandbLogger(run))
    checkpoint = ModelCheckpoint(args.save) if args.save else None
    if checkpoint:
        callbacks.append(checkpoint)
    if args.backup:
        callbacks.append(BackupAndRestore(args.backup))
    trainer = Trainer(model, nn.get_loss(args.loss), opt, callbacks, threads=args.threads or "auto")
    side = math.isqrt(x_train.shape[1])
    augment = RandomShift(args.shift, (side, side)) if args.shift else None
    try:
        history = trainer.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                              validation_data=(data.x_val, data.y_val), seed=seed,
                              lr_schedule=args.lr_schedule or "constant", augment=augment)
    except (OSError, ValueError) as e:
        # Found when training begins, before any step: --save/--backup on a disk too full for the
        # model, a --backup file from a run with other options.
        print(f"train.py: error: {e.strerror if isinstance(e, OSError) and e.strerror else e}", file=sys.stderr)
        return 2
    if checkpoint and checkpoint.best_epoch is not None:
        model = nn.load(args.save)
        trainer.model = model
        print(f"best model (epoch {checkpoint.best_epoch}, val_accuracy {checkpoint.best:.4f}) saved to {args.save}")
    if history.status == "diverged":
        if run is not None:
            run.finish(exit_code=1)
        print(f"diverged: {history.message}")
        print("test_accuracy: nan")
        return 1
    _, test_acc = trainer.evaluate(data.x_test, data.y_test)
    if run is not None:
        run.summary["test_accuracy"] = test_acc
        run.finish()
    print(f"test_accuracy: {test_acc:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
