"""A tiny name -> factory registry; modules fill it by explicit import.

Every configurable choice (backbones, heads, data sources, optimizers, schedules, precisions,
detectors, gallery indexes, resize modes) is one registry, so an unknown name fails the same
way everywhere: with the valid choices listed, the closest one suggested, and for the names
other projects give to a choice (insightface's ``r50``), which one that is here.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

from faceforge.errors import UnknownChoiceError, shorten

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories. Registering a name twice raises, looking up a missing name
    raises :class:`~faceforge.errors.UnknownChoiceError` (a ``KeyError``) listing the choices."""

    def __init__(self, kind: str, elsewhere: Mapping[str, str] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}
        #: another project's name -> what it is here, e.g. ``{"r50": "arcface_torch's r50 is
        #: iresnet50"}``: said when such a name is looked up, never accepted (one name each)
        self.elsewhere = dict(elsewhere or {})

    @classmethod
    def of(
        cls,
        kind: str,
        factories: dict[str, Callable[..., T]],
        elsewhere: Mapping[str, str] | None = None,
    ) -> Registry[T]:
        """A registry filled with ``factories`` (explicit, import-order independent)."""
        registry = cls(kind, elsewhere)
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
                f"unknown {self.kind} {what}{self._hint(name)}; valid choices: "
                + ", ".join(self.names())
            ) from None

    def _hint(self, name: object) -> str:
        """What ``name`` is called here: another project's name, or a near miss."""
        if not isinstance(name, str) or len(name) > 100:
            return ""
        if name in self.elsewhere:
            return f" ({self.elsewhere[name]})"
        folded = {entry.lower().replace("-", "_"): entry for entry in self._entries}
        close = difflib.get_close_matches(name.lower().replace("-", "_"), folded, 1, 0.75)
        return f" (did you mean {folded[close[0]]}?)" if close else ""

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
