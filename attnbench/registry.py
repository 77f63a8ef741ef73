"""Name lookup for registered variants and tasks.

>>> reg = Registry("attention")
>>> reg.add("softmax", spec, source="attnbench:softmax")
>>> reg.get("sofmax")
UnknownNameError: unknown attention 'sofmax' — did you mean 'softmax'? (attnbench list attention)

Names are unique: registering a second object under a taken name raises
:class:`DuplicateNameError` naming both sources. Selection takes names or fnmatch
globs (``"sdpa*"``) and keeps registration order.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

from attnbench.errors import DuplicateNameError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Registered items of one kind (``attention`` or ``task``), by unique name."""

    def __init__(self, kind: str, list_command: str) -> None:
        self.kind = kind
        self._list_command = list_command
        self._items: dict[str, T] = {}
        self._sources: dict[str, str] = {}

    def add(self, name: str, item: T, *, source: str) -> None:
        """Register ``item`` under ``name``; a name taken by another object is an error."""
        if name in self._items:
            if self._items[name] is item:
                return
            raise DuplicateNameError(
                f"{self.kind} {name!r} is registered twice: by {self._sources[name]} and by "
                f"{source}; uninstall one of them or disable it with ATTNBENCH_DISABLE_PLUGINS"
            )
        self._items[name] = item
        self._sources[name] = source

    def get(self, name: str) -> T:
        """The item called ``name``, or an error suggesting close names."""
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self._unknown_message(name)) from None

    def source(self, name: str) -> str:
        """Which plugin registered ``name``."""
        return self._sources[name]

    def select(self, patterns: Iterable[str] | None) -> list[T]:
        """Items matching any of ``patterns`` (names or globs); None or empty means all."""
        patterns = [p.strip() for p in patterns or () if p.strip()]
        if not patterns:
            return list(self._items.values())
        chosen: list[str] = []
        for pattern in patterns:
            hits = [n for n in self._items if fnmatch.fnmatchcase(n, pattern)]
            if not hits:
                raise UnknownNameError(self._unknown_message(pattern))
            chosen += [n for n in hits if n not in chosen]
        return [self._items[n] for n in chosen]

    def names(self) -> list[str]:
        """Every registered name, in registration order."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def _unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, self._items, n=3, cutoff=0.6)
        hint = f" — did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return (
            f"unknown {self.kind} {name!r}{hint} ({len(self._items)} registered; "
            f"see `{self._list_command}`)"
        )
