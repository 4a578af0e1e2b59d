"""How the package patches moto's classes: a method is replaced by a wrapper of it, and moto's own method stays
reachable (``original``) for the engine's parts that need moto's behaviour underneath the patch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_ORIGINALS: dict[str, Callable[..., Any]] = {}


def wrap(cls: type, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Replace ``cls.name`` by ``make(moto's method)``."""
    replaced = getattr(cls, name)
    _ORIGINALS[f"{cls.__name__}.{name}"] = replaced
    replacement = make(replaced)
    replacement.__name__ = name
    replacement.__qualname__ = f"{cls.__name__}.{name}"
    setattr(cls, name, replacement)


def original(cls: type, name: str) -> Callable[..., Any]:
    """moto's ``cls.name`` as it was before the patch."""
    return _ORIGINALS[f"{cls.__name__}.{name}"]
