"""What fit checks before it trains (so a mistake costs no epoch), the learning rate it leaves
behind, and how an optimizer prints."""

import numpy as np
import pytest

from tinygrad_free import nn, optim
from tinygrad_free.callbacks import Callback
from tinygrad_free.recipes import build_mlp
from tinygrad_free.train import Trainer, fit

FEATURES, CLASSES = 12, 3


@pytest.fixture
def data():
    rng = np.random.default_rng(7)
    x = rng.random((120, FEATURES), dtype=np.float32)
    y = (x[:, 0] * CLASSES).astype(np.int64)  # learnable: the class is in feature 0
    return x, y


def make_trainer(optimizer="adam", lr=1e-3, callbacks=(), opt_class=None, activation="tanh"):
    model = build_mlp(FEATURES, 1, 8, activation, "xavier", num_classes=CLASSES, rng=0)
    opt = (opt_class or optim.get(optimizer))(model.parameters(), lr=lr)
    return Trainer(model, nn.CrossEntropyLoss(), opt, list(callbacks), progress=False)


def weights(trainer):
    return [p.data.copy() for p in trainer.model.parameters()]


def fails_before_any_step(trainer, match, *args, **kwargs):
    with pytest.raises(ValueError, match=match):
        trainer.fit(*args, **kwargs)
    assert trainer.optimizer.t == 0


def test_empty_training_data_is_refused_by_name_not_divided_by(data):
    x, y = data
    fails_before_any_step(make_trainer(), r"the training data is empty \(x has shape \(0, 12\)\)", x[:0], y[:0])
    with pytest.raises(ValueError, match="training data is empty"):
        fit(make_trainer().model, nn.CrossEntropyLoss(), make_trainer().optimizer, [], [], callbacks=[])


def test_python_lists_train_exactly_like_the_arrays_they_hold(data):
    x, y = data
    a, b = make_trainer(), make_trainer()
    ha = a.fit(x, y, epochs=2, seed=1, validation_data=(x[:30], y[:30]))
    hb = b.fit(x.tolist(), y.tolist(), epochs=2, seed=1, validation_data=(x[:30].tolist(), y[:30].tolist()))
    assert ha.history["train_loss"] == hb.history["train_loss"]
    assert ha.history["val_accuracy"] == hb.history["val_accuracy"]
    for p, q in zip(weights(a), weights(b)):
        np.testing.assert_array_equal(p, q)
    assert b.evaluate(x.tolist(), y.tolist()) == b.evaluate(x, y)


@pytest.mark.parametrize(
    "bad_x, match",
    [
        ([[1.0, 2.0], [3.0]], "x could not be converted to a float32 array"),
        (list(range(120)), r"x must have one row per sample.*got shape \(120,\); for a single feature use x.reshape"),
    ],
)
def test_malformed_training_samples_are_named(data, bad_x, match):
    fails_before_any_step(make_trainer(), match, bad_x, data[1][: len(bad_x)])


def test_x_and_y_of_different_lengths_name_both_lengths(data):
    x, y = data
    fails_before_any_step(make_trainer(), "x and y have different lengths: 120 samples but 119 labels", x, y[:-1])


@pytest.mark.parametrize(
    "make_validation, match",
    [
        (lambda x, y: (x,), r"validation_data must be a pair \(x_val, y_val\).*got a tuple of length 1"),
        (lambda x, y: (x, y, np.ones(len(y))), "sample weights are not supported.*got a tuple of length 3"),
        (lambda x, y: x, "validation_data must be a pair.*got type ndarray"),
        (lambda x, y: (x[:, :5], y), r"x_val's samples have shape \(5,\), the training data's \(12,\)"),
        (lambda x, y: (x, y[:10]), "x_val and y_val have different lengths: 120 samples but 10 labels"),
        (lambda x, y: (x[:0], y[:0]), "validation_data is empty"),
        (lambda x, y: (x.astype(np.float64), y), "validation_data: .*expected float32 input"),
        (lambda x, y: (x, y.astype(np.float64)), "validation_data: labels must be integers"),
        (
            lambda x, y: (x, np.where(np.arange(len(y)) == 50, 3, y)),
            r"validation_data: labels must be in 0..2 \(the model has 3 outputs\), got labels from 0 to 3",
        ),
    ],
)
def test_bad_validation_data_fails_before_the_first_epoch(data, make_validation, match):
    x, y = data
    epochs_run = []

    class Count(Callback):
        def on_epoch_end(self, trainer, logs):
            epochs_run.append(logs["epoch"])

    fails_before_any_step(make_trainer(callbacks=[Count()]), match, x, y, validation_data=make_validation(x, y))
    assert epochs_run == []


def test_training_labels_beyond_the_models_outputs_fail_before_training(data):
    x, y = data
    y = y.copy()
    y[-1] = 7  # the last batch would only find it after almost a whole epoch
    fails_before_any_step(make_trainer(), r"the training data: labels must be in 0..2 .* from 0 to 7", x, y)


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_seed_must_be_a_non_negative_integer(data, seed):
    fails_before_any_step(make_trainer(), f"seed must be a non-negative integer, got {seed!r}", *data, seed=seed)


@pytest.mark.parametrize("where", ["train", "validation"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels_are_blamed_on_the_data_not_the_learning_rate(data, where, value):
    x, y = data
    bad = x.copy()
    bad[17, 4] = value
    bad[90, 0] = value
    args = (bad, y, (x, y)) if where == "train" else (x, y, (bad, y))
    name = "the training data (x)" if where == "train" else "the validation data (x_val)"
    with pytest.raises(ValueError) as e:
        make_trainer().fit(args[0], args[1], validation_data=args[2])
    message = str(e.value)
    assert message.startswith(f"{name} contains NaN or inf in 2 of 120 samples (first: index 17)")
    assert "the data is bad, not the learning rate" in message
    assert "lower the learning rate" not in message


class RecordingAdam(optim.Adam):
    """Adam that records the learning rate of every step."""

    def prepare(self, loss):
        self.rates = getattr(self, "rates", [])
        self.rates.append(self.lr)


def test_a_schedule_leaves_the_base_rate_and_the_next_fit_trains_as_asked(data):
    x, y = data
    trainer = make_trainer(opt_class=RecordingAdam, lr=1e-3)
    opt = trainer.optimizer
    trainer.fit(x, y, epochs=2, batch_size=40, lr_schedule="cosine")
    first = opt.rates
    assert first[0] == 1e-3 and first[-1] == pytest.approx(1e-3 * 0.5 * (1 + np.cos(np.pi * 5 / 6)))
    assert opt.lr == 1e-3
    opt.rates = []
    trainer.fit(x, y, epochs=1, batch_size=40)  # constant: the base rate throughout
    assert opt.rates == [1e-3] * 3
    opt.rates = []
    trainer.fit(x, y, epochs=2, batch_size=40, lr_schedule="cosine")  # the same decay again, from the base
    assert opt.rates == first
    assert opt.lr == 1e-3


def test_the_base_rate_is_restored_when_a_scheduled_run_raises_or_diverges(data):
    x, y = data

    class Crash(Callback):
        def on_epoch_end(self, trainer, logs):
            raise RuntimeError("callback failed")

    trainer = make_trainer(lr=1e-2, callbacks=[Crash()])
    with pytest.raises(RuntimeError, match="callback failed"):
        trainer.fit(x, y, epochs=3, batch_size=10, lr_schedule="linear")
    assert trainer.optimizer.t == 12 and trainer.optimizer.lr == 1e-2

    diverging = make_trainer(optimizer="sgd", lr=1e4, activation="identity")
    history = diverging.fit(x, y, epochs=3, batch_size=10, lr_schedule="cosine")
    assert history.status == "diverged"
    assert diverging.optimizer.lr == 1e4


def test_a_callback_that_changes_lr_under_a_constant_schedule_keeps_its_change(data):
    class Halve(Callback):
        def on_epoch_end(self, trainer, logs):
            trainer.optimizer.lr = trainer.optimizer.lr / 2

    trainer = make_trainer(lr=1e-2, callbacks=[Halve()])
    trainer.fit(*data, epochs=2)
    assert trainer.optimizer.lr == 2.5e-3


@pytest.mark.parametrize("initial_epoch", [-1, 4, 1.0, True])
def test_initial_epoch_must_lie_within_the_run(data, initial_epoch):
    fails_before_any_step(
        make_trainer(),
        r"initial_epoch must be an integer in \[0, epochs=3\]",
        *data,
        epochs=3,
        initial_epoch=initial_epoch,
    )


def test_initial_epoch_continues_an_interrupted_run_with_the_same_batches_and_rates(data):
    """Two epochs, then epochs 3-4 with initial_epoch=2, equal four epochs at once (the batch
    order and the schedule are functions of the epoch number)."""
    x, y = data
    whole = make_trainer()
    h = whole.fit(x, y, epochs=4, seed=5, lr_schedule="cosine")
    split = make_trainer()
    # The first half must follow the 4-epoch schedule too: a callback stops it after epoch 2.

    class StopAfterTwo(Callback):
        def on_epoch_end(self, trainer, logs):
            trainer.stop_training = logs["epoch"] == 2

    split.callbacks = [StopAfterTwo()]
    split.fit(x, y, epochs=4, seed=5, lr_schedule="cosine")
    split.callbacks = []
    rest = split.fit(x, y, epochs=4, seed=5, lr_schedule="cosine", initial_epoch=2)
    assert rest.history["epoch"] == [3, 4]
    assert rest.history["train_loss"] == h.history["train_loss"][2:]
    for p, q in zip(weights(whole), weights(split)):
        np.testing.assert_array_equal(p, q)


def test_optimizer_repr_shows_hyperparameters_that_are_not_numbers():
    class Clipped(optim.SGD):
        defaults = dict(lr=1e-2, clip=None, mode="global")

    model = build_mlp(FEATURES, 0, 8, num_classes=CLASSES, rng=0)
    text = repr(Clipped(model.parameters()))
    assert text == "Clipped(clip=None, lr=0.01, mode='global', weight_decay=0, params=2, t=0)"
    assert (
        repr(optim.Adam(model.parameters(), lr=1e-3))
        == "Adam(beta1=0.9, beta2=0.999, eps=1e-08, lr=0.001, weight_decay=0, params=2, t=0)"
    )
