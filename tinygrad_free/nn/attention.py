"""Multi-head attention: the math and the parameters of PyTorch's ``nn.MultiheadAttention(batch_first=True)``."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import backend
from .. import init as initializers
from . import _checks as check
from .dropout import drop_threshold, uniform_draws
from .module import Module
from .parameter import Parameter

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, DTypeLike

    from .._typing import Array, OnnxBuilder, Seed


_BOOL, _INT64 = 9, 7  # ONNX's TensorProto data types, for Cast


class MultiHeadAttention(Module):
    """Scaled dot-product attention over ``num_heads`` heads, as ``torch.nn.MultiheadAttention``
    with ``batch_first=True`` (Vaswani et al. 2017), on (N, T, E) sequences.

    With [W_q; W_k; W_v] = ``in_proj_weight`` (3E, E) and [b_q; b_k; b_v] = ``in_proj_bias``,
    D = E / num_heads and head h taking the columns h D .. (h + 1) D - 1:

    * q = x_q W_q^T + b_q,  k = x_k W_k^T + b_k,  v = x_v W_v^T + b_v
    * p_h = softmax(q_h k_h^T / sqrt(D) + mask) over the keys,  (N, H, T, S)
    * y = concat_h(dropout(p_h) v_h) W_o^T + b_o,  W_o = ``out_proj_weight`` (E, E)

    ``mha(x)`` is self-attention (x_q = x_k = x_v = x; one GEMM projects all three),
    ``mha(query, key, value)`` cross-attention (key and value of one length S). The mask takes
    key j out of query i's softmax when j >= ``lengths[n]`` (``mha(x, lengths=l)``: PyTorch's
    ``key_padding_mask``, True past each sequence's length) and, with ``causal=True``, when j > i
    (PyTorch's ``is_causal=True``; a constructor option here, so a saved model keeps it). Masked
    weights are exactly 0; every row keeps at least key 0, since lengths must be at least 1 (a
    sequence with no key gives NaN in PyTorch; here it is refused). The softmax subtracts each
    row's largest score first. Queries past a length are computed like the others, as in
    PyTorch. Dropout (training mode only) zeroes attention weights with probability ``dropout``
    and scales the rest by 1 / (1 - dropout), drawn from the layer's own generator.

    Backward (``kernels.attention``, ``kernels.linear``): dW_o, db_o and d(context) from the
    output projection; per head dv_h = w^T dctx_h, ds = p (dp - sum_j dp_j p_j) / sqrt(D),
    dq_h = ds k_h, dk_h = ds^T q_h; then the in-projection's dW, db and dx. A call returns
    dL/dx for ``mha(x)`` and (dL/dquery, dL/dkey, dL/dvalue) for ``mha(q, k, v)``; ``lengths``
    gets no gradient.

    Parameters are stored as PyTorch stores them, in its order: ``in_proj_weight`` (3E, E),
    ``in_proj_bias`` (3E), ``out_proj_weight`` (E, E) (PyTorch's ``out_proj.weight``, (out, in)),
    ``out_proj_bias`` (E) (``out_proj.bias``); ``torch_tensors()`` gives them under PyTorch's
    names, so ``load_torch_state_dict`` copies a PyTorch state dict in tensor by tensor. They
    start as PyTorch's: ``in_proj_weight`` Glorot-uniform over its (3E, E) shape,
    ``out_proj_weight`` U(-1/sqrt(E), 1/sqrt(E)), biases 0. Not supported: PyTorch's ``kdim``,
    ``vdim``, ``add_bias_kv``, ``add_zero_attn`` and arbitrary ``attn_mask`` arrays.

    Parameters
    ----------
    embed_dim : int
        E, the features of every input and of the output.
    num_heads : int
        H; must divide ``embed_dim``.
    dropout : float in [0, 1)
        Dropout on the attention weights, in training mode.
    bias : bool
        Whether the projections have biases.
    causal : bool
        Mask the keys after each query (a decoder's self-attention).
    dtype : numpy float dtype (float32 by default; float64 for gradient checks)
    rng : None, int or numpy.random.Generator
        Seeds the weights and the dropout draws; an int is saved with the model (as ``Dropout``'s).
    """

    _writes_inputs = False  # never writes into its inputs (see nn.context)
    kernel_files = ("attention", "linear")

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        causal: bool = False,
        dtype: DTypeLike = np.float32,
        rng: Seed = None,
    ) -> None:
        super().__init__()
        name = "MultiHeadAttention"
        e = self.embed_dim = check.positive_int(embed_dim, "embed_dim", name)
        h = self.num_heads = check.positive_int(num_heads, "num_heads", name)
        if e % h:
            raise ValueError(
                f"{name}: embed_dim ({e}) must be divisible by num_heads ({h}): each head takes embed_dim / "
                f"num_heads features; choose num_heads among {[d for d in range(1, e + 1) if e % d == 0]}"
            )
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.integer, np.floating)):
            raise ValueError(f"{name}: dropout must be a probability in [0, 1), got {dropout!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"{name}: dropout must be a probability in [0, 1), got {dropout!r}")
        if not isinstance(causal, (bool, np.bool_)):
            raise ValueError(f"{name}: causal must be True or False, got {causal!r}")
        dtype = check.float_dtype(dtype, name)
        self.dropout, self.causal, self.head_dim = float(dropout), bool(causal), e // h
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self._threshold, self._drop_scale = drop_threshold(self.dropout), 1.0 / (1.0 - self.dropout)
        self.seed = int(rng) if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) else None
        g = initializers.as_generator(rng)
        limit = math.sqrt(6.0 / (e + 3 * e))  # xavier_uniform_ over (3E, E), as PyTorch
        self.in_proj_weight = Parameter(g.uniform(-limit, limit, (3 * e, e)).astype(dtype), "in_proj_weight")
        self.in_proj_bias: Parameter | None = (
            Parameter(np.zeros(3 * e, dtype), "in_proj_bias", decay=False) if bias else None
        )
        bound = 1.0 / math.sqrt(e)  # nn.Linear's default for out_proj.weight
        self.out_proj_weight = Parameter(g.uniform(-bound, bound, (e, e)).astype(dtype), "out_proj_weight")
        self.out_proj_bias: Parameter | None = (
            Parameter(np.zeros(e, dtype), "out_proj_bias", decay=False) if bias else None
        )
        # The dropout draws: this generator (an int seed's, or a fresh one), or a child of a shared one.
        self.rng = g if not isinstance(rng, np.random.Generator) else np.random.default_rng(g.integers(2**63))
        self._scratch: dict[str, Array] = {}

    # --- checks ---------------------------------------------------------------------------------
    def _sequence(self, x: Any, what: str) -> Array:
        e = self.embed_dim
        if getattr(x, "ndim", 0) != 3 or x.shape[-1] != e:
            raise ValueError(
                f"{self!r}: expected {what} of shape (batch, length, {e}) (batch first), "
                f"got {getattr(x, 'shape', type(x).__name__)}"
            )
        check.same_dtype(self, x, self.in_proj_weight.data.dtype)
        return x

    def _lengths(self, lengths: ArrayLike | None, n: int, s: int) -> Array | None:
        if lengths is None:
            return None
        lens = np.asarray(lengths)
        if lens.dtype.kind not in "iu" or lens.shape != (n,):
            raise ValueError(
                f"{self!r}: lengths must be integers of shape ({n},), one key length per sequence, got "
                f"{lens.dtype} of shape {lens.shape}"
            )
        if n and (lens.min() < 1 or lens.max() > s):
            raise ValueError(
                f"{self!r}: lengths must be in 1..{s} (the keys' length), got values from {lens.min()} to "
                f"{lens.max()}; a sequence needs at least one key to attend to"
            )
        return np.ascontiguousarray(lens, dtype=np.int64)

    def _buffer(self, key: str, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Array:
        """Backward scratch, reused while the shapes stay the same (never handed out)."""
        a = self._scratch.get(key)
        if a is None or a.shape != shape or a.dtype != dtype:
            a = self._scratch[key] = np.empty(shape, dtype)
        return a

    # --- computation ----------------------------------------------------------------------------
    def forward(
        self, query: Array, key: Array | None = None, value: Array | None = None, lengths: ArrayLike | None = None
    ) -> Array:
        if (key is None) != (value is None):
            raise TypeError(
                f"{self!r} takes one input (self-attention, mha(x)) or three (mha(query, key, value)), "
                "got a key without a value or a value without a key"
            )
        e = self.embed_dim
        q_in = self._sequence(query, "query" if key is not None else "input")
        n, t, _ = q_in.shape
        W, dt = self.in_proj_weight.data, self.in_proj_weight.data.dtype
        b = None if self.in_proj_bias is None else self.in_proj_bias.data
        ops = backend.ops()
        if key is None:
            s = t
            xs: tuple[Array, ...] = (q_in.reshape(n * t, e),)
            qkv = np.empty((n, t, 3 * e), dt)
            ops.linear_forward(xs[0], W, b, qkv.reshape(n * t, 3 * e))
            q, k, v = qkv[:, :, :e], qkv[:, :, e : 2 * e], qkv[:, :, 2 * e :]
        else:
            k_in, v_in = self._sequence(key, "key"), self._sequence(value, "value")
            if k_in.shape != v_in.shape or k_in.shape[0] != n:
                raise ValueError(
                    f"{self!r}: key and value must have one shape (batch, S, {e}) with the query's batch {n}, got "
                    f"key {k_in.shape} and value {v_in.shape}"
                )
            s = k_in.shape[1]
            xs = (q_in.reshape(n * t, e), k_in.reshape(n * s, e), v_in.reshape(n * s, e))
            q, k, v = np.empty((n, t, e), dt), np.empty((n, s, e), dt), np.empty((n, s, e), dt)
            for i, (x2, out) in enumerate(zip(xs, (q, k, v))):
                rows = slice(i * e, (i + 1) * e)
                ops.linear_forward(x2, W[rows], None if b is None else b[rows], out.reshape(-1, e))
        lens = self._lengths(lengths, n, s)
        p = np.empty((n, self.num_heads, t, s), dt)
        ctx = np.empty((n, t, e), dt)
        draws = None
        if self.training and self.dropout > 0:
            draws = uniform_draws(self.rng, p.shape)
        ops.attention_forward(q, k, v, self.scale, self.causal, lens, draws, self._threshold, self._drop_scale, p, ctx)
        y = np.empty((n, t, e), dt)
        bo = None if self.out_proj_bias is None else self.out_proj_bias.data
        ops.linear_forward(ctx.reshape(n * t, e), self.out_proj_weight.data, bo, y.reshape(n * t, e))
        if self.recording:
            self._saved = (xs, q, k, v, p, draws, ctx)
        return y

    def backward(self, grad_out: Array, input_grad: bool = True) -> Any:
        xs, q, k, v, p, draws, ctx = self._saved
        n, t, e = ctx.shape
        s = k.shape[1]
        dt = ctx.dtype
        ops = backend.ops()
        g2 = grad_out.reshape(n * t, e)
        dctx = self._buffer("dctx", (n, t, e), dt)
        dWo, beta = self.out_proj_weight.gemm_target()
        dbo = None if self.out_proj_bias is None else self.out_proj_bias.grad
        ops.linear_backward(
            ctx.reshape(n * t, e), self.out_proj_weight.data, g2, dWo, beta, dbo, dctx.reshape(n * t, e)
        )
        self.out_proj_weight.grad_written()
        if len(xs) == 1:
            dqkv = self._buffer("dqkv", (n, t, 3 * e), dt)
            dq, dk, dv = dqkv[:, :, :e], dqkv[:, :, e : 2 * e], dqkv[:, :, 2 * e :]
        else:
            dq, dk, dv = (
                self._buffer("dq", (n, t, e), dt),
                self._buffer("dk", (n, s, e), dt),
                self._buffer("dv", (n, s, e), dt),
            )
        ops.attention_backward(q, k, v, p, draws, self._threshold, self._drop_scale, self.scale, dctx, dq, dk, dv)
        W = self.in_proj_weight.data
        dW, beta = self.in_proj_weight.gemm_target()
        db = None if self.in_proj_bias is None else self.in_proj_bias.grad
        if len(xs) == 1:
            dx = np.empty((n * t, e), dt) if input_grad else None
            ops.linear_backward(xs[0], W, dqkv.reshape(n * t, 3 * e), dW, beta, db, dx)
            self.in_proj_weight.grad_written()
            return None if dx is None else dx.reshape(n, t, e)
        grads = []
        for i, (x2, d) in enumerate(zip(xs, (dq, dk, dv))):
            rows = slice(i * e, (i + 1) * e)
            dx = np.empty(x2.shape, dt) if input_grad else None
            ops.linear_backward(x2, W[rows], d.reshape(-1, e), dW[rows], beta, None if db is None else db[rows], dx)
            grads.append(None if dx is None else dx.reshape(n, -1, e))
        self.in_proj_weight.grad_written()
        return tuple(grads) if input_grad else None

    # --- architecture ---------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {
            "embed_dim": self.embed_dim,
            "num_heads": self.num_heads,
            "dropout": self.dropout,
            "bias": self.in_proj_bias is not None,
            "causal": self.causal,
            "dtype": str(self.in_proj_weight.data.dtype),
            "rng": self.seed,
        }

    def extra_repr(self) -> str:
        s = f"{self.embed_dim}, num_heads={self.num_heads}"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.causal:
            s += ", causal=True"
        return s + ("" if self.in_proj_bias is not None else ", bias=False")

    def torch_tensors(self) -> dict[str, Array]:
        """PyTorch's names for our tensors (the same arrays: the layouts are PyTorch's)."""
        tensors = {"in_proj_weight": self.in_proj_weight.data}
        if self.in_proj_bias is not None:
            tensors["in_proj_bias"] = self.in_proj_bias.data
        tensors["out_proj.weight"] = self.out_proj_weight.data
        if self.out_proj_bias is not None:
            tensors["out_proj.bias"] = self.out_proj_bias.data
        return tensors

    def to_onnx(self, b: OnnxBuilder, inputs: list[str], lengths: str | None = None) -> list[str]:
        """ONNX: the projections as MatMul and Add, the heads by Reshape and Transpose, the scores'
        masks by Where (the causal one from Trilu, opset 14; the lengths' from Range and
        GreaterOrEqual, ``lengths`` a tensor of the graph), Softmax, and the output projection."""
        e, h, d = self.embed_dim, self.num_heads, self.head_dim
        W = self.in_proj_weight
        xs = inputs[:1] * 3 if len(inputs) == 1 else inputs[:3]
        heads = []
        for i, (x, perm) in enumerate(zip(xs, ([0, 2, 1, 3], [0, 2, 3, 1], [0, 2, 1, 3]))):
            w = b.param(W.data[i * e : (i + 1) * e].T, f"in_proj_{'qkv'[i]}", key=("in_proj_T", id(W), i))
            y = b.op("MatMul", [x, w])
            if self.in_proj_bias is not None:
                bias = b.param(
                    self.in_proj_bias.data[i * e : (i + 1) * e], f"in_bias_{'qkv'[i]}", key=("in_bias", id(W), i)
                )
                y = b.op("Add", [y, bias])
            heads.append(b.op("Transpose", [b.op("Reshape", [y, b.ints([0, 0, h, d])])], perm=perm))
        q, kt, v = heads
        s = b.op("Mul", [b.op("MatMul", [q, kt]), b.scalar(self.scale)])
        neg = b.scalar(float("-inf"))
        if self.causal:  # key j > query i: Trilu's strict upper triangle of a (T, S) block of ones
            b.require_opset(14, "MultiHeadAttention's causal mask (Trilu)")
            ts = b.op("Slice", [b.op("Shape", [s]), b.ints([2]), b.ints([4])])
            ones = b.op("Expand", [b.scalar(1.0), ts])
            k = b.param(np.array(1, np.int64), "k", key=("int", 1))
            s = b.op("Where", [b.op("Cast", [b.op("Trilu", [ones, k], upper=1)], to=_BOOL), neg, s])
        if lengths is not None:  # key j >= lengths[n]
            n_keys = b.op("Squeeze", [b.op("Slice", [b.op("Shape", [s]), b.ints([3]), b.ints([4])])])
            zero, one = (b.param(np.array(v, np.int64), "int", key=("int", v)) for v in (0, 1))
            keys = b.op("Range", [zero, n_keys, one])
            lens = b.op("Unsqueeze", [b.op("Cast", [lengths], to=_INT64), b.ints([1, 2, 3])])
            s = b.op("Where", [b.op("GreaterOrEqual", [keys, lens]), neg, s])
        p = b.op("Softmax", [s], axis=-1)
        ctx = b.op("Reshape", [b.op("Transpose", [b.op("MatMul", [p, v])], perm=[0, 2, 1, 3]), b.ints([0, 0, e])])
        wo = b.param(self.out_proj_weight.data.T, "out_proj_T", key=("out_proj_T", id(self.out_proj_weight)))
        y = b.op("MatMul", [ctx, wo])
        return [y if self.out_proj_bias is None else b.op("Add", [y, b.param(self.out_proj_bias)])]
