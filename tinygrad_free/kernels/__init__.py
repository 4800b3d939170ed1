"""Hot-path kernels, each with a plain NumPy version and a numba version of the same math.

``NUMPY`` and ``NUMBA`` are namespaces with the same function names; ``backend.ops()``
returns the one selected. Matrix products stay in BLAS: numpy's ``@`` in the NumPy kernels, and
in the numba ones the same (or MKL's) GEMM called from inside the jitted code (see ``blas``).

The numba kernels compile on first use (and are cached on disk, so later processes only
load them); ``warmup()`` compiles them all up front and returns how long that took.
"""

import time
from types import SimpleNamespace

import numpy as np

from . import approx, blas, conv, dense, im2col, loss, optim, parallel, pool, shift
from ._nb import HAVE_NUMBA

NUMPY = SimpleNamespace(
    bias_act=dense.bias_act_numpy,
    act_grad=dense.act_grad_numpy,
    dense_grad=dense.dense_grad_numpy,
    dense_forward=dense.dense_forward_numpy,
    dense_backward=dense.dense_backward_numpy,
    softmax_cross_entropy=loss.softmax_cross_entropy_numpy,
    softmax_squared_error=loss.softmax_squared_error_numpy,
    sgd=optim.sgd_numpy,
    momentum=optim.momentum_numpy,
    rmsprop=optim.rmsprop_numpy,
    adam=optim.adam_numpy,
    nadam=optim.nadam_numpy,
    weight_decay=optim.weight_decay_numpy,
    shift_images=shift.shift_images_numpy,
    im2col=im2col.im2col_numpy,
    col2im=im2col.col2im_numpy,
    conv2d_forward=conv.conv2d_forward_numpy,
    conv2d_backward=conv.conv2d_backward_numpy,
    maxpool2d_forward=pool.maxpool2d_forward_numpy,
    maxpool2d_backward=pool.maxpool2d_backward_numpy,
    avgpool2d_forward=pool.avgpool2d_forward_numpy,
    avgpool2d_backward=pool.avgpool2d_backward_numpy,
    global_avgpool2d_forward=pool.global_avgpool2d_forward_numpy,
    global_avgpool2d_backward=pool.global_avgpool2d_backward_numpy,
)

# Without numba installed these are stubs that raise (backend.set_backend refuses "numba" then).
NUMBA = SimpleNamespace(
    bias_act=dense.bias_act_numba,
    act_grad=dense.act_grad_numba,
    dense_grad=dense.dense_grad_numba,
    dense_forward=dense.dense_forward_numba,
    dense_backward=dense.dense_backward_numba,
    softmax_cross_entropy=loss.softmax_cross_entropy_numba,
    softmax_squared_error=loss.softmax_squared_error_numba,
    sgd=optim.sgd_threaded,
    momentum=optim.momentum_threaded,
    rmsprop=optim.rmsprop_threaded,
    adam=optim.adam_threaded,
    nadam=optim.nadam_threaded,
    weight_decay=optim.weight_decay_numba,
    shift_images=shift.shift_images_numba,
    im2col=im2col.im2col_numba,
    col2im=im2col.col2im_numba,
    conv2d_forward=conv.conv2d_forward_numba,
    conv2d_backward=conv.conv2d_backward_numba,
    maxpool2d_forward=pool.maxpool2d_forward_numba,
    maxpool2d_backward=pool.maxpool2d_backward_numba,
    avgpool2d_forward=pool.avgpool2d_forward_numba,
    avgpool2d_backward=pool.avgpool2d_backward_numba,
    global_avgpool2d_forward=pool.global_avgpool2d_forward_numba,
    global_avgpool2d_backward=pool.global_avgpool2d_backward_numba,
)

KERNELS = tuple(vars(NUMPY))


def warmup(dtypes=(np.float32, np.float64), label_dtypes=(np.intp, np.uint8)):
    """Compile (or load from numba's on-disk cache) every numba kernel; returns the seconds taken.

    Covers the argument types the library passes: C-contiguous 2-D activations (writable, or
    read-only as a module's output in training mode is) with a 1-D
    bias/bias-gradient or None, integer labels of ``label_dtypes``, flat 1-D optimizer buffers
    with a (2, n) scratch, Python floats/ints/bools as hyperparameters. Other types (another
    label dtype, non-contiguous arrays, ...) compile on their first call.
    """
    if not HAVE_NUMBA:
        raise RuntimeError("kernels.warmup: numba is not installed")
    start = time.perf_counter()
    ops = NUMBA
    for dtype in dtypes:
        dtype = np.dtype(dtype)
        z = np.linspace(-1.0, 1.0, 12, dtype=dtype).reshape(3, 4)
        z_readonly = z.view()
        z_readonly.flags.writeable = False
        b = np.zeros(4, dtype)
        for code in (dense.IDENTITY, dense.SIGMOID, dense.TANH, dense.RELU):
            for bias in (b, None):
                y = ops.bias_act(z.copy(), bias, code)
                ops.dense_grad(y, z, code, np.empty_like(y), None if bias is None else b.copy())
                w = np.ones((4, 4), dtype)
                # A layer's input is data (writable) or the previous layer's read-only output.
                for x in (z, z_readonly):
                    ops.dense_forward(x, w, bias, code, np.empty_like(z))
                    for dx in (np.empty_like(z), None):
                        ops.dense_backward(
                            x,
                            w,
                            y,
                            z,
                            code,
                            np.empty_like(y),
                            np.empty_like(w),
                            0.0,
                            None if bias is None else b.copy(),
                            dx,
                        )
            ops.act_grad(y, z, code, np.empty_like(y))
        for label_dtype in label_dtypes:
            labels = np.array([0, 3, 1], dtype=label_dtype)
            for logits in (z, z_readonly):  # a model's output is read-only in training mode
                ops.softmax_cross_entropy(logits, labels, np.empty_like(z))
                ops.softmax_squared_error(logits, labels, np.empty_like(z))
        w, g, m, v = (np.full(5, 0.5, dtype) for _ in range(4))
        tmp = np.empty((2, 5), dtype)
        ops.weight_decay(g, w, 1e-4, 3, np.empty_like(g))
        # The serial kernels, then their parallel twins (taken for large buffers when numba has
        # several threads; too small here to be chosen by ops, so called directly).
        for sgd, momentum, rmsprop, adam, nadam in (
            (ops.sgd, ops.momentum, ops.rmsprop, ops.adam, ops.nadam),
            (
                optim.sgd_parallel,
                optim.momentum_parallel,
                optim.rmsprop_parallel,
                optim.adam_parallel,
                optim.nadam_parallel,
            ),
        ):
            sgd(w, g, tmp, 0.1)
            for nesterov in (False, True):
                momentum(w, g, m, tmp, 0.1, 0.9, nesterov)
            rmsprop(w, g, v, tmp, 1e-3, 0.9, 1e-8)
            adam(w, g, m, v, tmp, 1e-3, 0.9, 0.999, 1e-8, 0.1, 0.001)
            nadam(w, g, m, v, tmp, 1e-3, 0.9, 0.999, 1e-8, 0.001, 9.0, 1.0)
        images = np.ones((2, 3, 3), dtype)
        ops.shift_images(images, np.array([[1, -1], [0, 2]]), np.empty_like(images))
        # conv/pool: 4-D C-contiguous inputs, writable (data) or read-only (a layer's output),
        # with and without bias/dx, every activation; the int64 argmax the pooling layer keeps.
        x = np.linspace(-1.0, 1.0, 2 * 2 * 5 * 5, dtype=dtype).reshape(2, 2, 5, 5)
        x_readonly = x.view()
        x_readonly.flags.writeable = False
        W = np.ones((3, 2, 3, 3), dtype)
        cols = np.empty((2, 2 * 9, 9), dtype)
        y = np.empty((2, 3, 3, 3), dtype)
        p = np.empty((2, 2, 2, 2), dtype)
        arg = np.empty(p.shape, np.int64)
        g = np.empty((2, 2), dtype)
        for xin in (x, x_readonly):
            ops.im2col(xin, 3, 3, 2, 2, 1, 1, cols)
            for code in (dense.IDENTITY, dense.SIGMOID, dense.TANH, dense.RELU):
                for bias in (np.zeros(3, dtype), None):
                    ops.conv2d_forward(xin, W, bias, 2, 2, 1, 1, code, y)
            ops.maxpool2d_forward(xin, 2, 2, 2, 2, p, arg)
            ops.avgpool2d_forward(xin, 2, 2, 2, 2, p)
            ops.global_avgpool2d_forward(xin, g)
        ops.col2im(cols, 3, 3, 2, 2, 1, 1, np.empty_like(x))
        for xin in (x, x_readonly):
            for code in (dense.IDENTITY, dense.SIGMOID, dense.TANH, dense.RELU):
                for bias in (np.zeros(3, dtype), None):
                    for dx in (np.empty_like(x), None):
                        db = None if bias is None else bias.copy()
                        ops.conv2d_backward(xin, W, y, y, code, np.empty_like(W), 0.0, db, 2, 2, 1, 1, dx)
        ops.maxpool2d_backward(p, arg, np.empty_like(x))
        ops.avgpool2d_backward(p, 2, 2, 2, 2, np.empty_like(x))
        ops.global_avgpool2d_backward(g, np.empty_like(x))
        # The threaded twins, which training batches take when numba has several threads:
        # float32 training only (each takes ~5 s to compile; other types compile on first use).
        if dtype == np.float32:
            conv.conv2d_forward_numba(x, W, np.zeros(3, dtype), 2, 2, 1, 1, dense.RELU, y, on_threads=True)
            for dx in (np.empty_like(x), None):
                conv.conv2d_backward_numba(
                    x, W, y, y, dense.RELU, np.empty_like(W), 0.0, np.zeros(3, dtype), 2, 2, 1, 1, dx, on_threads=True
                )
            pool.maxpool_forward_parallel(x, 2, 2, 2, 2, p, arg)
            pool.maxpool_backward_parallel(p, arg, np.empty_like(x))
    return time.perf_counter() - start


__all__ = [
    "NUMPY",
    "NUMBA",
    "KERNELS",
    "HAVE_NUMBA",
    "warmup",
    "approx",
    "blas",
    "conv",
    "dense",
    "im2col",
    "loss",
    "optim",
    "parallel",
    "pool",
    "shift",
]
