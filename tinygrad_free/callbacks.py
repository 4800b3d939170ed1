"""What happens around each epoch, kept out of the training loop: logging, checkpoints,
early stopping, wandb. A callback overrides any of the hooks; ``logs`` is the epoch's metrics
(``epoch``, ``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy``, ``seconds``)."""
import math
import sys


class Callback:
    def on_train_begin(self, trainer):
        pass

    def on_epoch_end(self, trainer, logs):
        """Set ``trainer.stop_training = True`` to stop after this epoch."""

    def on_train_end(self, trainer, history):
        pass


class PrintLogger(Callback):
    """One line per epoch: train loss/acc, val loss/acc, seconds."""

    def __init__(self, file=None):
        self.file = file

    def on_train_begin(self, trainer):
        if trainer.compile_seconds:
            print(f"kernels compiled/loaded in {trainer.compile_seconds:.2f}s (not counted in epoch times)",
                  file=self.file or sys.stdout, flush=True)

    def on_epoch_end(self, trainer, logs):
        parts = [f"epoch {logs['epoch']:>3}", f"train_loss {logs['train_loss']:.4f}",
                 f"train_acc {logs['train_accuracy']:.4f}"]
        if "val_loss" in logs:
            parts += [f"val_loss {logs['val_loss']:.4f}", f"val_acc {logs['val_accuracy']:.4f}"]
        parts.append(f"{logs['seconds']:.2f}s")
        print("  ".join(parts), file=self.file or sys.stdout, flush=True)

    def on_train_end(self, trainer, history):
        if history.status != "completed":
            print(f"status: {history.status}: {history.message}", file=self.file or sys.stdout, flush=True)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    def __init__(self, monitor="val_accuracy", patience=3, min_delta=0.0, mode=None):
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.mode = mode or ("min" if "loss" in monitor else "max")
        self.best, self.wait = None, 0

    def on_epoch_end(self, trainer, logs):
        value = logs[self.monitor]
        better = self.best is None or (value < self.best - self.min_delta if self.mode == "min"
                                       else value > self.best + self.min_delta)
        if better:
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            trainer.stop_training = True
            trainer.stop_reason = f"early stopping: {self.monitor} did not improve for {self.patience} epochs"


class ModelCheckpoint(Callback):
    """Save the model (atomically, via ``Module.save``) whenever ``monitor`` reaches a new best."""

    def __init__(self, path, monitor="val_accuracy", mode=None):
        self.path, self.monitor = path, monitor
        self.mode = mode or ("min" if "loss" in monitor else "max")
        self.best = None
        self.best_epoch = None

    def on_epoch_end(self, trainer, logs):
        value = logs[self.monitor]
        if math.isnan(value):
            return
        if self.best is None or (value < self.best if self.mode == "min" else value > self.best):
            self.best, self.best_epoch = value, logs["epoch"]
            trainer.model.save(self.path)


class WandbLogger(Callback):
    """Log each epoch's metrics to a wandb run (``wandb.init`` is the caller's business)."""

    KEYS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy")

    def __init__(self, run):
        self.run = run

    def on_epoch_end(self, trainer, logs):
        self.run.log({k: logs[k] for k in self.KEYS if k in logs})

    def on_train_end(self, trainer, history):
        self.run.summary["status"] = history.status
