"""Dense-layer kernels: bias + activation forward, activation-gradient + bias-gradient backward.

Both work in place on arrays the layer owns. The activation's derivative comes from the
layer's cached output y (see ``nn.activation``), never from recomputing the forward pass.
"""
import numpy as np

IDENTITY, SIGMOID, TANH, RELU = 0, 1, 2, 3


def bias_act_numpy(z, b, code):
    """z <- act(z + b), in place. ``b`` may be None."""
    if b is not None:
        z += b
    if code == TANH:
        np.tanh(z, out=z)
    elif code == SIGMOID:
        # 1/(1+e^-z) == (1 + tanh(z/2)) / 2, which never overflows and uses numpy's SIMD tanh.
        z *= 0.5
        np.tanh(z, out=z)
        z *= 0.5
        z += 0.5
    elif code == RELU:
        np.maximum(z, 0, out=z)
    return z


def act_grad_numpy(y, gy, code, out):
    """out <- gy * f'(z), with f'(z) written in terms of y = f(z)."""
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
    else:
        out[...] = gy
    return out


def dense_grad_numpy(y, gy, code, dz, db):
    """dz <- gy * f'(y); db += sum over the batch of dz (db may be None)."""
    act_grad_numpy(y, gy, code, dz)
    if db is not None:
        db += dz.sum(axis=0)
    return dz
