"""GRU: PyTorch's ``nn.GRU(batch_first=True)``, stacked, bidirectional, with variable lengths."""

from __future__ import annotations

from typing import Any

from .recurrent import Recurrent


class GRU(Recurrent):
    """Gated recurrent unit over batch-first sequences ``(N, T, input_size)``, as PyTorch's
    ``nn.GRU(input_size, hidden_size, num_layers, batch_first=True, dropout=..., bidirectional=...)``:

    .. math::

        r_t &= \\sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\\\
        z_t &= \\sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\\\
        n_t &= \\tanh(W_{in} x_t + b_{in} + r_t \\odot (W_{hn} h_{t-1} + b_{hn})) \\\\
        h_t &= (1 - z_t) \\odot n_t + z_t \\odot h_{t-1}

    (Keras's ``GRU(reset_after=True)`` is the same cell.) Parameters as ``LSTM``'s with three gates
    stacked r, z, n: ``W_ih_l{k}`` (3H, in), ``W_hh_l{k}`` (3H, H), ``b_ih_l{k}``, ``b_hh_l{k}`` (3H),
    ``_reverse`` for the reverse direction; PyTorch's initialisation U(-1/sqrt(H), 1/sqrt(H)).
    Calls, states (one, ``h``: ``gru(x, h0)``, ``return_state=True`` gives ``(output, h_n)``),
    ``lengths``, ``return_sequences``, dropout and the Graph layout are the ``LSTM``'s.

    Parameters
    ----------
    input_size, hidden_size, num_layers, bidirectional, dropout, return_sequences, return_state,
    bias, dtype, rng
        As ``LSTM``'s.
    """

    GATES = 3
    STATES = ("h",)
    BUFFERS = 2
    DGATES = 2
    FORWARD = "gru_forward"
    BACKWARD = "gru_backward"
    ONNX_OP = "GRU"
    kernel_files = ("gru",)

    def _onnx_attributes(self) -> dict[str, Any]:
        return {"linear_before_reset": 1}  # PyTorch's n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
