"""Keras 3 weights into the matching tinygrad_free architecture.

The Keras arrays (``model.get_weights()`` order) are converted to PyTorch's layout and written
through each layer's ``torch_tensors()`` views (see ``torch_weights``), layer by layer by
position. What each kind of layer takes from Keras, by the PyTorch names its layer gives:

==========================  ============================================  ==========================
our layer (PyTorch names)   Keras arrays                                  conversion
==========================  ============================================  ==========================
Dense (weight 2-D, bias)    kernel (in, out), bias                        weight = kernel.T
Conv (weight k-D, bias)     kernel (*kernel_size, in, out), bias          (out, in, *kernel_size)
BatchNorm                   gamma, beta, moving_mean, moving_variance     as they are
LayerNorm                   gamma, beta                                   as they are
LSTM (weight_ih_l0, ...)    kernel (in, 4H), recurrent (H, 4H), bias 4H   gates i, f, c, o = i, f, g, o;
                                                                          bias_ih = bias, bias_hh = 0
GRU                         kernel (in, 3H), recurrent (H, 3H), (2, 3H)   gates z, r, h -> r, z, n;
                                                                          ``reset_after=True`` only
==========================  ============================================  ==========================

Keras flattens (H, W, C) images, we flatten (C, H, W): the rows of the first Dense after a
``Flatten`` are permuted from the one order to the other (the channel count is the last
convolution's). A Keras model object also gives BatchNorm's epsilon and momentum, which are
set on our layers (Keras's momentum 0.99 is our 0.01); from a list of arrays or a file, build
``BatchNorm(..., eps=1e-3)`` to match Keras's default yourself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..nn import BatchNorm, Flatten, Module
from .keras_files import keras_file_arrays
from .torch_weights import OPTIONAL, layers_with_tensors

if TYPE_CHECKING:
    from .._typing import Array

#: Keras class names of each kind, to name a mismatch when a Keras model object is given.
KERAS_CLASSES = {
    "dense": {"Dense"},
    "conv": {"Conv1D", "Conv2D", "Conv3D"},
    "batchnorm": {"BatchNormalization"},
    "layernorm": {"LayerNormalization"},
    "lstm": {"LSTM", "Bidirectional"},
    "gru": {"GRU", "Bidirectional"},
}
LSTM_GATES, GRU_GATES = (0, 1, 2, 3), (1, 0, 2)  # Keras's gate blocks in PyTorch's order


def _layers_of(keras_model: Any) -> list[Any]:
    out = []
    for layer in keras_model.layers:
        if hasattr(layer, "layers") and type(layer).__name__ != "Bidirectional":
            out += _layers_of(layer)
        elif layer.get_weights():
            out.append(layer)
    return out


def keras_arrays(source: Any, layer_names: Sequence[str] | None = None) -> tuple[list[Array], dict[int, Any]]:
    """The Keras arrays in ``get_weights()`` order, and ``{index of a layer's first array: the
    Keras layer}`` when ``source`` is a Keras model."""
    if isinstance(source, (str, os.PathLike)):
        return keras_file_arrays(source, layer_names), {}
    if hasattr(source, "layers") and hasattr(source, "get_weights"):
        arrays: list[Array] = []
        layers: dict[int, Any] = {}
        for layer in _layers_of(source):
            layers[len(arrays)] = layer
            arrays += [np.asarray(w) for w in layer.get_weights()]
        return arrays, layers
    if isinstance(source, (list, tuple)):
        return [np.asarray(w) for w in source], {}
    raise TypeError(
        f"Keras weights must be a Keras model, a list of arrays (model.get_weights()) or a path to a .weights.h5 "
        f"or .keras file, got {type(source).__name__}"
    )


def _gates(a: Array, order: Sequence[int], axis: int = 0) -> Array:
    blocks = np.split(a, len(order), axis=axis)
    return np.concatenate([blocks[i] for i in order], axis=axis)


Plan = tuple[str, list[tuple[str, tuple[int, ...]]], Callable[[list[Any]], dict[str, Any]]]


def _recurrent(tensors: dict[str, Any]) -> Plan:
    suffixes = [n[len("weight_ih") :] for n in tensors if n.startswith("weight_ih")]
    hidden = np.shape(tensors[f"weight_hh{suffixes[0]}"])[1]
    gates = np.shape(tensors[f"weight_hh{suffixes[0]}"])[0] // hidden
    kind = {4: "lstm", 3: "gru"}.get(gates, "recurrent")
    order = LSTM_GATES if gates == 4 else GRU_GATES
    expect: list[tuple[str, tuple[int, ...]]] = []
    for s in suffixes:
        expect.append((f"kernel{s}", np.shape(tensors[f"weight_ih{s}"])[::-1]))
        expect.append((f"recurrent_kernel{s}", (hidden, gates * hidden)))
        if f"bias_ih{s}" in tensors:
            expect.append((f"bias{s}", (gates * hidden,) if gates == 4 else (2, gates * hidden)))

    def convert(arrays: list[Array]) -> dict[str, Array]:
        out, it = {}, iter(arrays)
        for s in suffixes:
            out[f"weight_ih{s}"] = _gates(next(it).T, order)
            out[f"weight_hh{s}"] = _gates(next(it).T, order)
            if f"bias_ih{s}" in tensors:
                bias = next(it)
                two = (bias, np.zeros_like(bias)) if gates == 4 else (bias[0], bias[1])
                out[f"bias_ih{s}"], out[f"bias_hh{s}"] = (_gates(b, order) for b in two)
        return out

    return kind, expect, convert


def _plan(tensors: dict[str, Any], flatten_channels: int | None) -> Plan:
    """(kind, [(Keras array name, expected shape)], convert(Keras arrays) -> {PyTorch name: array})."""
    names = [n for n in tensors if n not in OPTIONAL]
    bias = [("bias", np.shape(tensors["bias"]))] if "bias" in names else []
    if "running_mean" in names:
        shape = np.shape(tensors["weight"])
        keras = ("gamma", "beta", "moving_mean", "moving_variance")
        torch = ("weight", "bias", "running_mean", "running_var")
        return "batchnorm", [(k, shape) for k in keras], lambda a: dict(zip(torch, a))
    if any(n.startswith("weight_ih") for n in names):
        return _recurrent(tensors)
    weight: tuple[int, ...] = np.shape(tensors["weight"]) if "weight" in names else ()
    if len(weight) == 1:
        return "layernorm", [("gamma", weight), ("beta", weight)], lambda a: dict(zip(("weight", "bias"), a))
    if len(weight) == 2:
        out_f, in_f = weight

        def dense(a: list[Array]) -> dict[str, Array]:
            kernel = a[0]
            if flatten_channels:  # rows in (h, w, c) order -> (c, h, w)
                c = flatten_channels
                kernel = kernel.reshape(in_f // c, c, out_f).transpose(1, 0, 2).reshape(in_f, out_f)
            return dict(zip(("weight", "bias"), [kernel.T, *a[1:]]))

        return "dense", [("kernel", (in_f, out_f)), *bias], dense
    if len(weight) >= 3:
        spatial = weight[2:]
        perm = (len(weight) - 1, len(weight) - 2, *range(len(spatial)))
        expect = [("kernel", (*spatial, weight[1], weight[0])), *bias]
        return "conv", expect, lambda a: dict(zip(("weight", "bias"), [np.transpose(a[0], perm), *a[1:]]))
    raise TypeError(f"no Keras equivalent known for a layer with PyTorch tensors {names}")


def load_keras_weights(
    model: Module,
    source: Any,
    data_format: str = "channels_last",
    input_channels: int | None = None,
    layer_names: Sequence[str] | None = None,
) -> None:
    """Load Keras 3 weights into ``model``, built layer for layer like the Keras model.

    Parameters
    ----------
    source : Keras model, list of arrays, or path
        A Keras model (its weights, and BatchNorm's epsilon and momentum), ``model.get_weights()``,
        or a ``.weights.h5`` / ``.keras`` file (h5py needed).
    data_format : "channels_last" (Keras's default) or "channels_first"
        The Keras model's image layout: channels_last permutes the rows of a Dense after Flatten.
    input_channels : int, optional
        The channels of the model's input, needed only when a Flatten of images comes before any
        convolution.
    layer_names : list of str, optional
        The order of the layers in a ``.weights.h5`` file, which Keras matches by name; by default
        the order Keras wrote them in (the model's layer order).

    Notes
    -----
    Nothing is written unless every array fits; the error names the first that does not (its
    index, the expected and the given shape).
    """
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"data_format must be 'channels_last' or 'channels_first', got {data_format!r}")
    arrays, keras_layers = keras_arrays(source, layer_names)
    known = set().union(*KERAS_CLASSES.values())
    writes: list[tuple[Any, Array]] = []
    settings: list[tuple[BatchNorm, Any]] = []
    # flat: None, or the channels of the Flatten the next Dense reads (0: not known)
    i, channels, flat = 0, input_channels, None
    for path, layer, tensors in layers_with_tensors(model, every=True):
        if isinstance(layer, Flatten) and data_format == "channels_last":
            flat = channels or 0
            continue
        if not tensors:
            continue
        where = repr(layer).split("\n")[0] + (f" at {path!r}" if path else "")
        kind, expect, convert = _plan(tensors, flat)
        if kind == "dense" and flat is not None:
            if flat == 0:
                raise ValueError(
                    f"{where} follows a Flatten that no convolution precedes: pass input_channels= (the images' "
                    "channels) so that its Keras rows can be reordered from (h, w, c) to (c, h, w)"
                )
            if expect[0][1][0] % flat:
                raise ValueError(f"{where}: {expect[0][1][0]} inputs are not a multiple of {flat} flattened channels")
        keras_layer = keras_layers.get(i)
        name = type(keras_layer).__name__ if keras_layer is not None else None
        if name in known and name not in KERAS_CLASSES.get(kind, set()):
            label = getattr(keras_layer, "name", "?")
            raise ValueError(f"Keras layer {label!r} ({name}) at weight #{i} does not match {where}")
        given = arrays[i : i + len(expect)]
        for k, (keras_name, shape) in enumerate(expect):
            if k >= len(given):
                raise ValueError(
                    f"the Keras weights end before {where}: expected {keras_name} of shape {shape} at #{i + k}, "
                    f"but there are {len(arrays)} arrays"
                )
            if kind == "gru" and keras_name.startswith("bias") and given[k].shape == shape[1:]:
                raise ValueError(f"{where}: the Keras GRU must use reset_after=True (PyTorch's GRU), it has one bias")
            if given[k].shape != shape:
                raise ValueError(
                    f"Keras weight #{i + k} does not fit {where}: expected {keras_name} of shape {shape}, "
                    f"given shape {given[k].shape}"
                )
        writes += [(tensors[n], a) for n, a in convert(given).items()]
        if kind == "batchnorm" and keras_layer is not None and isinstance(layer, BatchNorm):
            settings.append((layer, keras_layer))
        i += len(expect)
        if kind == "conv":
            channels = np.shape(tensors["weight"])[0]
        if kind == "dense":
            flat = None
    if i != len(arrays):
        raise ValueError(
            f"the Keras weights have {len(arrays) - i} array(s) more than the model takes, the first #{i} of shape "
            f"{arrays[i].shape}"
        )
    for view, value in writes:
        view[...] = value
    for bn, keras_bn in settings:
        bn.eps, bn.momentum = float(keras_bn.epsilon), 1.0 - float(keras_bn.momentum)
