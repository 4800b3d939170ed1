"""ONNX LSTM and GRU nodes from weights in PyTorch's layout, for the recurrent layers' ``to_onnx``.

PyTorch stacks the LSTM gates as i, f, g, o and ONNX as i, o, f, c (c is PyTorch's g); the GRU
gates r, z, n in PyTorch and z, r, h in ONNX, whose ``linear_before_reset=1`` is PyTorch's
n = tanh(W_in x + b_in + r * (W_hn h + b_hn)). ONNX takes the two biases as one [Wb, Rb] row per
direction. The input is batch-first, as PyTorch's ``batch_first=True``; ONNX Runtime runs only
the sequence-first layout, so the node sits between Transposes, and its output
(seq, directions, batch, hidden) becomes PyTorch's (batch, seq, directions * hidden), the forward
direction's features first. States are PyTorch's (directions, batch, hidden), also ONNX's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .._typing import Array, OnnxBuilder

#: The PyTorch gate blocks in ONNX's order.
LSTM_GATES = (0, 3, 1, 2)  # i, f, g, o -> i, o, f, c
GRU_GATES = (1, 0, 2)  # r, z, n -> z, r, h

#: One direction's (weight_ih, weight_hh, bias_ih, bias_hh), PyTorch's shapes; biases may be None.
Direction = tuple[Any, Any, Any, Any]


def _array(value: Any) -> Array:
    return np.asarray(getattr(value, "data", value))


def _gates(a: Array, order: Sequence[int]) -> Array:
    blocks = np.split(a, len(order), axis=0)
    return np.concatenate([blocks[i] for i in order], axis=0)


def _weights(b: OnnxBuilder, kind: str, directions: Sequence[Direction], order: Sequence[int]) -> list[str]:
    """W, R, B initializers of all directions (shared when the same weights are exported twice)."""
    ids = tuple(id(t) for d in directions for t in d)
    w = np.stack([_gates(_array(d[0]), order) for d in directions])
    r = np.stack([_gates(_array(d[1]), order) for d in directions])
    rows = []
    for d in directions:
        hidden4 = _array(d[0]).shape[0]
        b_ih = np.zeros(hidden4) if d[2] is None else _gates(_array(d[2]), order)
        b_hh = np.zeros(hidden4) if d[3] is None else _gates(_array(d[3]), order)
        rows.append(np.concatenate([b_ih, b_hh]))
    return [
        b.param(w, f"{kind}_W", key=(kind, "W", ids)),
        b.param(r, f"{kind}_R", key=(kind, "R", ids)),
        b.param(np.stack(rows), f"{kind}_B", key=(kind, "B", ids)),
    ]


def _node(
    b: OnnxBuilder, kind: str, x: str, directions: Sequence[Direction], initial: Sequence[str], **attrs: Any
) -> list[str]:
    if len(directions) not in (1, 2):
        raise ValueError(f"ONNX {kind}: one or two directions, got {len(directions)}")
    order = LSTM_GATES if kind == "LSTM" else GRU_GATES
    hidden = _array(directions[0][1]).shape[1]
    seq_first = b.op("Transpose", [x], perm=[1, 0, 2])
    inputs = [seq_first, *_weights(b, kind, directions, order), "", *initial]
    outs = b.ops(
        kind,
        inputs,
        3 if kind == "LSTM" else 2,
        hidden_size=hidden,
        direction="bidirectional" if len(directions) == 2 else "forward",
        **attrs,
    )
    y = b.op("Transpose", [outs[0]], perm=[2, 0, 1, 3])  # (batch, seq, directions, hidden)
    return [b.op("Reshape", [y, b.param(np.array([0, 0, -1], np.int64), "seq_shape")]), *outs[1:]]


def lstm(b: OnnxBuilder, x: str, directions: Sequence[Direction], initial: Sequence[str] = ()) -> list[str]:
    """An ONNX LSTM over ``x`` (batch, seq, features); returns [y (batch, seq, dirs * hidden),
    h_n (dirs, batch, hidden), c_n (dirs, batch, hidden)]. ``initial``: optional names of
    h_0 and c_0, (dirs, batch, hidden)."""
    return _node(b, "LSTM", x, directions, initial)


def gru(b: OnnxBuilder, x: str, directions: Sequence[Direction], initial: Sequence[str] = ()) -> list[str]:
    """An ONNX GRU (``linear_before_reset=1``, PyTorch's) over ``x`` (batch, seq, features);
    returns [y (batch, seq, dirs * hidden), h_n (dirs, batch, hidden)]."""
    return _node(b, "GRU", x, directions, initial, linear_before_reset=1)
