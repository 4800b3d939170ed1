"""LSTM: PyTorch's ``nn.LSTM(batch_first=True)``, stacked, bidirectional, with variable lengths."""

from __future__ import annotations

from .recurrent import Recurrent


class LSTM(Recurrent):
    """Long short-term memory over batch-first sequences ``(N, T, input_size)``, as PyTorch's
    ``nn.LSTM(input_size, hidden_size, num_layers, batch_first=True, dropout=..., bidirectional=...)``:

    .. math::

        i_t &= \\sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi}) \\\\
        f_t &= \\sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}) \\\\
        g_t &= \\tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) \\\\
        o_t &= \\sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho}) \\\\
        c_t &= f_t \\odot c_{t-1} + i_t \\odot g_t, \\qquad h_t = o_t \\odot \\tanh(c_t)

    Parameters are PyTorch's, in its order, names and shapes, so a PyTorch ``state_dict`` copies in
    tensor by tensor (``load_torch_state_dict``): per layer ``k`` and direction, ``W_ih_l{k}``
    (4H, in) (PyTorch's ``weight_ih_l{k}``; gates stacked i, f, g, o), ``W_hh_l{k}`` (4H, H),
    ``b_ih_l{k}``, ``b_hh_l{k}`` (4H), with ``_reverse`` for the reverse direction; layer ``k > 0``
    takes ``in = H * directions``. Initialised as PyTorch does: all from U(-1/sqrt(H), 1/sqrt(H)).

    A call ``lstm(x)``, ``lstm(x, h0, c0)`` (or ``h0=``, ``c0=``), ``lengths=``:

    * output ``(N, T, H * directions)``, the forward direction's features first; with
      ``return_sequences=False`` each sequence's output at its last valid step, ``(N, H * directions)``
      (the reverse direction's at step 0, where it ends: PyTorch's ``h_n[-2:]``);
    * ``h0``, ``c0``: initial states, ``(num_layers * directions, N, H)`` as PyTorch's (zeros when
      not given); they get gradients (``backward`` returns ``(dx, dh0, dc0)`` then);
    * ``return_state=True``: the call returns ``(output, h_n, c_n)``, the final states in the same
      layout, and ``backward`` takes a tuple of three gradients (None for any of them);
    * ``lengths``: an ``(N,)`` integer array, 1 <= length <= T, as ``pack_padded_sequence(...,
      batch_first=True, enforce_sorted=False)``: outputs past a sequence's length are 0, its final
      state is the one at its last valid step, and the reverse direction starts at its own end.
      A keyword input: it gets no gradient (``lstm.begin_update(x, lengths=l)`` too; in a Graph an
      integer ``nn.Input(())``);
    * in a ``Graph`` every node is batch-first, so there the states are ``(N, num_layers *
      directions, H)`` (``out, h, c = lstm(x_node)``; ``lstm(x_node, h_node, c_node)``); an array
      call takes and returns that layout with ``batch_first_states=True``.

    Training mode applies dropout with probability ``dropout`` to the outputs of every layer but the
    last (PyTorch's), its masks from this layer's generator (``rng``), saved with the model.

    Each direction of each layer is one kernel call forward and one backward (``kernels/lstm.py``):
    the input projection of all steps as one product, per step one recurrent product and one fused
    gate/state loop, the weight gradients as whole-sequence products.

    Parameters
    ----------
    input_size, hidden_size : int
    num_layers : int, default 1
    bidirectional : bool, default False
    dropout : float in [0, 1), default 0
    return_sequences : bool, default True
    return_state : bool, default False
    bias : bool, default True
        Without biases (PyTorch's ``bias=False``) there are no ``b_*`` parameters.
    dtype : float32 (default) or float64
    rng : None, int or numpy.random.Generator
        Seeds the initial weights and the dropout masks; an int is saved with the model.
    """

    GATES = 4
    STATES = ("h", "c")
    BUFFERS = 2
    DGATES = 1
    FORWARD = "lstm_forward"
    BACKWARD = "lstm_backward"
    ONNX_OP = "LSTM"
    kernel_files = ("lstm",)
