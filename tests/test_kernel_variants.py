"""How many variants numba compiles of the heavy kernels: "none" (no bias, no pre-activation kept,
no db, no dx, no key lengths, no dropout) reaches them as a zero-length array, and the convolution's
and the row parts' x as a read-only view, so one compiled variant serves every call where None,
arrays and write flags made up to eight (the warm-up and CI compile that much less)."""

from numba.core import types

from tinygrad_free import kernels
from tinygrad_free.kernels import attention, conv_blocks, conv_pool, dense, dense_parts, linear

READ_ONLY_X = [
    dense_parts._forward,
    dense_parts._forward_parallel,
    dense_parts._backward,
    dense_parts._backward_parallel,
    dense_parts._backward_beside,
    linear._linear_backward_beside,
    conv_blocks.forward,
    conv_blocks.forward_parallel,
    conv_blocks.backward,
    conv_blocks.backward_parallel,
    conv_pool._forward,
    conv_pool._forward_parallel,
    conv_pool._backward,
    conv_pool._backward_parallel,
]
NO_NONE = [
    dense.layer_forward,
    dense.layer_forward_keep,
    dense._dense_backward,
    *READ_ONLY_X,
    attention._forward,
    attention._forward_parallel,
    attention._backward,
    attention._backward_parallel,
]


def _signatures_after_warmup(dispatchers):
    # The warm-up's cases call every kernel with each argument None and an array, x writable and
    # read-only, every activation (threaded twins for float32).
    kernels.warmup(files=("dense", "dense_parts", "linear", "conv", "conv_pool", "attention"))
    found = {d.py_func.__module__.rsplit(".", 1)[-1] + "." + d.py_func.__name__: d.signatures for d in dispatchers}
    assert all(found.values()), f"the warm-up did not run these: {[k for k, v in found.items() if not v]}"
    return found


def test_no_heavy_kernel_is_compiled_for_a_none_argument():
    for name, signatures in _signatures_after_warmup(NO_NONE).items():
        for sig in signatures:
            assert not any(isinstance(t, types.NoneType) for t in sig), f"{name} compiled for None: {sig}"


def test_convolution_and_row_part_kernels_see_x_read_only_whatever_the_caller_passed():
    for name, signatures in _signatures_after_warmup(READ_ONLY_X).items():
        for sig in signatures:
            assert isinstance(sig[0], types.Array) and not sig[0].mutable, f"{name} compiled for a writable x: {sig}"
