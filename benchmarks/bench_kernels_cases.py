"""bench_kernels.py's per-batch cases: each kernel's NumPy and numba versions on the same arrays."""

import numpy as np

from tinygrad_free import kernels
from tinygrad_free.kernels import dense

LAYERS = (784, 128, 128, 128, 10)
ACT_NAMES = {dense.IDENTITY: "identity", dense.SIGMOID: "sigmoid", dense.TANH: "tanh", dense.RELU: "relu"}
BACKENDS = (("numpy", kernels.NUMPY), ("numba", kernels.NUMBA))


def make_cases(batch, dtype, rng):
    """(kernel, variant, shape, {backend: (fn, args)}) for the per-batch kernels."""
    hidden, classes = LAYERS[1], LAYERS[-1]
    out = []

    def arr(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(dtype)

    for code in (dense.TANH, dense.SIGMOID, dense.RELU):
        z, b = arr(batch, hidden, scale=2.0), arr(hidden)
        out.append(
            (
                "bias_act",
                ACT_NAMES[code],
                (batch, hidden),
                {name: (ops.bias_act, (z.copy(), b, code)) for name, ops in BACKENDS},
            )
        )
    z, b = arr(batch, classes, scale=2.0), arr(classes)
    out.append(
        (
            "bias_act",
            "identity",
            (batch, classes),
            {name: (ops.bias_act, (z.copy(), b, dense.IDENTITY)) for name, ops in BACKENDS},
        )
    )
    for code in (dense.TANH, dense.SIGMOID, dense.RELU):
        y = dense.bias_act_numpy(arr(batch, hidden, scale=2.0), None, code)
        gy = arr(batch, hidden)
        out.append(
            (
                "dense_grad",
                ACT_NAMES[code],
                (batch, hidden),
                {
                    name: (ops.dense_grad, (y, gy, code, np.empty_like(y), np.zeros(hidden, dtype)))
                    for name, ops in BACKENDS
                },
            )
        )
        out.append(
            (
                "act_grad",
                ACT_NAMES[code],
                (batch, hidden),
                {name: (ops.act_grad, (y, gy, code, np.empty_like(y))) for name, ops in BACKENDS},
            )
        )
    # The whole layer, products included (numba: one jitted call through kernels.blas), at the
    # reference network's three layer shapes; the first layer's backward wants no input gradient.
    for n_in, n_out, code in (
        (LAYERS[0], hidden, dense.TANH),
        (hidden, hidden, dense.TANH),
        (hidden, classes, dense.IDENTITY),
    ):
        x, W, b = arr(batch, n_in), arr(n_in, n_out, scale=n_in**-0.5), arr(n_out)
        variant = f"{n_in}x{n_out} {ACT_NAMES[code]}"
        out.append(
            (
                "dense_forward",
                variant,
                (batch, n_in),
                {name: (ops.dense_forward, (x, W, b, code, np.empty((batch, n_out), dtype))) for name, ops in BACKENDS},
            )
        )
        y, gy = dense.dense_forward_numpy(x, W, b, code, np.empty((batch, n_out), dtype)), arr(batch, n_out)
        dx = None if n_in == LAYERS[0] else np.empty_like(x)
        out.append(
            (
                "dense_backward",
                variant,
                (batch, n_in),
                {
                    name: (
                        ops.dense_backward,
                        (x, W, y, gy, code, np.empty_like(y), np.empty_like(W), 0.0, np.zeros(n_out, dtype), dx),
                    )
                    for name, ops in BACKENDS
                },
            )
        )
    logits, labels = arr(batch, classes, scale=3.0), rng.integers(0, classes, batch).astype(np.uint8)
    for kernel in ("softmax_cross_entropy", "softmax_squared_error"):
        out.append(
            (
                kernel,
                "",
                (batch, classes),
                {name: (getattr(ops, kernel), (logits, labels, np.empty_like(logits))) for name, ops in BACKENDS},
            )
        )
    images, shifts = arr(batch, 28, 28), rng.integers(-1, 2, size=(batch, 2))  # augment.RandomShift(1)
    out.append(
        (
            "shift_images",
            "max 1 px",
            (batch, 28, 28),
            {name: (ops.shift_images, (images, shifts, np.empty_like(images))) for name, ops in BACKENDS},
        )
    )
    return out


#: Keras's mnist_convnet: Conv2D(1, 32, 3, relu) - MaxPool 2 - Conv2D(32, 64, 3, relu) - MaxPool 2.
#: (C_in, C_out, input side) of each convolution; each is followed by a 2x2 max pooling.
CONVNET = ((1, 32, 28), (32, 64, 13))
CONVNET_BATCH = 128


def make_convnet_cases(dtype, rng, batch=CONVNET_BATCH):
    """(kernel, variant, shape, {backend: (fn, args)}) for the convnet's layers: each 3x3
    convolution forward and backward (bias and ReLU fused; the first layer's backward wants no
    input gradient, as the network's first layer) and each 2x2 max pooling forward and backward."""
    out = []
    for c_in, c_out, side in CONVNET:
        x = rng.standard_normal((batch, c_in, side, side)).astype(dtype)
        W = (rng.standard_normal((c_out, c_in, 3, 3)) * (9 * c_in) ** -0.5).astype(dtype)
        b = (rng.standard_normal(c_out) * 0.1).astype(dtype)
        y = np.empty((batch, c_out, side - 2, side - 2), dtype)
        kernels.NUMPY.conv2d_forward(x, W, b, 1, 1, 0, 0, dense.RELU, y)
        gy = rng.standard_normal(y.shape).astype(dtype)
        dx = None if c_in == 1 else np.empty_like(x)
        variant = f"{c_in}->{c_out} 3x3 relu"
        out.append(
            (
                "conv2d_forward",
                variant,
                x.shape,
                {
                    name: (ops.conv2d_forward, (x, W, b, 1, 1, 0, 0, dense.RELU, np.empty_like(y)))
                    for name, ops in BACKENDS
                },
            )
        )
        out.append(
            (
                "conv2d_backward",
                variant + (" no dx" if dx is None else ""),
                x.shape,
                {
                    name: (
                        ops.conv2d_backward,
                        (x, W, y, gy, dense.RELU, np.empty_like(W), 0.0, np.zeros(c_out, dtype), 1, 1, 0, 0, dx),
                    )
                    for name, ops in BACKENDS
                },
            )
        )
        pooled = (batch, c_out, (side - 2) // 2, (side - 2) // 2)
        p, arg = np.empty(pooled, dtype), np.empty(pooled, np.int64)
        kernels.NUMPY.maxpool2d_forward(y, 2, 2, 2, 2, p, arg)
        gp = rng.standard_normal(pooled).astype(dtype)
        out.append(
            (
                "maxpool2d_forward",
                "2x2",
                y.shape,
                {
                    name: (ops.maxpool2d_forward, (y, 2, 2, 2, 2, np.empty_like(p), np.empty_like(arg)))
                    for name, ops in BACKENDS
                },
            )
        )
        out.append(
            (
                "maxpool2d_backward",
                "2x2",
                y.shape,
                {name: (ops.maxpool2d_backward, (gp, arg, np.empty_like(y))) for name, ops in BACKENDS},
            )
        )
    return out
