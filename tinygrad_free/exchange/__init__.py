"""Weights to and from other frameworks, with NumPy alone: PyTorch state dicts
(``torch_weights``), Keras 3 weights (``keras_weights``, files via h5py) and safetensors files
(``safetensors_io``). ONNX export is ``tinygrad_free.onnx``.

``Module.load_torch_state_dict``/``torch_state_dict``/``load_keras_weights`` and
``Module.save("m.safetensors")`` call into this package.
"""

from .keras_weights import load_keras_weights
from .safetensors_io import read as read_safetensors
from .safetensors_io import write as write_safetensors
from .torch_weights import load_torch_state_dict, torch_state_dict

__all__ = ["load_keras_weights", "load_torch_state_dict", "read_safetensors", "torch_state_dict", "write_safetensors"]
