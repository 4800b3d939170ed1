"""The training loop: epochs of forward -> loss -> backward -> optimizer.step(), with
per-epoch evaluation, callbacks, and a clean stop when the run diverges."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np

from . import backend
from .callbacks import PrintLogger
from .data import BatchIterator, as_samples, check_finite
from .fpenv import flush_denormals
from .metrics import accuracy
from .nn.context import mode, no_grad, release
from .nn.loss import ClassificationLoss, NonFiniteError
from .optim import schedule
from .threads import StepThreads
from .threads import limit as limit_threads

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from ._typing import Array
    from .callbacks import Callback
    from .nn.loss import Loss
    from .nn.module import Module
    from .optim.optimizer import Optimizer
    from .optim.schedule import Schedule

    #: A batch transform (``tinygrad_free.augment``): ``transform(xb, rng) -> xb'``.
    Augment = Callable[[Array, np.random.Generator], Array]
    Threads = int | Literal["auto"] | None


@dataclass
class History:
    """What ``fit`` returns: per-epoch metrics and how the run ended.

    ``status`` is ``"completed"``, ``"diverged"`` (NaN/inf loss) or ``"stopped"`` (a callback).
    """

    history: dict[str, list[Any]] = field(default_factory=dict)
    status: str = "completed"
    message: str = ""
    compile_seconds: float = 0.0

    def append(self, logs: dict[str, Any]) -> None:
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def last(self, key: str, default: Any = float("nan")) -> Any:
        values = self.history.get(key)
        return values[-1] if values else default

    def best(self, key: str = "val_accuracy") -> float:
        values = self.history.get(key) or [float("nan")]
        return max(values)


def _want_progress(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    return sys.stderr.isatty() and not os.environ.get("CI")


class Trainer:
    """Runs training of ``model`` with ``loss_fn`` and ``optimizer``.

    Parameters
    ----------
    model : nn.Module
    loss_fn : nn.Loss
    optimizer : optim.Optimizer
    callbacks : list of Callback
        Called per epoch; ``PrintLogger()`` prints one line per epoch.
    progress : bool or None
        tqdm progress bar over steps; None shows it only when stderr is a terminal outside CI.
    flush_denormals : bool
        Treat subnormal floats as zero during ``fit`` (see ``tinygrad_free.fpenv``): a network
        whose weights decay to nothing otherwise trains 10-100x slower. As XLA does on CPU.
    threads : "auto", int or None
        Threads for the training steps: an int sets both BLAS's (threadpoolctl) and numba's (the
        optimizer update's parallel twin, see ``kernels.parallel``); None leaves both alone.
        ``"auto"`` measures: blocks of steps at one thread and at all available ones, the faster
        kept, the other count re-timed now and then beside it (more often when the two are
        close, at once when the step time jumps: another process took a core) and taken when
        it has become faster (see ``tinygrad_free.threads``). The count changes no result.
    """

    def __init__(
        self,
        model: Module,
        loss_fn: Loss,
        optimizer: Optimizer,
        callbacks: Iterable[Callback] = (),
        progress: bool | None = None,
        flush_denormals: bool = True,
        threads: Threads = "auto",
    ) -> None:
        positive_int = isinstance(threads, int) and not isinstance(threads, bool) and threads > 0
        if not (positive_int or threads in (None, "auto")):
            raise ValueError(f"threads must be 'auto', a positive int or None, got {threads!r}")
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.flush_denormals = flush_denormals
        self.threads = threads
        self.callbacks = list(callbacks)
        self.progress = progress
        self.stop_training = False
        self.stop_reason = ""
        self.compile_seconds = 0.0

    def fit(
        self,
        x: ArrayLike,
        y: ArrayLike,
        epochs: int = 1,
        batch_size: int = 32,
        validation_data: tuple[ArrayLike, ArrayLike] | None = None,
        seed: int = 0,
        eval_batch_size: int = 1024,
        lr_schedule: str | Schedule | None = "constant",
        augment: Augment | None = None,
        initial_epoch: int = 0,
        drop_last: bool = False,
    ) -> History:
        """Train for ``epochs`` over shuffled mini-batches; returns a :class:`History`.

        The training loss/accuracy of an epoch are averaged over its batches as they are seen
        (as Keras reports them); validation metrics are a full pass in eval mode after the epoch.
        The same seed, data, model and optimizer give an identical history and weights.
        ``lr_schedule`` (a name, an ``optim.schedule.Schedule`` or a function of the progress)
        is given to the optimizer for this fit, spanning its steps (``total_steps``, and ``start``
        at the optimizer's step count when the fit's first epoch began); the optimizer's own
        schedule is back when ``fit`` returns. The default, "constant", leaves the optimizer's
        schedule (None, or one you gave it) in charge. ``fit`` never changes ``optimizer.lr``.
        ``augment`` transforms every training batch (see ``tinygrad_free.augment``), never the
        validation data.
        ``initial_epoch`` (as in Keras) is the number of epochs already done: training runs
        epochs ``initial_epoch + 1 .. epochs``, with the batch order and learning rate those
        epochs have in an uninterrupted run (``callbacks.BackupAndRestore`` sets it on resume).

        Before the first step the arguments and data are checked: lists are converted to arrays
        once (as Keras does), and empty data, mismatched lengths, a malformed
        ``validation_data`` and NaN/inf in either data set (a min and a max over each, about
        40 ms for Fashion-MNIST) raise ``ValueError`` naming what was wrong before the kernels
        compile; then one sample of each set goes through the model and the loss, and labels
        outside the model's outputs are refused, so a bad validation set costs no epoch. When
        the data leaves a last batch of one sample, one training-mode forward of one sample
        (under ``no_grad``, the model's state put back after it) tells whether the model can
        take it (BatchNorm over (N, C) cannot estimate a variance from one value): if not, the
        error says so before training, and ``drop_last=True`` (as PyTorch's DataLoader) skips
        each epoch's incomplete batch.

        The model trains in the modes its modules have (a frozen BatchNorm in eval mode inside
        it stays frozen), or entirely in training mode when the model itself is in eval mode;
        every module has its own mode back when ``fit`` returns. Callbacks that monitor a metric
        ``fit`` will not produce (``val_accuracy`` without ``validation_data``) are refused
        before training.
        """
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if (
            isinstance(initial_epoch, bool)
            or not isinstance(initial_epoch, (int, np.integer))
            or not 0 <= initial_epoch <= epochs
        ):
            raise ValueError(
                f"initial_epoch must be an integer in [0, epochs={epochs}] (the epochs already "
                f"done), got {initial_epoch!r}"
            )
        # (data.as_samples is not annotated yet: it returns the two arrays)
        x, y = cast("tuple[Array, Array]", as_samples(x, y, "the training data", self._input_dtype()))
        validation_data = self._check_validation_data(validation_data, x)
        check_finite(x, "the training data (x)")
        if validation_data is not None:
            check_finite(validation_data[0], "the validation data (x_val)")
        if not isinstance(drop_last, (bool, np.bool_)):
            raise ValueError(f"drop_last must be True or False, got {drop_last!r}")
        batches = BatchIterator(
            x, y, batch_size, shuffle=True, seed=seed, drop_last=bool(drop_last), reuse_buffers=True, transform=augment
        )
        if len(batches) == 0:
            raise ValueError(
                f"drop_last=True with {len(x)} samples and batch_size {batch_size} leaves no batch to train on; "
                "use a batch_size of at most the number of samples"
            )
        own_schedule = lr_schedule not in (None, "constant")
        if own_schedule:
            schedule.get(lr_schedule)  # an unknown name fails here, before the kernels compile
        history = self.history = History()
        self.stop_training, self.stop_reason = False, ""
        self.compile_seconds = history.compile_seconds = self._warmup(augment)
        modes = [(m, m.training) for m in self.model.modules()]
        if not self.model.training:  # a model put in eval mode as a whole trains as a whole
            self.model.train()
        self._check_labels(x, y, validation_data)
        if not drop_last and len(x) % batch_size == 1 and len(x) > 1:
            self._check_last_batch(x, batch_size)
        self.metrics = ["epoch", "train_loss", "train_accuracy", "seconds", "train_seconds"]
        if validation_data is not None:
            self.metrics += ["val_loss", "val_accuracy"]
        # What a resumed run must match to continue the same trajectory (see BackupAndRestore).
        self.run_signature = {"seed": int(seed), "batch_size": int(batch_size), "samples": len(x)}
        if drop_last:
            self.run_signature["drop_last"] = True
        self.initial_epoch = int(initial_epoch)
        opt = self.optimizer
        previous_schedule = opt.schedule
        try:
            # A restoring callback first: the others (a best-model checkpoint) see what it restored.
            for cb in sorted(self.callbacks, key=lambda cb: not getattr(cb, "restores_training", False)):
                cb.on_train_begin(self)
            first = self.initial_epoch
            if not 0 <= first <= epochs:
                raise ValueError(
                    f"training would resume after epoch {first} (set by a callback), but fit was "
                    f"asked for {epochs} epochs in all"
                )
            batches.epoch = first
            if own_schedule:  # after the callbacks: a restored optimizer brings its step count
                fitted = schedule.get(lr_schedule, total_steps=epochs * len(batches))
                assert fitted is not None  # own_schedule: not None, not "constant"
                fitted.start = opt.t - first * len(batches)
                opt.schedule = fitted
            bar = None
            if _want_progress(self.progress):
                from tqdm.auto import tqdm

                bar = tqdm(total=(epochs - first) * len(batches), unit="step", leave=False, dynamic_ncols=True)
            self._train_threads = self._threads_for(batch_size)
            self._tuner = StepThreads() if self.threads == "auto" else None
            # A diverging run overflows before the loss sees NaN; the loss check reports it once,
            # so numpy's per-operation warnings would only be noise.
            try:
                with np.errstate(over="ignore", invalid="ignore"), flush_denormals(self.flush_denormals):
                    self._run_epochs(history, batches, first, epochs, validation_data, eval_batch_size, bar)
            finally:
                if bar is not None:
                    bar.close()
                if self._tuner is not None:
                    self.thread_history = self._tuner.history
                    self._tuner.close()
        finally:
            for m, flag in modes:
                m.__dict__["training"] = flag
            opt.schedule = previous_schedule
        for cb in self.callbacks:
            cb.on_train_end(self, history)
        return history

    def _input_dtype(self) -> np.dtype[Any]:
        """The dtype array-like inputs are converted to: the model's first parameter's."""
        for p in self.model.parameters():
            return p.data.dtype
        return np.dtype(np.float32)

    def _check_validation_data(self, validation_data: Any, x: Array) -> tuple[Array, Array] | None:
        if validation_data is None:
            return None
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            got = (
                f"a {type(validation_data).__name__} of length {len(validation_data)}"
                if isinstance(validation_data, (tuple, list))
                else f"type {type(validation_data).__name__}"
            )
            raise ValueError(
                f"validation_data must be a pair (x_val, y_val) (sample weights are not supported), got {got}"
            )
        x_val, y_val = validation_data
        x_val, y_val = as_samples(x_val, y_val, "validation_data", self._input_dtype(), names=("x_val", "y_val"))
        if x_val.shape[1:] != x.shape[1:]:
            raise ValueError(
                f"validation_data: x_val's samples have shape {x_val.shape[1:]}, the training "
                f"data's {x.shape[1:]}; both must have the same features"
            )
        return x_val, y_val

    def _check_labels(self, x: Array, y: Array, validation_data: tuple[Array, Array] | None) -> None:
        """One sample of each data set through the model and the loss (eval mode, nothing
        learned), and every integer label against the model's number of outputs: a bad
        validation set fails now, not after the first epoch."""
        sets = [("the training data", x, y)]
        if validation_data is not None:
            sets.append(("validation_data", *validation_data))
        with no_grad(), mode(self.model, False):
            for what, xs, ys in sets:
                try:
                    logits = self.model.forward(xs[:1])
                    self.loss_fn.forward(logits, ys[:1])
                except NonFiniteError:
                    pass  # untrained weights can overflow; training reports divergence itself
                except (ValueError, TypeError) as e:
                    # The probe is one sample; the user knows the data by its own shape.
                    message = str(e).replace(str(xs[:1].shape), f"{xs.shape} (the samples of x)")
                    raise (ValueError if isinstance(e, ValueError) else TypeError)(f"{what}: {message}") from e
                classes = logits.shape[1] if getattr(logits, "ndim", 0) == 2 else None
                if classes and ys.ndim == 1 and ys.dtype.kind in "iu":
                    low, high = int(ys.min()), int(ys.max())
                    if low < 0 or high >= classes:
                        raise ValueError(
                            f"{what}: labels must be in 0..{classes - 1} (the model has {classes} "
                            f"outputs), got labels from {low} to {high}"
                        )

    def _check_last_batch(self, x: Array, batch_size: int) -> None:
        """Each epoch ends with a batch of one sample: refuse now if the model cannot train on one
        (BatchNorm over (N, C) needs two values per channel), not at the end of the first epoch."""
        state = self.model.state_dict()  # a training-mode forward moves running statistics
        generators = self.model.generator_state()
        try:
            with no_grad():
                self.model.forward(x[:1])
        except ValueError as e:
            raise ValueError(
                f"{len(x)} samples in batches of {batch_size} leave a last batch of one sample in every epoch, "
                f"and the model cannot train on one: {e}. Pass drop_last=True to skip the incomplete batch "
                "(as PyTorch's DataLoader(drop_last=True)), or choose a batch_size that leaves at least two"
            ) from None
        finally:
            self.model.load_state_dict(state)
            self.model.load_generator_state(generators)

    def _run_epochs(
        self,
        history: History,
        batches: BatchIterator,
        first: int,
        epochs: int,
        validation_data: tuple[Array, Array] | None,
        eval_batch_size: int,
        bar: Any,
    ) -> None:
        for epoch in range(first + 1, epochs + 1):
            start = time.perf_counter()
            try:
                with self._train_threads():
                    train_loss, train_acc = self._train_epoch(batches, bar)
                train_seconds = time.perf_counter() - start
                logs = {"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_acc}
                if validation_data is not None:
                    val_loss, val_acc = self.evaluate(*validation_data, batch_size=eval_batch_size)
                    logs.update(val_loss=val_loss, val_accuracy=val_acc)
            except NonFiniteError as e:
                history.status = "diverged"
                history.message = f"epoch {epoch}: loss became NaN/inf ({e})"
                return
            logs.update(seconds=time.perf_counter() - start, train_seconds=train_seconds)
            history.append(logs)
            for cb in self.callbacks:
                cb.on_epoch_end(self, logs)
            if self.stop_training:
                history.status, history.message = "stopped", self.stop_reason
                return

    def _train_epoch(self, batches: BatchIterator, bar: Any) -> tuple[float, float]:
        model, loss_fn, opt = self.model, self.loss_fn, self.optimizer
        # Our losses count the batch's correct predictions in their kernel; any other loss
        # gets the argmax here.
        counts = isinstance(loss_fn, ClassificationLoss)
        tuner = getattr(self, "_tuner", None)
        tick = tuner.tick if tuner is not None else None
        if tuner is not None:  # the evaluation since the last step is not a step
            tuner.resume()
        total_loss, correct, seen, steps = 0.0, 0, 0, 0
        for xb, yb in batches:
            # Each step pairs its forward with its own backward; the input is data, so layers
            # that can skip its gradient do.
            # The batch buffer stays as it is until after this step's backward, so the model takes it
            # as it is (begin_update would copy a caller's array it cannot vouch for).
            logits, ctx = model._forward_ctx(xb)
            loss, loss_backprop = loss_fn.begin_update(logits, yb)
            model._backward_ctx(ctx, loss_backprop(), input_grad=False)
            opt.step(loss=loss)
            opt.zero_grad()
            if tick is not None:
                tick()
            # Positions, for sequence labels; the labels not ignored (CrossEntropyLoss(ignore_index)).
            n = cast(ClassificationLoss, loss_fn).counted if counts else len(yb)
            total_loss += loss * n
            correct += (
                cast(ClassificationLoss, loss_fn).correct
                if counts
                else int(np.count_nonzero(logits.argmax(axis=1) == yb))
            )
            seen += n
            steps += 1
            if bar is not None and steps % 50 == 0:
                bar.update(50)
                bar.set_postfix(loss=f"{total_loss / seen:.4f}", refresh=False)
        if bar is not None:
            bar.update(steps % 50)
        release(model)  # the last step's activations: not kept past the epoch
        return total_loss / seen, correct / seen

    def predict(self, x: ArrayLike, batch_size: int = 1024) -> Array:
        """Logits for ``x`` (an array, or an array-like converted to the model's dtype), computed
        in eval mode in chunks."""
        if not isinstance(x, np.ndarray):
            x = np.asarray(x, dtype=self._input_dtype())
        # Inference: nothing saved for a backward, and every module's own mode back afterwards;
        # the last training step's activations freed first, not held through the inference's.
        release(self.model)
        with no_grad(), mode(self.model, False):
            return np.concatenate([self.model.forward(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])

    def evaluate(self, x: Array | Sequence[Any], y: ArrayLike, batch_size: int = 1024) -> tuple[float, float]:
        """(mean loss, accuracy) over ``x, y`` in eval mode; (nan, nan) when there are no samples."""
        if not isinstance(y, np.ndarray):
            y = np.asarray(y)
        if len(x) == 0:
            return float("nan"), float("nan")
        logits = self.predict(x, batch_size)
        with no_grad():
            loss = self.loss_fn.forward(logits, y)
        if isinstance(self.loss_fn, ClassificationLoss):  # its kernel counted them (sequences, ignored labels)
            return loss, self.loss_fn.correct / self.loss_fn.counted
        return loss, accuracy(y, logits)

    def _threads_for(self, batch_size: int) -> Callable[[], AbstractContextManager[Any]]:
        """A factory of context managers that set the threads of the training steps
        (threadpoolctl's are single-use, so each epoch makes its own); "auto" is the tuner's."""
        threads = self.threads
        if threads is None or threads == "auto":
            return contextlib.nullcontext
        return partial(limit_threads, threads)

    def _warmup(self, augment: Any = None) -> float:
        """Compile (or load from numba's cache) the kernels of the model's layers, its loss, the
        optimizer and the augmentation, for the model's dtypes, before the clock starts."""
        if backend.get_backend() != "numba":
            return 0.0
        from . import kernels

        modules = [*self.model.modules(), self.loss_fn]
        files = {f for m in modules for f in type(m).kernel_files} | {"optim"} | ({"shift"} if augment else set())
        dtypes = sorted({p.data.dtype for p in self.model.parameters()} or {np.dtype(np.float32)}, key=str)
        return float(kernels.warmup(dtypes, files))


def fit(
    model: Module,
    loss_fn: Loss,
    optimizer: Optimizer,
    x: ArrayLike,
    y: ArrayLike,
    epochs: int = 1,
    batch_size: int = 32,
    validation_data: tuple[ArrayLike, ArrayLike] | None = None,
    seed: int = 0,
    callbacks: Iterable[Callback] | None = None,
    progress: bool | None = None,
    lr_schedule: str | Schedule | None = "constant",
    augment: Augment | None = None,
    initial_epoch: int = 0,
    drop_last: bool = False,
) -> History:
    """Functional form of :meth:`Trainer.fit`; prints one line per epoch unless callbacks are given."""
    callbacks = [PrintLogger()] if callbacks is None else callbacks
    return Trainer(model, loss_fn, optimizer, callbacks, progress).fit(
        x,
        y,
        epochs=epochs,
        batch_size=batch_size,
        validation_data=validation_data,
        seed=seed,
        lr_schedule=lr_schedule,
        augment=augment,
        initial_epoch=initial_epoch,
        drop_last=drop_last,
    )


__all__ = ["Trainer", "History", "fit"]
