"""Fused softmax + loss kernels. Each returns the mean loss over the batch and writes
dL/dlogits into ``grad``, so the loss layer's backward is a lookup, not a recomputation.

Cross-entropy:  L = -(1/B) sum_b log softmax(z_b)[y_b],      dL/dz = (p - onehot(y)) / B
Squared error:  L =  (1/B) sum_b sum_k (p_bk - onehot_bk)^2,  with q = 2 (p - onehot) / B,
                dL/dz = p * (q - sum_k q_k p_k)   (the softmax Jacobian applied to q)
"""
import numpy as np


def _softmax_into(z, p):
    """p <- softmax(z) row-wise; subtracting the row max keeps exp from overflowing."""
    np.subtract(z, z.max(axis=1, keepdims=True), out=p)
    np.exp(p, out=p)
    p /= p.sum(axis=1, keepdims=True)
    return p


def softmax_cross_entropy_numpy(z, labels, grad):
    B = z.shape[0]
    rows = np.arange(B)
    zmax = z.max(axis=1)
    np.subtract(z, zmax[:, None], out=grad)
    shifted_y = grad[rows, labels]
    np.exp(grad, out=grad)
    s = grad.sum(axis=1)
    loss = float(np.mean(np.log(s) - shifted_y, dtype=np.float64))
    grad /= s[:, None]
    grad[rows, labels] -= 1
    grad *= 1.0 / B
    return loss


def softmax_squared_error_numpy(z, labels, grad):
    B = z.shape[0]
    rows = np.arange(B)
    p = np.empty_like(z)
    _softmax_into(z, p)
    np.copyto(grad, p)
    grad[rows, labels] -= 1                      # d = p - onehot
    loss = float(np.einsum("ij,ij->", grad, grad, dtype=np.float64)) / B
    grad *= 2.0 / B                              # q
    dot = np.einsum("ij,ij->i", grad, p)
    grad -= dot[:, None]
    grad *= p
    return loss
