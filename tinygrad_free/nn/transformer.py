"""The Transformer encoder layer, PyTorch's ``nn.TransformerEncoderLayer(batch_first=True)``: a
composite of layers, and so the worked example of a layer made of layers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import init as initializers
from . import _checks as check
from . import activation as act
from .attention import MultiHeadAttention
from .dense import Dense
from .dropout import Dropout
from .layernorm import LayerNorm
from .module import Module

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, DTypeLike

    from .._typing import Array, OnnxBuilder, Seed
    from .context import Context


class TransformerEncoderLayer(Module):
    """Self-attention and a feed-forward block, each with a residual connection and a LayerNorm,
    as ``torch.nn.TransformerEncoderLayer(..., batch_first=True)`` (Vaswani et al. 2017), on
    (N, T, d_model) sequences.

    Post-norm (``norm_first=False``, PyTorch's default and the paper's):

        h = norm1(x + dropout1(self_attn(x)));   y = norm2(h + dropout2(ff(h)))

    pre-norm (``norm_first=True``, as ViT and most recent models; trains more easily when deep):

        h = x + dropout1(self_attn(norm1(x)));   y = h + dropout2(ff(norm2(h)))

    with ff(u) = linear2(dropout(activation(linear1(u)))). The parts are PyTorch's, under its
    names and in its order: ``self_attn`` (``MultiHeadAttention``), ``linear1`` (a ``Dense``
    d_model -> dim_feedforward with the activation fused into it), ``dropout``, ``linear2``,
    ``norm1``, ``norm2``, ``dropout1``, ``dropout2``; so ``load_torch_state_dict`` copies a
    PyTorch layer's state dict in tensor by tensor (``linear1.weight`` transposed into ``Dense``'s
    (in, out) ``W``).

    ``layer(x, lengths=l)`` masks the keys past each sequence's length in the self-attention
    (PyTorch's ``src_key_padding_mask``); ``causal=True`` masks later keys (``is_causal``).

    Backward runs the parts' backward passes in reverse, each paired with its own forward call
    (the contexts ``_forward_ctx`` returned), the residual gradients added: post-norm
    dh = norm2'(dy) + ff'(norm2'(dy)), dx = norm1'(dh) + self_attn'(norm1'(dh)); pre-norm
    dh = dy + norm2'(ff'(dy)), dx = dh + norm1'(self_attn'(dh)). The layer may be used several
    times in one network (a shared encoder): each call keeps its own contexts.

    Parameters
    ----------
    d_model, nhead : int
        The features and the attention heads (nhead must divide d_model).
    dim_feedforward : int
        The feed-forward block's width.
    dropout : float in [0, 1)
        Of the attention weights and of the three Dropout layers (training mode only).
    activation : str
        The feed-forward activation: relu or gelu (PyTorch's two), or any name of ``nn.activation``.
    norm_first : bool
    layer_norm_eps : float
    causal : bool
    dtype : numpy float dtype
    rng : None, int or numpy.random.Generator
        Seeds the weights and every dropout's draws.
    """

    _writes_inputs = False  # never writes into its inputs (see nn.context)

    _ctxs: tuple[Context | None, ...]

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
        causal: bool = False,
        dtype: DTypeLike = np.float32,
        rng: Seed = None,
    ) -> None:
        super().__init__()
        name = "TransformerEncoderLayer"
        d = check.positive_int(d_model, "d_model", name)
        ff = check.positive_int(dim_feedforward, "dim_feedforward", name)
        if not isinstance(norm_first, (bool, np.bool_)):
            raise ValueError(f"{name}: norm_first must be True or False, got {norm_first!r}")
        act.code(activation)  # an unknown name is refused here, naming the choices
        self.seed = int(rng) if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) else None
        g = initializers.as_generator(rng)

        def seed() -> int:
            return int(g.integers(2**31))

        self.norm_first = bool(norm_first)
        self.activation = str(activation).lower()
        self.self_attn = MultiHeadAttention(d, nhead, dropout=dropout, causal=causal, dtype=dtype, rng=seed())
        self.linear1 = Dense(d, ff, activation=activation, dtype=dtype, rng=g)
        self.dropout = Dropout(dropout, rng=seed())
        self.linear2 = Dense(ff, d, dtype=dtype, rng=g)
        self.norm1 = LayerNorm(d, eps=layer_norm_eps, dtype=dtype)
        self.norm2 = LayerNorm(d, eps=layer_norm_eps, dtype=dtype)
        self.dropout1 = Dropout(dropout, rng=seed())
        self.dropout2 = Dropout(dropout, rng=seed())

    def _ff(self, u: Array) -> tuple[Array, tuple[Context | None, ...]]:
        """linear2(dropout(linear1(u))), then dropout2, with each part's context."""
        a, c1 = self.linear1._forward_ctx(u)
        a, c2 = self.dropout._forward_ctx(a)
        a, c3 = self.linear2._forward_ctx(a)
        a, c4 = self.dropout2._forward_ctx(a)
        return a, (c1, c2, c3, c4)

    def _ff_backward(self, g: Array, ctxs: tuple[Context | None, ...]) -> Array:
        c1, c2, c3, c4 = ctxs
        g = self.dropout2._backward_ctx(c4, g)
        g = self.linear2._backward_ctx(c3, g)
        g = self.dropout._backward_ctx(c2, g)
        return self.linear1._backward_ctx(c1, g)

    def forward(self, x: Array, lengths: ArrayLike | None = None) -> Array:
        d = self.norm1.num_features
        if getattr(x, "ndim", 0) != 3 or x.shape[2] != d:
            raise ValueError(
                f"{self!r}: expected input of shape (batch, length, {d}) (batch first), "
                f"got {getattr(x, 'shape', type(x).__name__)}"
            )
        attend = self.self_attn._forward_ctx
        if self.norm_first:
            u, cn1 = self.norm1._forward_ctx(x)
            a, ca = attend(u, lengths=lengths) if lengths is not None else attend(u)
            a, cd1 = self.dropout1._forward_ctx(a)
            h = x + a
            u, cn2 = self.norm2._forward_ctx(h)
            f, cff = self._ff(u)
            y = h + f
        else:
            a, ca = attend(x, lengths=lengths) if lengths is not None else attend(x)
            a, cd1 = self.dropout1._forward_ctx(a)
            h, cn1 = self.norm1._forward_ctx(x + a)
            f, cff = self._ff(h)
            y, cn2 = self.norm2._forward_ctx(h + f)
        if self.recording:
            self._ctxs = (ca, cd1, cn1, cn2, *cff)
        return y

    def backward(self, grad_out: Array, input_grad: bool = True) -> Array | None:
        ca, cd1, cn1, cn2, *cff = self._ctxs
        if self.norm_first:
            gh = grad_out + self.norm2._backward_ctx(cn2, self._ff_backward(grad_out, tuple(cff)))
            ga = self.self_attn._backward_ctx(ca, self.dropout1._backward_ctx(cd1, gh))
            gx = self.norm1._backward_ctx(cn1, ga, input_grad)
            return gh + gx if input_grad else None
        g = self.norm2._backward_ctx(cn2, grad_out)
        gh = g + self._ff_backward(g, tuple(cff))
        gs = self.norm1._backward_ctx(cn1, gh)
        gx = self.self_attn._backward_ctx(ca, self.dropout1._backward_ctx(cd1, gs), input_grad)
        return gs + gx if input_grad else None

    def get_config(self) -> dict[str, Any]:
        return {
            "d_model": self.norm1.num_features,
            "nhead": self.self_attn.num_heads,
            "dim_feedforward": self.linear1.out_features,
            "dropout": self.self_attn.dropout,
            "activation": self.activation,
            "norm_first": self.norm_first,
            "layer_norm_eps": self.norm1.eps,
            "causal": self.self_attn.causal,
            "dtype": str(self.norm1.gamma.data.dtype),
            "rng": self.seed,
        }

    def extra_repr(self) -> str:
        s = f"{self.norm1.num_features}, nhead={self.self_attn.num_heads}, dim_feedforward={self.linear1.out_features}"
        s += f", dropout={self.self_attn.dropout}, activation={self.activation!r}"
        return s + (", norm_first=True" if self.norm_first else "")

    def to_onnx(self, b: OnnxBuilder, inputs: list[str], lengths: str | None = None) -> list[str]:
        """ONNX: the parts' nodes (the dropouts are the identity), the feed-forward's Dense layers as
        MatMul and Add (they act on (batch, length, features)), the residual Adds."""
        x = inputs[0]
        kw = None if lengths is None else {"lengths": lengths}

        def ff(u: str) -> str:
            return _rows(b, self.linear2, _rows(b, self.linear1, u))

        if self.norm_first:
            u = b.call(self.norm1, [x], "norm1")[0]
            h = b.op("Add", [x, b.call(self.self_attn, [u], "self_attn", kw)[0]])
            return [b.op("Add", [h, ff(b.call(self.norm2, [h], "norm2")[0])])]
        a = b.call(self.self_attn, [x], "self_attn", kw)[0]
        h = b.call(self.norm1, [b.op("Add", [x, a])], "norm1")[0]
        return b.call(self.norm2, [b.op("Add", [h, ff(h)])], "norm2")


def _rows(b: OnnxBuilder, dense: Dense, x: str) -> str:
    """A Dense layer on (batch, length, features): MatMul, Add and its activation."""
    y = b.op("MatMul", [x, b.param(dense.W)])
    if dense.b is not None:
        y = b.op("Add", [y, b.param(dense.b)])
    return b.activation(y, act.NAMES[dense.act_code])
