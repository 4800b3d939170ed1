"""The module classes a model file may name: every Module subclass by its qualified name
(recorded as it is defined), and short names given with ``nn.register``. A file of its own with
no imports from the layers, so both ``module.py`` (which records each class) and ``serialize.py``
(which finds them) depend on it and not on each other.

Classes are found by qualified name (module path and class name): a user's class named ``Dense``
never stands in for the built-in one. ``@nn.register("name")`` gives a class a short stable name
that does not depend on where it is defined (for a class that moves between files); a name that
is taken raises unless ``override=True``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from ..registry import Registry

if TYPE_CHECKING:
    from .module import Module

_C = TypeVar("_C", bound="type[Module]")

# qualified name -> class (filled by Module.__init_subclass__)
_CLASSES: dict[str, type[Module]] = {}
_ALL: set[type] = set()  # every recorded class, for is_module
#: Short names given with ``nn.register`` (case-sensitive, as class names are).
SHORT_NAMES: Registry[type[Module]] = Registry("module", case_sensitive=True)


def qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def add_class(cls: type[Module]) -> None:
    """Record a Module subclass (or Module itself) under its qualified name (a redefinition
    replaces the old class)."""
    _CLASSES[qualified_name(cls)] = cls
    _ALL.add(cls)


def is_module(value: object) -> bool:
    """Whether ``value`` is a Module (an instance of a class this registry recorded), without
    importing module.py."""
    return any(c in _ALL for c in type(value).__mro__)


def register(name: str, override: bool = False) -> Callable[[_C], _C]:
    """Class decorator: save and load a Module subclass under the short name ``name``.

    Raises if ``name`` is already registered to another class, unless ``override=True``.
    """

    def wrap(cls: _C) -> _C:
        SHORT_NAMES.add(name, cls, override=override)
        cls._registered_name = name
        return cls

    return wrap


def class_name(cls: type) -> str:
    return cls.__dict__.get("_registered_name") or qualified_name(cls)


def find_class(name: str) -> type[Module]:
    """The class saved as ``name``: a short registered name, a qualified name, or (files written
    before qualified names) a bare class name that only one known class has."""
    if name in SHORT_NAMES:
        return SHORT_NAMES.get(name)
    if name in _CLASSES:
        return _CLASSES[name]
    bare = name.rsplit(".", 1)[-1]
    matches = [c for q, c in _CLASSES.items() if q.rsplit(".", 1)[-1] == bare]
    builtin = [c for c in matches if c.__module__.startswith("tinygrad_free.")]
    if "." not in name and len(builtin) == 1:
        return builtin[0]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ValueError(
            f"module class {name!r} is not defined, and {len(matches)} classes are named "
            f"{bare!r}: {sorted(qualified_name(c) for c in matches)}; import the module that "
            "defines it before loading"
        )
    raise ValueError(f"unknown module class {name!r}: import the module that defines it before loading")
