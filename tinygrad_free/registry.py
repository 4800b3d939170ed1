"""One way to name things: the tables of layers, optimizers, losses, activations, initialisers and
learning-rate schedules are each a :class:`Registry`.

An entry has one canonical name (what run names, configs and reports show) and any number of
aliases; lookups ignore case unless the registry says otherwise; registering a name or alias that
another entry holds raises unless ``override=True`` (a plugin must not silently replace a built-in);
an unknown name is refused listing the choices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


def _identity(value: object) -> str:
    """What makes two registrations the same entry: a class or function by its qualified name (so
    reloading a module re-registers it), anything else by itself."""
    qual = getattr(value, "__qualname__", None)
    return f"{getattr(value, '__module__', '')}.{qual}" if qual else repr(value)


class Registry(Generic[T]):
    """Names (canonical and aliases) to entries of one kind (``what``: "optimizer", "loss", ...)."""

    def __init__(self, what: str, case_sensitive: bool = False) -> None:
        self.what, self.case_sensitive = what, case_sensitive
        self._entries: dict[str, T] = {}  # canonical name -> entry, in registration order
        self._keys: dict[str, str] = {}  # every accepted key -> canonical name

    def _key(self, name: str) -> str:
        return str(name) if self.case_sensitive else str(name).lower()

    def add(self, name: str, value: T, *aliases: str, override: bool = False) -> T:
        """Register ``value`` under ``name`` (canonical) and ``aliases``; returns ``value``."""
        for key in (name, *aliases):
            taken = self._keys.get(self._key(key))
            if taken is not None and _identity(self._entries[taken]) != _identity(value) and not override:
                raise ValueError(
                    f"{self.what} name {key!r} is already registered to {_identity(self._entries[taken])}; "
                    "choose another name, or pass override=True to replace it"
                )
        for key in (name, *aliases):
            self._keys[self._key(key)] = name  # with override, the key moves to the new entry
        self._entries[name] = value
        return value

    def register(self, name: str, *aliases: str, override: bool = False) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def wrap(value: T) -> T:
            return self.add(name, value, *aliases, override=override)

        return wrap

    def canonical(self, name: str) -> str:
        """The canonical name of ``name`` (an alias or the name itself, any case)."""
        key = self._key(name)
        if key not in self._keys:
            raise ValueError(f"unknown {self.what} {name!r}; choose one of {', '.join(self.names())}")
        return self._keys[key]

    def get(self, name: str) -> T:
        return self._entries[self.canonical(name)]

    def names(self) -> list[str]:
        """The canonical names, in registration order."""
        return [n for n in self._entries if self._keys.get(self._key(n)) == n]

    def aliases(self) -> dict[str, str]:
        """Every accepted name (lower case unless case-sensitive) to its canonical name."""
        return dict(self._keys)

    def items(self) -> Iterator[tuple[str, T]]:
        for name in self.names():
            yield name, self._entries[name]

    def remove(self, name: str) -> None:
        """Forget the entry ``name`` (or its alias) names, with all its aliases."""
        canonical = self.canonical(name)
        self._keys = {k: v for k, v in self._keys.items() if v != canonical}
        del self._entries[canonical]

    def snapshot(self) -> tuple[dict[str, T], dict[str, str]]:
        """The table as it is, for :meth:`restore` (tests that register examples put it back)."""
        return dict(self._entries), dict(self._keys)

    def restore(self, snapshot: tuple[dict[str, T], dict[str, str]]) -> None:
        self._entries, self._keys = dict(snapshot[0]), dict(snapshot[1])

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._key(name) in self._keys

    def __len__(self) -> int:
        return len(self.names())
