"""RNN: PyTorch's ``nn.RNN(batch_first=True)`` (tanh or relu), stacked, bidirectional, variable lengths."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .activation import RELU, TANH
from .recurrent import Recurrent

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

    from .._typing import Seed

NONLINEARITIES = {"tanh": TANH, "relu": RELU}


class RNN(Recurrent):
    """Elman RNN over batch-first sequences ``(N, T, input_size)``, as PyTorch's ``nn.RNN(input_size,
    hidden_size, num_layers, nonlinearity, batch_first=True, dropout=..., bidirectional=...)``:

    .. math::

        h_t = \\mathrm{act}(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}),
        \\qquad \\mathrm{act} = \\tanh \\text{ or } \\mathrm{relu}

    Parameters as ``LSTM``'s with one gate: ``W_ih_l{k}`` (H, in), ``W_hh_l{k}`` (H, H),
    ``b_ih_l{k}``, ``b_hh_l{k}`` (H), ``_reverse`` for the reverse direction; PyTorch's
    initialisation U(-1/sqrt(H), 1/sqrt(H)). Calls, the state (``rnn(x, h0)``, ``return_state=True``
    gives ``(output, h_n)``), ``lengths``, ``return_sequences``, dropout and the Graph layout are the
    ``LSTM``'s.

    Parameters
    ----------
    input_size, hidden_size, num_layers : int
    nonlinearity : "tanh" (default) or "relu"
    bidirectional, dropout, return_sequences, return_state, bias, dtype, rng
        As ``LSTM``'s.
    """

    GATES = 1
    STATES = ("h",)
    BUFFERS = 1
    DGATES = 1
    FORWARD = "rnn_forward"
    BACKWARD = "rnn_backward"
    ONNX_OP = "RNN"
    kernel_files = ("rnn",)

    def _onnx_attributes(self) -> dict[str, Any]:
        return {"activations": [self.nonlinearity.capitalize()] * self.directions}

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bidirectional: bool = False,
        dropout: float = 0.0,
        return_sequences: bool = True,
        return_state: bool = False,
        bias: bool = True,
        dtype: DTypeLike = np.float32,
        rng: Seed = None,
    ) -> None:
        key = str(nonlinearity).lower() if isinstance(nonlinearity, str) else nonlinearity
        if key not in NONLINEARITIES:
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu' (PyTorch's), got {nonlinearity!r}")
        flags = (bidirectional, dropout, return_sequences, return_state, bias)
        super().__init__(input_size, hidden_size, num_layers, *flags, dtype, rng)
        self.nonlinearity = key
        self.code = NONLINEARITIES[key]

    def _extra_args(self) -> tuple[Any, ...]:
        return (self.code,)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "nonlinearity": self.nonlinearity}

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s if self.nonlinearity == "tanh" else s + f", nonlinearity={self.nonlinearity!r}"
