"""One registry shape for every pluggable family (teachers, students, KD losses, data sources, device profiles).

Usage::

    STUDENTS = Registry("student")

    @STUDENTS.register            # key defaults to the function's name
    def dscnn(...): ...

    @STUDENTS.register(key="mlp")
    def build_mlp(...): ...

    STUDENTS.get("dscnn")         # unknown key -> UnknownNameError listing the known ones
"""

from __future__ import annotations

import warnings
from typing import Callable, Generic, Iterator, TypeVar, overload

from .errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object map with a decorator, a listing and errors that name the valid keys."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._items: dict[str, T] = {}

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
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.family, name, sorted(self._items)) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
