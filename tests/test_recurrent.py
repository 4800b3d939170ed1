"""RNN, LSTM and GRU against PyTorch's in float64 (outputs and the gradients of the inputs, every
parameter and the initial states; stacked, bidirectional, variable lengths against
pack_padded_sequence, dropout between layers), finite differences, PyTorch state dicts, save/load,
a module used twice, Graphs (lengths from an integer Input, returned states, a shared encoder), the
adding problem over 100 steps, and the errors."""

import numpy as np
import pytest

from tinygrad_free import gradcheck, nn, optim

torch = pytest.importorskip("torch")
F64 = np.float64
pack = torch.nn.utils.rnn.pack_padded_sequence
unpack = torch.nn.utils.rnn.pad_packed_sequence

#: kind -> (our class and its keywords, PyTorch's class and its keywords)
KINDS = {
    "rnn_tanh": (nn.RNN, {}, torch.nn.RNN, {}),
    "rnn_relu": (nn.RNN, {"nonlinearity": "relu"}, torch.nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTM, {}, torch.nn.LSTM, {}),
    "gru": (nn.GRU, {}, torch.nn.GRU, {}),
}
#: (num_layers, bidirectional, lengths, initial states, return_sequences, return_state)
CONFIGS = [
    (1, False, False, False, True, False),
    (2, True, True, True, True, True),
    (2, False, True, False, False, False),
    (1, True, False, True, False, True),
    (3, True, True, False, True, False),
]
N, T, IN, H = 4, 6, 3, 5
LENGTHS = np.array([6, 2, 5, 1])


def rel(got, want):
    """max |got - want| / max |want|: the parity criterion (< 1e-6)."""
    want = want.detach().numpy() if hasattr(want, "detach") else np.asarray(want)
    assert np.shape(got) == want.shape, (np.shape(got), want.shape)
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300))


def pair(kind, rng_seed=0, dtype=F64, **kwargs):
    """Our layer and PyTorch's with the same weights (ours drawn, copied into PyTorch's)."""
    ours_cls, ours_kw, torch_cls, torch_kw = KINDS[kind]
    flags = {k: kwargs.pop(k) for k in ("return_sequences", "return_state") if k in kwargs}
    ours = ours_cls(IN, H, **ours_kw, **kwargs, **flags, dtype=dtype, rng=rng_seed)
    theirs = torch_cls(IN, H, **torch_kw, **kwargs, batch_first=True)
    theirs = theirs.double() if dtype == F64 else theirs
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.torch_tensors().items()})
    return ours, theirs


def torch_run(module, x, states, lengths):
    """PyTorch's outputs (padded output, final states) and its leaf tensors (x, states)."""
    xt = torch.tensor(x, requires_grad=True)
    st = [torch.tensor(s, requires_grad=True) for s in states]
    inp = xt if lengths is None else pack(xt, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
    hx = None if not st else (tuple(st) if len(st) == 2 else st[0])
    y, h = module(inp, hx)
    if lengths is not None:
        y = unpack(y, batch_first=True, total_length=x.shape[1])[0]
    return xt, st, y, (h if isinstance(h, tuple) else (h,))


def config_id(c):
    words = ["bi", "lengths", "h0", "seq", "state"]
    return f"L{c[0]}" + "".join(f"-{w}" for w, on in zip(words, c[1:]) if on)


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_recurrent_layers_match_pytorch_outputs_and_every_gradient(kind, config, rng, each_backend):
    layers, bidirectional, with_lengths, with_states, return_sequences, return_state = config
    ours, theirs = pair(
        kind,
        num_layers=layers,
        bidirectional=bidirectional,
        return_sequences=return_sequences,
        return_state=return_state,
    )
    dirs = 2 if bidirectional else 1
    x = rng.standard_normal((N, T, IN))
    lengths = LENGTHS if with_lengths else None
    states = [rng.standard_normal((layers * dirs, N, H)) for _ in ours.STATES] if with_states else []
    out = ours(x, *states, lengths=lengths)
    xt, st, y, hs = torch_run(theirs, x, states, lengths)
    if not return_sequences:  # the last layer's final states: each sequence's last valid output
        y = torch.cat([hs[0][-dirs + d] for d in range(dirs)], dim=1)
    want = (y, *hs) if return_state else (y,)
    got = out if return_state else (out,)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert rel(g, w) < 1e-6
    grads = [rng.standard_normal(g.shape) for g in got]
    sum((w * torch.tensor(g)).sum() for w, g in zip(want, grads)).backward()
    ours.zero_grad()
    back = ours.backward(tuple(grads) if return_state else grads[0])
    back = back if isinstance(back, tuple) else (back,)
    assert len(back) == 1 + len(states)
    for g, leaf in zip(back, [xt, *st]):
        assert rel(g, leaf.grad) < 1e-6
    theirs_params = dict(theirs.named_parameters())
    for name, value in ours.torch_tensors().items():
        p = next(p for p in ours.parameters() if p.data is value)
        assert rel(p.grad, theirs_params[name].grad) < 1e-6, name


def test_outputs_past_a_length_are_zero_and_the_last_output_is_at_the_last_valid_step(rng):
    lstm = nn.LSTM(IN, H, bidirectional=True, dtype=F64, rng=0)
    last = nn.LSTM(IN, H, bidirectional=True, return_sequences=False, dtype=F64, rng=0)
    x = rng.standard_normal((N, T, IN))
    y = lstm(x, lengths=LENGTHS)
    for n, length in enumerate(LENGTHS):
        assert np.all(y[n, length:] == 0) and np.all(y[n, :length] != 0)
    ends = last(x, lengths=LENGTHS)
    want = np.stack([np.concatenate([y[n, length - 1, :H], y[n, 0, H:]]) for n, length in enumerate(LENGTHS)])
    np.testing.assert_array_equal(ends, want)
    # padding past a length changes nothing before it
    x2 = x.copy()
    x2[1, 2:] = 7.0
    np.testing.assert_array_equal(lstm(x2, lengths=LENGTHS), y)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_finite_differences_agree_with_backward_stacked_bidirectional_with_lengths_and_states(kind, rng, each_backend):
    ours, _ = pair(kind, num_layers=2, bidirectional=True, return_state=True)
    x = rng.standard_normal((3, 4, IN))
    states = [rng.standard_normal((4, 3, H)) * 0.5 for _ in ours.STATES]
    lengths = np.array([4, 1, 3])

    def fn(*inputs):
        return ours.begin_update(*inputs, lengths=lengths)

    gradcheck(fn, x, *states, params=ours.named_parameters())
    gradcheck(nn.Sequential(pair(kind, return_sequences=False)[0]), x)


def test_dropout_between_layers_uses_the_layers_generator_and_matches_pytorch_with_the_same_masks(rng):
    p = 0.4
    ours = nn.LSTM(IN, H, num_layers=2, dropout=p, dtype=F64, rng=3)
    replay = np.random.Generator(np.random.PCG64())
    replay.bit_generator.state = ours.rng.bit_generator.state
    x = rng.standard_normal((N, T, IN))
    y = ours(x, lengths=LENGTHS)
    mask = (replay.random((N, T, H), dtype=F64) >= p) / (1 - p)
    first = torch.nn.LSTM(IN, H, batch_first=True).double()
    second = torch.nn.LSTM(H, H, batch_first=True).double()
    tensors = ours.torch_tensors()
    first.load_state_dict({k: torch.tensor(v) for k, v in tensors.items() if k.endswith("_l0")})
    second.load_state_dict({k.replace("_l1", "_l0"): torch.tensor(v) for k, v in tensors.items() if k.endswith("_l1")})
    xt = torch.tensor(x, requires_grad=True)
    lt = torch.tensor(LENGTHS)
    h = unpack(first(pack(xt, lt, batch_first=True, enforce_sorted=False))[0], batch_first=True, total_length=T)[0]
    h = h * torch.tensor(mask)
    yt = unpack(second(pack(h, lt, batch_first=True, enforce_sorted=False))[0], batch_first=True, total_length=T)[0]
    assert rel(y, yt) < 1e-6
    g = rng.standard_normal(y.shape)
    (yt * torch.tensor(g)).sum().backward()
    assert rel(ours.backward(g), xt.grad) < 1e-6
    assert rel(ours.W_hh_l0.grad, first.weight_hh_l0.grad) < 1e-6
    ours.eval()  # the identity in eval mode, and no draws
    before = ours.rng.bit_generator.state
    theirs = torch.nn.LSTM(IN, H, num_layers=2, dropout=p, batch_first=True).double().eval()
    theirs.load_state_dict({k: torch.tensor(v) for k, v in tensors.items()})
    assert rel(ours(x), theirs(torch.tensor(x))[0]) < 1e-6
    assert ours.rng.bit_generator.state == before


def test_the_dropout_generator_survives_save_and_load(tmp_path, rng):
    lstm = nn.LSTM(IN, H, num_layers=2, dropout=0.5, rng=1)
    x = rng.standard_normal((N, T, IN)).astype(np.float32)
    lstm(x)
    lstm.save(tmp_path / "lstm.npz")
    again = nn.load(tmp_path / "lstm.npz")
    np.testing.assert_array_equal(again(x), lstm(x))  # the same next masks


def test_a_module_used_twice_adds_its_gradients_as_pytorch(rng):
    ours = nn.GRU(H, H, dtype=F64, rng=0)
    model = nn.Sequential(ours, ours)
    theirs = torch.nn.GRU(H, H, batch_first=True).double()
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.torch_tensors().items()})
    x = rng.standard_normal((N, T, H))
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(theirs(xt)[0])[0]
    y = model(x)
    assert rel(y, yt) < 1e-6
    g = rng.standard_normal(y.shape)
    (yt * torch.tensor(g)).sum().backward()
    assert rel(model.backward(g), xt.grad) < 1e-6
    assert rel(ours.W_ih_l0.grad, theirs.weight_ih_l0.grad) < 1e-6
    assert rel(ours.b_hh_l0.grad, theirs.bias_hh_l0.grad) < 1e-6


class TorchClassifier(torch.nn.Module):
    """Embedding -> LSTM -> the last step -> Linear, PyTorch's way."""

    def __init__(self, recurrent):
        super().__init__()
        self.emb = torch.nn.Embedding(11, IN, padding_idx=0)
        self.rec = recurrent
        self.fc = torch.nn.Linear(H * (1 + recurrent.bidirectional), 3)

    def forward(self, tokens):
        y, _ = self.rec(self.emb(tokens))
        return self.fc(y[:, -1])


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_pytorch_state_dict_copied_in_gives_pytorchs_outputs(kind, rng):
    ours_cls, ours_kw, torch_cls, torch_kw = KINDS[kind]
    torch.manual_seed(0)
    theirs = TorchClassifier(torch_cls(IN, H, num_layers=2, bidirectional=True, batch_first=True, **torch_kw))
    ours = nn.Sequential(
        nn.Embedding(11, IN, padding_idx=0),
        ours_cls(IN, H, num_layers=2, bidirectional=True, **ours_kw),
        nn.Dense(2 * H, 3),
    )
    ours.load_torch_state_dict(theirs.state_dict())
    tokens = rng.integers(0, 11, (N, T))
    with torch.no_grad():
        want = theirs(torch.tensor(tokens)).numpy()
    # ours: the last step's output (the sequence output's last row, as PyTorch's y[:, -1])
    y = ours[1](ours[0](tokens))[:, -1]
    got = ours[2](np.ascontiguousarray(y))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    again = ours.torch_state_dict(like=theirs.state_dict())
    assert list(again) == list(theirs.state_dict())


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_save_and_load_keep_the_architecture_and_weights(kind, tmp_path, rng):
    ours_cls, ours_kw, _, _ = KINDS[kind]
    layer = ours_cls(IN, H, **ours_kw, num_layers=2, bidirectional=True, return_sequences=False, bias=False, rng=5)
    x = rng.standard_normal((N, T, IN)).astype(np.float32)
    layer.save(tmp_path / "m.npz")
    again = nn.load(tmp_path / "m.npz")
    assert repr(again) == repr(layer) and again.get_config() == layer.get_config()
    assert [n for n, _ in again.named_parameters()] == [n for n, _ in layer.named_parameters()]
    np.testing.assert_array_equal(again(x, lengths=LENGTHS), layer(x, lengths=LENGTHS))


def test_parameters_have_pytorchs_names_shapes_order_and_initial_range():
    lstm = nn.LSTM(3, 4, num_layers=2, bidirectional=True, rng=0)
    theirs = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    assert [(k, v.shape) for k, v in lstm.torch_tensors().items()] == [
        (k, tuple(v.shape)) for k, v in theirs.state_dict().items()
    ]
    names = [n for n, _ in lstm.named_parameters()]
    assert names[:5] == ["W_ih_l0", "W_hh_l0", "b_ih_l0", "b_hh_l0", "W_ih_l0_reverse"]
    assert all(np.abs(p.data).max() <= 0.5 for p in lstm.parameters())  # U(-1/sqrt(4), 1/sqrt(4))
    assert all(not p.decay for n, p in lstm.named_parameters() if n.startswith("b_"))
    gru = nn.GRU(3, 4, bias=False)
    assert [n for n, _ in gru.named_parameters()] == ["W_ih_l0", "W_hh_l0"]
    assert gru.W_ih_l0.shape == (12, 3)


def test_initial_states_by_keyword_are_positional_inputs_with_gradients(rng):
    lstm = nn.LSTM(IN, H, dtype=F64, rng=0)
    x, h0, c0 = rng.standard_normal((N, T, IN)), rng.standard_normal((1, N, H)), rng.standard_normal((1, N, H))
    y, back = lstm.begin_update(x, h0=h0, c0=c0)
    np.testing.assert_array_equal(y, lstm(x, h0, c0))
    dx, dh0, dc0 = back(np.ones_like(y))
    assert dh0.shape == h0.shape and dc0.shape == c0.shape and np.any(dh0 != 0)


def test_batch_first_states_are_the_transposed_layout(rng):
    lstm = nn.LSTM(IN, H, num_layers=2, return_state=True, dtype=F64, rng=0)
    x, h0, c0 = rng.standard_normal((N, T, IN)), rng.standard_normal((2, N, H)), rng.standard_normal((2, N, H))
    y, h, c = lstm(x, h0, c0)
    y2, h2, c2 = lstm(x, h0.transpose(1, 0, 2), c0.transpose(1, 0, 2), batch_first_states=True)
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(h2, h.transpose(1, 0, 2))
    np.testing.assert_array_equal(c2, c.transpose(1, 0, 2))


# --- Graphs -------------------------------------------------------------------------------------------
def test_a_graph_takes_lengths_from_an_integer_input_and_returns_the_states_batch_first(rng, tmp_path):
    x_in, l_in = nn.Input((T, IN)), nn.Input((), dtype=np.int64)
    lstm = nn.LSTM(IN, H, num_layers=2, return_state=True, dtype=F64, rng=0)
    out, h, c = lstm(x_in, lengths=l_in)
    assert h.shape == (2, H) and c.shape == (2, H) and out.shape == (T, H)
    head = nn.Dense(2 * H, 3, dtype=F64, rng=1)
    model = nn.Graph(inputs=[x_in, l_in], outputs=[head(nn.Flatten()(h)), out])
    theirs = torch.nn.LSTM(IN, H, num_layers=2, batch_first=True).double()
    theirs.load_state_dict({k: torch.tensor(v) for k, v in lstm.torch_tensors().items()})
    x = rng.standard_normal((N, T, IN))
    logits, seq = model(x, LENGTHS)
    xt, _, yt, (ht, _) = torch_run(theirs, x, [], LENGTHS)
    W, b = torch.tensor(head.W.data, requires_grad=True), torch.tensor(head.b.data, requires_grad=True)
    logits_t = ht.transpose(0, 1).reshape(N, 2 * H) @ W + b
    assert rel(logits, logits_t) < 1e-6 and rel(seq, yt) < 1e-6
    g1, g2 = rng.standard_normal(logits.shape), rng.standard_normal(seq.shape)
    ((logits_t * torch.tensor(g1)).sum() + (yt * torch.tensor(g2)).sum()).backward()
    dx, dl = model.backward((g1, g2))
    assert dl is None and rel(dx, xt.grad) < 1e-6
    assert rel(lstm.W_hh_l1.grad, theirs.weight_hh_l1.grad) < 1e-6
    model.save(tmp_path / "g.npz")
    again = nn.load(tmp_path / "g.npz")
    for a, b_ in zip(again(x, LENGTHS), model(x, LENGTHS)):
        np.testing.assert_array_equal(a, b_)


def test_a_shared_encoder_used_twice_in_a_graph_matches_pytorch(rng):
    a_in, b_in = nn.Input((T, IN)), nn.Input((T, IN))
    enc = nn.LSTM(IN, H, bidirectional=True, return_sequences=False, dtype=F64, rng=0)
    model = nn.Graph(inputs=[a_in, b_in], outputs=nn.Multiply()(enc(a_in), enc(b_in)))
    theirs = torch.nn.LSTM(IN, H, bidirectional=True, batch_first=True).double()
    theirs.load_state_dict({k: torch.tensor(v) for k, v in enc.torch_tensors().items()})
    a, b = rng.standard_normal((N, T, IN)), rng.standard_normal((N, T, IN))
    at, bt = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)

    def last(h):
        return torch.cat([h[0], h[1]], dim=1)

    yt = last(theirs(at)[1][0]) * last(theirs(bt)[1][0])
    y = model(a, b)
    assert rel(y, yt) < 1e-6
    g = rng.standard_normal(y.shape)
    (yt * torch.tensor(g)).sum().backward()
    da, db = model.backward(g)
    assert rel(da, at.grad) < 1e-6 and rel(db, bt.grad) < 1e-6
    for name, value in enc.torch_tensors().items():
        p = next(p for p in enc.parameters() if p.data is value)
        assert rel(p.grad, dict(theirs.named_parameters())[name].grad) < 1e-6, name


def test_a_decoder_starts_from_the_encoders_states_in_a_graph_and_they_get_its_gradients(rng):
    src, tgt = nn.Input((T, IN)), nn.Input((T - 2, IN))
    enc = nn.GRU(IN, H, return_state=True, dtype=F64, rng=0)
    dec = nn.GRU(IN, H, dtype=F64, rng=1)
    _, h = enc(src)
    model = nn.Graph(inputs=[src, tgt], outputs=dec(tgt, h))
    te, td = (torch.nn.GRU(IN, H, batch_first=True).double() for _ in range(2))
    te.load_state_dict({k: torch.tensor(v) for k, v in enc.torch_tensors().items()})
    td.load_state_dict({k: torch.tensor(v) for k, v in dec.torch_tensors().items()})
    s, t = rng.standard_normal((N, T, IN)), rng.standard_normal((N, T - 2, IN))
    st, tt = torch.tensor(s, requires_grad=True), torch.tensor(t, requires_grad=True)
    yt = td(tt, te(st)[1])[0]
    y = model(s, t)
    assert rel(y, yt) < 1e-6
    g = rng.standard_normal(y.shape)
    (yt * torch.tensor(g)).sum().backward()
    ds, dt = model.backward(g)
    assert rel(ds, st.grad) < 1e-6 and rel(dt, tt.grad) < 1e-6
    assert rel(enc.W_hh_l0.grad, te.weight_hh_l0.grad) < 1e-6


# --- learning ------------------------------------------------------------------------------------------
def adding_problem(rng, n, steps):
    """Sequences of (value in [0, 1], marker) with two markers; the target is the sum of their values."""
    values = rng.random((n, steps))
    markers = np.zeros((n, steps))
    first = rng.integers(0, steps // 2, n)
    second = rng.integers(steps // 2, steps, n)
    markers[np.arange(n), first] = 1
    markers[np.arange(n), second] = 1
    x = np.stack([values, markers], axis=2).astype(np.float32)
    return x, (values[np.arange(n), first] + values[np.arange(n), second]).astype(np.float32)[:, None]


def test_an_lstm_solves_the_adding_problem_over_100_steps():
    """Gradients flow through 100 steps: predicting the mean gives MSE 0.167, the LSTM < 0.01.
    (Forget gates start open, bias 1 as Keras's unit_forget_bias: about 1,200 steps of batch 32.)"""
    lstm = nn.LSTM(2, 32, return_sequences=False, rng=0)
    lstm.b_ih_l0.data[32:64] += 1.0
    model = nn.Sequential(lstm, nn.Dense(32, 1, rng=1))
    opt = optim.Adam(model.parameters(), lr=1e-2)
    data_rng = np.random.default_rng(0)
    x_val, y_val = adding_problem(np.random.default_rng(1), 256, 100)
    for step in range(1, 2501):
        x, y = adding_problem(data_rng, 32, 100)
        out, backprop = model.begin_update(x)
        backprop((2 * (out - y) / len(y)).astype(np.float32), input_grad=False)
        opt.step()
        opt.zero_grad()
        if step % 100 == 0:
            with nn.no_grad():
                if np.mean((model(x_val) - y_val) ** 2) < 0.003:
                    break
    x, y = adding_problem(np.random.default_rng(2), 1000, 100)
    with nn.no_grad():
        mse = float(np.mean((model(x) - y) ** 2))
    assert mse < 0.01, (step, mse)


# --- errors -------------------------------------------------------------------------------------------
def test_misuse_is_a_clear_error(rng):
    lstm = nn.LSTM(IN, H, num_layers=2)
    x = rng.standard_normal((N, T, IN)).astype(np.float32)
    with pytest.raises(ValueError, match=r"the input has 4 features per step, but the layer takes input_size=3"):
        lstm(np.zeros((N, T, 4), np.float32))
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, steps, 3\) \(batch first\), got \(4, 3\)"):
        lstm(np.zeros((N, IN), np.float32))
    with pytest.raises(ValueError, match="expected float32 input .* got float64"):
        lstm(x.astype(F64))
    with pytest.raises(ValueError, match=r"lengths must be in \[1, 6\] \(the input has 6 steps\), got 0"):
        lstm(x, lengths=np.array([6, 0, 2, 3]))
    with pytest.raises(ValueError, match=r"lengths must be in \[1, 6\] \(the input has 6 steps\), got 7"):
        lstm(x, lengths=np.array([6, 7, 2, 3]))
    with pytest.raises(ValueError, match="lengths must be integers .* got dtype float64"):
        lstm(x, lengths=np.array([6.0, 2, 2, 3]))
    with pytest.raises(ValueError, match=r"lengths must have shape \(4,\)"):
        lstm(x, lengths=np.array([6, 2]))
    with pytest.raises(TypeError, match="the initial states are h0 and c0 .all of them, or none.; got 1"):
        lstm(x, np.zeros((2, N, H), np.float32))
    with pytest.raises(ValueError, match=r"h0 must have shape \(2, 4, 5\) \(num_layers \* directions, batch, hidden"):
        lstm(x, np.zeros((1, N, H), np.float32), np.zeros((2, N, H), np.float32))
    with pytest.raises(ValueError, match="RNN: nonlinearity must be 'tanh' or 'relu'"):
        nn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match=r"dropout must be a probability in \[0, 1\)"):
        nn.GRU(3, 4, dropout=1.0)
    with pytest.raises(ValueError, match="hidden_size must be a positive integer"):
        nn.GRU(3, 0)
    x_in = nn.Input((T, 4))
    with pytest.raises(ValueError, match="features per step, but the layer takes input_size=3"):
        lstm(x_in)
