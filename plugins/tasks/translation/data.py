"""Translation data as tensors: Moses-style parallel text from ``--data-dir``, or the embedded mix.

The on-disk format is the one IWSLT and WMT ship (and fairseq's preparation scripts
write): one sentence a line, line ``n`` of the source file translating line ``n`` of the
target file, one file pair per split::

    train.src  train.tgt      or   train.en  train.fr
    valid.src  valid.tgt           valid.en  valid.fr     (or dev.*)
    test.src   test.tgt            test.en   test.fr

With language suffixes, the direction is read from the directory's name when it names
both languages (fairseq's ``iwslt14.tokenized.de-en`` → de→en); otherwise English is the
source when it is one of the two, else the suffixes in alphabetical order. Pairs with an
empty side are skipped.

Subwords: one byte-level BPE vocabulary shared by both languages (Hugging Face
``tokenizers``), trained on the training split only, deterministic, and cached by a hash
of the training text and the vocabulary size under ``$ATTNBENCH_CACHE_DIR`` (default
``$XDG_CACHE_HOME/attnbench`` or ``~/.cache/attnbench``), never in the repository.
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attnbench.cache import cache_dir as shared_cache_dir
from attnbench.datafiles import read_text, require_dir
from attnbench.errors import DataError

from . import corpus

PAD, BOS, EOS = 0, 1, 2
SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<s>", "</s>")
SPLITS: tuple[str, ...] = ("train", "valid", "test")
#: File stems accepted for each split, in the order they are looked for.
SPLIT_STEMS: Mapping[str, tuple[str, ...]] = {"train": ("train",), "valid": ("valid", "dev"), "test": ("test",)}
FORMAT = "Moses-style parallel text: train, valid (or dev) and test, each as .src/.tgt or .<lang>/.<lang> files"


@dataclass(frozen=True)
class Corpus:
    """Sentence pairs per split; ``origin`` names each pair's source (one name for --data-dir)."""

    src: Mapping[str, list[str]]
    tgt: Mapping[str, list[str]]
    origin: Mapping[str, list[str]]
    direction: tuple[str, str]

    def size(self, split: str) -> int:
        return len(self.src[split])


# --- the embedded default -------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def default_corpus(num2words_count: int, seed: int, max_chars: int, valid_fraction: float, test_fraction: float,
                   n_train: int, n_test: int) -> Corpus:
    """The Django + CLDR + num2words mix (see :mod:`.corpus`), split per source with ``seed``.

    Each source is shuffled and cut into test, valid and train shares, so every split has
    each source in the same proportion; then each split is shuffled, and train and test
    are cut to ``n_train`` and ``n_test`` pairs (0 = keep all).
    """
    rng = random.Random(seed)
    parts: dict[str, list[corpus.Pair]] = {split: [] for split in SPLITS}
    pairs = corpus.default_pairs(num2words_count, seed, max_chars)
    for name in corpus.SOURCES:
        mine = [p for p in pairs if p.source == name]
        rng.shuffle(mine)
        n_test_here, n_valid_here = round(test_fraction * len(mine)), round(valid_fraction * len(mine))
        parts["test"] += mine[:n_test_here]
        parts["valid"] += mine[n_test_here : n_test_here + n_valid_here]
        parts["train"] += mine[n_test_here + n_valid_here :]
    for split in SPLITS:
        rng.shuffle(parts[split])
    if n_train:
        parts["train"] = parts["train"][:n_train]
    if n_test:
        parts["test"] = parts["test"][:n_test]
    return Corpus(
        src={s: [p.src for p in parts[s]] for s in SPLITS},
        tgt={s: [p.tgt for p in parts[s]] for s in SPLITS},
        origin={s: [p.source for p in parts[s]] for s in SPLITS},
        direction=(corpus.SOURCE_LANG, corpus.TARGET_LANG),
    )


def default_from_config(config: Mapping[str, Any]) -> Corpus:
    """:func:`default_corpus` with a profile's settings."""
    return default_corpus(
        int(config["num2words_pairs"]), int(config["data_seed"]), int(config["max_chars"]),
        float(config["valid_fraction"]), float(config["test_fraction"]),
        int(config.get("n_train", 0)), int(config.get("n_test", 0)),
    )


# --- Moses-style files ----------------------------------------------------------------------


def _direction(data_dir: Path, suffixes: set[str]) -> tuple[str, str]:
    if suffixes == {"src", "tgt"}:
        return "src", "tgt"
    words = re.findall(r"[A-Za-z]+", data_dir.resolve().name)
    for a, b in reversed(list(zip(words, words[1:], strict=False))):
        if {a, b} == suffixes:
            return a, b
    first, second = sorted(suffixes)
    return ("en", (suffixes - {"en"}).pop()) if "en" in suffixes else (first, second)


def detect_direction(data_dir: Path) -> tuple[str, str]:
    """The (source, target) file suffixes in ``data_dir``, read from its ``train.*`` files."""
    suffixes = {p.name[len("train."):] for p in data_dir.glob("train.*") if p.is_file()}
    if not suffixes:
        raise DataError(f"{data_dir} holds no train.* files; expected {FORMAT}")
    if len(suffixes) != 2:
        raise DataError(
            f"{data_dir} holds train.* files with {len(suffixes)} suffix(es) ({', '.join(sorted(suffixes))}); "
            f"expected exactly two, train.src/train.tgt or train.<lang>/train.<lang>"
        )
    return _direction(data_dir, suffixes)


def _split_files(data_dir: Path, split: str, direction: tuple[str, str]) -> tuple[Path, Path]:
    for stem in SPLIT_STEMS[split]:
        paths = tuple(data_dir / f"{stem}.{suffix}" for suffix in direction)
        if any(p.exists() for p in paths):
            missing = [p for p in paths if not p.is_file()]
            if missing:
                raise DataError(
                    f"{missing[0]} does not exist; expected it beside {paths[1 - paths.index(missing[0])].name} "
                    f"with its line-by-line translation ({FORMAT})"
                )
            return paths  # type: ignore[return-value]
    names = " or ".join(f"{stem}.{direction[0]}/{stem}.{direction[1]}" for stem in SPLIT_STEMS[split])
    raise DataError(f"{data_dir} lacks the {split} split; expected {names} ({FORMAT})")


def _lines(path: Path) -> list[str]:
    # Only "\n" ends a line: str.splitlines() would also split at U+2028, U+0085 and the like,
    # which real sentences contain, and misalign the two sides.
    lines = read_text(path, "UTF-8 text, one sentence a line").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def read_parallel(src_path: Path, tgt_path: Path) -> tuple[list[str], list[str]]:
    """The sentence pairs of one split's two files; both must be UTF-8 with one line per sentence."""
    src_lines, tgt_lines = _lines(src_path), _lines(tgt_path)
    if len(src_lines) != len(tgt_lines):
        raise DataError(
            f"{src_path} has {len(src_lines)} lines but {tgt_path} has {len(tgt_lines)}; "
            "expected parallel files with one translation per line (the same number of lines)"
        )
    pairs = [(s.strip(), t.strip()) for s, t in zip(src_lines, tgt_lines, strict=True)]
    pairs = [(s, t) for s, t in pairs if s and t]
    if not pairs:
        raise DataError(
            f"{src_path} and {tgt_path} hold no sentence pairs ({len(src_lines)} lines, none with both sides non-empty); "
            "expected at least one sentence and its translation"
        )
    return [s for s, _ in pairs], [t for _, t in pairs]


def load_dir(data_dir: Path, config: Mapping[str, Any] | None = None) -> Corpus:
    """Every split of the Moses-style corpus in ``data_dir`` (see the module docstring).

    ``config``'s ``n_train``/``n_test`` (when set and non-zero) keep the first pairs of
    those splits. All files are checked before anything trains.
    """
    data_dir = require_dir(Path(data_dir), FORMAT)
    direction = detect_direction(data_dir)
    src: dict[str, list[str]] = {}
    tgt: dict[str, list[str]] = {}
    files = {split: _split_files(data_dir, split, direction) for split in SPLITS}
    for split, (src_path, tgt_path) in files.items():
        src[split], tgt[split] = read_parallel(src_path, tgt_path)
    config = config or {}
    for split, key in (("train", "n_train"), ("test", "n_test")):
        limit = int(config.get(key, 0) or 0)
        if limit:
            src[split], tgt[split] = src[split][:limit], tgt[split][:limit]
    origin = {split: ["data_dir"] * len(src[split]) for split in SPLITS}
    return Corpus(src=src, tgt=tgt, origin=origin, direction=direction)


# --- the subword vocabulary -----------------------------------------------------------------


def cache_dir() -> Path:
    """Where trained tokenizers are kept (:func:`attnbench.cache.cache_dir`)."""
    return shared_cache_dir("translation")


def _train_bpe(texts: Sequence[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def train_tokenizer(src: Sequence[str], tgt: Sequence[str], vocab_size: int, cache: Path | None = None):
    """A joint byte-level BPE tokenizer trained on the training pairs, loaded from ``cache``
    when one was trained on the same text with the same size before."""
    from tokenizers import Tokenizer, __version__

    texts = [*src, *tgt]
    recipe = f"byte-level BPE, NFC, specials {SPECIAL_TOKENS}, tokenizers {__version__}, vocab {vocab_size}"
    digest = hashlib.sha256("\n".join([recipe, *texts]).encode()).hexdigest()[:20]
    path = (cache or cache_dir()) / f"bpe-{vocab_size}-{digest}.json"
    if path.is_file():
        try:
            return Tokenizer.from_file(str(path))
        except Exception:  # a corrupt cache entry is retrained and overwritten
            pass
    tokenizer = _train_bpe(texts, vocab_size)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tokenizer.save(str(tmp))
        os.replace(tmp, path)
    except OSError:  # an unwritable cache only costs retraining
        pass
    return tokenizer


# --- tensors ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoded:
    """One split as token ids: ``src`` without specials, ``tgt`` as ``<s> … </s>``."""

    src: list[list[int]]
    tgt: list[list[int]]

    def __len__(self) -> int:
        return len(self.src)

    def batch(self, index: Sequence[int] | torch.Tensor, device: torch.device):
        """``(src, src_mask, tgt_in, tgt_mask, tgt_out)`` for examples ``index``, padded to the batch's longest."""
        rows = [int(i) for i in index]
        src = pad([self.src[i] for i in rows]).to(device)
        tgt = pad([self.tgt[i] for i in rows]).to(device)
        tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]
        return src, src != PAD, tgt_in, tgt_in != PAD, tgt_out


def bucketed_batches(lengths: Sequence[int], batch_size: int, generator: torch.Generator,
                     pool: int = 32) -> Iterator[list[int]]:
    """Index batches of pairs of similar length, forever: each epoch is shuffled, cut into pools of
    ``pool`` batches, each pool sorted by length and batched, and the batches shuffled again.

    Batches of similar lengths carry little padding, so a step costs what its tokens cost.
    """
    n = len(lengths)
    if n <= 0:
        raise ValueError("cannot draw batches from an empty split")
    batch_size = min(batch_size, n)
    while True:
        order = torch.randperm(n, generator=generator).tolist()
        batches = []
        for start in range(0, n, batch_size * pool):
            chunk = sorted(order[start : start + batch_size * pool], key=lambda i: lengths[i])
            batches += [chunk[i : i + batch_size] for i in range(0, len(chunk) - batch_size + 1, batch_size)]
        for b in torch.randperm(len(batches), generator=generator).tolist():
            yield batches[b]


def pad(rows: Sequence[Sequence[int]]) -> torch.Tensor:
    """Right-padded (N, longest) long tensor of ``rows``."""
    out = torch.full((len(rows), max(len(r) for r in rows)), PAD, dtype=torch.long)
    for n, row in enumerate(rows):
        out[n, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def encode(tokenizer, src: Sequence[str], tgt: Sequence[str], max_len: int, drop_long: bool) -> Encoded:
    """Token ids of pairs; sources are cut to ``max_len`` and targets to ``max_len - 1`` plus ``</s>``.

    With ``drop_long`` (training) pairs that would be cut are left out instead.
    """
    src_ids = [e.ids for e in tokenizer.encode_batch(list(src))]
    tgt_ids = [e.ids for e in tokenizer.encode_batch(list(tgt))]
    pairs = []
    for s, t in zip(src_ids, tgt_ids, strict=True):
        if drop_long and (len(s) > max_len or len(t) + 1 > max_len):
            continue
        pairs.append((s[:max_len] or [EOS], [BOS, *t[: max_len - 1], EOS]))
    return Encoded(src=[s for s, _ in pairs], tgt=[t for _, t in pairs])


def decode(tokenizer, rows: Sequence[Sequence[int]]) -> list[str]:
    """Text of generated ids, up to the first ``</s>``, without special tokens."""
    cut = [list(r[: list(r).index(EOS)] if EOS in r else r) for r in rows]
    return [text.strip() for text in tokenizer.decode_batch(cut, skip_special_tokens=True)]
