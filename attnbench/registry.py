"""Name lookup for registered variants and tasks.

>>> reg = Registry("attention")
>>> reg.add("softmax", spec, source="attnbench:softmax")
>>> reg.get("sofmax")
UnknownNameError: unknown attention 'sofmax' — did you mean 'softmax'? (attnbench list attention)

Names are unique: registering a second object under a taken name raises
:class:`DuplicateNameError` naming both sources. Names follow :data:`NAME_RULE` (they
become command-line words and one folder each under ``artifacts/``); a name that breaks
it raises :class:`InvalidNameError`. Either error fails the plugin's registration hook,
and ``attnbench plugins`` reports it. Selection takes names or fnmatch globs
(``"sdpa*"``) and keeps registration order.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

from attnbench.errors import DuplicateNameError, InvalidNameError, UnknownNameError

T = TypeVar("T")

#: The longest name a task or variant may have.
MAX_NAME_LENGTH = 64

#: The naming rule for tasks and variants, as users and plugin authors read it.
NAME_RULE = (f"1 to {MAX_NAME_LENGTH} characters from a-z A-Z 0-9 '-' '_' '.', starting with a letter or digit "
             "(a name is a command-line word and one folder under artifacts/)")

_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_NAME_LENGTH - 1}}}")
_GLOB = re.compile(r"[*?\[]")


def name_problem(name: object) -> str | None:
    """What is wrong with ``name`` as a task or variant name (see :data:`NAME_RULE`), or None."""
    if not isinstance(name, str):
        return f"it is a {type(name).__name__}, not a string"
    if not name:
        return "it is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"it is {len(name)} characters long (at most {MAX_NAME_LENGTH})"
    if _NAME.fullmatch(name):
        return None
    bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c in "._-"))})
    if bad:
        return f"it contains {', '.join(repr(c) for c in bad)}"
    return f"it starts with {name[0]!r}"


def shown(name: object, width: int = 40) -> str:
    """``name`` quoted for a one-line message, cut to ``width`` characters with its length said."""
    text = repr(name)
    if isinstance(name, str) and len(text) > width:
        return f"{text[:width]}…' ({len(name)} characters)"
    return text


class Registry(Generic[T]):
    """Registered items of one kind (``attention`` or ``task``), by unique name."""

    def __init__(self, kind: str, list_command: str) -> None:
        self.kind = kind
        self._list_command = list_command
        self._items: dict[str, T] = {}
        self._sources: dict[str, str] = {}

    def add(self, name: str, item: T, *, source: str) -> None:
        """Register ``item`` under ``name``; a name taken by another object, or one that breaks
        :data:`NAME_RULE`, is an error."""
        problem = name_problem(name)
        if problem:
            raise InvalidNameError(
                f"{self.kind} name {shown(name)} registered by {source} breaks the naming rule: {problem}; "
                f"names are {NAME_RULE}: rename it in the plugin"
            )
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
        if _GLOB.search(name):
            return (f"no {self.kind} matches the pattern {shown(name)} ({len(self._items)} registered; "
                    f"see `{self._list_command}`)")
        close = difflib.get_close_matches(name, self._items, n=3, cutoff=0.6)
        hint = f" — did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return (
            f"unknown {self.kind} {shown(name)}{hint} ({len(self._items)} registered; "
            f"see `{self._list_command}`)"
        )
