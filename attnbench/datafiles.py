"""Reading a task's ``--data-dir`` with errors a user can act on.

Every task that reads files from disk raises :class:`attnbench.errors.DataError` through
these helpers, so every message has one shape: the file (and line, where there is one),
what was found, and what was expected. The runner turns a ``DataError`` into one line
before any training starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from attnbench.errors import DataError


def require_dir(data_dir: Path, what: str) -> Path:
    """``data_dir`` as a Path if it is a directory, else DataError saying what it should hold."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"data directory {data_dir} does not exist or is not a directory; expected {what}")
    return data_dir


def find_file(data_dir: Path, candidates: Iterable[str], what: str) -> Path:
    """The first of ``candidates`` (names or globs, relative to ``data_dir``) that exists.

    Raises DataError listing every name tried when none does.
    """
    tried = list(candidates)
    for pattern in tried:
        matches = sorted(Path(data_dir).glob(pattern))
        if matches:
            return matches[0]
    raise DataError(f"{data_dir} lacks {what}; looked for {', '.join(tried)}")


def read_text(path: Path, what: str, encoding: str = "utf-8") -> str:
    """The whole text of ``path``; DataError names the file when it is missing or not ``encoding``."""
    try:
        return Path(path).read_text(encoding=encoding)
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; expected {what}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not {encoding} text (byte {exc.start}: {exc.reason}); expected {what}") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}; expected {what}") from None


def read_lines(path: Path, what: str, encoding: str = "utf-8") -> list[str]:
    """The lines of ``path`` without their line ends (see :func:`read_text` for the errors)."""
    return read_text(path, what, encoding).splitlines()


def numbered(lines: Iterable[str], start: int = 1) -> Iterator[tuple[int, str]]:
    """``(line_number, line)`` pairs, numbered from ``start``, for messages that name the line."""
    return enumerate(lines, start=start)


def line_error(path: Path, line: int, found: str, expected: str) -> DataError:
    """A DataError of the one shape: ``FILE, line N: found ...; expected ...``."""
    return DataError(f"{path}, line {line}: {found}; expected {expected}")
