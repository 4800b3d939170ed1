"""The misuses that once gave silently wrong numbers or misleading errors: each now gives PyTorch's
numbers or a clear error naming what was wrong and what is allowed."""

import json

import numpy as np
import pytest

from tinygrad_free import gradcheck, nn, optim
from tinygrad_free.callbacks import BackupAndRestore, Callback, EarlyStopping, ModelCheckpoint
from tinygrad_free.gradcheck import GradcheckError
from tinygrad_free.train import Trainer

F64 = np.float64


def two_head_graph(dtype=F64):
    x = nn.Input(5, dtype=dtype)
    h = nn.Dense(5, 6, activation="tanh", dtype=dtype, rng=0)(x)
    return nn.Graph(inputs=x, outputs=[nn.Dense(6, 3, dtype=dtype, rng=1)(h), nn.Dense(6, 4, dtype=dtype, rng=2)(h)])


# --- 1. one loss object, two outputs ---
def test_one_loss_object_for_two_heads_refuses_a_plain_backward_it_cannot_pair(rng):
    g, ce = two_head_graph(), nn.CrossEntropyLoss()
    x = rng.standard_normal((8, 5))
    o1, o2 = g(x)
    ce(o1, rng.integers(0, 3, 8))
    ce(o2, rng.integers(0, 4, 8))
    with pytest.raises(
        RuntimeError, match=r"CrossEntropyLoss.backward: this CrossEntropyLoss ran forward 2 times.*begin_update"
    ):
        ce.backward()


def test_one_loss_object_for_two_heads_pairs_each_call_through_begin_update(rng):
    x, y1, y2 = rng.standard_normal((8, 5)), rng.integers(0, 3, 8), rng.integers(0, 4, 8)
    grads = []
    for shared in (True, False):
        g = two_head_graph()
        ce_a = nn.CrossEntropyLoss()
        ce_b = ce_a if shared else nn.CrossEntropyLoss()
        o1, o2 = g(x)
        _, back1 = ce_a.begin_update(o1, y1)
        _, back2 = ce_b.begin_update(o2, y2)
        g.backward((back1(), back2()))
        grads.append([p.grad.copy() for p in g.parameters()])
    for a, b in zip(*grads):
        np.testing.assert_array_equal(a, b)


# --- 2. evaluate/predict keep the model's mode ---
def test_evaluate_and_predict_give_every_module_its_own_mode_back(rng):
    bn = nn.BatchNorm(4)
    model = nn.Sequential(nn.Dense(6, 4, rng=0), bn, nn.Dropout(0.5, rng=0), nn.Dense(4, 3, rng=1))
    trainer = Trainer(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), progress=False)
    x, y = rng.random((20, 6), dtype=np.float32), rng.integers(0, 3, 20)
    model.eval()
    trainer.predict(x)
    trainer.evaluate(x, y)
    assert not any(m.training for m in model.modules())
    model.train()
    bn.eval()  # a frozen BatchNorm inside a model in training
    trainer.predict(x)
    trainer.fit(x, y, epochs=1, batch_size=8)
    assert [m.training for m in model.modules()] == [True, True, False, True, True]


def test_inference_saves_nothing_for_a_backward(rng):
    layer = nn.Dense(6, 3, rng=0)
    trainer = Trainer(layer, nn.CrossEntropyLoss(), optim.SGD(layer.parameters(), lr=0.1), progress=False)
    trainer.predict(rng.random((5, 6), dtype=np.float32))
    assert "_x" not in vars(layer) and layer._calls.pending is None
    with pytest.raises(RuntimeError, match="ran under nn.no_grad"):
        layer.backward(np.ones((5, 3), np.float32))


# --- 3. a user's layer editing grad_out in place ---
class InPlaceReLU(nn.Module):
    """ReLU as course notes write it: the gradient edited in place and returned."""

    def forward(self, x):
        self.mask = x <= 0
        return np.maximum(x, 0)

    def backward(self, grad_out):
        grad_out[self.mask] = 0
        return grad_out


@pytest.mark.parametrize("where", ["residual", "graph_add", "graph_add_other_order", "siamese"])
def test_a_users_layer_editing_grad_out_in_place_leaves_the_other_branch_of_a_fan_out_right(rng, where):
    x = rng.standard_normal((6, 4))
    if where == "residual":
        model = nn.Sequential(nn.Dense(4, 4, dtype=F64, rng=0), nn.Residual(InPlaceReLU()))
    elif where.startswith("graph_add"):
        inp = nn.Input(4, dtype=F64)
        h = nn.Dense(4, 4, dtype=F64, rng=0)(inp)
        branches = [InPlaceReLU()(h), nn.Dense(4, 4, dtype=F64, rng=1)(h)]
        if where.endswith("other_order"):  # the ReLU's backward runs first and shares Add's gradient
            branches.reverse()
        model = nn.Graph(inputs=inp, outputs=nn.Add()(*branches))
    else:

        class Twice(nn.Module):
            def __init__(self):
                super().__init__()
                self.relu = InPlaceReLU()

            def forward(self, a):
                ya, self.back_a = self.relu.begin_update(a)
                yb, self.back_b = self.relu.begin_update(-a)
                return ya + yb

            def backward(self, grad_out):
                return self.back_a(grad_out) - self.back_b(grad_out)

        model = nn.Sequential(nn.Dense(4, 4, dtype=F64, rng=0), Twice())
    gradcheck(model, x)


# --- 4. parameters no backward reached ---
def torch_two_head(g):
    torch = pytest.importorskip("torch")
    lin = [m for m in g.modules() if isinstance(m, nn.Dense)]
    ref = [torch.nn.Linear(m.in_features, m.out_features, dtype=torch.float64) for m in lin]
    with torch.no_grad():
        for t, m in zip(ref, lin):
            t.weight.copy_(torch.tensor(m.W.data.T))
            t.bias.copy_(torch.tensor(m.b.data))
    return torch, ref


@pytest.mark.parametrize("name", ["sgd", "momentum", "nag", "rmsprop", "adam", "nadam"])
def test_a_head_no_backward_reached_stays_put_and_counts_its_own_steps_as_pytorch(rng, name):
    """Four steps on head 1 only, then two on both: PyTorch (zero_grad(set_to_none=True)) skips
    head 2 until it has a gradient, and then starts its step count (Adam's bias correction) at 1."""
    g = two_head_graph()
    torch, (trunk, head1, head2) = torch_two_head(g)
    kwargs = dict(lr=0.05, weight_decay=0.1)
    torch_opt = {
        "sgd": lambda ps: torch.optim.SGD(ps, **kwargs),
        "momentum": lambda ps: torch.optim.SGD(ps, momentum=0.9, **kwargs),
        "nag": lambda ps: torch.optim.SGD(ps, momentum=0.9, nesterov=True, **kwargs),
        "rmsprop": lambda ps: torch.optim.RMSprop(ps, alpha=0.9, eps=1e-8, **kwargs),
        "adam": lambda ps: torch.optim.Adam(ps, **kwargs),
        "nadam": lambda ps: torch.optim.NAdam(ps, momentum_decay=0.004, **kwargs),
    }[name]
    ours = optim.create(name, g.parameters(), **kwargs, **({"momentum_decay": 0.004} if name == "nadam" else {}))
    # torch decays biases too; ours decays only weight matrices, so give torch two groups
    weights = [m.weight for m in (trunk, head1, head2)]
    biases = [m.bias for m in (trunk, head1, head2)]
    ref = torch_opt([{"params": weights}, {"params": biases, "weight_decay": 0.0}])
    x = rng.standard_normal((8, 5))
    for step in range(6):
        both = step >= 4
        gy1, gy2 = rng.standard_normal((8, 3)), rng.standard_normal((8, 4))
        o1, o2 = g(x)
        g.backward((gy1, gy2 if both else None))
        ours.step()
        ours.zero_grad()
        xt = torch.tensor(x)
        h = torch.tanh(trunk(xt))
        loss = (head1(h) * torch.tensor(gy1)).sum()
        if both:
            loss = loss + (head2(h) * torch.tensor(gy2)).sum()
        loss.backward()
        ref.step()
        ref.zero_grad(set_to_none=True)
    lin = [m for m in g.modules() if isinstance(m, nn.Dense)]
    # torch keeps NAdam's mu_product as a float32 scalar, hence its tolerance
    tol = dict(rtol=1e-7, atol=1e-9) if name == "nadam" else dict(rtol=1e-12, atol=1e-14)
    for m, t in zip(lin, (trunk, head1, head2)):
        np.testing.assert_allclose(m.W.data, t.weight.detach().numpy().T, **tol)
        np.testing.assert_allclose(m.b.data, t.bias.detach().numpy(), **tol)


def test_a_fresh_parameter_has_no_gradient_until_a_backward_reaches_it(rng):
    model = nn.Sequential(nn.Dense(3, 2, rng=0))
    assert not any(p.has_grad for p in model.parameters())
    before = [p.data.copy() for p in model.parameters()]
    opt = optim.Adam(model.parameters(), weight_decay=0.5)
    opt.step()  # nothing reached: nothing moves, not even by weight decay
    for b, p in zip(before, model.parameters()):
        np.testing.assert_array_equal(b, p.data)
    model(rng.random((4, 3), dtype=np.float32))
    model.backward(np.ones((4, 2), np.float32))
    assert all(p.has_grad for p in model.parameters())
    assert opt.state_dict()["steps"] == {"0.W": 0, "0.b": 0}
    opt.step()
    assert opt.state_dict()["steps"] == {"0.W": 1, "0.b": 1}


# --- 5. the thread count changes no result ---
@pytest.mark.parametrize("batch", [13, 200])
def test_a_convnet_and_a_dense_layer_train_to_the_same_bits_on_one_and_two_threads(batch):
    from tinygrad_free import threads

    if threads.available_threads() < 2:
        pytest.skip("needs two CPUs")
    rng = np.random.default_rng(0)
    x = rng.random((batch, 3, 9, 9), dtype=np.float32)
    y = rng.integers(0, 4, batch)
    weights = []
    for setting in (1, 2):
        r = np.random.default_rng(1)
        model = nn.Sequential(
            nn.Conv2D(3, 5, 3, stride=2, padding=1, activation="relu", rng=r),
            nn.Flatten(),
            nn.Dense(5 * 5 * 5, 784, activation="tanh", rng=r),
            nn.Dense(784, 4, rng=r),
        )
        trainer = Trainer(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters()), progress=False, threads=setting)
        trainer.fit(x, y, epochs=2, batch_size=batch, seed=0)
        weights.append([p.data.copy() for p in model.parameters()])
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape", [(16, 784, 128), (64, 784, 128), (1024, 784, 128), (13, 27, 5)])
def test_every_dense_kernel_gives_the_same_bits_at_any_blas_thread_count(shape, each_backend):
    from threadpoolctl import threadpool_limits

    from tinygrad_free import backend

    m, k, n = shape
    rng = np.random.default_rng(0)
    x, W = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    gy = rng.standard_normal((m, n)).astype(np.float32)
    results = []
    for t in (1, 2):
        with threadpool_limits(t, user_api="blas"):
            ops = backend.ops()
            y, dz, dW, dx = (
                np.empty((m, n), np.float32),
                np.empty((m, n), np.float32),
                np.empty_like(W),
                np.empty_like(x),
            )
            ops.dense_forward(x, W, None, 2, y)
            ops.dense_backward(x, W, y, gy, 2, dz, dW, 0.0, None, dx)
            results.append((y, dW, dx))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


# --- 6. Dropout's random state in a resumed run ---
class Interrupt(Callback):
    def on_epoch_end(self, trainer, logs):
        if logs["epoch"] == 1:
            raise KeyboardInterrupt


def dropout_run(tmp_path, interrupt):
    model = nn.Sequential(nn.Dense(6, 16, activation="relu", rng=0), nn.Dropout(0.5, rng=1), nn.Dense(16, 3, rng=2))
    callbacks = [BackupAndRestore(tmp_path / "state.npz")] + ([Interrupt()] if interrupt else [])
    trainer = Trainer(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters()), callbacks, progress=False)
    rng = np.random.default_rng(0)
    trainer.fit(rng.random((40, 6), dtype=np.float32), rng.integers(0, 3, 40), epochs=3, batch_size=8)
    return [p.data.copy() for p in model.parameters()]


def test_a_run_resumed_from_its_backup_draws_the_dropout_masks_of_the_uninterrupted_run(tmp_path):
    whole = dropout_run(tmp_path / "a", interrupt=False)
    with pytest.raises(KeyboardInterrupt):
        dropout_run(tmp_path / "b", interrupt=True)
    assert (tmp_path / "b" / "state.npz").exists()
    resumed = dropout_run(tmp_path / "b", interrupt=False)
    for a, b in zip(whole, resumed):
        np.testing.assert_array_equal(a, b)


def test_a_saved_model_keeps_its_generators_state(tmp_path, rng):
    model = nn.Sequential(nn.Dense(4, 4, rng=0), nn.Dropout(0.5, rng=3))
    x = rng.random((5, 4), dtype=np.float32)
    model(x)  # the generator has moved on from its seed
    model.save(tmp_path / "m.npz")
    again = nn.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(model(x), again(x))


# --- 8. wrong-shaped gradients ---
@pytest.mark.parametrize(
    "module, inputs, grad, match",
    [
        (nn.Softmax(), [(4, 3)], (3,), r"Softmax.backward: expected a gradient of shape \(4, 3\).*got \(3,\)"),
        (nn.Softmax(), [(4, 3)], (4, 1), r"Softmax.backward: expected a gradient of shape \(4, 3\).*got \(4, 1\)"),
        (
            nn.Concat(),
            [(4, 3), (4, 3)],
            (4, 5),
            r"Concat.backward: expected a gradient of shape \(4, 6\).*got \(4, 5\)",
        ),
        (nn.Add(), [(4, 3), (4, 3)], (3,), r"Add.backward: expected a gradient of shape \(4, 3\).*got \(3,\)"),
        (nn.Multiply(), [(4, 3), (4, 3)], (4, 1), r"Multiply.backward: expected a gradient of shape \(4, 3\).*(4, 1)"),
    ],
)
def test_a_gradient_of_another_shape_than_the_output_is_refused_not_broadcast(module, inputs, grad, match, rng):
    module(*[rng.standard_normal(s) for s in inputs])
    with pytest.raises(ValueError, match=match):
        module.backward(np.ones(grad))


def test_a_gradient_that_is_not_an_array_is_refused_naming_the_module(rng):
    layer = nn.Dense(3, 2, dtype=F64, rng=0)
    layer(rng.standard_normal((2, 3)))
    with pytest.raises(
        TypeError, match=r"Dense.backward: the gradient must be a numpy array of shape \(2, 2\).*got a list"
    ):
        layer.backward([[1.0, 1.0], [1.0, 1.0]])


def test_a_gradient_of_another_float_dtype_is_converted_as_pytorch_does(rng):
    layer = nn.Dense(3, 2, rng=0)  # float32
    x = rng.random((2, 3), dtype=np.float32)
    layer(x)
    gx = layer.backward(np.ones((2, 2)))  # float64
    assert gx.dtype == np.float32 and layer.W.grad.dtype == np.float32


# --- 9. Input without dtype ---
def test_an_input_without_dtype_takes_the_dtype_of_the_layers_it_feeds(rng):
    x = nn.Input(6)
    h = nn.ReLU()(x)  # no parameters: the dtype is still open
    model = nn.Graph(inputs=x, outputs=nn.Dense(6, 2, dtype=F64, rng=0)(h))
    assert x.dtype == np.float64 and h.dtype == np.float64
    gradcheck(model, rng.standard_normal((3, 6)))


def test_an_input_feeding_layers_of_two_dtypes_names_both():
    x = nn.Input(6)
    nn.Dense(6, 2, rng=0)(x)
    with pytest.raises(
        ValueError, match=r"nn.Input without dtype= feeds Dense\(6, 2\) \(float32\) and Dense\(6, 3\) \(float64\)"
    ):
        nn.Dense(6, 3, dtype=F64, rng=1)(x)


# --- 10, 11. plain backward after begin_update, after an eval-mode forward ---
def test_a_plain_backward_after_begin_update_says_to_call_the_callback(rng):
    layer = nn.Dense(3, 2, rng=0)
    layer.begin_update(rng.random((4, 3), dtype=np.float32))
    with pytest.raises(RuntimeError, match=r"paired with its own backward.*Call the callback begin_update returned"):
        layer.backward(np.ones((4, 2), np.float32))


def test_a_forward_in_eval_mode_after_one_in_training_makes_a_plain_backward_ambiguous(rng):
    model = nn.Sequential(nn.Dense(3, 2, rng=0))
    model.train()
    model(rng.random((4, 3), dtype=np.float32))
    model.eval()
    model(rng.random((4, 3), dtype=np.float32))
    with pytest.raises(RuntimeError, match=r"ran forward 2 times with gradients enabled.*eval mode records too"):
        model.backward(np.ones((4, 2), np.float32))


def test_after_an_ambiguous_backward_the_next_forward_and_backward_work(rng):
    layer = nn.Dense(3, 2, dtype=F64, rng=0)
    layer(rng.standard_normal((4, 3)))
    layer(rng.standard_normal((4, 3)))
    with pytest.raises(RuntimeError, match="those calls are dropped"):
        layer.backward(np.ones((4, 2)))
    with pytest.raises(RuntimeError, match="already used by an earlier backward|no forward"):
        layer.backward(np.ones((4, 2)))
    x = rng.standard_normal((4, 3))
    layer(x)
    layer.zero_grad()
    layer.backward(np.ones((4, 2)))
    np.testing.assert_allclose(layer.W.grad, x.T @ np.ones((4, 2)), rtol=1e-12)


def test_refilling_the_input_buffer_before_the_backward_leaves_that_calls_gradients_right(rng):
    """Gradient accumulation over micro-batches through one reused buffer."""
    layer = nn.Dense(3, 2, dtype=F64, rng=0)
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    buf = a.copy()
    _, back_a = layer.begin_update(buf)
    buf[...] = b  # the next micro-batch
    _, back_b = layer.begin_update(buf)
    back_a(np.ones((4, 2)))
    back_b(np.ones((4, 2)))
    np.testing.assert_allclose(layer.W.grad, (a + b).T @ np.ones((4, 2)), rtol=1e-12)


def test_a_backward_after_its_parameters_changed_is_refused(rng):
    model = nn.Sequential(nn.Dense(3, 2, rng=0))
    opt = optim.SGD(model.parameters(), lr=0.1)
    x = rng.random((4, 3), dtype=np.float32)
    model(x)
    model.backward(np.ones((4, 2), np.float32))
    model(x)
    opt.step()  # the step belongs after the backward
    with pytest.raises(RuntimeError, match=r"Dense.backward: its parameter 'W' changed \(an optimizer step"):
        model.backward(np.ones((4, 2), np.float32))
    model(x)
    model[0].W.data = np.zeros((3, 2), np.float32)
    with pytest.raises(RuntimeError, match="parameter 'W' changed"):
        model.backward(np.ones((4, 2), np.float32))


def test_a_forward_under_no_grad_leaves_the_pending_call_to_a_plain_backward(rng):
    layer = nn.Dense(3, 2, dtype=F64, rng=0)
    x = rng.standard_normal((4, 3))
    layer(x)
    with nn.no_grad():
        layer(rng.standard_normal((4, 3)))
    gx = layer.backward(np.ones((4, 2)))
    np.testing.assert_allclose(layer.W.grad, x.T @ np.ones((4, 2)), rtol=1e-12)
    np.testing.assert_allclose(gx, np.ones((4, 2)) @ layer.W.data.T, rtol=1e-12)


# --- 12. a frozen BatchNorm backpropagates ---
def test_a_frozen_batchnorm_inside_a_training_model_gives_pytorchs_gradients(rng):
    torch = pytest.importorskip("torch")
    bn = nn.BatchNorm(4, dtype=F64)
    bn.running_mean[...] = rng.standard_normal(4)
    bn.running_var[...] = rng.uniform(0.5, 2.0, 4)
    bn.gamma.data[...] = rng.uniform(0.5, 2.0, 4)
    model = nn.Sequential(
        nn.Dense(3, 4, dtype=F64, rng=0), bn, nn.Dropout(0.3, rng=0), nn.Dense(4, 2, dtype=F64, rng=1)
    )
    model.train()
    bn.eval()
    model[2].eval()
    ref = torch.nn.Sequential(
        torch.nn.Linear(3, 4, dtype=torch.float64),
        torch.nn.BatchNorm1d(4, dtype=torch.float64),
        torch.nn.Dropout(0.3),
        torch.nn.Linear(4, 2, dtype=torch.float64),
    )
    with torch.no_grad():
        for i in (0, 3):
            ref[i].weight.copy_(torch.tensor(model[i].W.data.T))
            ref[i].bias.copy_(torch.tensor(model[i].b.data))
        ref[1].weight.copy_(torch.tensor(bn.gamma.data))
        ref[1].running_mean.copy_(torch.tensor(bn.running_mean))
        ref[1].running_var.copy_(torch.tensor(bn.running_var))
    ref.train()
    ref[1].eval()
    ref[2].eval()
    x, gy = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(xt)
    yt.backward(torch.tensor(gy))
    y = model(x)
    gx = model.backward(gy)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(bn.gamma.grad, ref[1].weight.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(bn.beta.grad, ref[1].bias.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(model[0].W.grad, ref[0].weight.grad.numpy().T, rtol=1e-10)
    gradcheck(model, x)


# --- 13. a step that raises ---
def test_a_step_that_raises_changes_no_optimizer_state_and_may_be_retried(rng):
    def trained(losses):
        model = nn.Sequential(nn.Dense(3, 2, dtype=F64, rng=0))
        opt = optim.Eve(model.parameters())
        for loss in losses:
            model(np.ones((2, 3)))
            model.backward(np.ones((2, 2)))
            try:
                opt.step(loss=loss)
            except ValueError as e:
                assert "finite, positive loss" in str(e)
                opt.step(loss=1.0)  # the retry
            opt.zero_grad()
        return opt.state_dict(), model[0].W.data.copy()

    (state_a, w_a), (state_b, w_b) = trained([2.0, 0.0, 1.5]), trained([2.0, 1.0, 1.5])
    assert state_a["t"] == state_b["t"] == 3 and state_a["steps"] == state_b["steps"]
    np.testing.assert_array_equal(w_a, w_b)


# --- 14. a schedule starting at lr 0 ---
def test_a_warm_up_schedule_may_start_at_lr_zero(rng):
    model = nn.Sequential(nn.Dense(4, 3, rng=0))
    trainer = Trainer(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-2), progress=False)
    history = trainer.fit(
        rng.random((32, 4), dtype=np.float32),
        rng.integers(0, 3, 32),
        epochs=2,
        batch_size=8,
        lr_schedule=lambda p: min(1, 4 * p),
    )
    assert history.status == "completed" and trainer.optimizer.lr == 1e-2


# --- 15. callbacks monitoring a metric the run will not have ---
@pytest.mark.parametrize("make", [lambda p: EarlyStopping(), lambda p: ModelCheckpoint(p / "best.npz")])
def test_callbacks_monitoring_val_metrics_without_validation_data_are_refused_before_training(make, tmp_path, rng):
    class Epochs(Callback):
        count = 0

        def on_epoch_end(self, trainer, logs):
            Epochs.count += 1

    model = nn.Sequential(nn.Dense(4, 3, rng=0))
    trainer = Trainer(
        model, nn.CrossEntropyLoss(), optim.SGD(model.parameters()), [make(tmp_path), Epochs()], progress=False
    )
    with pytest.raises(ValueError, match=r"monitors 'val_accuracy'.*validation_data=\(x_val, y_val\)"):
        trainer.fit(rng.random((16, 4), dtype=np.float32), rng.integers(0, 3, 16), epochs=2)
    assert Epochs.count == 0


# --- 16. one optimizer, two models ---
def test_one_optimizer_over_two_models_says_how_and_takes_them_by_name():
    enc, dec = nn.Sequential(nn.Dense(4, 3, rng=0)), nn.Sequential(nn.Dense(3, 4, rng=1))
    with pytest.raises(ValueError, match=r"duplicates \['0.W', '0.b'\].*Adam\(\{'enc': encoder, 'dec': decoder\}\)"):
        optim.Adam(enc.parameters() + dec.parameters())
    opt = optim.Adam({"enc": enc, "dec": dec})
    assert list(opt.state_dict()["state"]) == ["enc.0.W", "enc.0.b", "dec.0.W", "dec.0.b"]
    tied = enc[0].W
    assert len(optim.SGD([tied, tied, enc[0].b])._named) == 2  # one parameter listed twice is one


# --- 17. BatchNorm and a last batch of one sample ---
def test_a_last_batch_of_one_sample_that_batchnorm_cannot_take_is_refused_before_training(rng):
    model = nn.Sequential(nn.Dense(4, 6, rng=0), nn.BatchNorm(6), nn.Dropout(0.5, rng=0), nn.Dense(6, 3, rng=1))
    trainer = Trainer(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters()), progress=False)
    x, y = rng.random((33, 4), dtype=np.float32), rng.integers(0, 3, 33)
    state, generators = model.state_dict(), model.generator_state()
    with pytest.raises(
        ValueError, match=r"33 samples in batches of 32 leave a last batch of one sample.*drop_last=True"
    ):
        trainer.fit(x, y, epochs=1, batch_size=32)
    for key, value in model.state_dict().items():  # the probe left no trace
        np.testing.assert_array_equal(value, state[key])
    assert model.generator_state() == generators
    assert trainer.fit(x, y, epochs=1, batch_size=32, drop_last=True).status == "completed"


# --- 18. smaller ones ---
def test_numpy_scalars_in_a_config_save_and_other_values_are_named(tmp_path, rng):
    class Scaled(nn.Module):
        _writes_inputs = False

        def __init__(self, factor, extra=None):
            super().__init__()
            self.factor, self.extra = factor, extra

        def forward(self, x):
            return x * x.dtype.type(self.factor)

        def backward(self, g):
            return g * g.dtype.type(self.factor)

        def get_config(self):
            return {"factor": self.factor, "extra": self.extra}

    model = nn.Sequential(Scaled(np.int64(3)), nn.Dense(2, 2, rng=0))
    model.save(tmp_path / "m.npz")
    x = rng.random((2, 2), dtype=np.float32)
    np.testing.assert_array_equal(nn.load(tmp_path / "m.npz")(x), model(x))
    with pytest.raises(TypeError, match=r"Scaled.get_config\(\)\['extra'\] is set \{1\}.*JSON values"):
        nn.Sequential(Scaled(2, extra={1})).save(tmp_path / "bad.npz")


def test_a_two_output_graph_given_one_array_says_it_takes_a_tuple(rng):
    g = two_head_graph()
    g(rng.standard_normal((4, 5)))
    with pytest.raises(
        ValueError, match=r"Graph.backward: its forward returned 2 outputs of shapes \(\(4, 3\), \(4, 4\)\).*tuple of 2"
    ):
        g.backward(np.ones((4, 3)))


def test_a_residual_around_a_two_output_block_is_refused():
    with pytest.raises(ValueError, match=r"Residual: the block must return one array.*got tuple of 2 outputs"):
        nn.Residual(two_head_graph())(np.ones((2, 5)))


def test_fit_names_the_datas_own_shape_not_the_probes(rng):
    model = nn.Sequential(nn.Dense(5, 3, rng=0))
    trainer = Trainer(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters()), progress=False)
    with pytest.raises(ValueError, match=r"the training data: .*got \(50, 7\) \(the samples of x\)") as info:
        trainer.fit(rng.random((50, 7), dtype=np.float32), rng.integers(0, 3, 50))
    assert "(1, 7)" not in str(info.value)


def test_gradcheck_of_a_random_model_says_it_is_random(rng):
    model = nn.Sequential(nn.Dense(4, 4, dtype=F64, rng=0), nn.Dropout(0.5, rng=0))
    with pytest.raises(GradcheckError, match=r"different outputs for the same input \(Dropout in training mode.*eval"):
        gradcheck(model, rng.standard_normal((3, 4)))
    gradcheck(model.eval(), rng.standard_normal((3, 4)))


def test_a_dense_sigmoid_matches_pytorch_far_in_the_negative_tail():
    torch = pytest.importorskip("torch")
    layer = nn.Dense(1, 1, activation="sigmoid", rng=0)
    layer.W.data[...] = 1.0
    x = np.linspace(-30, 30, 61, dtype=np.float32).reshape(-1, 1)
    with nn.no_grad():
        y = layer(x)
    ref = torch.sigmoid(torch.tensor(x)).numpy()
    np.testing.assert_allclose(y, ref, rtol=2e-7, atol=0)


# --- MSELoss is PyTorch's ---
def test_mseloss_is_pytorchs_regression_loss_and_the_assignments_has_its_own_name(rng):
    torch = pytest.importorskip("torch")
    p, t = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    pt = torch.tensor(p, requires_grad=True)
    ref = torch.nn.MSELoss()(pt, torch.tensor(t))
    ref.backward()
    loss = nn.MSELoss()
    assert loss(p, t) == pytest.approx(ref.item(), rel=1e-14)
    np.testing.assert_allclose(loss.backward(), pt.grad.numpy(), rtol=1e-14)
    gradcheck(nn.MSELoss(), p, t)
    with pytest.raises(ValueError, match=r"MSELoss: target shape \(6,\) differs from the prediction's \(6, 3\)"):
        nn.MSELoss()(p, np.zeros(6))
    assert nn.get_loss("mse").__class__ is nn.SoftmaxMSELoss
    assert json.dumps(nn.SoftmaxMSELoss().get_config()) == "{}"
