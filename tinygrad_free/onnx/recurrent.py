"""ONNX RNN, LSTM and GRU nodes from weights in PyTorch's layout, for the recurrent layers' ``to_onnx``.

PyTorch stacks the LSTM gates as i, f, g, o and ONNX as i, o, f, c (c is PyTorch's g); the GRU
gates r, z, n in PyTorch and z, r, h in ONNX, whose ``linear_before_reset=1`` is PyTorch's
n = tanh(W_in x + b_in + r * (W_hn h + b_hn)). ONNX takes the two biases as one [Wb, Rb] row per
direction. The input is batch-first, as PyTorch's ``batch_first=True``; ONNX Runtime runs only
the sequence-first layout, so the stack runs sequence-first between one Transpose in and one
out, and each layer's output (seq, directions, batch, hidden) becomes the next layer's
(seq, batch, directions * hidden), the forward direction's features first. States are PyTorch's
(layers * directions, batch, hidden); ONNX's are one layer's (directions, batch, hidden).
Variable lengths are ONNX's ``sequence_lens`` (int32), which, like PyTorch's packed sequences,
zeroes the outputs past a sequence's length, keeps the state of its last valid step and starts
the reverse direction at each sequence's own end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .._typing import Array, OnnxBuilder

#: The PyTorch gate blocks in ONNX's order, per operator.
GATES = {"LSTM": (0, 3, 1, 2), "GRU": (1, 0, 2), "RNN": (0,)}  # i,f,g,o -> i,o,f,c; r,z,n -> z,r,h
LSTM_GATES, GRU_GATES = GATES["LSTM"], GATES["GRU"]
#: The number of states each operator carries (its outputs besides Y).
STATES = {"LSTM": 2, "GRU": 1, "RNN": 1}

#: One direction's (weight_ih, weight_hh, bias_ih, bias_hh), PyTorch's shapes; biases may be None.
Direction = tuple[Any, Any, Any, Any]


def _array(value: Any) -> Array:
    return np.asarray(getattr(value, "data", value))


def _gates(a: Array, order: Sequence[int]) -> Array:
    blocks = np.split(a, len(order), axis=0)
    return np.concatenate([blocks[i] for i in order], axis=0)


def _weights(b: OnnxBuilder, kind: str, directions: Sequence[Direction]) -> list[str]:
    """W, R, B initializers of one layer's directions (shared when the same weights are exported twice)."""
    order = GATES[kind]
    ids = tuple(id(t) for d in directions for t in d)
    w = np.stack([_gates(_array(d[0]), order) for d in directions])
    r = np.stack([_gates(_array(d[1]), order) for d in directions])
    rows = []
    for d in directions:
        gate_rows = _array(d[0]).shape[0]
        b_ih = np.zeros(gate_rows) if d[2] is None else _gates(_array(d[2]), order)
        b_hh = np.zeros(gate_rows) if d[3] is None else _gates(_array(d[3]), order)
        rows.append(np.concatenate([b_ih, b_hh]))
    return [
        b.param(w, f"{kind}_W", key=(kind, "W", ids)),
        b.param(r, f"{kind}_R", key=(kind, "R", ids)),
        b.param(np.stack(rows), f"{kind}_B", key=(kind, "B", ids)),
    ]


def stack(
    b: OnnxBuilder,
    kind: str,
    x: str,
    layers: Sequence[Sequence[Direction]],
    *,
    initial: Sequence[str] = (),
    lengths: str | None = None,
    return_sequences: bool = True,
    return_state: bool = False,
    batch_first_states: bool = False,
    **attrs: Any,
) -> list[str]:
    """A stack of ONNX ``kind`` (``"LSTM"``, ``"GRU"``, ``"RNN"``) nodes over ``x`` (batch, seq,
    features), one per layer of ``layers`` (each a list of one or two :data:`Direction`).

    ``initial``: names of the initial states (h0, and c0 for the LSTM), (layers * dirs, batch,
    hidden), or (batch, layers * dirs, hidden) with ``batch_first_states``; ``lengths``: the name of
    an (batch,) integer tensor of valid steps. Returns [y] and, with ``return_state``, the final
    states in the layout of ``initial``; y is (batch, seq, dirs * hidden), or with
    ``return_sequences=False`` the last layer's final h, (batch, dirs * hidden).
    ``attrs``: the operator's attributes (GRU's ``linear_before_reset``, RNN's ``activations``).
    """
    if kind not in GATES:
        raise ValueError(f"ONNX recurrent export: kind must be one of {sorted(GATES)}, got {kind!r}")
    if not layers or any(len(dirs) not in (1, 2) for dirs in layers):
        raise ValueError(f"ONNX {kind}: one or more layers of one or two directions, got {[len(d) for d in layers]}")
    dirs = len(layers[0])
    hidden = _array(layers[0][0][1]).shape[1]
    states = STATES[kind]
    if batch_first_states:
        initial = [b.op("Transpose", [s], perm=[1, 0, 2]) for s in initial]
    seq_lens = "" if lengths is None else b.op("Cast", [lengths], to=6)  # ONNX's sequence_lens is int32
    seq = b.op("Transpose", [x], perm=[1, 0, 2])
    finals: list[list[str]] = [[] for _ in range(states)]
    for k, directions in enumerate(layers):
        starts = []
        if initial:
            rows = [b.ints([k * dirs]), b.ints([(k + 1) * dirs]), b.ints([0])]
            starts = [s if len(layers) == 1 else b.op("Slice", [s, *rows]) for s in initial]
        outs = b.ops(
            kind,
            [seq, *_weights(b, kind, directions), seq_lens, *starts],
            1 + states,
            hidden_size=hidden,
            direction="bidirectional" if dirs == 2 else "forward",
            **attrs,
        )
        y = b.op("Transpose", [outs[0]], perm=[0, 2, 1, 3])  # (seq, batch, directions, hidden)
        seq = b.op("Reshape", [y, b.ints([0, 0, -1], "seq_shape")])
        for s in range(states):
            finals[s].append(outs[1 + s])
    if return_sequences:
        out = b.op("Transpose", [seq], perm=[1, 0, 2])
    else:  # the last layer's final h, directions side by side
        last = b.op("Transpose", [finals[0][-1]], perm=[1, 0, 2])
        out = b.op("Reshape", [last, b.ints([0, -1], "flat_shape")])
    if not return_state:
        return [out]
    result = [out]
    for per_layer in finals:
        state = per_layer[0] if len(per_layer) == 1 else b.op("Concat", per_layer, axis=0)
        result.append(b.op("Transpose", [state], perm=[1, 0, 2]) if batch_first_states else state)
    return result


def lstm(b: OnnxBuilder, x: str, directions: Sequence[Direction], initial: Sequence[str] = ()) -> list[str]:
    """One ONNX LSTM layer over ``x`` (batch, seq, features); returns [y (batch, seq, dirs * hidden),
    h_n (dirs, batch, hidden), c_n (dirs, batch, hidden)]. ``initial``: optional names of
    h_0 and c_0, (dirs, batch, hidden)."""
    return stack(b, "LSTM", x, [directions], initial=initial, return_state=True)


def gru(b: OnnxBuilder, x: str, directions: Sequence[Direction], initial: Sequence[str] = ()) -> list[str]:
    """One ONNX GRU layer (``linear_before_reset=1``, PyTorch's) over ``x`` (batch, seq, features);
    returns [y (batch, seq, dirs * hidden), h_n (dirs, batch, hidden)]."""
    return stack(b, "GRU", x, [directions], initial=initial, return_state=True, linear_before_reset=1)
