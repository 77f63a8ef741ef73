"""ListOps examples as tensors: LRA's TSV files from ``--data-dir``, or the seeded generator.

Tokenising: the ``Source`` text is split on spaces. LRA's pair parentheses ``(`` ``)`` are
recognised and dropped: they only restate the bracket structure, LRA's length limits
count without them, and common PyTorch LRA pipelines drop them too (LRA's own TensorFlow
tokeniser kept only alphanumeric runs, dropping ``]`` as well). What remains is one token
per unit of length: the digits, the four operators and ``]``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnbench.errors import DataError

from . import generator

#: Token ids; 0 is padding.
VOCAB: tuple[str, ...] = ("<pad>", *(str(d) for d in range(10)), *generator.OPERATORS, generator.END)
PAD = 0
TOKEN_IDS: dict[str, int] = {token: i for i, token in enumerate(VOCAB)}
#: Tokens LRA's files contain that carry no information beyond the brackets.
DROPPED: frozenset[str] = frozenset({"(", ")"})
HEADER = ("Source", "Target")
NUM_CLASSES = 10
LABELS: frozenset[str] = frozenset(str(d) for d in range(NUM_CLASSES))


@dataclass(frozen=True)
class Split:
    """One split: ``tokens`` (N, L) uint8 padded with :data:`PAD`, ``lengths`` (N,), ``labels`` (N,).

    Every example is padded to the profile's ``max_length``, as LRA pads, so every batch
    has one shape and variants that fix their length at build time see the length they
    were built for.
    """

    tokens: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, index: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Examples ``index`` on ``device``: tokens (B, L), mask (B, L) with True = token, labels (B,)."""
        tokens = self.tokens[index].to(device=device, dtype=torch.long)
        return tokens, tokens != PAD, self.labels[index].to(device)

    def majority_fraction(self) -> float:
        """The share of the most common label: the accuracy of always guessing it."""
        return float(torch.bincount(self.labels, minlength=NUM_CLASSES).max()) / max(len(self), 1)


@dataclass(frozen=True)
class Splits:
    """The train, validation and test splits."""

    train: Split
    val: Split
    test: Split


def encode(source: str) -> list[int]:
    """Token ids of an LRA ``Source`` text; ``ValueError`` names the first unknown token."""
    try:
        return [TOKEN_IDS[token] for token in source.split() if token not in DROPPED]
    except KeyError as exc:
        raise ValueError(f"unknown token {exc.args[0]!r}") from None


_DEPTH_STEP = np.zeros(len(VOCAB), dtype=np.int64)
_DEPTH_STEP[[TOKEN_IDS[op] for op in generator.OPERATORS]] = 1
_DEPTH_STEP[TOKEN_IDS[generator.END]] = -1


def check_brackets(ids: list[int]) -> None:
    """``ValueError`` unless every operator is closed by exactly one ``]`` (catches truncation)."""
    depth = np.cumsum(_DEPTH_STEP[np.asarray(ids, dtype=np.int64)])
    if depth.size and depth.min() < 0:
        raise ValueError("a ']' closes no operator")
    if depth.size and depth[-1]:
        raise ValueError(f"{int(depth[-1])} operator(s) not closed with ']' (truncated?)")


def to_split(examples: Iterable[tuple[list[int], int]], max_length: int) -> Split:
    """Pack encoded examples into a :class:`Split`: truncated to ``max_length`` tokens and padded to it, as LRA does."""
    rows = [(ids[:max_length], label) for ids, label in examples]
    tokens = torch.full((len(rows), max_length), PAD, dtype=torch.uint8)
    for n, (ids, _) in enumerate(rows):
        tokens[n, : len(ids)] = torch.tensor(ids, dtype=torch.uint8)
    lengths = torch.tensor([len(ids) for ids, _ in rows], dtype=torch.long)
    labels = torch.tensor([label for _, label in rows], dtype=torch.long)
    return Split(tokens=tokens, lengths=lengths, labels=labels)


def read_tsv(path: Path) -> list[tuple[list[int], int]]:
    """Encoded examples of one LRA ListOps TSV file; :class:`DataError` names the file and line."""
    try:
        with open(path, encoding="utf-8") as lines:
            return _parse_lines(path, lines)
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read ListOps file {path}: {exc}") from None


def _parse_lines(path: Path, lines: Iterable[str]) -> list[tuple[list[int], int]]:
    examples = []
    number = 0
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if number == 1:
            if tuple(line.strip().split("\t")) != HEADER:
                raise DataError(f"{path}, line 1: expected LRA's header 'Source<TAB>Target', found {line[:60]!r}")
            continue
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise DataError(
                f"{path}, line {number}: expected 'Source<TAB>Target' (2 tab-separated fields), "
                f"found {len(fields)} field(s); is the file truncated or not LRA ListOps TSV?"
            )
        source, target = fields
        if target.strip() not in LABELS:
            raise DataError(f"{path}, line {number}: label {target.strip()[:20]!r} is not a digit 0-9")
        try:
            ids = encode(source)
            check_brackets(ids)
        except ValueError as exc:
            raise DataError(
                f"{path}, line {number}: {exc}; ListOps sources hold digits, "
                f"{', '.join(generator.OPERATORS)}, ']' and parentheses"
            ) from None
        if not ids:
            raise DataError(f"{path}, line {number}: empty source")
        examples.append((ids, int(target)))
    if number == 0:
        raise DataError(f"{path} is empty; expected LRA's header 'Source<TAB>Target' and examples")
    if not examples:
        raise DataError(f"{path} holds a header but no examples")
    return examples


def split_path(data_dir: Path, split: str) -> Path:
    """Where LRA keeps a split: ``basic_train.tsv``, ``basic_val.tsv``, ``basic_test.tsv``."""
    return data_dir / f"{generator.TASK_STEM}_{split}.tsv"


def load_dir(data_dir: Path, max_length: int) -> Splits:
    """The splits in ``data_dir``, laid out as LRA's ListOps release (``basic_{train,val,test}.tsv``)."""
    expected = ", ".join(split_path(Path(), s).name for s in generator.SPLITS)
    if not data_dir.is_dir():
        raise DataError(
            f"ListOps data directory {data_dir} does not exist; expected a directory holding "
            f"LRA's ListOps TSV files ({expected})"
        )
    missing = [split_path(data_dir, s).name for s in generator.SPLITS if not split_path(data_dir, s).is_file()]
    if missing:
        raise DataError(
            f"ListOps data directory {data_dir} lacks {', '.join(missing)}; expected LRA's files "
            f"{expected}, each with a 'Source<TAB>Target' header (lra_release/listops-1000)"
        )
    return Splits(*(to_split(read_tsv(split_path(data_dir, s)), max_length) for s in generator.SPLITS))


@functools.lru_cache(maxsize=4)
def _generated(
    sizes: tuple[int, int, int], seed: int, min_length: int, max_length: int, max_depth: int, max_args: int
) -> Splits:
    examples = generator.generate_examples(
        sum(sizes), seed=seed, min_length=min_length, max_length=max_length, max_depth=max_depth, max_args=max_args
    )
    encoded = [(encode(generator.to_brackets(tree)), value) for tree, value in examples]
    cut = (sizes[0], sizes[0] + sizes[1])
    parts = (encoded[: cut[0]], encoded[cut[0] : cut[1]], encoded[cut[1] :])
    return Splits(*(to_split(part, max_length) for part in parts))


def generated(config: Mapping[str, Any]) -> Splits:
    """The embedded default: splits drawn by the generator with the profile's seed and lengths.

    Train, validation and test are consecutive runs of one stream of distinct trees, so
    no expression appears in two splits. Results are kept for the life of the process.
    """
    return _generated(
        (int(config["n_train"]), int(config["n_val"]), int(config["n_test"])),
        int(config["data_seed"]), int(config["min_length"]), int(config["max_length"]),
        int(config["max_depth"]), int(config["max_args"]),
    )
