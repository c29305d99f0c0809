"""One registry shape for every pluggable family (teachers, students, KD losses, data sources, device profiles).

Usage::

    STUDENTS = Registry("student")

    @STUDENTS.register            # key defaults to the function's name
    def dscnn(...): ...

    @STUDENTS.register(key="mlp")
    def build_mlp(...): ...

    STUDENTS.get("dscnn")         # unknown key -> UnknownNameError listing the known ones

A family whose members need a heavy import (torch) is declared by name in a light module and registered in the
heavy one: `STUDENTS.declare("edgekd.models.student_nets", "cnn", "dscnn")` lists the names (`--help` and error
messages need them) and `get("cnn")` imports that module, whose `@STUDENTS.register(key="cnn")` classes and
functions fill the entry.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Callable, Generic, Iterator, TypeVar, overload

from .errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object map with a decorator, a listing and errors that name the valid keys."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._items: dict[str, T] = {}
        self._providers: dict[str, str] = {}  # declared name -> the module that registers it on import

    def declare(self, module: str, *names: str) -> None:
        """Name members that `module` registers when imported; `get` imports it on first use of one of them."""
        for name in names:
            self._providers[name] = module

    @overload
    def register(self, obj: T) -> T: ...
    @overload
    def register(self, *, key: str | None = None) -> Callable[[T], T]: ...

    def register(self, obj=None, *, key=None):
        def add(o: T) -> T:
            name = key or getattr(o, "__name__", None)
            if not name:
                raise ValueError(f"cannot register {o!r} in the {self.family} registry without key=")
            if name in self._items and self._items[name] is not o:
                warnings.warn(f"{self.family} {name!r} registered twice; the later one wins", stacklevel=3)
            self._items[name] = o
            return o

        return add(obj) if obj is not None else add

    def get(self, name: str) -> T:
        if name not in self._items and name in self._providers:
            importlib.import_module(self._providers[name])
            if name not in self._items:
                raise RuntimeError(f"{self._providers[name]} was declared to register {self.family} {name!r} but "
                                  f"did not")
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.family, name, self.names()) from None

    def names(self) -> list[str]:
        return sorted(set(self._items) | set(self._providers))

    def providers(self) -> dict[str, str]:
        """Declared name -> the module that registers it (for tests that check the declarations)."""
        return dict(self._providers)

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._providers

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())
