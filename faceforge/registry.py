"""A tiny name -> factory registry; modules fill it by explicit import.

Every configurable choice (backbones, heads, data sources, optimizers, schedules, precisions,
detectors, gallery indexes, resize modes) is one registry, so an unknown name fails the same
way everywhere: with the valid choices listed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from faceforge.errors import UnknownChoiceError, shorten

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories. Registering a name twice raises, looking up a missing name
    raises :class:`~faceforge.errors.UnknownChoiceError` (a ``KeyError``) listing the choices."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}

    @classmethod
    def of(cls, kind: str, factories: dict[str, Callable[..., T]]) -> Registry[T]:
        """A registry filled with ``factories`` (explicit, import-order independent)."""
        registry = cls(kind)
        for name, factory in factories.items():
            registry.register(name)(factory)
        return registry

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def add(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = factory
            return factory

        return add

    def get(self, name: str, field: str | None = None) -> Callable[..., T]:
        """The factory registered as ``name``; ``field`` (e.g. ``data.source``) is named in
        the error when ``name`` is unknown."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            what = f"{field}={shorten(name)}" if field else shorten(name)
            raise UnknownChoiceError(
                f"unknown {self.kind} {what}; valid choices: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
