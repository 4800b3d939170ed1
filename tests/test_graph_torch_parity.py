"""Networks that reuse modules, branch and merge: gradients equal PyTorch autograd's (float64)."""

import numpy as np
import pytest

from tinygrad_free import nn

torch = pytest.importorskip("torch")
F64 = np.float64
RTOL = 1e-6


def dense(i, o, act=None, seed=0):
    return nn.Dense(i, o, activation=act, dtype=F64, rng=seed)


class Torch:
    """Torch leaf tensors mirroring our parameters; ``lin(d, x)`` applies one of our Dense layers."""

    def __init__(self, model):
        self.t = {id(p): torch.tensor(p.data, requires_grad=True) for p in model.parameters()}
        self.names = {id(p): n for n, p in model.named_parameters()}
        self.model = model

    def lin(self, d, x):
        z = x @ self.t[id(d.W)]
        if d.b is not None:
            z = z + self.t[id(d.b)]
        act = {"identity": lambda v: v, "tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}
        return act[nn.activation.NAMES[d.act_code]](z)

    def check_grads(self):
        for p in self.model.parameters():
            np.testing.assert_allclose(
                p.grad, self.t[id(p)].grad.numpy(), rtol=RTOL, atol=1e-12, err_msg=self.names[id(p)]
            )


def leaf(x):
    return torch.tensor(x, requires_grad=True)


def backprop_torch(out, R):
    outs, Rs = (out, R) if isinstance(out, tuple) else ((out,), (R,))
    sum((o * torch.tensor(r)).sum() for o, r in zip(outs, Rs)).backward()


def test_a_reused_activation_in_sequential_matches_torch(rng):
    d1, d2, d3, act = dense(5, 4, seed=1), dense(4, 4, seed=2), dense(4, 3, seed=3), nn.Tanh()
    model = nn.Sequential(d1, act, d2, act, d3)
    x, R = rng.standard_normal((6, 5)), rng.standard_normal((6, 3))
    y = model(x)
    dx = model.backward(R)
    T = Torch(model)
    tx = leaf(x)
    ty = T.lin(d3, torch.tanh(T.lin(d2, torch.tanh(T.lin(d1, tx)))))
    backprop_torch(ty, R)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=RTOL)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=RTOL)
    T.check_grads()


def test_a_tied_dense_used_twice_sums_its_gradients_as_torch(rng):
    d1, tied, d3 = dense(5, 4, "relu", 1), dense(4, 4, "tanh", 2), dense(4, 2, seed=3)
    model = nn.Sequential(d1, tied, tied, d3)
    assert [n for n, _ in model.named_parameters()] == ["0.W", "0.b", "1.W", "1.b", "3.W", "3.b"]
    x, R = rng.standard_normal((3, 5)), rng.standard_normal((3, 2))
    model(x)
    model.backward(R)
    T = Torch(model)
    backprop_torch(T.lin(d3, T.lin(tied, T.lin(tied, T.lin(d1, leaf(x))))), R)
    T.check_grads()


class Siamese(nn.Module):
    """y = f(a) - f(b), with the branches backpropagated in FORWARD order."""

    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, a, b):
        ya, self.back_a = self.f.begin_update(a)
        yb, self.back_b = self.f.begin_update(b)
        return ya - yb

    def backward(self, grad_out):
        return self.back_a(grad_out), self.back_b(-grad_out)


def test_a_siamese_pair_backpropagated_in_forward_order_matches_torch(rng):
    f = nn.Sequential(dense(4, 6, "tanh", 1), dense(6, 3, "sigmoid", 2))
    model = Siamese(f)
    a, b, R = rng.standard_normal((5, 4)), rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    model(a, b)
    da, db = model.backward(R)
    T = Torch(model)
    ta, tb = leaf(a), leaf(b)

    def tf(v):
        return T.lin(f[1], T.lin(f[0], v))

    backprop_torch(tf(ta) - tf(tb), R)
    np.testing.assert_allclose(da, ta.grad.numpy(), rtol=RTOL)
    np.testing.assert_allclose(db, tb.grad.numpy(), rtol=RTOL)
    T.check_grads()


def test_a_siamese_graph_with_one_shared_branch_matches_torch(rng):
    f = dense(4, 3, "tanh", 1)
    a, b = nn.Input(4, F64), nn.Input(4, F64)
    head = dense(6, 2, seed=2)
    model = nn.Graph(inputs=[a, b], outputs=head(nn.Concat()(f(a), f(b))))
    xa, xb, R = rng.standard_normal((5, 4)), rng.standard_normal((5, 4)), rng.standard_normal((5, 2))
    model(xa, xb)
    ga, gb = model.backward(R)
    T = Torch(model)
    ta, tb = leaf(xa), leaf(xb)
    backprop_torch(T.lin(head, torch.cat([T.lin(f, ta), T.lin(f, tb)], dim=1)), R)
    np.testing.assert_allclose(ga, ta.grad.numpy(), rtol=RTOL)
    np.testing.assert_allclose(gb, tb.grad.numpy(), rtol=RTOL)
    T.check_grads()


def test_a_residual_with_fan_out_matches_torch(rng):
    d1, d2, d3 = dense(5, 4, "relu", 1), dense(4, 4, "tanh", 2), dense(8, 3, seed=3)
    x = nn.Input(5, F64)
    h = d1(x)
    r = nn.Add()(h, d2(h))  # h feeds d2, Add and Concat: three consumers
    model = nn.Graph(inputs=x, outputs=d3(nn.Concat()(r, h)))
    xv, R = rng.standard_normal((6, 5)), rng.standard_normal((6, 3))
    y = model(xv)
    dx = model.backward(R)
    T = Torch(model)
    tx = leaf(xv)
    th = T.lin(d1, tx)
    ty = T.lin(d3, torch.cat([th + T.lin(d2, th), th], dim=1))
    backprop_torch(ty, R)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=RTOL)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=RTOL)
    T.check_grads()


def test_residual_blocks_sharing_one_block_match_torch(rng):
    block = nn.Sequential(dense(4, 4, "tanh", 1), dense(4, 4, seed=2))
    res = nn.Residual(block)
    model = nn.Sequential(res, nn.ReLU(), res)
    x, R = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    model(x)
    dx = model.backward(R)
    T = Torch(model)
    tx = leaf(x)

    def tres(v):
        return v + T.lin(block[1], T.lin(block[0], v))

    backprop_torch(tres(torch.relu(tres(tx))), R)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=RTOL)
    T.check_grads()


def test_a_two_input_two_output_graph_with_multiply_matches_torch(rng):
    a, b = nn.Input(3, F64), nn.Input(4, F64)
    da, db, dc = dense(3, 5, "sigmoid", 1), dense(4, 5, "tanh", 2), dense(5, 2, seed=3)
    m = nn.Multiply()(da(a), db(b))
    model = nn.Graph(inputs=[a, b], outputs=[dc(m), m])
    xa, xb = rng.standard_normal((4, 3)), rng.standard_normal((4, 4))
    R = (rng.standard_normal((4, 2)), rng.standard_normal((4, 5)))
    ya, ym = model(xa, xb)
    ga, gb = model.backward(R)
    T = Torch(model)
    ta, tb = leaf(xa), leaf(xb)
    tm = T.lin(da, ta) * T.lin(db, tb)
    backprop_torch((T.lin(dc, tm), tm), R)
    np.testing.assert_allclose(ym, tm.detach().numpy(), rtol=RTOL)
    np.testing.assert_allclose(ga, ta.grad.numpy(), rtol=RTOL)
    np.testing.assert_allclose(gb, tb.grad.numpy(), rtol=RTOL)
    T.check_grads()


def test_gradients_accumulate_over_two_backward_passes_as_torch(rng):
    act = nn.ReLU()
    model = nn.Sequential(dense(4, 5, seed=1), act, dense(5, 5, seed=2), act, dense(5, 2, seed=3))
    x1, x2 = rng.standard_normal((3, 4)), rng.standard_normal((2, 4))
    R1, R2 = rng.standard_normal((3, 2)), rng.standard_normal((2, 2))
    for x, R in ((x1, R1), (x2, R2)):
        model(x)
        model.backward(R)
    T = Torch(model)
    for x, R in ((x1, R1), (x2, R2)):
        v = leaf(x)
        for layer in model:
            v = T.lin(layer, v) if isinstance(layer, nn.Dense) else torch.relu(v)
        backprop_torch(v, R)
    T.check_grads()
