"""The Long Range Arena ListOps generator (Tay et al. 2021; Nangia & Bowman 2018), reimplemented.

An expression is a tree: a leaf is a digit 0-9; an inner node applies one operator to two
or more sub-expressions. The operators are ``[MIN``, ``[MAX``, ``[MED`` (median, truncated
to an integer) and ``[SM`` (sum modulo 10); ``]`` closes an operator. The label of an
example is the value of its expression, so there are ten classes.

The random process is LRA's (``lra_benchmarks/data/listops.py``), seeded with a
:class:`random.Random`:

* a node shallower than ``max_depth`` becomes an operator with probability ``VALUE_P`` =
  0.25, otherwise (and always at ``max_depth``) a uniformly drawn digit;
* an operator takes ``randint(2, max_args)`` arguments and a uniformly drawn operator;
* the root is at depth 1; a tree's *length* counts its operators, digits and ``]`` tokens
  (not the parentheses); only trees with ``min_length < length < max_length`` are kept
  (both bounds exclusive, as in LRA), each distinct tree once, in the order drawn (LRA
  collects them in a ``set``, whose order varies between runs).

Only the order of the draws differs: LRA draws each tree whole and then rejects it by
length; here a tree's shape (which alone sets its length) is drawn first, abandoned as
soon as it is too long, and only a kept shape gets its digits and operators. The kept
trees have LRA's distribution, found many times faster for short ranges; a seed gives
other trees than LRA's script does after ``random.seed``.

Text is written as LRA writes it: the tree is stored as left-nested pairs
``((([MAX, 2), 9), ])`` and each pair is printed in parentheses, so ``[MAX 2 9 ]`` reads
``( ( ( [MAX 2 ) 9 ) ] )`` in a ``Source<TAB>Target`` TSV file with a header line.

Run ``python -m attnbench_plugins.tasks.listops --output-dir DIR`` to write
``basic_train.tsv``, ``basic_val.tsv`` and ``basic_test.tsv`` with LRA's defaults.
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
from collections.abc import Iterator, Sequence
from pathlib import Path

MIN, MAX, MED, SUM_MOD = "[MIN", "[MAX", "[MED", "[SM"
END = "]"
#: The operators, in LRA's order.
OPERATORS: tuple[str, ...] = (MIN, MAX, MED, SUM_MOD)
VALUES = range(10)
#: Probability that a node shallower than ``max_depth`` is an operator rather than a digit.
VALUE_P = 0.25

#: A ListOps tree: a digit, or an operator with its arguments.
Tree = int | tuple[str, tuple["Tree", ...]]

#: The split names and file stem LRA uses (``basic_train.tsv`` …).
SPLITS: tuple[str, ...] = ("train", "val", "test")
TASK_STEM = "basic"


#: A tree's shape: None for a digit, else the shapes of an operator's arguments.
Shape = tuple["Shape", ...] | None


class _TooLong(Exception):
    """A draw outgrew its length budget (it would be rejected, so stop drawing it)."""


def draw_shape(rng: random.Random, depth: int, max_depth: int, max_args: int, limit: float) -> tuple[Shape, int] | None:
    """Draw a tree's shape rooted at ``depth`` with its length, or None once it exceeds ``limit``.

    The shape alone decides the length, so a draw that outgrows ``limit`` (which LRA's
    rejection would discard) is abandoned early without changing what is kept.
    """
    try:
        return _draw_shape(rng, depth, max_depth, max_args, limit)
    except _TooLong:
        return None


def _draw_shape(rng: random.Random, depth: int, max_depth: int, max_args: int, budget: float) -> tuple[Shape, int]:
    r = rng.random() if depth < max_depth else 1.0
    if r > VALUE_P:
        if budget < 1:
            raise _TooLong
        return None, 1
    length = 2  # the operator token and its closing bracket
    children = []
    for _ in range(rng.randint(2, max_args)):
        child, child_length = _draw_shape(rng, depth + 1, max_depth, max_args, budget - length)
        children.append(child)
        length += child_length
    if length > budget:
        raise _TooLong
    return tuple(children), length


def fill(rng: random.Random, shape: Shape) -> Tree:
    """Give every leaf of ``shape`` a uniform digit and every inner node a uniform operator."""
    if shape is None:
        return rng.choice(VALUES)
    args = tuple(fill(rng, child) for child in shape)
    return rng.choice(OPERATORS), args


def evaluate(tree: Tree) -> int:
    """The value of ``tree``: MIN, MAX, median (even counts average, then truncate), sum mod 10."""
    if isinstance(tree, int):
        return tree
    op, args = tree
    values = [evaluate(a) for a in args]
    if op == MIN:
        return min(values)
    if op == MAX:
        return max(values)
    if op == MED:
        return int(statistics.median(values))
    if op == SUM_MOD:
        return sum(values) % 10
    raise ValueError(f"unknown ListOps operator {op!r}; expected one of {', '.join(OPERATORS)}")


def _pieces(tree: Tree) -> Iterator[str]:
    if isinstance(tree, int):
        yield str(tree)
        return
    op, args = tree
    # LRA nests (op, a0), then ((op, a0), a1), …, then (…, ]) and parenthesises every pair.
    yield from "(" * (len(args) + 1)
    yield op
    for arg in args:
        yield from _pieces(arg)
        yield ")"
    yield END
    yield ")"


def to_string(tree: Tree) -> str:
    """``tree`` as LRA's TSV ``Source`` text, e.g. ``( ( ( [MAX 2 ) 9 ) ] )``."""
    return " ".join(_pieces(tree))


def to_brackets(tree: Tree) -> str:
    """``tree`` without LRA's pair parentheses, e.g. ``[MAX 2 9 ]`` (one token per unit of length)."""
    if isinstance(tree, int):
        return str(tree)
    op, args = tree
    return " ".join([op, *(to_brackets(a) for a in args), END])


def parse(text: str) -> Tree:
    """The tree written in ``text``, with or without LRA's pair parentheses.

    ``parse("[SM 3 4 [MAX 1 9 ] ]")`` and ``parse(to_string(tree))`` both work; a text
    that is not exactly one well-formed expression raises ``ValueError``.
    """
    tokens = [t for t in text.split() if t not in ("(", ")")]
    tree, end = _parse_at(tokens, 0)
    if end != len(tokens):
        raise ValueError(f"unexpected {tokens[end]!r} after a complete expression (token {end + 1})")
    return tree


def _parse_at(tokens: list[str], i: int) -> tuple[Tree, int]:
    if i >= len(tokens):
        raise ValueError("expression ends early: an operator lacks its closing ']'")
    token = tokens[i]
    if token in OPERATORS:
        args = []
        i += 1
        while i < len(tokens) and tokens[i] != END:
            arg, i = _parse_at(tokens, i)
            args.append(arg)
        if i >= len(tokens):
            raise ValueError(f"{token} lacks its closing ']'")
        if not args:
            raise ValueError(f"{token} has no arguments")
        return (token, tuple(args)), i + 1
    if len(token) == 1 and token.isdigit():
        return int(token), i + 1
    raise ValueError(f"unexpected token {token!r} (token {i + 1})")


def generate_examples(
    count: int,
    *,
    seed: int,
    min_length: int = 500,
    max_length: int = 2000,
    max_depth: int = 10,
    max_args: int = 10,
) -> list[tuple[Tree, int]]:
    """``count`` distinct trees with ``min_length < length < max_length`` and their values.

    Defaults are LRA's. Shapes are drawn until one falls in the length range, then its
    digits and operators are drawn; a tree already kept is drawn again, as LRA's ``set``
    does.
    """
    if not 0 <= min_length < max_length - 1:
        raise ValueError(f"empty length range: need min_length < length < max_length, got {min_length}, {max_length}")
    rng = random.Random(seed)
    seen: set[Tree] = set()
    examples: list[tuple[Tree, int]] = []
    while len(examples) < count:
        drawn = draw_shape(rng, 1, max_depth, max_args, max_length - 1)
        if drawn is None or drawn[1] <= min_length:
            continue
        tree = fill(rng, drawn[0])
        if tree not in seen:
            seen.add(tree)
            examples.append((tree, evaluate(tree)))
    return examples


def write_tsv(path: Path, examples: Sequence[tuple[Tree, int]]) -> None:
    """Write ``examples`` as LRA does: a ``Source<TAB>Target`` header, then one example a line."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["Source", "Target"])
        writer.writerows((to_string(tree), value) for tree, value in examples)


def main(argv: Sequence[str] | None = None) -> None:
    """Write ``basic_{train,val,test}.tsv`` as LRA's script does (same flags, plus ``--seed``)."""
    parser = argparse.ArgumentParser(
        prog="python -m attnbench_plugins.tasks.listops", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--num-train-samples", type=int, default=96000)
    parser.add_argument("--num-valid-samples", type=int, default=2000)
    parser.add_argument("--num-test-samples", type=int, default=2000)
    parser.add_argument("--max-depth", type=int, default=10)
    parser.add_argument("--max-args", type=int, default=10)
    parser.add_argument("--min-length", type=int, default=500)
    parser.add_argument("--max-length", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = (args.num_train_samples, args.num_valid_samples, args.num_test_samples)
    examples = generate_examples(
        sum(sizes), seed=args.seed, min_length=args.min_length, max_length=args.max_length,
        max_depth=args.max_depth, max_args=args.max_args,
    )
    args.output_dir.mkdir(parents=True, exist_ok=True)
    start = 0
    for split, size in zip(SPLITS, sizes, strict=True):
        write_tsv(args.output_dir / f"{TASK_STEM}_{split}.tsv", examples[start:start + size])
        start += size
