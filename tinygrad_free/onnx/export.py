"""``export(model, path, example)``: a model as an ONNX graph, for ONNX Runtime and every other ONNX tool.

The exporter walks the model through each module's ``to_onnx(b, inputs)`` hook (see
``builder.Builder``): the built-in layers and containers carry one; a layer of your own exports
once it has one, and is refused, by class name, while it has none. The graph computes the
model's evaluation mode: BatchNorm with its running statistics, Dropout the identity. Its batch
axis is symbolic (``batch``); every other dimension comes from the example input or shapes.
``onnx.checker`` (with shape inference) checks every exported model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..fileio import atomic_open
from ..nn import Dense, Graph, Module, Sequential, no_grad
from .builder import Builder

if TYPE_CHECKING:
    import onnx

#: ONNX Runtime and the other runtimes in use run it; LayerNormalization needs 17.
DEFAULT_OPSET = 17
#: Softmax over one axis (not the flattened trailing axes) arrived in opset 13.
MIN_OPSET = 13
BATCH = "batch"

Spec = tuple[tuple[int, ...], np.dtype[Any]]


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - the [onnx] extra is installed in the tests
        raise ImportError("tinygrad_free.onnx needs the onnx package: pip install 'tinygrad_free[onnx]'") from e
    return onnx


def _float_dtype(model: Module) -> np.dtype[Any]:
    params = model.parameters()
    return params[0].data.dtype if params else np.dtype(np.float32)


def _is_shape(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value
    )


def input_specs(model: Module, example: Any) -> list[Spec]:
    """``(shape without the batch axis, dtype)`` of each input, from ``example``: an array or a
    list of arrays (batch axis first), or one shape or a list of shapes WITHOUT the batch axis
    (as ``nn.Input`` takes them). None: a Graph's own inputs, or a model starting with Dense."""
    if example is None:
        first = model
        while isinstance(first, Sequential) and len(first):
            first = first[0]
        if isinstance(model, Graph):
            return [(tuple(s["shape"]), np.dtype(s["dtype"])) for s in model.get_config()["inputs"]]
        if isinstance(first, Dense):
            return [((first.in_features,), first.W.data.dtype)]
        raise ValueError(
            f"ONNX export: {type(model).__name__} does not know its input shape; pass an example input (an "
            "array, batch axis first) or the input shape without the batch axis, e.g. (1, 28, 28)"
        )
    if isinstance(example, np.ndarray):
        example = [example]
    elif _is_shape(example):
        example = [tuple(example)]
    if not isinstance(example, (list, tuple)) or not example:
        raise TypeError(
            "ONNX export: example must be an array, a list of arrays, a shape (without the batch axis) or a "
            f"list of shapes, got {type(example).__name__}"
        )
    specs: list[Spec] = []
    for item in example:
        if isinstance(item, np.ndarray):
            if item.ndim < 1:
                raise ValueError("ONNX export: an example array needs the batch axis first, got a scalar")
            specs.append((tuple(int(s) for s in item.shape[1:]), item.dtype))
        elif _is_shape(item) and all(s > 0 for s in item):
            specs.append((tuple(int(s) for s in item), _float_dtype(model)))
        else:
            raise ValueError(
                "ONNX export: each example must be an array (batch axis first) or a shape of positive ints "
                f"(without the batch axis), got {item!r}"
            )
    return specs


def trace(model: Module, specs: Sequence[Spec]) -> list[np.ndarray]:
    """The model's outputs on zeros of batch 2 in evaluation mode (ones for integer inputs, as a
    Graph's build probes them: a length or a count of 0 may be refused), every module's mode
    restored after: the output shapes, and a clear error for inputs the model does not take."""
    xs = [(np.ones if np.dtype(dtype).kind in "iub" else np.zeros)((2,) + shape, dtype) for shape, dtype in specs]
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with no_grad():
            y = model(*xs)
    except (ValueError, TypeError) as e:
        shapes = ", ".join(str((BATCH,) + shape) for shape, _ in specs)
        raise ValueError(f"ONNX export: {type(model).__name__} does not take inputs of shape {shapes}: {e}") from e
    finally:
        for m, flag in flags:
            m.__dict__["training"] = flag
    ys = list(y) if isinstance(y, tuple) else [y]
    if not all(isinstance(v, np.ndarray) and v.ndim >= 1 for v in ys):
        raise TypeError(f"ONNX export: the model must return arrays (batch axis first), got {[type(v) for v in ys]}")
    return ys


def _names(given: Sequence[str] | None, count: int, default: str, what: str) -> list[str]:
    if given is None:
        return [default] if count == 1 else [f"{default}_{i}" for i in range(count)]
    names = [given] if isinstance(given, str) else list(given)
    if len(names) != count or len(set(names)) != count or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"ONNX export: {what} must be {count} distinct non-empty names, got {given!r}")
    return names


def _check_opset(opset: Any, onnx: Any) -> int:
    latest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= opset <= latest:
        raise ValueError(
            f"ONNX export: opset must be an int from {MIN_OPSET} to {latest} (this onnx package's latest), "
            f"got {opset!r}"
        )
    return int(opset)


def export(
    model: Module,
    path: str | os.PathLike[str] | None,
    example: Any = None,
    opset: int = DEFAULT_OPSET,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
) -> onnx.ModelProto:
    """Export ``model`` (evaluation mode) as an ONNX model, write it to ``path`` (unless None,
    atomically) and return it.

    Parameters
    ----------
    model : nn.Module
        Any model whose modules have ``to_onnx`` hooks (every built-in layer and container does).
    path : str, PathLike or None
    example : array, list of arrays, shape or list of shapes
        The inputs: arrays with the batch axis first (their batch size does not matter), or shapes
        WITHOUT the batch axis (``(1, 28, 28)``; float in the model's dtype). Optional for a
        ``Graph`` (its ``nn.Input`` shapes) and for a model that starts with ``Dense``.
    opset : int
        The ONNX opset (default 17; LayerNorm needs 17 or later).
    input_names, output_names : list of str, optional
        Default ``input``/``output`` (``input_0``, ``input_1``... for several; a Graph's named
        ``nn.Input`` keeps its name).

    Raises
    ------
    TypeError
        A module without a ``to_onnx`` method (the message names its class and place).
    ValueError
        Inputs the model does not take, a bad opset or bad names.
    """
    onnx = _onnx()
    from onnx import helper, numpy_helper

    from .. import __version__

    opset = _check_opset(opset, onnx)
    specs = input_specs(model, example)
    outputs = trace(model, specs)
    if input_names is None and isinstance(model, Graph):
        graph_names = [s.get("name") for s in model.get_config()["inputs"]]
        if all(graph_names) and len(set(graph_names)) == len(graph_names):
            input_names = graph_names
    ins = _names(input_names, len(specs), "input", "input_names")
    outs = _names(output_names, len(outputs), "output", "output_names")
    float_types = [dtype for _, dtype in specs if dtype.kind == "f"]
    names = {id(p): n for n, p in model.named_parameters()}
    names.update((id(b), n) for n, b in model.named_buffers())
    b = Builder(opset, float_types[0] if float_types else _float_dtype(model), names)
    for name in ins + outs:
        b.unique(name)
    produced = b.call(model, ins, "")
    if len(produced) != len(outputs):
        raise ValueError(
            f"ONNX export: {type(model).__name__}.to_onnx returned {len(produced)} outputs, its forward {len(outputs)}"
        )
    for i, (got, want) in enumerate(zip(produced, outs)):
        if got in ins or got in b.initializers or got in produced[:i] or got in outs:
            b.nodes.append(helper.make_node("Identity", [got], [want], name=b.unique(f"{want}.Identity")))
        else:
            b.rename(got, want)

    def info(name: str, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Any:
        return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(dtype), [BATCH, *shape])

    graph = helper.make_graph(
        b.nodes,
        type(model).__name__,
        [info(n, shape, dtype) for n, (shape, dtype) in zip(ins, specs)],
        [info(n, y.shape[1:], y.dtype) for n, y in zip(outs, outputs)],
        initializer=[numpy_helper.from_array(a, n) for n, a in b.initializers.items()],
    )
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="tinygrad_free", producer_version=__version__)
    proto.ir_version = helper.find_min_ir_version_for(opsets)  # older runtimes read the oldest IR that fits
    onnx.checker.check_model(proto, full_check=True)
    if path is not None:
        with atomic_open(path) as f:
            f.write(proto.SerializeToString())
    return proto
