"""Inverted dropout."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import backend
from .. import init as initializers
from .module import Module

if TYPE_CHECKING:
    from .._typing import Array, OnnxBuilder, Seed


class Dropout(Module):
    """Training: y = x * m / (1 - p) with m ~ Bernoulli(1 - p) drawn per element per call
    (inverted dropout, as PyTorch's ``nn.Dropout``); evaluation: y = x (identity).

    Backward multiplies dy by the same mask (kept from forward); in eval mode it is the
    identity, as PyTorch's. The mask comes from this layer's own generator: uniform 32-bit draws
    (``uniform_draws``), an element kept when its draw is >= round(p 2^32), so P(drop) = p to
    within 2^-32; one fused pass applies it (``kernels.dropout``). The same seed gives
    the same masks call after call; the generator's state is part of the model's state
    (``Module.named_generators``: saved with the model and by ``BackupAndRestore``).

    Parameters
    ----------
    p : float in [0, 1)
        Probability of zeroing an element (p = 1 would zero everything and divide by zero).
    rng : None, int or numpy.random.Generator
        An int seed is saved with the model (``get_config``), so a loaded model starts from the
        same stream; a Generator or None is not (the loaded layer draws fresh entropy).
    """

    _writes_inputs = False  # never writes into its inputs (see nn.context)
    kernel_files = ("dropout",)

    def __init__(self, p: float = 0.5, rng: Seed = None) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)) or not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be a probability in [0, 1), got {p!r}")
        self.p = float(p)
        self.seed = int(rng) if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) else None
        self.rng = initializers.as_generator(rng)
        self._threshold, self._scale = drop_threshold(self.p), 1.0 / (1.0 - self.p)

    def forward(self, x: Array) -> Array:
        if getattr(x, "dtype", np.dtype(object)).kind != "f":
            raise ValueError(
                f"{self!r}: expected a float32 or float64 array, got {getattr(x, 'dtype', type(x).__name__)}"
            )
        if not self.training or self.p == 0:
            if self.recording:
                self._mask: Array | None = None  # the identity: backward passes the gradient on
            return x
        draws = uniform_draws(self.rng, x.shape)  # kept rather than a mask: 4 bytes, no pass to build
        y = np.empty(x.shape, x.dtype)
        backend.ops().dropout_apply(x, draws, self._threshold, self._scale, y)
        if self.recording:
            self._mask = draws
        return y

    def backward(self, grad_out: Array) -> Array:
        if self._mask is None:
            return grad_out
        return backend.ops().dropout_apply(grad_out, self._mask, self._threshold, self._scale, np.empty_like(grad_out))

    def get_config(self) -> dict[str, Any]:
        return {"p": self.p, "rng": self.seed}

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def to_onnx(self, b: OnnxBuilder, inputs: list[str]) -> list[str]:
        """ONNX: nothing; in the exported (inference) graph dropout is the identity."""
        return inputs[:1]


#: Bit generators whose raw output is 64 random bits (numpy's PCG64, PCG64DXSM, Philox, SFC64);
#: MT19937's raw output is 32 bits in a 64-bit word, so it goes through ``integers``.
_RAW64 = ("PCG64", "PCG64DXSM", "Philox", "SFC64")


def uniform_draws(rng: np.random.Generator, shape: tuple[int, ...]) -> Array:
    """Uniform 32-bit integers of ``shape`` from ``rng``: the raw 64-bit output cut in two (about
    0.6 ns per draw, 4x ``rng.random(dtype=float32)``), or ``rng.integers`` for other generators.
    A weight is then kept with probability 1 - p by ``draw >= drop_threshold(p)``."""
    size = int(np.prod(shape))
    if type(rng.bit_generator).__name__ in _RAW64:
        raw = rng.bit_generator.random_raw((size + 1) // 2)
        return raw.view(np.uint32)[:size].reshape(shape)
    return rng.integers(0, 2**32 - 1, size, dtype=np.uint32, endpoint=True).reshape(shape)


def drop_threshold(p: float) -> int:
    """The draw below which an element is dropped: round(p 2^32), so P(drop) = p to within 2^-32."""
    return min(int(round(p * 2**32)), 2**32 - 1)
