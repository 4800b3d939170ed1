"""Dense-layer kernels: bias + activation forward, activation-gradient + bias-gradient backward,
and the whole layer (its matrix products included) forward and backward.

All work in place on arrays the layer owns. The activation's derivative comes from the
layer's cached output y (see ``nn.activation``), never from recomputing the forward pass; GELU's
(``kernels.gelu``) cannot, so for GELU the layer keeps its pre-activation z (``dense_forward``'s
``z``) and hands z where the others hand y.
"""

import numpy as np

from . import approx, blas, gelu
from ._nb import NJIT, as2d, as2d_in, flat_in, njit, none_as_empty

IDENTITY, SIGMOID, TANH, RELU, GELU, GELU_TANH = 0, 1, 2, 3, 4, 5
#: The codes whose derivative is computed from the pre-activation z rather than the output y.
FROM_INPUT = (GELU, GELU_TANH)


def from_input(code):
    """Whether the gradient kernels take the pre-activation z (GELU) rather than the output y."""
    return code in FROM_INPUT


def sigmoid_inplace(z):
    """z <- 1 / (1 + exp(-z)) in place, PyTorch's formula, with NumPy's SIMD exp.

    Written this way the result keeps its relative accuracy in the negative tail (sigmoid(-20)
    = 2.06e-9 in float32), where 0.5 + 0.5 tanh(z / 2) cancels to a multiple of 2^-25. exp
    overflows to inf for z < -88.7 (float32), giving the limit 0 (as PyTorch's).
    """
    np.negative(z, out=z)
    with np.errstate(over="ignore"):
        np.exp(z, out=z)
    z += 1
    np.reciprocal(z, out=z)
    return z


def bias_act_numpy(z, b, code):
    """z <- act(z + b), in place. ``b`` may be None."""
    if b is not None:
        z += b
    if code == TANH:
        np.tanh(z, out=z)
    elif code == SIGMOID:
        sigmoid_inplace(z)
    elif code == RELU:
        np.maximum(z, 0, out=z)
    elif code in FROM_INPUT:
        gelu.gelu_numpy(z, z, code == GELU_TANH)
    return z


def act_grad_numpy(y, gy, code, out):
    """out <- gy * f'(z), with f'(z) written in terms of y = f(z) (GELU: ``y`` is z itself)."""
    if code == TANH:
        np.multiply(y, y, out=out)
        np.subtract(1, out, out=out)
        out *= gy
    elif code == SIGMOID:
        np.subtract(1, y, out=out)
        out *= y
        out *= gy
    elif code == RELU:
        np.multiply(gy, y > 0, out=out)
    elif code in FROM_INPUT:
        gelu.d_gelu_numpy(y, gy, out, code == GELU_TANH)
    else:
        out[...] = gy
    return out


def dense_grad_numpy(y, gy, code, dz, db):
    """dz <- gy * f'(y); db += sum over the batch of dz (db may be None)."""
    act_grad_numpy(y, gy, code, dz)
    if db is not None:
        db += dz.sum(axis=0)
    return dz


@blas.on_one_thread
def dense_forward_numpy(x, W, b, code, y, z=None):
    """y <- act(x @ W + b), y of shape (batch, out) owned by the caller. ``b`` may be None.
    ``z`` (GELU): where the pre-activation x @ W + b is kept, for the backward."""
    if z is None:
        np.matmul(x, W, out=y)
        return bias_act_numpy(y, b, code)
    np.matmul(x, W, out=z)
    if b is not None:
        z += b
    np.copyto(y, z)
    return bias_act_numpy(y, None, code)


@blas.on_one_thread
def dense_backward_numpy(x, W, y, gy, code, dz, dW, beta, db, dx):
    """The layer's backward from its cached input x and output y:

    dz <- gy * f'(y);  db += sum_batch dz;  dW <- x^T dz + beta * dW;  dx <- dz W^T.

    For GELU ``y`` is the pre-activation z that ``dense_forward`` kept. beta is 0 or 1 (overwrite
    after zero_grad, or accumulate); db and dx may be None (no bias; no input gradient wanted).
    Returns dx.
    """
    dense_grad_numpy(y, gy, code, dz, db)
    return backward_products_numpy(x, W, dz, dW, beta, dx)


@blas.on_one_thread
def backward_products_numpy(x, W, dz, dW, beta, dx):
    """dW <- x^T dz + beta * dW; dx <- dz W^T (dx may be None). Returns dx."""
    if beta == 0:
        np.matmul(x.T, dz, out=dW)
    else:
        dW += x.T @ dz
    if dx is not None:
        np.matmul(dz, W.T, out=dx)
    return dx


# --------------------------------------------------------------------------------------------
# numba twins. Each public ``*_numba`` is a thin Python function around one jitted call: a
# jitted function returning an array pays ~200 ns to box it, a Python ``return z`` ~40 ns.
# The activation branch is taken once per call (``code`` is an argument), and each branch
# is its own loop so every loop vectorises. ``b is None`` / ``acc is None`` branches are
# pruned at compile time (numba specialises on the None type), so "no bias" costs nothing.
# float32 tanh uses the rational form of ``approx`` inside the fused loop; for float64 tanh, and
# for sigmoid in either dtype, the loop adds the bias and NumPy's SIMD ufuncs finish
# (``finish_act``: np.tanh, or sigmoid_inplace's exp), as the NumPy kernel computes them.
# --------------------------------------------------------------------------------------------


@njit(**NJIT)
def _bias_identity(z, b):
    if b is not None:
        rows, cols = z.shape
        for i in range(rows):
            for j in range(cols):
                z[i, j] = z[i, j] + b[j]


@njit(**NJIT)
def _bias_tanh(z, b):
    rows, cols = z.shape
    for i in range(rows):
        for j in range(cols):
            v = z[i, j] if b is None else z[i, j] + b[j]
            z[i, j] = approx.tanh(v)


@njit(**NJIT)
def _bias_relu(z, b):
    zero = z.dtype.type(0)
    rows, cols = z.shape
    for i in range(rows):
        for j in range(cols):
            v = z[i, j] if b is None else z[i, j] + b[j]
            z[i, j] = zero if v < zero else v  # np.maximum(v, 0): NaN stays NaN


@njit(**NJIT)
def _bias_gelu(z, b, tanh_form):
    """z <- gelu(z + b) in place."""
    rows, cols = z.shape
    for i in range(rows):
        if tanh_form:
            for j in range(cols):
                z[i, j] = gelu.gelu_tanh(z[i, j] if b is None else z[i, j] + b[j])
        else:
            for j in range(cols):
                z[i, j] = gelu.gelu(z[i, j] if b is None else z[i, j] + b[j])


@njit(**NJIT)
def _bias_gelu_keep(z, b, tanh_form, y):
    """z <- z + b (kept for the backward; b zero-length: no bias); y <- gelu(z). Two loops per
    row: one loop storing both does not vectorise."""
    rows, cols = z.shape
    for i in range(rows):
        if b.shape[0] != 0:
            for j in range(cols):
                z[i, j] = z[i, j] + b[j]
        if tanh_form:
            for j in range(cols):
                y[i, j] = gelu.gelu_tanh(z[i, j])
        else:
            for j in range(cols):
                y[i, j] = gelu.gelu(z[i, j])


@njit(**NJIT)
def bias_act_2d(z, b, code):
    """Returns True when the caller must still apply the activation with NumPy (``finish_act``:
    tanh on float64, sigmoid on either dtype)."""
    if code == GELU or code == GELU_TANH:
        _bias_gelu(z, b, code == GELU_TANH)
        return False
    if code == TANH:
        if approx.has_fast_tanh(z):
            _bias_tanh(z, b)
            return False
        _bias_identity(z, b)
        return True
    if code == SIGMOID:
        _bias_identity(z, b)
        return True
    if code == RELU:
        _bias_relu(z, b)
    else:
        _bias_identity(z, b)
    return False


@njit(**NJIT)
def _bias_act(z, b, code):
    z2 = as2d(z)
    if b is None:
        return bias_act_2d(z2, None, code)
    b1 = flat_in(b)
    if b1.shape[0] != z2.shape[1]:
        raise ValueError("bias_act: b must have z.shape[-1] elements")
    return bias_act_2d(z2, b1, code)


def finish_act(z, code):
    """The activation a kernel left to NumPy (``bias_act_2d`` returned True), in place: np.tanh
    (float64; numba's scalar libm tanh is ~5x slower), or the sigmoid (``sigmoid_inplace``)."""
    if code == SIGMOID:
        return sigmoid_inplace(z)
    return np.tanh(z, out=z)


def bias_act_numba(z, b, code):
    """z <- act(z + b), in place. ``b`` may be None. numba twin of ``bias_act_numpy``.

    float32 tanh, relu, identity: one fused pass (bias, then the rational tanh of ``approx``).
    float64 tanh and sigmoid: numba adds the bias, then NumPy's SIMD ufuncs finish in place
    (``finish_act``), so those results are the NumPy kernel's bit for bit.
    """
    if _bias_act(z, b, code):
        finish_act(z, code)
    return z


# The activations' derivatives from their outputs, in one place: the dense loops below and the
# convolution's (conv_activation.fold_grad) inline them, each in a loop of its own so every loop vectorises.
# (``one``/``zero``: 1 and 0 in the arrays' dtype, made once outside the loop.)
@njit(inline="always")
def d_tanh(y, g, one):
    return (one - y * y) * g


@njit(inline="always")
def d_sigmoid(y, g, one):
    return (one - y) * y * g


@njit(inline="always")
def d_relu(y, g, one, zero):
    return g * (one if y > zero else zero)  # gy * (y > 0): NaN/inf gy stay NaN


d_gelu, d_gelu_tanh = gelu.d_gelu, gelu.d_gelu_tanh  # from the pre-activation: (z, g)


# The gradient loops write dz and, when ``acc`` is an array, add each dz into acc[column]
# in the same pass (acc is None for act_grad and for dense_grad without a bias).
@njit(**NJIT)
def _grad_identity(gy, dz, acc):
    rows, cols = dz.shape
    for i in range(rows):
        for j in range(cols):
            d = gy[i, j]
            dz[i, j] = d
            if acc is not None:
                acc[j] += d


@njit(**NJIT)
def _grad_tanh(y, gy, dz, acc):
    one = dz.dtype.type(1)
    rows, cols = dz.shape
    for i in range(rows):
        for j in range(cols):
            d = d_tanh(y[i, j], gy[i, j], one)
            dz[i, j] = d
            if acc is not None:
                acc[j] += d


@njit(**NJIT)
def _grad_sigmoid(y, gy, dz, acc):
    one = dz.dtype.type(1)
    rows, cols = dz.shape
    for i in range(rows):
        for j in range(cols):
            d = d_sigmoid(y[i, j], gy[i, j], one)
            dz[i, j] = d
            if acc is not None:
                acc[j] += d


@njit(**NJIT)
def _grad_relu(y, gy, dz, acc):
    one, zero = dz.dtype.type(1), dz.dtype.type(0)
    rows, cols = dz.shape
    for i in range(rows):
        for j in range(cols):
            d = d_relu(y[i, j], gy[i, j], one, zero)
            dz[i, j] = d
            if acc is not None:
                acc[j] += d


@njit(**NJIT)
def _grad_gelu(z, gy, dz, acc):
    rows, cols = dz.shape
    for i in range(rows):
        for j in range(cols):
            d = d_gelu(z[i, j], gy[i, j])
            dz[i, j] = d
            if acc is not None:
                acc[j] += d


@njit(**NJIT)
def _grad_gelu_tanh(z, gy, dz, acc):
    rows, cols = dz.shape
    for i in range(rows):
        for j in range(cols):
            d = d_gelu_tanh(z[i, j], gy[i, j])
            dz[i, j] = d
            if acc is not None:
                acc[j] += d


@njit(**NJIT)
def _grad_dispatch(y, gy, code, dz, acc):
    if y.shape != dz.shape or gy.shape != dz.shape:
        raise ValueError("act_grad/dense_grad: y, gy and the output must have the same shape")
    if code == GELU:
        _grad_gelu(y, gy, dz, acc)
    elif code == GELU_TANH:
        _grad_gelu_tanh(y, gy, dz, acc)
    elif code == TANH:
        _grad_tanh(y, gy, dz, acc)
    elif code == SIGMOID:
        _grad_sigmoid(y, gy, dz, acc)
    elif code == RELU:
        _grad_relu(y, gy, dz, acc)
    else:
        _grad_identity(gy, dz, acc)


@njit(**NJIT)
def _act_grad(y, gy, code, out):
    _grad_dispatch(as2d_in(y), as2d_in(gy), code, as2d(out), None)


@njit(**NJIT)
def layer_grad(y, gy, code, dz, db):
    """dz <- gy * f'(y) and db += its column sums (db may be None), in one pass (jitted code)."""
    dz2 = as2d(dz)
    if db is None:
        _grad_dispatch(as2d_in(y), as2d_in(gy), code, dz2, None)
    else:
        db1 = db.reshape(db.size) if db.ndim != 1 else db
        if db1.shape[0] != dz2.shape[1]:
            raise ValueError("dense_grad: db must have dz.shape[-1] elements")
        # Column sums start from zero in dz's dtype and are added to db at the end, the same
        # rounding as NumPy's ``db += dz.sum(axis=0)`` (which adds rows in order).
        acc = np.zeros(dz2.shape[1], dz2.dtype)
        _grad_dispatch(as2d_in(y), as2d_in(gy), code, dz2, acc)
        for j in range(db1.shape[0]):
            db1[j] += acc[j]


def act_grad_numba(y, gy, code, out):
    """out <- gy * f'(z) from y = f(z). numba twin of ``act_grad_numpy``."""
    _act_grad(y, gy, code, out)
    return out


def dense_grad_numba(y, gy, code, dz, db):
    """dz <- gy * f'(y); db += column sums of dz, in one pass. numba twin of ``dense_grad_numpy``."""
    layer_grad(y, gy, code, dz, db)
    return dz


# The whole layer in one jitted call, the products through ``blas.gemm`` (MKL or numpy's own
# OpenBLAS, called from numba): no Python between the product and the activation, or between
# the backward pass's activation gradient and its two products.
@njit(**NJIT)
def layer_forward(x, W, b, code, y):
    """y <- act(x @ W + b), the GEMM included (b zero-length: none); True when NumPy must finish."""
    if b.shape[0] != 0 and b.shape[0] != y.shape[1]:
        raise ValueError("dense_forward: b must have W.shape[1] elements")
    blas.gemm(x, W, y, 0.0)
    return bias_act_2d(y, None, code) if b.shape[0] == 0 else bias_act_2d(y, b, code)


@njit(**NJIT)
def layer_forward_keep(x, W, b, code, y, z):
    """z <- x @ W + b kept (b zero-length: none); y <- act(z). True when NumPy must finish."""
    if b.shape[0] != 0 and b.shape[0] != y.shape[1]:
        raise ValueError("dense_forward: b must have W.shape[1] elements")
    if z.shape != y.shape:
        raise ValueError("dense_forward: z must have y's shape")
    blas.gemm(x, W, z, 0.0)
    if code == GELU or code == GELU_TANH:
        _bias_gelu_keep(z, b, code == GELU_TANH, y)
        return False
    if b.shape[0] != 0:
        _bias_identity(z, b)
    y[...] = z
    return bias_act_2d(y, None, code)


@njit(**NJIT)
def _dense_backward(x, W, y, gy, code, dz, dW, beta, db, dx):
    """No db, no dx: zero-length arrays (``dense_backward_numba``)."""
    if db.shape[0] == 0:
        layer_grad(y, gy, code, dz, None)
    else:
        layer_grad(y, gy, code, dz, db)
    blas.gemm(x.T, dz, dW, beta)
    if dx.shape[0] != 0:
        blas.gemm(dz, W.T, dx, 0.0)


@blas.on_one_thread_unless_mkl
def dense_forward_numba(x, W, b, code, y, z=None):
    """y <- act(x @ W + b), z keeping x @ W + b when given. numba twin of ``dense_forward_numpy``:
    one jitted call (product included) when ``blas`` found a GEMM numba can call, else numpy's
    ``@`` then ``bias_act``."""
    if not blas.AVAILABLE:
        if z is None:
            np.matmul(x, W, out=y)
            return bias_act_numba(y, b, code)
        np.matmul(x, W, out=z)
        if b is not None:
            z += b
        np.copyto(y, z)
        return bias_act_numba(y, None, code)
    # an empty array for no b: one compiled variant for both (x keeps its write flag: a read-only
    # view per call would cost the MLP's step more than the second variant costs the warm-up)
    b = none_as_empty(b, (0,), y.dtype)
    finish = layer_forward(x, W, b, code, y) if z is None else layer_forward_keep(x, W, b, code, y, z)
    if finish:  # float64 tanh, sigmoid: NumPy finishes
        finish_act(y, code)
    return y


@blas.on_one_thread_unless_mkl
def dense_backward_numba(x, W, y, gy, code, dz, dW, beta, db, dx):
    """numba twin of ``dense_backward_numpy`` (one jitted call when ``blas`` is available)."""
    if not blas.AVAILABLE:
        layer_grad(y, gy, code, dz, db)
        return backward_products_numpy(x, W, dz, dW, beta, dx)
    # empty arrays for no db and no dx: one compiled variant where None and arrays made four
    db1, dx1 = none_as_empty(db, (0,), dz.dtype), none_as_empty(dx, (0, 0), dz.dtype)
    _dense_backward(x, W, y, gy, code, dz, dW, beta, db1, dx1)
    return dx


# --------------------------------------------------------------------------------------------
# The table (see kernels/registry.py) and the warm-up: C-contiguous 2-D activations, writable
# (data) or read-only (a module's output seen by user code), a 1-D bias/bias-gradient or None
# (the whole-layer kernels see None and an array as one compiled variant: none_as_empty).
# --------------------------------------------------------------------------------------------
from .registry import kernel, warmup_case  # noqa: E402

kernel("bias_act", bias_act_numpy, bias_act_numba)
kernel("act_grad", act_grad_numpy, act_grad_numba)
kernel("dense_grad", dense_grad_numpy, dense_grad_numba)
kernel("dense_forward", dense_forward_numpy, dense_forward_numba)
kernel("dense_backward", dense_backward_numpy, dense_backward_numba)


@warmup_case
def _warm_up(dtype):
    z = np.linspace(-1.0, 1.0, 12, dtype=dtype).reshape(3, 4)
    z_readonly = z.view()
    z_readonly.flags.writeable = False
    b = np.zeros(4, dtype)
    for code in (IDENTITY, SIGMOID, TANH, RELU, GELU, GELU_TANH):
        for bias in (b, None):
            y = bias_act_numba(z.copy(), bias, code)
            dense_grad_numba(y, z, code, np.empty_like(y), None if bias is None else b.copy())
            w = np.ones((4, 4), dtype)
            for x in (z, z_readonly):  # a layer's input is data or the previous layer's output
                dense_forward_numba(x, w, bias, code, np.empty_like(z))
                if code in FROM_INPUT:
                    dense_forward_numba(x, w, bias, code, np.empty_like(z), np.empty_like(z))
                for dx in (np.empty_like(z), None):
                    db = None if bias is None else b.copy()
                    dense_backward_numba(x, w, y, z, code, np.empty_like(y), np.empty_like(w), 0.0, db, dx)
        act_grad_numba(y, z, code, np.empty_like(y))
