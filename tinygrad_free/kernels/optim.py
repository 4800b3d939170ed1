"""Optimizer update kernels: one call updates a whole (flat) parameter buffer in place.

``tmp`` is a caller-owned scratch of shape (2, *w.shape) so the NumPy versions allocate
nothing per step; the numba versions run one fused loop and ignore it. ``g`` is the gradient
with any weight decay already added. The equations are in each optimizer's docstring.
"""
import numpy as np


def sgd_numpy(w, g, tmp, lr):
    np.multiply(g, lr, out=tmp[0])
    w -= tmp[0]


def momentum_numpy(w, g, u, tmp, lr, beta, nesterov):
    u *= beta
    u += g
    if nesterov:                       # w <- w - lr * (g + beta * u)
        np.multiply(u, beta, out=tmp[0])
        tmp[0] += g
        tmp[0] *= lr
    else:                              # w <- w - lr * u
        np.multiply(u, lr, out=tmp[0])
    w -= tmp[0]


def rmsprop_numpy(w, g, v, tmp, lr, beta, eps):
    t = tmp[0]
    v *= beta
    np.multiply(g, g, out=t)
    t *= 1 - beta
    v += t
    np.sqrt(v, out=t)
    t += eps
    np.divide(g, t, out=t)
    t *= lr
    w -= t


def _moments(g, m, v, t, b1, b2):
    m *= b1
    np.multiply(g, 1 - b1, out=t)
    m += t
    v *= b2
    np.multiply(g, g, out=t)
    t *= 1 - b2
    v += t


def adam_numpy(w, g, m, v, tmp, lr, b1, b2, eps, bc1, bc2):
    """w <- w - lr * (m / bc1) / (sqrt(v / bc2) + eps)."""
    t = tmp[0]
    _moments(g, m, v, t, b1, b2)
    np.divide(v, bc2, out=t)
    np.sqrt(t, out=t)
    t += eps
    np.divide(m, t, out=t)
    t *= lr / bc1
    w -= t


def nadam_numpy(w, g, m, v, tmp, lr, b1, b2, eps, bc2, cm, cg):
    """w <- w - lr * (cm * m + cg * g) / (sqrt(v / bc2) + eps), m and v updated first.

    Both NAdam variants have this form; only the coefficients cm, cg differ (see optim.nadam).
    """
    t, u = tmp[0], tmp[1]
    _moments(g, m, v, t, b1, b2)
    np.divide(v, bc2, out=t)
    np.sqrt(t, out=t)
    t += eps
    if cm != 0:                        # u <- cm * (m + (cg / cm) g) without a third buffer
        np.multiply(g, cg / cm, out=u)
        u += m
        u *= cm
    else:
        np.multiply(g, cg, out=u)
    u /= t
    u *= lr
    w -= u


def weight_decay_numpy(g, w, wd, n_decay, out):
    """out <- g, plus wd * w on the first n_decay elements (the weight matrices come first)."""
    np.multiply(w[:n_decay], wd, out=out[:n_decay])
    out[:n_decay] += g[:n_decay]
    out[n_decay:] = g[n_decay:]
    return out
