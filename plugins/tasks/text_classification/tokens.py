"""Text to token ids: a subword (BPE) vocabulary trained on the training split only, or raw UTF-8 bytes.

The BPE tokenizer (Hugging Face ``tokenizers``) is trained on the training texts of the
run's corpus and cached outside the repository, keyed by a hash of its settings and of
those texts: ``$ATTNBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/attnbench``, else
``~/.cache/attnbench`` (subfolder ``text-classification``). An unwritable cache only
costs the retraining (well under a second for the default corpus).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from attnbench.cache import cache_dir as shared_cache_dir

PAD = 0
UNK = 1
SPECIALS = ("[PAD]", "[UNK]")
#: Bytes are shifted by one so that id 0 stays padding.
BYTE_VOCAB = 257


def cache_dir() -> Path:
    """Where trained tokenizers are kept (:func:`attnbench.cache.cache_dir`)."""
    return shared_cache_dir("text-classification")


@dataclass(frozen=True)
class Vocabulary:
    """Encodes texts into padded id tensors; ``size`` ids in all, :data:`PAD` is 0."""

    kind: str  # "bpe" or "bytes"
    size: int
    tokenizer: object | None = None  # tokenizers.Tokenizer for "bpe"
    path: Path | None = None  # where the trained tokenizer lives, if it was saved

    def encode(self, texts: Sequence[str], max_length: int) -> torch.Tensor:
        """(N, max_length) int32 ids, truncated to ``max_length`` and padded with :data:`PAD`."""
        if self.kind == "bytes":
            rows = [[b + 1 for b in text.encode("utf-8")[:max_length]] for text in texts]
        else:
            rows = [enc.ids[:max_length] for enc in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]
        out = torch.full((len(rows), max_length), PAD, dtype=torch.int32)
        for n, ids in enumerate(rows):
            if ids:
                out[n, : len(ids)] = torch.tensor(ids, dtype=torch.int32)
        return out


def _key(texts: Sequence[str], vocab_size: int, min_frequency: int) -> str:
    settings = {"kind": "bpe-lower-v1", "vocab_size": vocab_size, "min_frequency": min_frequency}
    digest = hashlib.sha256(json.dumps(settings).encode())
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:20]


def _train_bpe(texts: Sequence[str], vocab_size: int, min_frequency: int):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=SPECIALS[UNK]))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Lowercase(), normalizers.StripAccents()])
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIALS), show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


@functools.lru_cache(maxsize=8)
def _bpe(key: str, texts: tuple[str, ...], vocab_size: int, min_frequency: int) -> Vocabulary:
    from tokenizers import Tokenizer

    path = cache_dir() / f"bpe-{key}.json"
    if path.is_file():
        try:
            tokenizer = Tokenizer.from_file(str(path))
            return Vocabulary("bpe", tokenizer.get_vocab_size(), tokenizer, path)
        except Exception:  # a damaged cache file is retrained and replaced  # noqa: BLE001
            pass
    tokenizer = _train_bpe(texts, vocab_size, min_frequency)
    saved: Path | None = path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as tmp:
            tmp.write(tokenizer.to_str())
        os.replace(tmp.name, path)
    except OSError:
        saved = None
    return Vocabulary("bpe", tokenizer.get_vocab_size(), tokenizer, saved)


#: The vocabularies :func:`vocabulary` builds (the task's ``tokens`` setting takes one of these).
KINDS: tuple[str, ...] = ("bpe", "bytes")


def vocabulary(kind: str, train_texts: Sequence[str], vocab_size: int = 4000, min_frequency: int = 2) -> Vocabulary:
    """The ``"bpe"`` vocabulary of ``train_texts`` (trained once, then cached) or the ``"bytes"`` one."""
    if kind == "bytes":
        return Vocabulary("bytes", BYTE_VOCAB)
    if kind != "bpe":
        raise ValueError(f"tokens must be one of {', '.join(map(repr, KINDS))}, got {kind!r}")
    texts = tuple(train_texts)
    return _bpe(_key(texts, vocab_size, min_frequency), texts, vocab_size, min_frequency)
