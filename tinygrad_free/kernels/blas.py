"""The one BLAS call numpy does not expose: a GEMM that accumulates into its output.

``W.grad += x.T @ dz`` in numpy computes ``x.T @ dz`` into a temporary and then adds it: an
extra array and an extra pass over the largest gradient. BLAS gemm with beta = 1 accumulates
in place, which is exactly the "backward adds into .grad" contract.
"""
import numpy as np
from scipy.linalg import blas as _blas

_GEMM = {np.dtype(np.float32): _blas.sgemm, np.dtype(np.float64): _blas.dgemm}


def accumulate_tn(a, b, out):
    """out += a.T @ b, in place, for a (n, i), b (n, j), out (i, j) C-contiguous.

    Seen from Fortran, C-contiguous ``out`` is ``out.T`` F-contiguous, and
    out.T += b.T @ a  is gemm(a=b.T, b=a.T, trans_b=1) with no copies of any operand.
    """
    gemm = _GEMM.get(out.dtype)
    if (gemm is None or a.dtype != out.dtype or b.dtype != out.dtype or not out.flags.c_contiguous
            or not a.flags.c_contiguous or not b.flags.c_contiguous):
        out += a.T @ b
        return out
    gemm(1.0, b.T, a.T, beta=1.0, c=out.T, trans_b=1, overwrite_c=1)
    return out
