"""Optimizers against independent references written from the equations in their docstrings."""

import numpy as np
import pytest

from tinygrad_free import nn, optim


def make_params(rng, dtype=np.float64):
    W = nn.Parameter(rng.standard_normal((3, 4)).astype(dtype), "0.W", decay=True)
    b = nn.Parameter(rng.standard_normal(4).astype(dtype), "0.b", decay=False)
    return [W, b]


class Reference:
    """The update equations, one parameter at a time, in plain float64 NumPy."""

    def __init__(self, name, hp):
        self.name, self.hp, self.t, self.s = name, hp, 0, {}

    def step(self, key, w, g, decay, loss=None):
        hp, name = self.hp, self.name
        lr, wd = hp.get("lr", 1e-2 if name in ("sgd", "momentum", "nag") else 1e-3), hp.get("weight_decay", 0.0)
        if decay:
            g = g + wd * w
        s = self.s.setdefault(key, {"u": 0 * w, "m": 0 * w, "v": 0 * w})
        t = self.t
        if name == "sgd":
            return w - lr * g
        if name in ("momentum", "nag"):
            beta = hp.get("momentum", 0.9)
            s["u"] = beta * s["u"] + g
            return w - lr * (s["u"] if name == "momentum" else g + beta * s["u"])
        if name == "rmsprop":
            beta, eps = hp.get("beta", 0.9), hp.get("eps", 1e-8)
            s["v"] = beta * s["v"] + (1 - beta) * g**2
            return w - lr * g / (np.sqrt(s["v"]) + eps)
        b1, b2, eps = hp.get("beta1", 0.9), hp.get("beta2", 0.999), hp.get("eps", 1e-8)
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["v"] = b2 * s["v"] + (1 - b2) * g**2
        mh, vh = s["m"] / (1 - b1**t), s["v"] / (1 - b2**t)
        if name == "adam":
            return w - lr * mh / (np.sqrt(vh) + eps)
        if name == "nadam":
            return w - lr / (np.sqrt(vh) + eps) * (b1 * mh + (1 - b1) * g / (1 - b1**t))
        raise AssertionError(name)


NAMES = ["sgd", "momentum", "nag", "rmsprop", "adam", "nadam"]
HPS = [
    dict(),
    dict(weight_decay=0.1),
    dict(lr=0.05, weight_decay=0.01, beta1=0.8, beta2=0.99, momentum=0.5, beta=0.7, eps=1e-6),
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("hp", HPS, ids=["defaults", "weight_decay", "custom"])
def test_first_steps_match_the_reference_equations(name, hp, each_backend):
    rng = np.random.default_rng(0)
    params = make_params(rng)
    cls = optim.get(name)
    hp = {k: v for k, v in hp.items() if k in ("lr", "weight_decay", *cls.defaults)}
    opt = optim.create(name, params, **hp)
    ref = Reference(name, hp)
    expected = [p.data.copy() for p in params]
    for _ in range(5):
        grads = [rng.standard_normal(p.shape) for p in params]
        ref.t += 1
        expected = [ref.step(i, w, g, p.decay) for i, (w, g, p) in enumerate(zip(expected, grads, params))]
        for p, g in zip(params, grads):
            p.grad[...] = g
        opt.step()
        for p, e in zip(params, expected):
            np.testing.assert_allclose(p.data, e, rtol=1e-12, atol=1e-14)


def torch_nadam_reference(ws, grads_per_step, lr, b1, b2, eps, psi, wd):
    """torch.optim.NAdam's algorithm (as documented), written out independently."""
    ws = [w.copy() for w in ws]
    m = [0 * w for w in ws]
    v = [0 * w for w in ws]
    mu_prod = 1.0
    for t, grads in enumerate(grads_per_step, start=1):
        mu = b1 * (1 - 0.5 * 0.96 ** (t * psi))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        mu_prod *= mu
        for i, g in enumerate(grads):
            g = g + wd * ws[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            denom = np.sqrt(v[i] / (1 - b2**t)) + eps
            ws[i] = ws[i] - lr * (1 - mu) / (1 - mu_prod) * g / denom
            ws[i] = ws[i] - lr * mu_next / (1 - mu_prod * mu_next) * m[i] / denom
    return ws


def test_nadam_with_momentum_decay_matches_torch_nadam(each_backend):
    rng = np.random.default_rng(3)
    W = nn.Parameter(rng.standard_normal((3, 4)), "W")
    b = nn.Parameter(rng.standard_normal(4), "b", decay=True)  # torch decays every tensor
    steps = [[rng.standard_normal((3, 4)), rng.standard_normal(4)] for _ in range(6)]
    expected = torch_nadam_reference([W.data, b.data], steps, 2e-3, 0.9, 0.999, 1e-8, 0.004, 0.01)
    opt = optim.NAdam([W, b], lr=2e-3, momentum_decay=0.004, weight_decay=0.01)
    for grads in steps:
        W.grad[...], b.grad[...] = grads
        opt.step()
    np.testing.assert_allclose(W.data, expected[0], rtol=1e-12)
    np.testing.assert_allclose(b.data, expected[1], rtol=1e-12)


def test_nadam_matches_torch_itself_when_installed():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    w0 = rng.standard_normal((4, 3))
    tw = torch.tensor(w0, requires_grad=True)
    topt = torch.optim.NAdam([tw], lr=1e-2, weight_decay=0.01)
    p = nn.Parameter(w0.copy(), "W")
    opt = optim.NAdam([p], lr=1e-2, momentum_decay=0.004, weight_decay=0.01)
    for _ in range(5):
        g = rng.standard_normal((4, 3))
        tw.grad = torch.tensor(g)
        topt.step()
        p.grad[...] = g
        opt.step()
    # torch keeps its step count and mu_product as float32 scalars, hence not 1e-12.
    np.testing.assert_allclose(p.data, tw.detach().numpy(), rtol=1e-7)


def test_weight_decay_skips_biases():
    W = nn.Parameter(np.ones((2, 2)), "W", decay=True)
    b = nn.Parameter(np.ones(2), "b", decay=False)
    opt = optim.SGD([W, b], lr=0.1, weight_decay=0.5)
    W.grad, b.grad = np.zeros((2, 2)), np.zeros(2)  # zero gradients: only decay moves anything
    opt.step()
    np.testing.assert_allclose(W.data, 1 - 0.1 * 0.5)
    np.testing.assert_array_equal(b.data, 1.0)
    assert not W.grad.any()  # the user's gradient is left untouched


def test_lr_is_settable_for_schedules_and_validated():
    opt = optim.SGD(make_params(np.random.default_rng(0)), lr=0.1)
    opt.lr = 0.01
    assert opt.get_config()["lr"] == 0.01
    opt.lr = 0.0  # allowed, as in PyTorch (a warm-up starts there)
    with pytest.raises(ValueError, match=r"lr must be a number in \[0.0, inf\)"):
        opt.lr = -0.1


def test_state_dict_round_trip_mid_training_continues_identically():
    rng = np.random.default_rng(0)
    grads = [[rng.standard_normal((3, 4)), rng.standard_normal(4)] for _ in range(6)]

    def run(split):
        params = make_params(np.random.default_rng(1), np.float32)
        opt = optim.Adam(params, lr=0.01, weight_decay=0.1)
        for i, gs in enumerate(grads):
            if i == split:
                saved_w = [p.data.copy() for p in params]
                saved = opt.state_dict()
                params = make_params(np.random.default_rng(9), np.float32)
                for p, w in zip(params, saved_w):
                    p.data[...] = w
                opt = optim.Adam(params, lr=0.5)
                opt.load_state_dict(saved)
            for p, g in zip(params, gs):
                p.grad[...] = g
            opt.step()
        return [p.data for p in params], opt

    (a, _), (b, opt) = run(None), run(3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert opt.t == 6 and opt.lr == 0.01


def test_state_is_keyed_by_dotted_names_in_model_order():
    model = nn.Sequential(nn.Dense(3, 4), nn.Dense(4, 2))
    state = optim.Adam(model.parameters()).state_dict()["state"]
    assert list(state) == ["0.W", "0.b", "1.W", "1.b"]
    assert state["1.W"]["m"].shape == (4, 2)


def test_duplicate_or_bare_names_are_refused():
    a = nn.Parameter(np.ones(2), "W")
    b = nn.Parameter(np.ones(2), "W")
    with pytest.raises(ValueError, match="unique"):
        optim.SGD([a, b])


def test_registry_creates_by_name_and_alias_and_lists_choices():
    params = make_params(np.random.default_rng(0))
    assert isinstance(optim.create("NESTEROV", params), optim.NAG)
    assert {"sgd", "momentum", "nag", "nesterov", "rmsprop", "adam", "nadam", "eve"} <= set(optim.available())
    with pytest.raises(ValueError, match="unknown optimizer 'adagrad'; choose one of"):
        optim.create("adagrad", params)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(lr=-1), "lr must be"),
        (dict(beta1=1.0), "beta1 must be"),
        (dict(weight_decay=-0.1), "weight_decay must be"),
        (dict(eps=float("nan")), "eps must be"),
        (dict(momentum=0.9), "unknown hyperparameter"),
    ],
)
def test_bad_hyperparameters_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optim.Adam(make_params(np.random.default_rng(0)), **kwargs)


def test_user_registered_optimizer_needs_only_its_update_rule():
    @optim.register("signsgd_test")
    class SignSGD(optim.Optimizer):
        defaults = dict(lr=0.1)

        def update(self, w, g, state):
            w -= self.lr * np.sign(g)

    p = nn.Parameter(np.zeros(3), "w")
    p.grad[...] = [1.0, -2.0, 0.0]
    opt = optim.create("signsgd_test", [p])
    opt.step()
    np.testing.assert_allclose(p.data, [-0.1, 0.1, 0.0])


# --- Eve ---------------------------------------------------------------------------------------


def run_pair(eve_kwargs, losses, seed=0):
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal((3, 4))
    pe, pa = nn.Parameter(w0.copy(), "W"), nn.Parameter(w0.copy(), "W")
    eve, adam = optim.Eve([pe], lr=0.01, **eve_kwargs), optim.Adam([pa], lr=0.01)
    ds = []
    for loss in losses:
        g = rng.standard_normal((3, 4))
        pe.grad[...] = pa.grad[...] = g
        eve.step(loss=loss)
        adam.step()
        ds.append(eve.shared["d"])
    return pe.data, pa.data, ds


def test_eve_first_step_equals_adam():
    e, a, _ = run_pair({}, [2.0])
    np.testing.assert_allclose(e, a, rtol=1e-14)


def test_eve_with_beta3_one_is_adam():
    e, a, ds = run_pair(dict(beta3=1.0), [2.0, 5.0, 0.1, 3.0, 1.0])
    np.testing.assert_allclose(e, a, rtol=1e-14)
    assert ds == [1.0] * 5


def test_eve_d_stays_within_k_and_K():
    rng = np.random.default_rng(2)
    losses = np.exp(rng.standard_normal(300) * 3)
    _, _, ds = run_pair(dict(beta3=0.5, k=0.2, K=4.0), losses)
    assert min(ds) >= 0.2 and max(ds) <= 4.0
    assert len(set(ds)) > 10


def test_eve_d_follows_algorithm_1_by_hand():
    # f: 1 -> 1.05: a rise smaller than k is clipped up to c = k + 1 = 1.1, so r = 0.1;
    # -> 50: a rise larger than K is clipped to c = K + 1 = 11, so r = 10;
    # -> 6.05: a fall to c = 6.05 / 12.1 = 0.5 inside [1/11, 1/1.1], so r = 1/c - 1 = 1.
    _, _, ds = run_pair(dict(beta3=0.9, k=0.1, K=10.0), [1.0, 1.05, 50.0, 6.05])
    d2 = 0.9 * 1 + 0.1 * 0.1
    d3 = 0.9 * d2 + 0.1 * 10
    assert ds == pytest.approx([1.0, d2, d3, 0.9 * d3 + 0.1 * 1.0])


def test_eve_without_loss_raises_a_clear_error():
    p = nn.Parameter(np.zeros(2), "w")
    with pytest.raises(ValueError, match=r"step\(loss=loss\)"):
        optim.Eve([p]).step()


def test_eve_state_dict_keeps_d_and_f_hat():
    p = nn.Parameter(np.zeros(2), "w")
    opt = optim.Eve([p])
    opt.step(loss=1.0)
    opt.step(loss=2.0)
    other = optim.Eve([nn.Parameter(np.zeros(2), "w")])
    other.load_state_dict(opt.state_dict())
    assert other.shared == opt.shared and other.t == 2


# --- training behaviour --------------------------------------------------------------------------


def blobs(n=256, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((4, 8)) * 2
    y = rng.integers(0, 4, n)
    x = (centers[y] + rng.standard_normal((n, 8))).astype(np.float32)
    return x, y


def train(name, seed=0, steps=60, **hp):
    x, y = blobs()
    model = nn.Sequential(nn.Dense(8, 16, activation="tanh", rng=seed), nn.Dense(16, 4, rng=seed + 1))
    opt = optim.create(name, model.parameters(), **hp)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    for _ in range(steps):
        loss = loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        opt.step(loss=loss)
        opt.zero_grad()
        losses.append(loss)
    return losses, model


@pytest.mark.parametrize("name", NAMES + ["eve"])
def test_each_optimizer_lowers_the_loss_of_a_small_problem(name, each_backend):
    lr = {"sgd": 0.5, "momentum": 0.1, "nag": 0.1}.get(name, 0.01)
    losses, _ = train(name, lr=lr)
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_gives_identical_weights(name):
    _, a = train(name, steps=10)
    _, b = train(name, steps=10)
    for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data)


def test_optimizer_packing_keeps_parameters_and_layers_in_sync(rng):
    model = nn.Sequential(nn.Dense(3, 2, rng=0))
    before = model[0].W.data.copy()
    opt = optim.SGD(model.parameters(), lr=1.0)
    np.testing.assert_array_equal(model[0].W.data, before)
    model(rng.random((1, 3), dtype=np.float32))
    model.backward(np.ones((1, 2), np.float32))
    opt.step()
    assert not np.array_equal(model[0].W.data, before)
    opt.zero_grad()
    assert not model[0].W.grad.any()


def test_eve_update_divides_the_adam_step_by_d(each_backend):
    rng = np.random.default_rng(4)
    p = nn.Parameter(rng.standard_normal((3, 4)), "W")
    opt = optim.Eve([p], lr=0.01, beta3=0.5)
    w, m, v = p.data.copy(), 0.0, 0.0
    for t, loss in enumerate([2.0, 5.0, 1.0, 1.5], start=1):
        g = rng.standard_normal((3, 4))
        p.grad[...] = g
        opt.step(loss=loss)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        mh, vh = m / (1 - 0.9**t), v / (1 - 0.999**t)
        w = w - 0.01 * mh / (opt.shared["d"] * np.sqrt(vh) + 1e-8)
        np.testing.assert_allclose(p.data, w, rtol=1e-12)
    assert opt.shared["d"] != 1.0
