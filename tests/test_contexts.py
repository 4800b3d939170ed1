"""Per-call contexts: reuse without extra code, and a clear error for every misuse of backward."""

import numpy as np
import pytest

from tinygrad_free import gradcheck, nn, optim

F64 = np.float64


class Scale(nn.Module):
    """The smallest layer of the docs (guides/custom-layer.md), unchanged: caches its input on self in forward."""

    def __init__(self):
        super().__init__()
        self.s = nn.Parameter(np.array([2.0]), decay=False)

    def forward(self, x):
        self.x = x
        return x * self.s.data

    def backward(self, grad_out):
        self.s.grad += np.sum(grad_out * self.x, keepdims=True).reshape(1)
        return grad_out * self.s.data

    def get_config(self):
        return {}


def test_a_users_layer_used_twice_gets_each_calls_input_without_extra_code(rng):
    s = Scale()
    model = nn.Sequential(nn.Dense(3, 3, activation="tanh", dtype=F64, rng=0), s, nn.Dense(3, 3, dtype=F64, rng=1), s)
    gradcheck(model, rng.standard_normal((4, 3)))


def test_a_users_layer_backpropagated_through_begin_update_in_any_order(rng):
    s = Scale()
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    ya, back_a = s.begin_update(a)
    yb, back_b = s.begin_update(b)
    back_a(np.ones_like(a))  # forward order: each callback has its own call's x
    back_b(np.ones_like(b))
    assert s.s.grad[0] == pytest.approx(a.sum() + b.sum())
    np.testing.assert_array_equal(s.x, b)  # the module keeps its latest forward's attributes (a copy of b)


def test_a_subclass_calling_super_forward_is_one_call(rng):
    class Doubled(nn.Dense):
        def forward(self, x):
            return super().forward(x) * 2

        def backward(self, grad_out, input_grad=True):
            return super().backward(grad_out * 2, input_grad)

    layer = Doubled(3, 2, activation="tanh", dtype=F64, rng=0)
    gradcheck(layer, rng.standard_normal((4, 3)))


def test_a_backward_after_an_eval_mode_forward_gives_that_computations_gradients(rng):
    """Mode is not grad recording (as in PyTorch): eval changes what Dropout computes, and a
    backward through it is the identity's."""
    model = nn.Sequential(nn.Dense(3, 2, dtype=F64, rng=0), nn.Dropout(0.5, rng=0))
    x = rng.standard_normal((4, 3))
    model.eval()
    model(x)
    g = model.backward(np.ones((4, 2)))
    np.testing.assert_allclose(g, np.ones((4, 2)) @ model[0].W.data.T, rtol=1e-12)
    gradcheck(model, x)


def test_a_second_backward_of_one_forward_is_refused(rng):
    model = nn.Sequential(nn.Dense(3, 2, rng=0), nn.Tanh())
    model(rng.random((4, 3), dtype=np.float32))
    model.backward(np.ones((4, 2), np.float32))
    with pytest.raises(RuntimeError, match="already used by an earlier backward.*backpropagated once"):
        model.backward(np.ones((4, 2), np.float32))


def test_backward_after_a_no_grad_forward_names_no_grad(rng):
    layer = nn.Dense(3, 2, rng=0)
    with nn.no_grad():
        assert not nn.is_grad_enabled()
        y = layer(rng.random((4, 3), dtype=np.float32))
    assert y.flags.writeable and nn.is_grad_enabled()
    with pytest.raises(RuntimeError, match="ran under nn.no_grad"):
        layer.backward(np.ones((4, 2), np.float32))


def test_two_pending_forwards_make_a_plain_backward_refuse_to_guess(rng):
    layer = nn.Dense(3, 2, rng=0)
    layer(rng.random((4, 3), dtype=np.float32))
    layer(rng.random((4, 3), dtype=np.float32))
    with pytest.raises(RuntimeError, match=r"ran forward 2 times.*begin_update.*no_grad"):
        layer.backward(np.ones((4, 2), np.float32))


def test_a_container_that_reuses_a_child_implicitly_is_told_to_pair_the_calls(rng):
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.f = nn.Tanh()

        def forward(self, x):
            return self.f(self.f(x))

        def backward(self, grad_out):
            return self.f.backward(self.f.backward(grad_out))

    model = Twice()
    model(rng.standard_normal((2, 3)))
    with pytest.raises(RuntimeError, match=r"Twice.forward called this Tanh 2 times.*begin_update"):
        model.backward(np.ones((2, 3)))


def test_a_container_calling_each_child_once_needs_no_pairing(rng):
    class UserResidual(nn.Module):
        def __init__(self, block):
            super().__init__()
            self.block = block

        def forward(self, x):
            return x + self.block(x)

        def backward(self, grad_out):
            return grad_out + self.block.backward(grad_out)

        def get_config(self):
            return {"block": self.block}

    res = UserResidual(nn.Dense(3, 3, activation="tanh", dtype=F64, rng=0))
    gradcheck(nn.Sequential(res, nn.Dense(3, 3, dtype=F64, rng=1), res), rng.standard_normal((4, 3)))


def test_an_output_kept_for_backward_cannot_be_modified_in_place(rng):
    class BadResidual(nn.Module):
        def __init__(self):
            super().__init__()
            self.f = nn.Dense(3, 3, activation="tanh", rng=0)

        def forward(self, x):
            out = self.f(x)
            out += x  # would corrupt the y that f's backward reads
            return out

    with pytest.raises(ValueError, match="read-only"):
        BadResidual()(rng.random((2, 3), dtype=np.float32))
    model = nn.Sequential(nn.Dense(3, 3, rng=0))
    y = model(rng.random((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="read-only"):
        y[0, 0] = 1.0
    z = y.copy()  # a copy is the caller's to change
    z += 1
    with nn.no_grad():  # nothing is kept, so nothing to protect
        assert model(rng.random((2, 3), dtype=np.float32)).flags.writeable


class _AddOneInPlace(nn.Module):
    """A user's layer that writes into its input (allowed on its own arrays, never on a kept one)."""

    def forward(self, x):
        x += 1
        return x

    def backward(self, grad):
        return grad


@pytest.mark.parametrize("container", ["sequential", "graph", "residual"])
def test_a_users_layer_inside_a_container_cannot_change_a_kept_output_in_place(rng, container):
    dense = nn.Dense(3, 3, activation="tanh", rng=0)
    if container == "sequential":
        model = nn.Sequential(dense, _AddOneInPlace())
    elif container == "graph":
        x = nn.Input(3)
        model = nn.Graph(inputs=x, outputs=_AddOneInPlace()(dense(x)))
    else:
        model = nn.Sequential(dense, nn.Residual(_AddOneInPlace()))
    with pytest.raises(ValueError, match="read-only"):
        model(rng.random((2, 3), dtype=np.float32))
    with nn.no_grad():  # nothing is kept, so the layer may write
        model(rng.random((2, 3), dtype=np.float32))


def test_a_subclass_with_its_own_forward_gets_read_only_inputs_unless_it_vouches(rng):
    class Shifted(nn.Dense):
        def forward(self, x):
            x += 1
            return super().forward(x)

    class Vouched(Shifted):
        _writes_inputs = False

        def forward(self, x):
            return super().forward(x.copy())

    assert nn.Dense._writes_inputs is False and Shifted._writes_inputs is True
    assert nn.Tanh._writes_inputs is False  # inherits the built-in forward
    first = nn.Dense(3, 3, rng=0)
    with pytest.raises(ValueError, match="read-only"):
        nn.Sequential(first, Shifted(3, 3, rng=1))(rng.random((2, 3), dtype=np.float32))
    nn.Sequential(first, Vouched(3, 3, rng=1))(rng.random((2, 3), dtype=np.float32))


def test_built_in_layers_pass_each_other_writable_arrays_and_the_caller_a_read_only_one(rng):
    """The hot path: a read-only array costs numba's dispatcher its slow type lookup, so between
    built-in layers none is made; the array that reaches user code is still read-only."""
    model = nn.Sequential(nn.Dense(3, 4, activation="tanh", rng=0), nn.Dense(4, 2, rng=1))
    y = model(rng.random((2, 3), dtype=np.float32))
    assert model[1]._x.flags.writeable and model[1]._x is model[0]._y
    assert not y.flags.writeable
    y, backprop = model.begin_update(rng.random((2, 3), dtype=np.float32))
    assert not y.flags.writeable
    backprop(np.ones_like(y))


def test_a_layer_returning_its_input_leaves_the_callers_array_writable(rng):
    x = rng.standard_normal((2, 3))
    y = nn.Identity()(x)
    assert not y.flags.writeable and x.flags.writeable


def test_assigning_parameter_data_after_packing_copies_into_the_optimizers_buffer(rng):
    model = nn.Sequential(nn.Dense(3, 2, rng=0))
    opt = optim.SGD(model.parameters(), lr=1.0)
    new = np.full((3, 2), 5.0, np.float32)
    model[0].W.data = new
    assert model[0].W.data is not new and np.all(model[0].W.data == 5.0)
    x = np.ones((1, 3), np.float32)
    model(x)
    model.backward(np.ones((1, 2), np.float32))
    model[0].W.grad = model[0].W.grad + 1.0  # also copied, so the step sees it
    opt.step()
    np.testing.assert_allclose(model[0].W.data, 5.0 - 2.0)
    model[0].W.grad = None  # PyTorch's way to clear it
    assert not model[0].W.grad.any()


@pytest.mark.parametrize(
    "value, match",
    [
        (np.zeros((2, 3), np.float32), r"Parameter '0.W': the new data has shape \(2, 3\).*shape is \(3, 2\)"),
        (np.zeros((3, 2), np.float64), r"the new data has dtype float64, but the parameter is float32.*astype"),
    ],
)
def test_assigning_parameter_data_of_another_shape_or_dtype_raises(value, match):
    model = nn.Sequential(nn.Dense(3, 2, rng=0))
    optim.Adam(model.parameters())
    with pytest.raises(ValueError, match=match):
        model[0].W.data = value


def test_an_optimizer_whose_parameters_were_repacked_refuses_to_step(rng):
    model = nn.Sequential(nn.Dense(3, 2, rng=0))
    old = optim.Adam(model.parameters())
    new = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(RuntimeError, match=r"Adam.step: parameter '0.W' is now packed by another optimizer \(SGD"):
        old.step()
    new.step()


def test_per_tensor_rules_see_each_parameter_in_its_own_shape():
    from tinygrad_free.optim.optimizer import Optimizer

    class NormalizedSGD(Optimizer):
        elementwise = False
        defaults = dict(lr=0.1)

        def update(self, w, g, state):
            w -= self.lr * g / np.linalg.norm(g)

    model = nn.Sequential(nn.Dense(3, 2, dtype=F64, rng=0))
    opt = NormalizedSGD(model.parameters())
    model[0].W.grad = np.full((3, 2), 3.0, F64)
    model[0].b.grad = np.full(2, 4.0, F64)
    w0, b0 = model[0].W.data.copy(), model[0].b.data.copy()
    opt.step()
    np.testing.assert_allclose(w0 - model[0].W.data, 0.1 / np.sqrt(6), rtol=1e-12)
    np.testing.assert_allclose(b0 - model[0].b.data, 0.1 / np.sqrt(2), rtol=1e-12)
    model[0].W.data = np.zeros((3, 2), F64)  # copied into the array update() gets
    opt.step()
    assert np.all(model[0].W.data < 0)


def test_registering_a_taken_optimizer_name_needs_override():
    from tinygrad_free.optim import OPTIMIZERS, Adam, register

    saved = OPTIMIZERS.snapshot()
    with pytest.raises(ValueError, match=r"optimizer name 'adam' is already registered to .*Adam.*override=True"):

        @register("adam")
        class MyAdam(Adam):
            pass

    assert OPTIMIZERS.get("adam") is Adam
    try:

        @register("adam", override=True)
        class MyAdam2(Adam):
            pass

        assert optim.get("adam") is MyAdam2
    finally:
        OPTIMIZERS.restore(saved)


def test_registering_a_taken_module_name_needs_override():
    @nn.register("tests.scale_block")
    class Block(Scale):
        pass

    with pytest.raises(ValueError, match=r"module name 'tests.scale_block' is already registered.*override=True"):

        @nn.register("tests.scale_block")
        class Other(Scale):
            pass


def test_multi_input_modules_are_called_and_gradchecked_with_several_arrays(rng):
    model = nn.Sequential(nn.Concat(), nn.Dense(5, 2, activation="tanh", dtype=F64, rng=0))
    x1, x2 = rng.standard_normal((3, 2)), rng.standard_normal((3, 3))
    assert model(x1, x2).shape == (3, 2)
    report = gradcheck(model, x1, x2)
    assert [t.name for t in report.tensors] == ["input0", "input1", "0.W", "0.b"] or [
        t.name for t in report.tensors
    ] == ["input0", "input1", "1.W", "1.b"]


def test_the_function_form_of_gradcheck_checks_parameters_too(rng):
    layer = nn.Dense(3, 2, activation="tanh", dtype=F64, rng=0)
    report = gradcheck(layer.begin_update, rng.standard_normal((4, 3)))
    assert [t.name for t in report.tensors] == ["input0", "W", "b"]

    def wrong(x):
        y, back = layer.begin_update(x)

        def backprop(g):
            dx = back(g)
            layer.b.grad += 1.0  # a wrong bias gradient
            return dx

        return y, backprop

    with pytest.raises(AssertionError, match="gradient mismatch in b"):
        gradcheck(wrong, rng.standard_normal((4, 3)), params=layer.named_parameters())


def test_begin_update_under_no_grad_computes_and_its_backprop_says_why_it_cannot(rng):
    layer = nn.Dense(3, 2, rng=0)
    x = rng.random((1, 3), dtype=np.float32)
    with nn.no_grad():
        y, backprop = layer.begin_update(x)
        np.testing.assert_array_equal(y, layer(x))
    with pytest.raises(RuntimeError, match="forward ran under no_grad.*outside no_grad"):
        backprop(np.ones((1, 2), np.float32))


def test_a_float16_dense_is_refused_on_every_backend():
    with pytest.raises(ValueError, match="Dense: dtype must be float32 or float64.*got float16"):
        nn.Dense(3, 2, dtype=np.float16)


def test_gradcheck_names_what_params_must_be():
    layer = nn.Dense(3, 2, dtype=F64, rng=0)
    with pytest.raises(TypeError, match=r"params must be Parameters or \(name, Parameter\) pairs.*got ndarray"):
        gradcheck(layer.begin_update, np.ones((2, 3)), params=[layer.W.data])


def test_release_frees_a_backpropagated_calls_activations_and_keeps_a_pending_ones(rng):
    from tinygrad_free.nn.context import release

    model = nn.Sequential(nn.Dense(4, 3, dtype=F64, rng=0), Scale())
    x = rng.standard_normal((5, 4))
    y = model.forward(x)
    model.backward(np.ones_like(y))
    dense, scale = model[0], model[1]
    assert hasattr(dense, "_x") and hasattr(scale, "x")  # a user may look at the last forward's values
    release(model)
    assert not hasattr(dense, "_x") and not hasattr(scale, "x") and not hasattr(model, "_contexts")
    # The used call stays refused with its own message, not an AttributeError.
    with pytest.raises(RuntimeError, match="already used by an earlier backward"):
        model.backward(np.ones_like(y))
    # A forward not yet backpropagated keeps what its backward needs.
    y = model.forward(x)
    release(model)
    model.backward(np.ones_like(y))
    assert dense.W.grad is not None and np.isfinite(dense.W.grad).all()
    # A later forward's attributes are never taken for the spent ones.
    _, back = scale.begin_update(x)
    back(np.ones_like(x))
    scale.forward(2 * x)
    release(scale)
    np.testing.assert_array_equal(scale.x, 2 * x)


def test_release_keeps_a_number_a_forward_assigned_to_a_plain_attribute(rng):
    from tinygrad_free.nn.context import release

    class Counting(Scale):
        calls = 0

        def forward(self, x):
            self.calls = self.calls + 1  # state in a plain attribute: a buffer is the advice
            return super().forward(x)

    layer = Counting()
    for _ in range(2):
        y = layer.forward(rng.standard_normal((2, 3)))
        layer.backward(np.ones_like(y))
        release(layer)
    assert layer.calls == 2 and not hasattr(layer, "x")


def test_the_trainer_holds_no_activations_of_its_last_step_after_an_epoch(rng):
    from tinygrad_free.train import Trainer

    model = nn.Sequential(nn.Dense(6, 8, activation="relu", rng=0), nn.Dense(8, 3, rng=1))
    x, y = rng.standard_normal((40, 6)).astype(np.float32), rng.integers(0, 3, 40)
    trainer = Trainer(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), progress=False, threads=1)
    trainer.fit(x, y, epochs=1, batch_size=8, validation_data=(x, y))
    assert not any(hasattr(m, "_x") or hasattr(m, "_y") for m in model), "the last step's activations are still held"
