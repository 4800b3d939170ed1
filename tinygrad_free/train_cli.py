"""The train command's run: parsed options in, a trained and tested model out, reported line by
line as ``scripts/train.py`` prints it (one line per epoch, last ``test_accuracy: <fraction>``).

The parser stays in the script; this is the one call it makes, built on
:func:`tinygrad_free.training_run.build_run` like every sweep trial.
"""

import json
import math
import sys

from . import config as C
from . import nn
from .callbacks import BackupAndRestore, ModelCheckpoint, PrintLogger, WandbLogger
from .data import load_split
from .fileio import append_line
from .metrics import confusion_matrix
from .tracking import resolve_mode, start_wandb_run
from .training_run import build_run

#: Options of the command that are about where a run logs, not what it trains.
_WANDB_OPTIONS = ("wandb_project", "wandb_entity", "wandb_mode")


def start_wandb(args):
    """A wandb run, or None. Never waits for a login prompt (see tinygrad_free.tracking)."""
    mode = resolve_mode(args.wandb_mode)
    config = {k: v for k, v in vars(args).items() if k not in _WANDB_OPTIONS}
    run = start_wandb_run(
        mode, project=args.wandb_project, entity=args.wandb_entity, name=C.run_name(args), config=config
    )
    if run is None and mode != "disabled":
        print("wandb not installed: not logging (pip install wandb)")
    return run


def result_record(args, trainer, data, history, test_accuracy):
    """The line ``--results`` appends for a tested run, read by ``scripts/report.py architectures``.

    Returns
    -------
    dict
        ``run_name``, ``recipe`` (the ``--config``), ``config`` (every option of
        :data:`tinygrad_free.config.DEFAULTS`), ``dataset``, ``seed``, ``parameters``,
        ``train_size``, ``epochs_run``, ``epoch_seconds`` (training time of each epoch, without
        validation), ``val_accuracy`` (last epoch), ``test_accuracy``, ``class_names`` and
        ``confusion`` (the test set's confusion matrix, ``confusion[true][predicted]`` counts).
    """
    pred = trainer.predict(data.x_test).argmax(axis=1)
    h = history.history
    return {
        "run_name": C.run_name(args),
        "recipe": str(args.config),
        "config": {k: getattr(args, k, None) for k in C.DEFAULTS},
        "dataset": args.dataset,
        "seed": args.seed if args.seed is not None else 0,
        "parameters": trainer.model.num_parameters(),
        "train_size": len(data.x_train) if not args.limit else min(int(args.limit), len(data.x_train)),
        "epochs_run": len(h.get("epoch", [])),
        "epoch_seconds": list(h.get("train_seconds", [])),
        "val_accuracy": val if math.isfinite(val := float(history.last("val_accuracy"))) else None,
        "test_accuracy": float(test_accuracy),
        "class_names": list(data.class_names),
        "confusion": confusion_matrix(data.y_test, pred, len(data.class_names)).tolist(),
    }


def run(args, prog="train.py"):
    """Train, checkpoint and test the configuration ``args`` (an argparse namespace with every
    option of :data:`tinygrad_free.config.DEFAULTS` plus ``data_dir``, ``limit``, ``threads``,
    ``save``, ``backup``, ``results`` and the wandb options). With ``results`` set, a tested run
    appends its :func:`result_record` to that JSONL file.

    Returns
    -------
    int
        The exit code: 0 when trained and tested, 1 when the run diverged, 2 when a file could
        not be written or a ``--backup`` belongs to another run (the message, on stderr, names it).
    """
    seed = args.seed if args.seed is not None else 0
    data = load_split(args.dataset, data_dir=args.data_dir, seed=seed)
    training = build_run(args, data, limit=args.limit, callbacks=[PrintLogger()], threads=args.threads or "auto")
    data = training.data  # shaped as the model takes it
    print(f"{C.run_name(args)} on {args.dataset}: {len(training.x_train)} train / {len(data.x_val)} validation images")
    print(training.model)
    wandb_run = start_wandb(args)
    callbacks = training.trainer.callbacks
    if wandb_run is not None:
        callbacks.append(WandbLogger(wandb_run))
    checkpoint = ModelCheckpoint(args.save) if args.save else None
    if checkpoint:
        callbacks.append(checkpoint)
    if args.backup:
        callbacks.append(BackupAndRestore(args.backup))
    trainer = training.trainer
    try:
        history = training.fit()
    except (OSError, ValueError) as e:
        # Found when training begins, before any step: --save/--backup on a disk too full for the
        # model, a --backup file from a run with other options.
        print(f"{prog}: error: {e.strerror if isinstance(e, OSError) and e.strerror else e}", file=sys.stderr)
        return 2
    if checkpoint and checkpoint.best_epoch is not None:
        trainer.model = nn.load(args.save)
        print(f"best model (epoch {checkpoint.best_epoch}, val_accuracy {checkpoint.best:.4f}) saved to {args.save}")
    if history.status == "diverged":
        if wandb_run is not None:
            wandb_run.finish(exit_code=1)
        print(f"diverged: {history.message}")
        print("test_accuracy: nan")
        return 1
    _, test_acc = trainer.evaluate(data.x_test, data.y_test)
    if getattr(args, "results", None):
        append_line(args.results, json.dumps(result_record(args, trainer, data, history, test_acc), allow_nan=False))
        print(f"appended the run to {args.results}")
    if wandb_run is not None:
        wandb_run.summary["test_accuracy"] = test_acc
        wandb_run.finish()
    print(f"test_accuracy: {test_acc:.4f}")
    return 0
