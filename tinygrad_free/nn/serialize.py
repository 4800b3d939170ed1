"""Architectures as JSON and model files: the module-class registry, specs and ``nn.load``.

A spec is ``{"class": "<module>.<QualName>", "id": n, "config": {...}}``. A module that appears
more than once in a network (a reused activation, a tied layer) is written in full the first
time and as ``{"ref": n}`` after that, so loading rebuilds ONE object used in several places.
A Parameter shared by two different modules is recorded in the file's ``ties`` and shared again
after loading.

Classes are found by qualified name (module path and class name): a user's class named ``Dense``
never stands in for the built-in one. ``@nn.register("name")`` gives a class a short stable name
that does not depend on where it is defined (for a class that moves between files); a name that
is taken raises unless ``override=True``.
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import TYPE_CHECKING, Any

import numpy as np

from ..fileio import atomic_open
from .classes import class_name, find_class, is_module

if TYPE_CHECKING:
    from .module import Module

# the memo of the save in progress, so nested to_spec() calls share it
_active_memo: list[dict[int, tuple[int, Module]]] = []


# --- specs ----------------------------------------------------------------------------------------
def to_spec(module: Module) -> dict[str, Any]:
    """``{"class", "id", "config"}`` of ``module``; a module met before in the same spec becomes
    ``{"ref": id}``."""
    outer = bool(_active_memo)
    if not outer:
        _active_memo.append({})
    memo = _active_memo[-1]
    try:
        if id(module) in memo:
            return {"ref": memo[id(module)][0]}
        memo[id(module)] = (len(memo), module)  # the module is kept so its id stays unique
        config = encode(module.get_config(), f"{type(module).__name__}.get_config()")
        return {"class": class_name(type(module)), "id": memo[id(module)][0], "config": config}
    finally:
        if not outer:
            _active_memo.pop()


def encode(value: Any, where: str = "config") -> Any:
    """A config as JSON values: Modules (alone, or in lists, tuples and dicts) replaced by their
    specs, numpy scalars by Python numbers; anything else JSON cannot hold is refused, naming
    where it is (``where``: the layer's ``get_config()`` and the key)."""
    if is_module(value):
        return to_spec(value)
    if isinstance(value, (list, tuple)):
        return [encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, str):
                raise TypeError(f"{where}: keys must be strings to be saved as JSON, got {k!r}")
        return {k: encode(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (np.bool_, np.integer, np.floating)):
        return value.item()
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise TypeError(
        f"{where} is {type(value).__name__} {value!r}, which a model file cannot hold; a config holds "
        "JSON values (str, int, float, bool, None, lists and dicts of them) and Modules"
    )


def _is_spec(value: Any) -> bool:
    return isinstance(value, dict) and (set(value) == {"ref"} or {"class", "config"} <= set(value))


def decode(value: Any, memo: dict[int, Module]) -> Any:
    """The inverse of :func:`encode`: specs in a config become Modules again."""
    if _is_spec(value):
        return from_spec(value, memo)
    if isinstance(value, list):
        return [decode(v, memo) for v in value]
    if isinstance(value, dict):
        return {k: decode(v, memo) for k, v in value.items()}
    return value


def from_spec(spec: dict[str, Any], memo: dict[int, Module] | None = None) -> Module:
    """Rebuild a module from its spec (``memo`` maps ids to modules already built)."""
    memo = {} if memo is None else memo
    if set(spec) == {"ref"}:
        if spec["ref"] not in memo:
            raise ValueError(f"model file refers to module {spec['ref']} before defining it")
        return memo[spec["ref"]]
    cls = find_class(spec["class"])
    module = cls.from_config(decode(spec["config"], memo))
    if "id" in spec:
        memo[spec["id"]] = module
    return module


# --- files ------------------------------------------------------------------------------------------
def parameter_ties(module: Module) -> dict[str, str]:
    """``{alias: first_name}`` for every Parameter reachable under two dotted names from two
    different module objects (one module reused keeps its parameters without a tie)."""
    first: dict[int, str] = {}
    ties: dict[str, str] = {}
    owners: dict[int, Module] = {}
    for name, p, owner in module._walk_with_owner():
        if id(p) not in first:
            first[id(p)], owners[id(p)] = name, owner
        elif owner is not owners[id(p)]:
            ties[name] = first[id(p)]
    return ties


def save(module: Module, path: str | os.PathLike[str]) -> None:
    """Architecture (JSON), weights, buffers and ties in one ``.npz``, written atomically; a path
    ending in ``.safetensors`` gets a safetensors file of the ``state_dict()``, with the
    architecture and ties in its metadata."""
    if os.fspath(path).endswith(".safetensors"):
        from ..exchange import safetensors_io

        metadata = {"architecture": json.dumps(to_spec(module))}
        if parameter_ties(module):
            metadata["ties"] = json.dumps(parameter_ties(module))
        safetensors_io.write(path, module.state_dict(), metadata)
        return
    arrays: dict[str, Any] = {f"param/{k}": v for k, v in module.state_dict().items()}
    arrays["architecture"] = np.array(json.dumps(to_spec(module)))
    ties = parameter_ties(module)
    if ties:
        arrays["ties"] = np.array(json.dumps(ties))
    generators = module.generator_state()
    if generators:  # so a reloaded Dropout draws on where the saved one stopped
        arrays["generators"] = np.array(json.dumps(generators))
    with atomic_open(path) as f:
        np.savez(f, **arrays)


def _check_model_file(path: str | os.PathLike[str]) -> str:
    """ "npz" or "safetensors", what the file is; raises for anything else."""
    from ..exchange.safetensors_io import is_safetensors

    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except IsADirectoryError:
        raise ValueError(f"{path}: is a folder, not a model file") from None
    if head.startswith(b"PK"):
        return "npz"
    if is_safetensors(head):
        return "safetensors"
    what = "a .npy array (np.save)" if head[:6] == b"\x93NUMPY" else "not a zip archive"
    raise ValueError(
        f"{path}: not a tinygrad_free model file ({what}); nn.load reads the .npz or .safetensors that "
        "model.save(path) writes"
    )


def _load_safetensors(path: str | os.PathLike[str]) -> Module:
    from ..exchange import safetensors_io

    state, metadata = safetensors_io.read(path)
    if "architecture" not in metadata:
        raise ValueError(
            f"{path}: a safetensors file without a tinygrad_free architecture in its metadata; read its "
            "tensors with tinygrad_free.exchange.read_safetensors and load them with load_state_dict"
        )
    model = from_spec(json.loads(metadata["architecture"]))
    for alias, name in json.loads(metadata.get("ties", "{}")).items():
        model._set_parameter(alias, model._get_parameter(name))
    model.load_state_dict(state)
    return model


def load(path: str | os.PathLike[str]) -> Module:
    """Load a model written by ``Module.save`` (``.npz``, read with ``allow_pickle=False``, or
    ``.safetensors``)."""
    if _check_model_file(path) == "safetensors":
        return _load_safetensors(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise ValueError(f"{path}: not a readable tinygrad_free model file ({e})") from None
    with archive as f:
        if "architecture" not in f.files:
            raise ValueError(f"{path}: not a tinygrad_free model file (no 'architecture' entry)")
        model = from_spec(json.loads(str(f["architecture"])))
        ties = json.loads(str(f["ties"])) if "ties" in f.files else {}
        generators = json.loads(str(f["generators"])) if "generators" in f.files else None
        state = {k[len("param/") :]: f[k] for k in f.files if k.startswith("param/")}
    for alias, name in ties.items():
        model._set_parameter(alias, model._get_parameter(name))
    model.load_state_dict(state)
    if generators is not None:
        model.load_generator_state(generators)
    return model
