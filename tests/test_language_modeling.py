"""The language-modeling task through the public API and the CLI: WikiText files from --data-dir,
the embedded corpus split by document, bits per byte at 1x/2x/4x, and one-line errors for bad files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from attnbench_plugins.tasks.language_modeling import data

from attnbench.errors import DataError
from attnbench.runner import Pairing, execute
from attnbench.training.next_token import IGNORE

CPU = torch.device("cpu")

#: One WikiText article: headings as WikiText writes them, with a space before the line end.
ARTICLE = "\n".join([
    " = {title} = ",
    "",
    " {title} is a small town on the river , known for its bridge — « le pont » — and its café . ",
    "",
    " = = History = = ",
    "",
    " The town was founded in 1{n}03 . Its market @-@ place is still used every week . ",
    "",
])


def write_wikitext(root: Path, articles: int = 6) -> Path:
    """WikiText's three files, a few short articles each (with multi-byte characters, as WikiText has)."""
    root.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", articles), ("valid", 2), ("test", 2)):
        text = "\n".join(ARTICLE.format(title=f"{split.title()} Town {i}", n=i) for i in range(count))
        (root / f"wiki.{split}.tokens").write_text("\n" + text, encoding="utf-8")
    return root


def run(data_dir: Path | None, tmp_path: Path, **overrides) -> object:
    pairing = Pairing(task="language-modeling", variant="sdpa", profile="smoke", seed=0,
                      data_dir=str(data_dir) if data_dir else None, overrides=tuple(sorted(overrides.items())))
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return execute(pairing, CPU, workdir=work)


def test_wikitext_files_train_and_score_bits_per_byte_at_three_lengths(tmp_path):
    row = run(write_wikitext(tmp_path / "wt"), tmp_path, length=16, eval_bytes=0)
    assert row.status == "ok", row.error
    m = row.metrics
    for key in ("bits_per_byte", "bits_per_byte@2x", "bits_per_byte@4x", "val_bits_per_byte", "unigram_bpb"):
        assert 0 < m[key] < 12, (key, m)
    assert m["uniform_bpb"] == 8.0
    record = json.loads(Path(row.artifacts["extrapolation"]).read_text())
    assert record["lengths"] == {"1x": 16, "2x": 32, "4x": 64} and not record["not_evaluated"]


def test_plain_train_valid_test_txt_files_are_read_too(tmp_path):
    root = write_wikitext(tmp_path / "wt")
    for split in data.SPLITS:
        (root / f"wiki.{split}.tokens").rename(root / f"{split}.txt")
    corpus = data.load_dir(root)
    assert len(corpus.train.tokens.unique()) > 20


def test_wikitext_articles_are_the_documents_and_never_cut():
    text = "\n" + "\n".join(ARTICLE.format(title=f"Town {i}", n=i) for i in range(3))
    docs = data.documents_of(text)
    assert len(docs) == 3  # section headings (= = History = =) do not start a document
    assert all(d.lstrip().startswith(f"= Town {i} =".encode()) for i, d in enumerate(docs))
    assert b"".join(docs) == text[1:].encode("utf-8")  # only the blank first line is left out
    stream = data.Stream.of(docs)
    assert int((stream.tokens == data.EOD).sum()) == 3
    assert stream.documents.unique().tolist() == [0, 1, 2]
    split = stream.windows(32, score_eod=False)
    assert split.documents is not None and split.documents.shape == split.inputs.shape
    assert not bool((split.targets == data.EOD).any()) and bool((split.targets == IGNORE).any())


def test_the_embedded_corpus_is_split_by_document_with_hamlet_in_training():
    corpus = data.embedded(valid_docs=20, test_docs=30, data_seed=1)
    assert int(corpus.test.documents.max()) + 1 == 30 and int(corpus.valid.documents.max()) + 1 == 20
    train = bytes(corpus.train.tokens[corpus.train.tokens != data.EOD].to(torch.uint8).tolist())
    assert b"To be, or not to be" in train  # Hamlet
    test_docs = [bytes(corpus.test.tokens[corpus.test.documents == d][:-1].to(torch.uint8).tolist()) for d in range(3)]
    assert all(len(doc) >= data.MIN_NEWS_BYTES and doc not in train for doc in test_docs)


@pytest.mark.parametrize("problem", ["missing", "empty", "undecodable"])
def test_a_bad_file_is_one_line_naming_it(problem, tmp_path):
    root = write_wikitext(tmp_path / "wt")
    target = root / "wiki.valid.tokens"
    if problem == "missing":
        target.unlink()
    elif problem == "empty":
        target.write_text("  \n\n")
    else:
        target.write_bytes("caf\u00e9".encode("latin-1") + b"\n")
    with pytest.raises(DataError) as info:
        run(root, tmp_path)
    message = str(info.value)
    assert "\n" not in message and target.name in message, message
    if problem == "missing":
        assert "valid.txt" in message  # both names it looked for


def test_the_cli_refuses_a_data_dir_without_the_files_in_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "attnbench", "run", "--tasks", "language-modeling", "--variants", "sdpa",
         "--profile", "smoke", "--data-dir", str(tmp_path), "--store", str(tmp_path / "r.sqlite")],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode != 0
    assert "wiki.train.tokens" in proc.stderr + proc.stdout and "Traceback" not in proc.stderr, proc.stderr
