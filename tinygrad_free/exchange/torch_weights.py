"""PyTorch state dicts in and out, matched layer by layer by position.

Each layer with weights says what PyTorch calls them: ``torch_tensors()`` returns
``{pytorch_name: array}`` in PyTorch's layout, as views of the layer's own arrays (``Dense``'s
``weight`` is ``W.T``; a convolution, a norm and the recurrent layers already share PyTorch's
layout). Reading the views gives a PyTorch state dict; writing into them loads one.

The layers are taken in the model's order (``named_parameters()``'s) and the PyTorch modules in
the state dict's order (their registration order): the n-th layer with weights takes the n-th
module's tensors, found by their names below its prefix (``3.weight``, ``3.bias``) and checked
for shape. An architecture built layer for layer like the PyTorch model therefore loads;
activations, pooling and other layers without weights do not count, so
``Dense(..., activation="relu")`` matches ``Linear`` followed by ``ReLU``. A safetensors file
keeps its tensors sorted by name, which loses the module order: names in sorted order are put
in natural order (``2.weight`` before ``10.weight``), which is nn.Sequential's.

Nothing here imports torch: a state dict is any mapping of names to arrays (torch tensors are
read through ``.detach().cpu().numpy()``), e.g. a ``torch.save`` file converted to arrays or a
safetensors file.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..nn import Module

if TYPE_CHECKING:
    from .._typing import Array

#: Tensors a layer may list that a state dict may lack (and that loading ignores).
OPTIONAL = ("num_batches_tracked",)

#: (dotted path of the layer, the layer, {pytorch_name: view}).
Entry = tuple[str, Module, dict[str, Any]]


def layers_with_tensors(model: Module, every: bool = False) -> list[Entry]:
    """Every layer that holds weights or buffers, each once, in the model's order, with its
    ``torch_tensors()``; raises naming a layer with weights but no ``torch_tensors`` method.
    ``every``: the layers without weights too (with no tensors), in their places."""
    out: list[Entry] = []
    seen: set[int] = set()

    def walk(m: Module, path: str) -> None:
        if id(m) in seen:
            return
        seen.add(id(m))
        hook = getattr(m, "torch_tensors", None)
        if hook is not None:
            out.append((path, m, dict(hook())))
            return  # the hook speaks for the whole module, children included
        if m._params or m._buffers:
            cls = type(m)
            raise TypeError(
                f"{cls.__module__}.{cls.__qualname__} at {path or 'the top'!r} has weights but no "
                "torch_tensors() method naming them as PyTorch does; add one returning {pytorch_name: array}"
            )
        if every and not m._modules:
            out.append((path, m, {}))
        for key, child in m._modules.items():
            walk(child, f"{path}.{key}" if path else key)

    walk(model, "")
    return out


def _as_array(value: Any) -> Array:
    if hasattr(value, "detach"):  # a torch tensor, read without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _full(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _describe(path: str, layer: Module) -> str:
    return repr(layer).split("\n")[0] + (f" at {path!r}" if path else "")


def natural_key(name: str) -> list[tuple[int, int | str]]:
    """``"10.weight"`` after ``"2.weight"``: numeric name parts compare as numbers."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in name.split(".")]


def match(model: Module, names: Iterable[str], shapes: Mapping[str, tuple[int, ...]]) -> list[tuple[str, str, Any]]:
    """Pair each of the model's tensors with a PyTorch name: ``(pytorch_name, our dotted name,
    our view)``. Raises ValueError naming the first PyTorch tensor that does not fit (its name,
    the expected and the given shape), or the first one missing or left over."""
    keys = [k for k in names if k.rsplit(".", 1)[-1] not in OPTIONAL]
    if keys == sorted(keys):  # a sorted file (safetensors): natural order is nn.Sequential's
        keys.sort(key=natural_key)
    present, used = set(keys), set()
    pairs: list[tuple[str, str, Any]] = []
    remaining = iter(keys)
    for path, layer, tensors in layers_with_tensors(model):
        wanted = {n: v for n, v in tensors.items() if n not in OPTIONAL}
        if not wanted:
            continue
        first = next((k for k in remaining if k not in used), None)
        name0, view0 = next(iter(wanted.items()))
        if first is None:
            raise ValueError(
                f"the PyTorch state dict has no tensor for {_full(path, name0)!r} ({_describe(path, layer)}, "
                f"expected PyTorch's {name0!r} of shape {np.shape(view0)}): it has {len(keys)} tensors and these "
                "layers need more"
            )
        own = [n for n in wanted if first == n or first.endswith("." + n)]
        if not own:
            raise ValueError(
                f"PyTorch tensor {first!r} of shape {tuple(shapes[first])} does not fit {_describe(path, layer)}, "
                f"which takes {list(wanted)}: expected {name0!r} of shape {np.shape(view0)} next"
            )
        prefix = first[: len(first) - len(max(own, key=len))]
        for name, view in wanted.items():
            key, expected = prefix + name, tuple(np.shape(view))
            if key not in present or key in used:
                raise ValueError(
                    f"the PyTorch state dict has no {key!r} for {_describe(path, layer)}: expected {name!r} of shape "
                    f"{expected} beside {first!r}"
                )
            if tuple(shapes[key]) != expected:
                raise ValueError(
                    f"PyTorch tensor {key!r} does not fit {_describe(path, layer)}: expected {name!r} of shape "
                    f"{expected}, given shape {tuple(shapes[key])}"
                )
            pairs.append((key, _full(path, name), view))
            used.add(key)
    left = [k for k in keys if k not in used]
    if left:
        raise ValueError(
            f"the PyTorch state dict has {len(left)} tensor(s) more than the model takes, the first "
            f"{left[0]!r} of shape {tuple(shapes[left[0]])}"
        )
    return pairs


def load_torch_state_dict(model: Module, state_dict: Mapping[str, Any]) -> None:
    """Copy a PyTorch state dict (names to tensors or arrays) into ``model``, layer by layer by
    position, converting layouts; nothing is written unless every tensor fits."""
    arrays = {k: _as_array(v) for k, v in state_dict.items()}
    pairs = match(model, arrays, {k: a.shape for k, a in arrays.items()})
    for key, _, view in pairs:
        view[...] = arrays[key]


def torch_state_dict(model: Module, like: Mapping[str, Any] | None = None) -> OrderedDict[str, Array]:
    """The model's weights as a PyTorch state dict (copies in PyTorch's layout). Named by the
    model's own paths (``0.weight``: what a layer-for-layer identical ``nn.Sequential`` calls
    them), or, given ``like`` (a PyTorch model's ``state_dict()``), by its names, matched by
    position as in loading."""
    if like is None:
        return OrderedDict(
            (_full(path, name), np.array(view, copy=True))
            for path, _, tensors in layers_with_tensors(model)
            for name, view in tensors.items()
        )
    shapes = {k: tuple(np.shape(_as_array(v))) for k, v in like.items()}
    out = OrderedDict((key, np.array(view, copy=True)) for key, _, view in match(model, like, shapes))
    for key in like:  # the tensors loading ignores, kept so that PyTorch's strict loading accepts the dict
        if key not in out and key.rsplit(".", 1)[-1] in OPTIONAL:
            out[key] = _as_array(like[key]).copy()
    return OrderedDict((k, out[k]) for k in like if k in out)
