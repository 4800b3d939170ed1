"""The arrays of a Keras 3 weights file (``.weights.h5``, or the ``.keras`` archive around one), in
``model.get_weights()`` order.

A ``.weights.h5`` file holds each layer's arrays under ``layers/<group>/.../vars/<index>``, the
group named after the layer's class and its rank among the model's layers of that class
(``dense``, ``dense_1``, ... ``conv2d``): that is how Keras matches a file to a model. The file
keeps no order across classes (and HDF5 lists ``dense_10`` before ``dense_2``), so the layers are
taken in the order Keras wrote them, the model's layer order (their arrays' places in the file),
each class's layers in their rank order; a ``.keras`` archive gives the exact order in its
``config.json``, and ``layer_names`` (group names) overrides both. Inside a layer the arrays come
in Keras's order (a Bidirectional layer's forward direction first).
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .._typing import Array


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as e:  # pragma: no cover - installed with the test extras
        raise ImportError("reading Keras weight files needs h5py: pip install h5py") from e
    return h5py


def _layer_arrays(group: Any) -> list[Array]:
    """A layer group's arrays: its own ``vars`` (numbered), then its sub-objects' (Bidirectional's
    forward_layer before backward_layer, as ``get_weights()``; others alphabetically, as Keras)."""
    out: list[Array] = []
    if "vars" in group:
        out += [np.asarray(group["vars"][k]) for k in sorted(group["vars"], key=int)]
    children = [k for k in group if k != "vars" and hasattr(group[k], "keys")]
    children.sort(key=lambda k: (k != "forward_layer", k))
    for k in children:
        out += _layer_arrays(group[k])
    return out


def _first_address(group: Any) -> float:
    """Where in the file the first array of ``group`` was written (inf for a group without arrays)."""
    h5py = _h5py()
    best = float("inf")

    def visit(_: str, obj: Any) -> None:
        nonlocal best
        if isinstance(obj, h5py.Dataset):
            # the object header's address; an h5py without it: where the array's bytes are
            addr = getattr(h5py.h5o.get_info(obj.id), "addr", None)
            addr = obj.id.get_offset() if addr is None else addr
            best = min(best, float("inf") if addr is None else addr)

    group.visititems(visit)
    return best


def snake_case(name: str) -> str:
    """Keras's ``naming.to_snake_case``: the group name of a layer class (``Conv2D`` -> ``conv2d``)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _split(group: str) -> tuple[str, int]:
    """``dense_3`` -> ("dense", 3); ``dense`` -> ("dense", 0)."""
    match = re.fullmatch(r"(.*?)_(\d+)", group)
    return (match[1], int(match[2])) if match else (group, 0)


def write_order(layers: Any) -> list[str]:
    """The groups in the order Keras wrote them; within a class, by rank."""
    by_place = sorted(layers, key=lambda n: _first_address(layers[n]))
    ranked = {
        c: iter(sorted((n for n in by_place if _split(n)[0] == c), key=lambda n: _split(n)[1]))
        for c in {_split(n)[0] for n in by_place}
    }
    return [next(ranked[_split(n)[0]]) for n in by_place]


def read_h5(file: Any, layer_names: Sequence[str] | None = None) -> list[Array]:
    """The arrays of a ``.weights.h5`` file (a path or a file object), layers in ``layer_names``'
    order (group names) or in the order they were written."""
    h5py = _h5py()
    with h5py.File(file, "r") as f:
        layers = f["layers"] if "layers" in f else {}
        if layer_names is None:
            order = write_order(layers)
        else:
            order = [n for n in layer_names if n in layers]
            missing = sorted(set(layers) - set(order))
            if missing and any(_layer_arrays(layers[n]) for n in missing):
                raise ValueError(f"layer_names leaves out the weights file's layers {missing}; it has {sorted(layers)}")
        return [a for n in order for a in _layer_arrays(layers[n])]


def config_group_names(config: dict[str, Any]) -> list[str]:
    """The weight-file group names of a ``.keras`` archive's top-level layers, in the model's order."""
    used: dict[str, int] = {}
    names = []
    for entry in config.get("config", {}).get("layers", []):
        base = snake_case(entry.get("class_name", ""))
        names.append(base if base not in used else f"{base}_{used[base]}")
        used[base] = used.get(base, 0) + 1
    return names


def keras_file_arrays(path: str | os.PathLike[str], layer_names: Sequence[str] | None = None) -> list[Array]:
    """The arrays of a ``.weights.h5`` file or a ``.keras`` archive, in ``get_weights()`` order."""
    name = os.fspath(path)
    if name.endswith(".keras"):
        with zipfile.ZipFile(name) as z:
            config = json.loads(z.read("config.json"))
            data = io.BytesIO(z.read("model.weights.h5"))
        return read_h5(data, config_group_names(config) if layer_names is None else layer_names)
    if name.endswith(".h5"):
        return read_h5(name, layer_names)
    raise ValueError(f"{name}: expected a Keras .weights.h5 or .keras file")
