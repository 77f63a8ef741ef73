"""The text-classification task: the Rotten Tomatoes default, aclImdb and TSV folders, bad input, a smoke run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from attnbench_plugins.tasks.text_classification import TASK, data, tokens

import attnbench
from attnbench import plugins
from attnbench.errors import DataError
from attnbench.runner.pairing import Pairing, execute

IMDB = {
    "train/pos/0_9.txt": "A wonderful, moving film.<br /><br />Loved every minute.",
    "train/pos/1_8.txt": "Great acting and a clever script.",
    "train/neg/2_1.txt": "Dull, slow and far too long.",
    "train/neg/3_2.txt": "The worst film I have seen this year.",
    "train/neg/4_3.txt": "Boring.",
    "train/unsup/5_0.txt": "Unlabelled text that must be ignored.",
    "test/pos/0_10.txt": "Brilliant and funny.",
    "test/neg/1_1.txt": "Terrible plot.",
}
TRAIN_TSV = (
    "label\ttext\nsports\tThe match went to extra time.\nworld\tTalks resumed in Geneva.\n"
    "sports\tA late goal won it.\n\nscience\tA new comet was seen.\n"
)
TEST_TSV = "world\tElections were held.\nscience\tThe probe reached Mars.\n"


@pytest.fixture(autouse=True)
def tokenizer_cache(tmp_path, monkeypatch):
    """Trained tokenizers go to a temporary cache, never to the user's."""
    monkeypatch.setenv("ATTNBENCH_CACHE_DIR", str(tmp_path / "cache"))


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, body in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body if isinstance(body, bytes) else body.encode())
    return root


# --- the embedded default -------------------------------------------------------------------------


def test_default_is_the_rotten_tomatoes_reviews_without_plots():
    reviews = data.rotten_tomatoes_reviews()
    assert len(reviews) == 12752  # 12,808 review rows, 56 repeated snippets kept once; 1,097 plots dropped
    counts = torch.bincount(torch.tensor([y for _, y in reviews]))
    assert counts.tolist() == [7368, 5384]  # fresh, rotten (of 7,403 and 5,405 rows)
    texts = {t for t, _ in reviews}
    assert "A three-hour cinema master class." in texts
    assert not any(t.startswith("Vijay Singh Rajput (Amitabh Bachchan)") for t in texts)  # the first plot row
    corpus = data.rotten_tomatoes()
    assert (len(corpus.train), len(corpus.val), len(corpus.test)) == (9752, 1000, 2000)
    assert corpus.labels == ("fresh", "rotten")
    splits = [{t for t, _ in part} for part in (corpus.train, corpus.val, corpus.test)]
    assert not (splits[0] & splits[1] or splits[0] & splits[2] or splits[1] & splits[2])
    assert data.rotten_tomatoes().test == corpus.test  # fixed split


def test_bpe_is_trained_on_train_texts_cached_and_deterministic(tmp_path):
    texts = [t for t, _ in data.rotten_tomatoes().train[:2000]]
    vocab = tokens.vocabulary("bpe", texts, vocab_size=500)
    assert vocab.path is not None and vocab.path.is_file() and vocab.path.is_relative_to(tmp_path / "cache")
    assert 100 < vocab.size <= 500
    ids = vocab.encode(["A wonderful film.", ""], max_length=8)
    assert ids.shape == (2, 8) and int(ids[0, 0]) != tokens.PAD and int(ids[1].abs().sum()) == 0
    assert tokens._train_bpe(texts, 500, 2).to_str() == vocab.tokenizer.to_str()
    byte_ids = tokens.vocabulary("bytes", texts).encode(["é!"], max_length=4)
    assert byte_ids.tolist() == [[0xC3 + 1, 0xA9 + 1, ord("!") + 1, tokens.PAD]]


# --- --data-dir: aclImdb and TSV --------------------------------------------------------------------


def test_aclimdb_layout(tmp_path):
    corpus = data.load_dir(write(tmp_path / "aclImdb", IMDB))
    assert corpus.labels == ("neg", "pos")
    assert len(corpus.train) + len(corpus.val) == 5 and len(corpus.val) == 1  # unsup ignored; 10% (≥1) held out
    assert sorted(corpus.test) == [("Brilliant and funny.", 1), ("Terrible plot.", 0)]
    everything = dict(corpus.train + corpus.val)
    assert everything["A wonderful, moving film. Loved every minute."] == 1  # <br /> tags become spaces
    assert everything["Boring."] == 0


def test_tsv_layout_with_string_labels(tmp_path):
    root = write(tmp_path / "news", {"train.tsv": TRAIN_TSV, "test.tsv": TEST_TSV, "dev.tsv": "sports\tA draw.\n"})
    corpus = data.load_dir(root)
    assert corpus.labels == ("science", "sports", "world")  # sorted ids
    assert corpus.train == [("The match went to extra time.", 1), ("Talks resumed in Geneva.", 2),
                            ("A late goal won it.", 1), ("A new comet was seen.", 0)]
    assert corpus.val == [("A draw.", 1)] and corpus.test == [("Elections were held.", 2), ("The probe reached Mars.", 0)]
    (root / "dev.tsv").unlink()
    assert len(data.load_dir(root).val) == 1  # no dev/valid file: a held-out share of train


@pytest.mark.parametrize(("files", "message"), [
    ({"test.tsv": TEST_TSV}, r"lacks train\.tsv; expected either TSV files"),
    ({"train.tsv": TRAIN_TSV}, r"lacks test\.tsv"),
    ({"train.tsv": TRAIN_TSV, "test.tsv": TEST_TSV + "world\tone\ttoo many\n"},
     r"test\.tsv, line 3: 3 tab-separated field\(s\); expected 2 fields"),
    ({"train.tsv": "sports only a text\n", "test.tsv": TEST_TSV}, r"train\.tsv, line 1: 1 tab-separated field\(s\)"),
    ({"train.tsv": TRAIN_TSV, "test.tsv": "\n\n"}, r"test\.tsv holds no examples"),
    ({"train.tsv": TRAIN_TSV, "test.tsv": "weather\tRain.\n"},
     r"test\.tsv, line 1: label 'weather', which train\.tsv never uses"),
    ({"train.tsv": TRAIN_TSV, "test.tsv": b"world\tcaf\xe9\n"}, r"test\.tsv is not utf-8 text \(byte 9"),
    ({"train/pos/a.txt": "good", "train/neg/b.txt": "bad"},
     r"test does not exist; expected the aclImdb layout test/<label>/\*\.txt"),
    ({"train/pos/a.txt": "good", "train/neg/b.txt": "bad", "test/pos/x.md": "x"}, r"test holds no <label>/\*\.txt files"),
    ({"train/pos/a.txt": "good", "train/neg/b.txt": b"\xff\xfebad", "test/pos/c.txt": "ok"}, r"b\.txt is not utf-8 text"),
    ({"train/pos/a.txt": "good", "train/neg/b.txt": "  ", "test/pos/c.txt": "ok"},
     r"b\.txt is empty; expected the text of one review"),
    ({"train/pos/a.txt": "good", "test/pos/c.txt": "ok", "test/neg/d.txt": "no"}, r"label folder\(s\) neg that train/ lacks"),
    ({"README": "nothing here"}, r"holds no text-classification data; expected either TSV files"),
])
def test_bad_data_dir_is_one_line_data_error(tmp_path, files, message):
    root = write(tmp_path / "data", files)
    with pytest.raises(DataError, match=message) as info:
        data.load_dir(root)
    assert "\n" not in str(info.value)


def test_bad_data_dir_stops_the_pairing_before_training(tmp_path):
    root = write(tmp_path / "data", {"train.tsv": TRAIN_TSV, "test.tsv": TEST_TSV + "world\n"})
    with pytest.raises(DataError, match=re.escape(f"{root / 'test.tsv'}, line 3")):
        execute(Pairing(task=TASK.name, variant="sdpa", profile="smoke", seed=0, data_dir=str(root)), torch.device("cpu"))


# --- the task ---------------------------------------------------------------------------------------


def test_task_is_registered_with_profiles_and_requirements():
    assert plugins.get_task("text-classification") is TASK
    assert isinstance(TASK, attnbench.Task) and TASK.domain == "nlp"
    assert set(TASK.profiles) == set(attnbench.PROFILES)
    for profile in TASK.profiles.values():
        assert json.loads(json.dumps(profile)) == profile
    assert TASK.metric.name == "accuracy" and TASK.requires == frozenset({"padding_mask"})
    assert "12,752" in TASK.description and "aclImdb" in TASK.description


@pytest.mark.slow
def test_smoke_run_on_default_and_on_a_tsv_dir(tmp_path):
    row = execute(Pairing(task=TASK.name, variant="sdpa", profile="smoke", seed=0), torch.device("cpu"))
    assert row.status == "ok", row.error
    assert set(row.metrics) == {"accuracy", "macro_f1", "val_accuracy", "majority_baseline", "final_loss"}
    assert 0.5 < row.metrics["majority_baseline"] < 0.65  # fresh is the larger class
    assert 0.0 <= row.metrics["macro_f1"] <= 1.0 and row.efficiency["flops_per_example"] > 0

    root = write(tmp_path / "news", {"train.tsv": TRAIN_TSV, "test.tsv": TEST_TSV, "valid.tsv": TEST_TSV})
    tsv = execute(Pairing(task=TASK.name, variant="linear", profile="smoke", seed=0, data_dir=str(root)), torch.device("cpu"))
    assert tsv.status == "ok", tsv.error
    assert tsv.metrics["majority_baseline"] == 0.0  # train's majority (sports) never occurs in test
