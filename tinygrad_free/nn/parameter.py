"""The trainable tensor: a value and the gradient that backward accumulates into it."""
import numpy as np


class Parameter:
    """A trainable array and its gradient.

    Parameters
    ----------
    data : ndarray
        The value. Kept as given (no copy) so a layer and its parameter share memory.
    name : str
        The local name (``"W"``); a container prefixes it with the child's key when the
        owning module is attached, so inside a model it reads ``"0.W"``.
    decay : bool
        Whether coupled L2 weight decay applies (weight matrices yes, biases no).

    Notes
    -----
    ``backward`` ACCUMULATES into ``grad`` (two backward calls double it), as in PyTorch;
    ``zero_grad()`` clears it. ``data`` and ``grad`` may be re-pointed at views of one flat
    buffer (optimizers do this so one kernel call updates every parameter), so read them
    through the Parameter at each use rather than keeping the array.
    """

    __slots__ = ("data", "_grad", "_grad_is_zero", "name", "decay")

    def __init__(self, data, name="", decay=True):
        data = np.asarray(data)
        if data.dtype.kind != "f":
            raise ValueError(f"Parameter {name!r} must be a floating array, got dtype {data.dtype}")
        self.data = data
        self._grad = np.zeros_like(data)
        self._grad_is_zero = False
        self.name = name
        self.decay = decay

    @property
    def grad(self):
        if self._grad_is_zero:          # a zero_grad() is pending: make it real before anyone reads
            self._grad.fill(0)
            self._grad_is_zero = False
        return self._grad

    @grad.setter
    def grad(self, value):
        self._grad = value
        self._grad_is_zero = False

    def zero_grad(self):
        """Clear the gradient. Lazy: the next ``gemm_target`` user overwrites instead of adding,
        which saves a pass over the largest arrays every step; any other read sees zeros."""
        self._grad_is_zero = True

    def gemm_target(self):
        """(grad, beta) for a matrix product that writes ``grad <- update + beta * grad``.

        beta is 0 right after ``zero_grad()`` (the product overwrites, even stale NaN) and 1
        otherwise (it accumulates). Call ``grad_written()`` once the product has run, so a
        kernel that raised first leaves a pending zero_grad pending.
        """
        return self._grad, (0.0 if self._grad_is_zero else 1.0)

    def grad_written(self):
        """The array from ``gemm_target`` now holds the gradient."""
        self._grad_is_zero = False

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    def __repr__(self):
        return f"Parameter(name={self.name!r}, shape={self.data.shape}, dtype={self.data.dtype})"
