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
