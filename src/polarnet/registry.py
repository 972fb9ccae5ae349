"""A small named registry: ``@reg.register("name")``, ``reg.get(name)``, ``reg.names()``.

Reset rules, template rules and initialisers are registries so that adding one is
one decorated function plus its test, never a new branch in library code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["Registry"]


class Registry(Generic[T]):
    """Maps names to objects; duplicate names and unknown names raise.

    Example:
        >>> reg: Registry[int] = Registry("number")
        >>> @reg.register("one")
        ... def one() -> int:
        ...     return 1
        >>> reg.get("one")()
        1
        >>> reg.names()
        ['one']
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that adds the decorated object under ``name``.

        Raises:
            ValueError: ``name`` is already registered.
        """

        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered; pick another name")
            self._items[name] = obj
            return obj

        return add

    def unregister(self, name: str) -> None:
        """Remove ``name`` (mainly for tests that register temporary entries)."""
        self._items.pop(name)

    def get(self, name: str) -> T:
        """Return the object registered under ``name``.

        Raises:
            ValueError: unknown name; the message lists the known names.
        """
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of: {known}") from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
