"""Hot-path kernels, each with a plain NumPy version and a numba version of the same math.

``NUMPY`` and ``NUMBA`` are namespaces with the same function names; ``backend.ops()``
returns the one selected. Matrix products are not here: they stay in BLAS (numpy ``@``).
"""
from types import SimpleNamespace

from . import dense, loss, optim

NUMPY = SimpleNamespace(
    bias_act=dense.bias_act_numpy,
    act_grad=dense.act_grad_numpy,
    dense_grad=dense.dense_grad_numpy,
    softmax_cross_entropy=loss.softmax_cross_entropy_numpy,
    softmax_squared_error=loss.softmax_squared_error_numpy,
    sgd=optim.sgd_numpy,
    momentum=optim.momentum_numpy,
    rmsprop=optim.rmsprop_numpy,
    adam=optim.adam_numpy,
    nadam=optim.nadam_numpy,
    weight_decay=optim.weight_decay_numpy,
)

# Until a numba twin exists for a kernel, the numba backend runs the NumPy one.
NUMBA = SimpleNamespace(**vars(NUMPY))
