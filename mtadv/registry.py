"""One small generic registry: behaviour varies by lookup, not by if-chains."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; unknown names fail listing the known ones.

    `discover` names a package whose modules register this registry's entries (mtadv.tasks for the
    task types): it is imported, by name, on the first lookup or registration. So the module that owns
    the registry sits below the entries' modules and never imports them (tests/test_imports.py checks
    the layering), and a lookup still sees every built-in entry, however the registry was reached."""

    def __init__(self, kind: str, discover: str | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._discover = discover

    def _load(self) -> None:
        if self._discover:
            importlib.import_module(self._discover)  # while it is being imported: the partial module, at once
            self._discover = None

    def register(self, name: str) -> Callable[[T], T]:
        self._load()

        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        self._load()
        if name not in self._items:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self._items[name]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items
