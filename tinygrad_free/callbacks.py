"""What happens around each epoch, kept out of the training loop: logging, checkpoints,
early stopping, resuming a killed run, wandb. A callback overrides any of the hooks; ``logs`` is
the epoch's metrics (``epoch``, ``train_loss``, ``train_accuracy``, ``val_loss``,
``val_accuracy``, ``seconds``)."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import sys
import tempfile
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from .fileio import atomic_open

if TYPE_CHECKING:
    from .nn.module import Module
    from .train import History, Trainer

    PathLike = str | os.PathLike[str]


class Callback:
    # True for a callback that loads a saved run into the trainer (BackupAndRestore): the
    # trainer calls its on_train_begin before the others', which then see the restored history.
    restores_training = False

    def on_train_begin(self, trainer: Trainer) -> None:
        pass

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        """Set ``trainer.stop_training = True`` to stop after this epoch."""

    def on_train_end(self, trainer: Trainer, history: History) -> None:
        pass


class PrintLogger(Callback):
    """One line per epoch: train loss/acc, val loss/acc, seconds."""

    def __init__(self, file: IO[str] | None = None) -> None:
        self.file = file

    def on_train_begin(self, trainer: Trainer) -> None:
        if trainer.compile_seconds:
            print(
                f"kernels compiled/loaded in {trainer.compile_seconds:.2f}s (not counted in epoch times)",
                file=self.file or sys.stdout,
                flush=True,
            )
        if getattr(trainer, "initial_epoch", 0):
            print(f"resuming after epoch {trainer.initial_epoch}", file=self.file or sys.stdout, flush=True)

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        parts = [
            f"epoch {logs['epoch']:>3}",
            f"train_loss {logs['train_loss']:.4f}",
            f"train_acc {logs['train_accuracy']:.4f}",
        ]
        if "val_loss" in logs:
            parts += [f"val_loss {logs['val_loss']:.4f}", f"val_acc {logs['val_accuracy']:.4f}"]
        parts.append(f"{logs['seconds']:.2f}s")
        print("  ".join(parts), file=self.file or sys.stdout, flush=True)

    def on_train_end(self, trainer: Trainer, history: History) -> None:
        if history.status != "completed":
            print(f"status: {history.status}: {history.message}", file=self.file or sys.stdout, flush=True)


def check_monitor(callback: Callback, monitor: str, trainer: Trainer) -> None:
    """Refuse, before training, a monitored metric the run will not produce."""
    metrics = getattr(trainer, "metrics", None)
    if metrics is None or monitor in metrics:
        return
    hint = " (the val_* metrics need fit(..., validation_data=(x_val, y_val)))" if monitor.startswith("val_") else ""
    raise ValueError(
        f"{type(callback).__name__} monitors {monitor!r}, which this fit does not compute{hint}; "
        f"the metrics it computes are {sorted(metrics)}"
    )


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    def __init__(
        self, monitor: str = "val_accuracy", patience: int = 3, min_delta: float = 0.0, mode: str | None = None
    ) -> None:
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.mode = mode or ("min" if "loss" in monitor else "max")
        self.best: float | None = None
        self.wait = 0

    def on_train_begin(self, trainer: Trainer) -> None:
        check_monitor(self, self.monitor, trainer)

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        value = logs[self.monitor]
        better = self.best is None or (
            value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta
        )
        if better:
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            trainer.stop_training = True
            trainer.stop_reason = f"early stopping: {self.monitor} did not improve for {self.patience} epochs"


def check_writable(path: PathLike, need_bytes: int = 0) -> None:
    """Raise ``OSError`` naming the reason unless a file can be written at ``path`` now.

    The checks a save at the end of an epoch would otherwise fail on, made before training:
    ``path`` is not a folder, its nearest existing parent folder is a folder (not a file) in
    which a file can really be created (a read-only mount, missing permissions, a path under
    ``/proc``), and that disk has ``need_bytes`` free. Missing folders are not created (the
    atomic save creates them); nothing is left behind.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(
            errno.EISDIR,
            f"cannot save to {path}: it is a folder; give a file name such as {os.path.join(path, 'model.npz')}",
        )
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise NotADirectoryError(errno.ENOTDIR, f"cannot save to {path}: {folder} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".tmp-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OSError(
            e.errno,
            f"cannot save to {path}: no file can be created in {folder} ({e.strerror}); choose a writable folder",
        ) from None
    free = shutil.disk_usage(folder).free
    if free < need_bytes:
        raise OSError(
            errno.ENOSPC,
            f"cannot save to {path}: {free:,} bytes free on the disk of {folder}, "
            f"the file needs about {need_bytes:,}; free some space or save elsewhere",
        )


def _model_bytes(model: Module) -> int:
    return sum(p.data.nbytes for p in model.parameters())


class ModelCheckpoint(Callback):
    """Save the model (atomically, via ``Module.save``) whenever ``monitor`` reaches a new best.

    Whether ``path`` can be written is checked when training begins, not at the first save.
    In a run resumed by :class:`BackupAndRestore` the best so far is taken from the restored
    history (its model is already at ``path``), so a worse epoch after the resume does not
    replace it.
    """

    def __init__(self, path: PathLike, monitor: str = "val_accuracy", mode: str | None = None) -> None:
        self.path, self.monitor = path, monitor
        self.mode = mode or ("min" if "loss" in monitor else "max")
        self.best: float | None = None
        self.best_epoch: int | None = None

    def on_train_begin(self, trainer: Trainer) -> None:
        check_monitor(self, self.monitor, trainer)
        check_writable(self.path, need_bytes=_model_bytes(trainer.model))
        earlier = trainer.history.history
        if earlier.get(self.monitor) and os.path.exists(self.path):
            self.best = self.best_epoch = None
            for epoch, value in zip(earlier.get("epoch", ()), earlier.get(self.monitor, ())):
                if not math.isnan(value) and self._improves(value):
                    self.best, self.best_epoch = value, epoch

    def _improves(self, value: float) -> bool:
        return self.best is None or (value < self.best if self.mode == "min" else value > self.best)

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        value = logs[self.monitor]
        if math.isnan(value):
            return
        if self._improves(value):
            self.best, self.best_epoch = value, logs["epoch"]
            trainer.model.save(self.path)


class BackupAndRestore(Callback):
    """Resume a killed run where it stopped, with the result of an uninterrupted one.

    After every epoch the training state is written atomically to ``path`` (one ``.npz``, no
    pickle): the weights, the optimizer's ``state_dict`` (step count, moments, base learning
    rate), the states of the model's random generators (``Module.generator_state``: Dropout's
    masks), the number of epochs done and the history so far. When training begins and
    ``path`` exists, that state is loaded into the model and optimizer and the trainer
    continues at the next epoch (``Trainer.fit(initial_epoch=...)``). The trainer's batch order
    and augmentation are drawn per epoch from ``(seed, epoch)``, so with the generators' states
    the epoch number and the seed are the whole random state; a resume with another seed, batch
    size or number of samples is refused, since it would not continue the same run. As Keras's
    ``BackupAndRestore``: the file is deleted when ``fit`` returns (``delete_on_end``), so the
    same command run again afterwards starts afresh; other callbacks' state (early stopping's
    patience, the best model's score) is not part of it.

    A crash while writing leaves the previous file intact (``fileio.atomic_open``).
    """

    FORMAT = "tinygrad_free.training_state/1"
    restores_training = True

    def __init__(self, path: PathLike, delete_on_end: bool = True) -> None:
        self.path, self.delete_on_end = os.fspath(path), delete_on_end
        self.restored_epoch: int | None = None

    def on_train_begin(self, trainer: Trainer) -> None:
        self.restored_epoch = None
        if os.path.exists(self.path):
            self.restored_epoch = self.restore(trainer)
        # Weights, gradients' moments and a margin for the archive's headers.
        check_writable(self.path, need_bytes=3 * _model_bytes(trainer.model) + 65536)

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        self.save(trainer, logs["epoch"])

    def on_train_end(self, trainer: Trainer, history: History) -> None:
        if self.delete_on_end and os.path.exists(self.path):
            os.unlink(self.path)

    def save(self, trainer: Trainer, epoch: int) -> None:
        """Write the state after ``epoch`` epochs to ``self.path``, atomically."""
        opt = trainer.optimizer
        state = opt.state_dict()
        config = state["config"]
        arrays: dict[str, Any] = {f"model/{k}": v for k, v in trainer.model.state_dict().items()}
        state_keys = {}
        for name, per_param in state["state"].items():
            state_keys[name] = sorted(per_param)
            arrays.update({f"optimizer/state/{name}/{k}": v for k, v in per_param.items()})
        arrays.update({f"optimizer/shared/{k}": np.asarray(v) for k, v in state["shared"].items()})
        meta = {
            "format": self.FORMAT,
            "epoch": int(epoch),
            "run": trainer.run_signature,
            "optimizer": {
                "t": int(state["t"]),
                "config": config,
                "state_keys": state_keys,
                "shared_keys": sorted(state["shared"]),
                "steps": state["steps"],
                "schedule": state["schedule"],
            },
            "history": trainer.history.history,
            "generators": trainer.model.generator_state(),
        }
        arrays["meta"] = np.array(json.dumps(meta))
        with atomic_open(self.path) as f:
            np.savez(f, **arrays)

    def restore(self, trainer: Trainer) -> int:
        """Load ``self.path`` into the trainer's model and optimizer; returns the epochs done."""
        try:
            with np.load(self.path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
            meta = json.loads(str(arrays.pop("meta")))
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(
                f"{self.path}: not a readable training state written by BackupAndRestore ({e}); "
                "delete it to start afresh"
            ) from None
        if meta.get("format") != self.FORMAT:
            raise ValueError(f"{self.path}: format {meta.get('format')!r}, expected {self.FORMAT!r}")
        ours = trainer.run_signature
        if meta["run"] != ours:
            diff = ", ".join(
                f"{k} {meta['run'].get(k)} (now {ours.get(k)})" for k in ours if meta["run"].get(k) != ours.get(k)
            )
            raise ValueError(
                f"{self.path} was written by a run with other settings: {diff}; resume with the "
                "same seed, batch size and data, or delete the file to start afresh"
            )
        saved = meta["optimizer"]
        if saved["config"]["name"] != trainer.optimizer.name:
            raise ValueError(
                f"{self.path} holds the state of optimizer {saved['config']['name']!r}, "
                f"the trainer's is {trainer.optimizer.name!r}"
            )
        trainer.model.load_state_dict({k[len("model/") :]: v for k, v in arrays.items() if k.startswith("model/")})
        trainer.model.load_generator_state(meta.get("generators", {}))
        trainer.optimizer.load_state_dict(
            {
                "t": saved["t"],
                "config": saved["config"],
                "shared": {k: arrays[f"optimizer/shared/{k}"] for k in saved["shared_keys"]},
                "state": {
                    name: {k: arrays[f"optimizer/state/{name}/{k}"] for k in keys}
                    for name, keys in saved["state_keys"].items()
                },
                "steps": saved.get("steps"),
                **({"schedule": saved["schedule"]} if "schedule" in saved else {}),
            }
        )
        trainer.initial_epoch = meta["epoch"]
        for key, values in meta["history"].items():
            trainer.history.history[key] = list(values)
        return meta["epoch"]


class WandbLogger(Callback):
    """Log each epoch's metrics to a wandb run (``wandb.init`` is the caller's business)."""

    KEYS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy")

    def __init__(self, run: Any) -> None:
        self.run = run  # a wandb Run (wandb is optional, so not imported here)

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        self.run.log({k: logs[k] for k in self.KEYS if k in logs})

    def on_train_end(self, trainer: Trainer, history: History) -> None:
        self.run.summary["status"] = history.status
