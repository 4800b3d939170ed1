"""What the recurrent layers (``LSTM``, ``GRU``, ``RNN``) share: PyTorch's parameters, stacked and
bidirectional layers, variable lengths, dropout between layers, initial and final states.

A cell (one direction of one layer) is a pair of kernels (``kernels/lstm.py``, ``gru.py``,
``rnn.py``); this module runs them layer by layer and direction by direction, keeps their buffers
for the backward and hands each the right gradients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .. import backend
from .. import init as initializers
from ._checks import positive_int
from .module import Module
from .node import Node
from .parameter import Parameter

if TYPE_CHECKING:
    from collections.abc import Callable

    from numpy.typing import DTypeLike

    from .._typing import Array, OnnxBuilder, Seed

#: The weight and bias names of one direction, PyTorch's (``weight_ih_l0``) and ours (``W_ih_l0``).
TORCH_NAMES = {"W_ih": "weight_ih", "W_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh"}


def suffix(layer: int, direction: int) -> str:
    """``_l{layer}``, plus ``_reverse`` for the reverse direction: PyTorch's parameter suffix."""
    return f"_l{layer}" + ("_reverse" if direction else "")


class Recurrent(Module):
    """Base class of the recurrent layers (see ``LSTM`` for the interface they share).

    A subclass sets the class attributes below and ``_extra_args`` (arguments of its kernels after
    the biases: the plain RNN's activation).
    """

    _writes_inputs = False  # never writes into its inputs (see nn.context)

    #: Gates per hidden unit (the rows of W_ih are GATES * hidden_size).
    GATES: ClassVar[int]
    #: Names of the states a call takes and returns: ("h", "c") for the LSTM, ("h",) otherwise.
    STATES: ClassVar[tuple[str, ...]]
    #: (N, T, H) buffers each direction keeps besides its gates (hp, and cp or the GRU's ghn).
    BUFFERS: ClassVar[int]
    #: Gate-gradient scratch buffers of a backward (the GRU's two sides: 2).
    DGATES: ClassVar[int]
    #: The kernels' names (``backend.ops().<name>``).
    FORWARD: ClassVar[str]
    BACKWARD: ClassVar[str]

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        return_sequences: bool = True,
        return_state: bool = False,
        bias: bool = True,
        dtype: DTypeLike = np.float32,
        rng: Seed = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.input_size = positive_int(input_size, "input_size", name)
        self.hidden_size = positive_int(hidden_size, "hidden_size", name)
        self.num_layers = positive_int(num_layers, "num_layers", name)
        for what, flag in (
            ("bidirectional", bidirectional),
            ("return_sequences", return_sequences),
            ("return_state", return_state),
            ("bias", bias),
        ):
            if not isinstance(flag, (bool, np.bool_)):
                raise ValueError(f"{name}: {what} must be True or False, got {flag!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.integer, np.floating)):
            raise ValueError(f"{name}: dropout must be a probability in [0, 1), got {dropout!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"{name}: dropout must be a probability in [0, 1), got {dropout!r}")
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"{name}: dtype must be float32 or float64 (the kernels' two), got {dtype}")
        self.bidirectional, self.return_sequences = bool(bidirectional), bool(return_sequences)
        self.return_state, self.bias = bool(return_state), bool(bias)
        self.dropout = float(dropout)
        self.directions = 2 if self.bidirectional else 1
        self.seed = int(rng) if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) else None
        # One generator for the initial weights and then the dropout masks (saved with the model).
        self.rng = initializers.as_generator(rng)
        # PyTorch's initialisation: every weight and bias from U(-1/sqrt(H), 1/sqrt(H)), in its order.
        bound = 1.0 / np.sqrt(self.hidden_size)
        rows = self.GATES * self.hidden_size
        for layer in range(self.num_layers):
            size = self.input_size if layer == 0 else self.hidden_size * self.directions
            for direction in range(self.directions):
                sfx = suffix(layer, direction)
                shapes: dict[str, tuple[int, ...]] = {"W_ih": (rows, size), "W_hh": (rows, self.hidden_size)}
                if self.bias:
                    shapes.update(b_ih=(rows,), b_hh=(rows,))
                for key, shape in shapes.items():
                    value = self.rng.uniform(-bound, bound, shape).astype(dtype)
                    setattr(self, key + sfx, Parameter(value, key + sfx, decay=key.startswith("W")))
        self._scratch: dict[Any, Array] = {}

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.__dict__["W_ih_l0"].data.dtype

    def _extra_args(self) -> tuple[Any, ...]:
        return ()

    def _direction_params(self, layer: int, direction: int) -> tuple[Parameter, Parameter, Parameter | None, Any]:
        sfx = suffix(layer, direction)
        d = self.__dict__
        return d["W_ih" + sfx], d["W_hh" + sfx], d.get("b_ih" + sfx), d.get("b_hh" + sfx)

    def _buffer(self, key: Any, shape: tuple[int, ...]) -> Array:
        """Scratch reused from call to call (a buffer no backward reads after its own call)."""
        buf = self._scratch.get(key)
        if buf is None or buf.shape != shape:
            buf = self._scratch[key] = np.empty(shape, self.dtype)
        return buf

    # --- calls -------------------------------------------------------------------------------------
    def __call__(self, *xs: Any, **kwargs: Any) -> Any:
        """``layer(x)``, ``layer(x, h0[, c0])``, ``layer(x, h0=h0[, c0=c0])``, ``lengths=``. Called on
        nodes (a Graph) the states are batch-first, as every node of a Graph (see the class docstring)."""
        xs, kwargs = self._positional_states(xs, kwargs)
        if "batch_first_states" not in kwargs and any(type(x) is Node for x in xs):
            kwargs["batch_first_states"] = True
        return super().__call__(*xs, **kwargs)

    def begin_update(self, *xs: Any, **kwargs: Any) -> tuple[Any, Callable[..., Any]]:
        xs, kwargs = self._positional_states(xs, kwargs)
        return super().begin_update(*xs, **kwargs)

    def _positional_states(self, xs: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Initial states given by keyword (``h0=``, ``c0=``) become positional inputs: states are
        differentiable, so they get gradients wherever they are given."""
        named = [k + "0" for k in self.STATES]
        if not any(k in kwargs for k in named):
            return xs, kwargs
        kwargs = dict(kwargs)
        given = [kwargs.pop(k, None) for k in named]
        if len(xs) > 1:
            raise TypeError(f"{type(self).__name__}: give the initial states positionally or as keywords, not both")
        return tuple(xs) + tuple(given), kwargs

    def forward(self, x: Array, *states: Array, lengths: Any = None, batch_first_states: bool = False) -> Any:
        x = self._check_input(x)
        n, steps = x.shape[0], x.shape[1]
        lengths = self._check_lengths(lengths, n, steps)
        initial = self._check_states(states, n, bool(batch_first_states))
        layers, dirs, hidden = self.num_layers, self.directions, self.hidden_size
        finals = [np.empty((layers * dirs, n, hidden), self.dtype) for _ in self.STATES]
        ops = backend.ops()
        run = getattr(ops, self.FORWARD)
        saved = []
        layer_in = x
        out = x
        for layer in range(layers):
            last = layer == layers - 1
            shape = (n, steps, dirs * hidden)
            out = self._buffer("out", shape) if last and not self.return_sequences else np.empty(shape, self.dtype)
            buffers = []
            for d in range(dirs):
                i = layer * dirs + d
                W_ih, W_hh, b_ih, b_hh = (self._bias_array(p) for p in self._direction_params(layer, d))
                bufs = [np.empty((n, steps, self.GATES * hidden), self.dtype)]
                bufs += [np.empty((n, steps, hidden), self.dtype) for _ in range(self.BUFFERS)]
                starts = [None if s is None else s[i] for s in initial]
                run(layer_in, W_ih, W_hh, b_ih, b_hh, *self._extra_args(), *starts, lengths, d == 1, *bufs, out,
                    d * hidden, *(f[i] for f in finals))  # fmt: skip
                buffers.append(bufs)
            mask = None
            if not last and self.training and self.dropout > 0:
                keep = self.rng.random(shape, dtype=self.dtype)
                mask = (keep >= self.dropout).astype(self.dtype)
                mask *= self.dtype.type(1.0 / (1.0 - self.dropout))
                out *= mask
            saved.append((layer_in, buffers, mask))
            layer_in = out
        if self.return_sequences:
            y = out
        else:  # each sequence's last output: the last layer's final states (the reverse one's at t = 0)
            y = np.concatenate([finals[0][(layers - 1) * dirs + d] for d in range(dirs)], axis=1)
        if self.recording:
            self._saved = saved
            self._lengths = lengths
            self._has_states = bool(states)
            self._batch_first_states = bool(batch_first_states)
        if not self.return_state:
            return y
        if batch_first_states:
            finals = [np.ascontiguousarray(f.transpose(1, 0, 2)) for f in finals]
        return (y, *finals)

    def backward(self, grad: Any, input_grad: bool = True) -> Any:
        layers, dirs, hidden = self.num_layers, self.directions, self.hidden_size
        saved = self._saved
        n, steps = saved[0][0].shape[:2]
        g_out: Any = grad[0] if self.return_state else grad
        g_states: list[Any] = list(grad[1:]) if self.return_state else [None for _ in self.STATES]
        if g_out is not None and not (g_out.flags.c_contiguous and g_out.flags.writeable):
            g_out = np.array(g_out, order="C")  # the kernels' one compiled variant (see _check_input)
        if self._batch_first_states:
            g_states = [None if g is None else g.transpose(1, 0, 2) for g in g_states]
        if not self.return_sequences and g_out is not None:
            # The last output is the last layer's final h: its gradient joins that state's.
            g_h = np.zeros((layers * dirs, n, hidden), self.dtype) if g_states[0] is None else g_states[0].copy()
            for d in range(dirs):
                g_h[(layers - 1) * dirs + d] += g_out[:, d * hidden : (d + 1) * hidden]
            g_states[0] = g_h
            g_out = None
        want_states = self._has_states and input_grad
        d_states = [np.empty((layers * dirs, n, hidden), self.dtype) for _ in self.STATES] if want_states else None
        back = getattr(backend.ops(), self.BACKWARD)
        scratch = [self._buffer(("dgates", k), (n, steps, self.GATES * hidden)) for k in range(self.DGATES)]
        g_layer = g_out
        dx = None
        for layer in range(layers - 1, -1, -1):
            layer_in, buffers, _ = saved[layer]
            dx = np.empty(layer_in.shape, self.dtype) if layer > 0 or input_grad else None
            for d in range(dirs):
                i = layer * dirs + d
                W_ih, W_hh, b_ih, b_hh = self._direction_params(layer, d)
                dW_ih, beta_ih = W_ih.gemm_target()
                dW_hh, beta_hh = W_hh.gemm_target()
                db_ih, db_hh = self._bias_grad(b_ih, 0), self._bias_grad(b_hh, 1)
                g_finals = [None if g is None else g[i] for g in g_states]
                d_initials = [None] * len(self.STATES) if d_states is None else [s[i] for s in d_states]
                back(layer_in, W_ih.data, W_hh.data, *self._extra_args(), *buffers[d], self._lengths, d == 1, g_layer,
                     d * hidden, *g_finals, *scratch, dW_ih, beta_ih, dW_hh, beta_hh, db_ih, db_hh, dx,
                     0.0 if d == 0 else 1.0, *d_initials)  # fmt: skip
                W_ih.grad_written()
                W_hh.grad_written()
            if layer > 0:  # through the dropout on the layer below's output
                mask = saved[layer - 1][2]
                g_layer = dx if mask is None else dx * mask
        if not input_grad:
            return None
        if d_states is None:
            return dx
        if self._batch_first_states:
            d_states = [np.ascontiguousarray(s.transpose(1, 0, 2)) for s in d_states]
        return (dx, *d_states)

    def _bias_array(self, p: Parameter | None) -> Array:
        if p is not None:
            return p.data
        zeros = self._scratch.get("zero_bias")
        if zeros is None:
            zeros = self._scratch["zero_bias"] = np.zeros(self.GATES * self.hidden_size, self.dtype)
        return zeros

    def _bias_grad(self, p: Parameter | None, side: int) -> Array:
        if p is not None:
            return p.grad
        return self._buffer(("no_bias_grad", side), (self.GATES * self.hidden_size,))

    # --- checks ------------------------------------------------------------------------------------
    def _check_input(self, x: Any) -> Array:
        name = repr(self)
        shape = getattr(x, "shape", None)
        if not isinstance(x, np.ndarray) or x.ndim != 3:
            raise ValueError(
                f"{name}: expected input of shape (batch, steps, {self.input_size}) (batch first), "
                f"got {shape if shape is not None else type(x).__name__}"
            )
        if x.shape[2] != self.input_size:
            raise ValueError(
                f"{name}: the input has {x.shape[2]} features per step, but the layer takes input_size="
                f"{self.input_size}; expected shape (batch, steps, {self.input_size}), got {x.shape}"
            )
        if x.shape[1] < 1:
            raise ValueError(f"{name}: the input has no steps (shape {x.shape}); a sequence needs at least one")
        if x.dtype != self.dtype:
            raise ValueError(
                f"{name}: expected {self.dtype} input (the layer's dtype), got {x.dtype}; "
                f"convert the data once, e.g. x.astype(np.{self.dtype})"
            )
        # The kernels take writable C-contiguous arrays only (one compiled variant): a read-only or
        # strided input is copied, which costs little next to the input projection that reads it.
        if not (x.flags.c_contiguous and x.flags.writeable):
            x = np.array(x, order="C")
        return x

    def _check_lengths(self, lengths: Any, n: int, steps: int) -> Array | None:
        if lengths is None:
            return None
        name = repr(self)
        a = np.asarray(lengths)
        if a.dtype.kind not in "iu":
            raise ValueError(f"{name}: lengths must be integers (one per sequence), got dtype {a.dtype}")
        if a.shape != (n,):
            raise ValueError(f"{name}: lengths must have shape ({n},) (one per sequence of the batch), got {a.shape}")
        if n and (a.min() < 1 or a.max() > steps):
            bad = a[(a < 1) | (a > steps)][0]
            raise ValueError(f"{name}: lengths must be in [1, {steps}] (the input has {steps} steps), got {bad}")
        return a.astype(np.int64)  # a copy: the caller may change its array before the backward

    def _check_states(self, states: tuple[Any, ...], n: int, batch_first: bool) -> list[Array | None]:
        name, count = repr(self), len(self.STATES)
        if not states:
            return [None] * count
        if len(states) != count or any(s is None for s in states):
            names = " and ".join(k + "0" for k in self.STATES)
            raise TypeError(f"{name}: the initial states are {names} (all of them, or none); got {len(states)}")
        rows = self.num_layers * self.directions
        want = (n, rows, self.hidden_size) if batch_first else (rows, n, self.hidden_size)
        layout = (
            "(batch, num_layers * directions, hidden_size)"
            if batch_first
            else ("(num_layers * directions, batch, hidden_size)")
        )
        out: list[Array | None] = []
        for key, s in zip(self.STATES, states):
            if not isinstance(s, np.ndarray) or s.shape != want:
                got = getattr(s, "shape", type(s).__name__)
                raise ValueError(f"{name}: the initial state {key}0 must have shape {want} {layout}, got {got}")
            if s.dtype != self.dtype:
                raise ValueError(f"{name}: the initial state {key}0 must be {self.dtype} (the layer's), got {s.dtype}")
            out.append(s.transpose(1, 0, 2) if batch_first else s)
        return out

    # --- architecture --------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "bidirectional": self.bidirectional,
            "dropout": self.dropout,
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "bias": self.bias,
            "dtype": str(self.dtype),
            "rng": self.seed,
        }

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        for key, default in (("bidirectional", False), ("dropout", 0.0), ("return_sequences", True),
                             ("return_state", False), ("bias", True)):  # fmt: skip
            if getattr(self, key) != default:
                s += f", {key}={getattr(self, key)!r}"
        return s

    #: The ONNX operator of the layer and its attributes (``to_onnx``).
    ONNX_OP: ClassVar[str]

    def _onnx_attributes(self) -> dict[str, Any]:
        return {}

    def to_onnx(
        self, b: OnnxBuilder, inputs: list[str], lengths: str | None = None, batch_first_states: bool = False
    ) -> list[str]:
        """ONNX: one ``ONNX_OP`` node per layer (gate order converted; dropout is off in eval), the
        lengths as its ``sequence_lens``, the states in the layout of the call."""
        layers = [[self._direction_params(k, d) for d in range(self.directions)] for k in range(self.num_layers)]
        return b.recurrent(
            self.ONNX_OP,
            inputs[0],
            layers,
            initial=inputs[1:],
            lengths=lengths,
            return_sequences=self.return_sequences,
            return_state=self.return_state,
            batch_first_states=bool(batch_first_states),
            **self._onnx_attributes(),
        )

    def torch_tensors(self) -> dict[str, Array]:
        """PyTorch's tensors (``weight_ih_l0``, ...) as our own arrays: the layouts are the same."""
        tensors = {}
        for layer in range(self.num_layers):
            for d in range(self.directions):
                sfx = suffix(layer, d)
                for key, torch_name in TORCH_NAMES.items():
                    p = self.__dict__.get(key + sfx)
                    if p is not None:
                        tensors[torch_name + sfx] = p.data
        return tensors
