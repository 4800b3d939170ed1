"""The training loop on real Fashion-MNIST images, metrics, callbacks and divergence."""

from pathlib import Path

import numpy as np
import pytest

from tinygrad_free import backend, kernels, nn, optim
from tinygrad_free.callbacks import Callback, EarlyStopping, ModelCheckpoint
from tinygrad_free.data import load_split
from tinygrad_free.metrics import accuracy, confusion_matrix, per_class_accuracy
from tinygrad_free.recipes import build_mlp
from tinygrad_free.train import Trainer, fit


@pytest.fixture(scope="module")
def fashion():
    return load_split("fashion_mnist")


def small_run(fashion, seed=0, epochs=2, n=3000, optimizer="nadam", lr=1e-3, callbacks=(), **build):
    model = build_mlp(
        784,
        build.pop("num_layers", 2),
        build.pop("hidden_size", 64),
        build.pop("activation", "relu"),
        "xavier",
        rng=seed,
        **build,
    )
    opt = optim.create(optimizer, model.parameters(), lr=lr)
    trainer = Trainer(model, nn.CrossEntropyLoss(), opt, callbacks=list(callbacks), progress=False)
    history = trainer.fit(
        fashion.x_train[:n],
        fashion.y_train[:n],
        epochs=epochs,
        batch_size=32,
        validation_data=(fashion.x_val[:1000], fashion.y_val[:1000]),
        seed=seed,
    )
    return trainer, history


def test_short_real_training_run_clearly_beats_chance(fashion):
    trainer, history = small_run(fashion, epochs=3)
    assert history.status == "completed"
    assert history.last("val_accuracy") > 0.75  # chance is 0.10
    assert history.history["train_loss"][-1] < history.history["train_loss"][0]
    _, test_acc = trainer.evaluate(fashion.x_test, fashion.y_test)
    assert test_acc > 0.75
    assert set(history.history) >= {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"}


def test_same_seed_same_data_same_config_gives_identical_history_and_weights(fashion):
    a, ha = small_run(fashion, epochs=1, n=1000)
    b, hb = small_run(fashion, epochs=1, n=1000)
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        assert ha.history[key] == hb.history[key]
    for (_, p), (_, q) in zip(a.model.named_parameters(), b.model.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    c, hc = small_run(fashion, seed=1, epochs=1, n=1000)
    assert hc.history["train_loss"] != ha.history["train_loss"]


def test_diverging_run_stops_at_once_with_status_diverged(fashion):
    seen = []

    class Count(Callback):
        def on_epoch_end(self, trainer, logs):
            seen.append(logs["epoch"])

    _, history = small_run(
        fashion, epochs=5, n=2000, optimizer="sgd", lr=1e4, activation="identity", callbacks=[Count()]
    )
    assert history.status == "diverged"
    assert "NaN" in history.message
    assert len(seen) < 5


def test_early_stopping_stops_the_run(fashion):
    stopper = EarlyStopping(monitor="val_loss", patience=1, min_delta=10.0)
    _, history = small_run(fashion, epochs=5, n=500, callbacks=[stopper])
    assert history.status == "stopped" and len(history.history["epoch"]) == 2
    assert "early stopping" in history.message


def test_checkpoint_keeps_the_best_model_by_validation_accuracy(fashion, tmp_path):
    path = tmp_path / "best.npz"
    ckpt = ModelCheckpoint(path)
    trainer, history = small_run(fashion, epochs=3, n=1000, callbacks=[ckpt])
    best = int(np.argmax(history.history["val_accuracy"]))
    assert ckpt.best_epoch == best + 1 and ckpt.best == max(history.history["val_accuracy"])
    loaded = nn.load(path)
    _, acc = Trainer(loaded, nn.CrossEntropyLoss(), optim.SGD(loaded.parameters())).evaluate(
        fashion.x_val[:1000], fashion.y_val[:1000]
    )
    assert acc == pytest.approx(ckpt.best)


def test_fit_prints_one_line_per_epoch(fashion, capsys):
    model = build_mlp(784, 1, 16, "tanh", "xavier", rng=0)
    fit(
        model,
        nn.SoftmaxMSELoss(),
        optim.Adam(model.parameters()),
        fashion.x_train[:256],
        fashion.y_train[:256],
        epochs=2,
        batch_size=64,
        validation_data=(fashion.x_val[:100], fashion.y_val[:100]),
        progress=False,
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 2 and "val_acc" in lines[0]


def test_bad_epochs_and_batch_sizes_are_rejected(fashion):
    model = build_mlp(784, 1, 8, "tanh", "xavier", rng=0)
    trainer = Trainer(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters()))
    with pytest.raises(ValueError, match="epochs"):
        trainer.fit(fashion.x_train[:10], fashion.y_train[:10], epochs=0)
    with pytest.raises(ValueError, match="batch_size"):
        trainer.fit(fashion.x_train[:10], fashion.y_train[:10], batch_size=0)


def test_metrics_accuracy_confusion_and_per_class():
    y = np.array([0, 0, 1, 2, 2, 2])
    p = np.array([0, 1, 1, 2, 0, 2])
    assert accuracy(y, p) == pytest.approx(4 / 6)
    assert accuracy(y, np.eye(3)[p]) == accuracy(y, p)
    cm = confusion_matrix(y, p, 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    np.testing.assert_allclose(per_class_accuracy(cm), [0.5, 1.0, 2 / 3])
    with pytest.raises(ValueError, match="0..2"):
        confusion_matrix(y, p + 1, 3)


def test_build_mlp_accepts_a_list_of_widths():
    model = build_mlp(784, None, [64, 32], "relu", "he", rng=0)
    assert [m.out_features for m in model] == [64, 32, 10]
    with pytest.raises(ValueError, match="num_layers"):
        build_mlp(784, 3, [64, 32])


def test_cosine_schedule_decays_the_lr_every_step_from_the_base_rate(fashion):
    model = build_mlp(784, 1, 8, "tanh", "xavier", rng=0)
    opt = optim.SGD(model.parameters(), lr=0.1)
    seen = []

    class Spy(Callback):
        def on_epoch_end(self, trainer, logs):
            seen.append(opt.last_lr)

    Trainer(model, nn.CrossEntropyLoss(), opt, [Spy()], progress=False).fit(
        fashion.x_train[:100], fashion.y_train[:100], epochs=2, batch_size=10, lr_schedule="cosine"
    )
    # 20 steps; the last epoch ends having used step 19 of 20.
    assert seen[0] == pytest.approx(0.1 * 0.5 * (1 + np.cos(np.pi * 9 / 20)))
    assert seen[1] == pytest.approx(0.1 * 0.5 * (1 + np.cos(np.pi * 19 / 20)))
    assert opt.lr == 0.1 and opt.schedule is None  # fit lent the optimizer its schedule
    with pytest.raises(ValueError, match="unknown lr schedule"):
        Trainer(model, nn.CrossEntropyLoss(), opt).fit(fashion.x_train[:10], fashion.y_train[:10], lr_schedule="step")


def test_readme_api_tour_runs_as_written():
    import runpy

    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(Path(__file__).resolve().parents[1] / "scripts" / "api_tour.py"), run_name="__main__")
    assert e.value.code == 0


def test_a_full_training_step_is_the_same_on_both_backends(fashion):
    from tinygrad_free import use_backend

    results = {}
    for name in ("numpy", "numba"):
        with use_backend(name):
            for act, opt_name, loss_cls in (
                ("tanh", "nadam", nn.CrossEntropyLoss),
                ("sigmoid", "adam", nn.SoftmaxMSELoss),
                ("relu", "momentum", nn.CrossEntropyLoss),
            ):
                model = build_mlp(784, 2, 32, act, "xavier", rng=0)
                opt = optim.create(opt_name, model.parameters(), weight_decay=5e-4)
                loss_fn = loss_cls()
                losses = []
                for i in range(3):
                    xb, yb = fashion.x_train[i * 16 : (i + 1) * 16], fashion.y_train[i * 16 : (i + 1) * 16]
                    losses.append(loss_fn(model(xb), yb))
                    model.backward(loss_fn.backward(), input_grad=False)
                    opt.step(loss=losses[-1])
                    opt.zero_grad()
                results[name, act] = (losses, [p.data.copy() for p in model.parameters()])
    for act in ("tanh", "sigmoid", "relu"):
        (la, wa), (lb, wb) = results["numpy", act], results["numba", act]
        np.testing.assert_allclose(la, lb, rtol=1e-5)
        for a, b in zip(wa, wb):  # float32 rounding (the rational tanh is within a few ulp)
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_training_flushes_subnormals_to_zero_and_restores_the_mode_after(fashion):
    from tinygrad_free.fpenv import flush_denormals

    seen = []

    class Probe(Callback):
        def on_epoch_end(self, trainer, logs):
            seen.append(float(np.float32(1e-38) * np.float32(0.01)))

    with flush_denormals() as supported:
        pass
    small_run(fashion, epochs=1, n=200, callbacks=[Probe()])
    assert seen == [0.0 if supported else pytest.approx(1e-40)]
    assert float(np.float32(1e-38) * np.float32(0.01)) != 0.0


def _threads_seen(threads, batch_size, width=32, backend_name="numba", blas=2):
    """(BLAS, numba) threads during a training epoch and after fit, with the process set to
    ``blas`` BLAS threads and two numba threads."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    x, y = rng.random((64, 784)).astype(np.float32), rng.integers(0, 10, 64)
    model = build_mlp(784, 1, width, "relu", rng=0)
    trainer = Trainer(
        model, nn.CrossEntropyLoss(), optim.create("adam", model.parameters()), progress=False, threads=threads
    )
    seen, train_epoch = [], trainer._train_epoch
    trainer._train_epoch = lambda *a: seen.append(_threads()) or train_epoch(*a)
    with (
        threadpool_limits(limits=blas, user_api="blas"),
        kernels.parallel.num_threads(2),
        backend.use_backend(backend_name),
    ):
        trainer.fit(x, y, epochs=1, batch_size=batch_size)
        after = _threads()
    return seen[0], after


def _threads():
    import numba
    from threadpoolctl import threadpool_info

    return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"), numba.get_num_threads()


needs_two_threads = pytest.mark.skipif(
    not kernels.HAVE_NUMBA or __import__("numba").config.NUMBA_NUM_THREADS < 2 or not kernels.parallel.layer_ok(),
    reason="needs numba with two threads and its OpenMP or TBB layer",
)


@needs_two_threads
def test_explicit_settings_keep_the_threads_asked_for_and_restore_them_after():
    assert _threads_seen(None, batch_size=16) == ((2, 2), (2, 2))
    assert _threads_seen(1, batch_size=64, width=128) == ((1, 1), (2, 2))


@needs_two_threads
def test_auto_threads_are_a_measured_choice_and_restored_after():
    during, after = _threads_seen("auto", batch_size=16, width=128)
    assert during in ((1, 1), (2, 2)) and after == (2, 2)


@pytest.mark.parametrize("bad", [0, -1, True, "two", 1.5])
def test_bad_thread_counts_are_rejected(bad):
    model = build_mlp(4, 1, 4, "relu", rng=0)
    with pytest.raises(ValueError, match="threads"):
        Trainer(model, nn.CrossEntropyLoss(), optim.create("adam", model.parameters()), threads=bad)
