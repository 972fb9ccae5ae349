"""A small named registry: ``@reg.register("name")``, ``reg.get(name)``, ``reg.names()``, and
``reg.resolve(name)``, which also takes a function of the user's as ``"package.module:function"``.

Reset rules, template rules and initialisers are registries so that adding one is
one decorated function plus its test, never a new branch in library code.
"""

from __future__ import annotations

import importlib
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

    def resolve(self, name: str) -> T:
        """The object registered under ``name``, or the function ``"package.module:function"``
        names, imported now (``function`` may be dotted: ``"pkg.mod:Class.build"``). A study
        names a user's model or dataset this way, and a worker process resolves the same string
        by importing the same module, so nothing needs registering in every process.

        Raises:
            ValueError: an unknown name; a module that can't be imported (whatever it raises
                while importing); or an attribute that is missing or not callable.

        Example:
            >>> reg: Registry[type] = Registry("layer")
            >>> reg.resolve("torch.nn:Linear").__name__
            'Linear'
            >>> reg.resolve("torch.nn:Linaer")
            Traceback (most recent call last):
            ...
            ValueError: layer 'torch.nn:Linaer': cannot import 'Linaer' from 'torch.nn' (it has no 'Linaer')
        """
        if ":" not in name:
            return self.get(name)
        module_name, _, attr = name.partition(":")
        if not module_name or not attr:
            raise ValueError(f"{self.kind} {name!r}: expected 'package.module:function'")
        try:
            found: object = importlib.import_module(module_name)
        except Exception as e:  # a user module may raise anything while importing
            raise ValueError(f"{self.kind} {name!r}: cannot import {attr!r} from {module_name!r} "
                             f"({type(e).__name__}: {e})") from None
        for part in attr.split("."):
            if not hasattr(found, part):
                raise ValueError(f"{self.kind} {name!r}: cannot import {attr!r} from {module_name!r} (it has no {part!r})")
            found = getattr(found, part)
        if not callable(found):
            raise ValueError(f"{self.kind} {name!r}: {attr!r} in {module_name!r} is a {type(found).__name__}, "
                             f"not a function")
        return found  # type: ignore[return-value]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
