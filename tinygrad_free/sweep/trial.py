"""One sweep trial: a configuration trained (through :func:`tinygrad_free.training_run.build_run`, as
scripts/train.py trains it) and summarised as a JSON-safe record; the data cache the trials of a
process share; the callback that lets an Optuna pruner stop a trial."""

import math
import time

from ..callbacks import Callback
from ..config import normalize_config
from ..training_run import build_run
from .results import json_safe

STATUSES = ("completed", "diverged", "pruned", "stopped", "failed")


_DATA_CACHE: dict = {}


def get_data(dataset="fashion_mnist", data_dir=None, seed=0):
    """The dataset's train/validation/test split, loaded once per process and reused by later trials."""
    from ..data import load_split

    key = (dataset, str(data_dir) if data_dir else None, int(seed))
    if key not in _DATA_CACHE:
        if len(_DATA_CACHE) >= 2:  # a sweep rarely needs more than one split; bound the memory
            _DATA_CACHE.pop(next(iter(_DATA_CACHE)))
        _DATA_CACHE[key] = load_split(dataset, data_dir=data_dir, seed=int(seed))
    return _DATA_CACHE[key]


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
    cfg = normalize_config(config)
    if data is None:
        data = get_data(cfg["dataset"], data_dir, cfg["seed"])
    start = time.perf_counter()
    run = build_run(cfg, data, limit=limit, callbacks=list(callbacks), progress=False)
    trainer, model, x_train, data = run.trainer, run.model, run.x_train, run.data
    history = run.fit()
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
    return json_safe(
        {
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
        }
    )


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
