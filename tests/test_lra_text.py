"""LRA text: byte ids, the aclImdb layout, its errors, the real news default, and a smoke pairing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from attnbench_plugins.sources import news
from attnbench_plugins.tasks.lra_text import TASK, data

import attnbench
from attnbench import plugins
from attnbench.errors import DataError
from attnbench.nn import SequenceClassifier
from attnbench.runner.pairing import Pairing, execute

REVIEWS = {
    ("train", "pos"): ["A wonderful film.", "Loved it — «très bien»!", "Great cast, great score."],
    ("train", "neg"): ["Dull.", "I walked out after an hour.", "Wooden acting, no plot."],
    ("test", "pos"): ["Brilliant.", "Would watch again."],
    ("test", "neg"): ["Awful.", ""],
}


def write_imdb(root: Path, reviews: dict = REVIEWS) -> Path:
    """An aclImdb tree as Stanford ships it: <split>/<pos|neg>/<id>_<rating>.txt, plus train/unsup."""
    for (split, label), texts in reviews.items():
        folder = root / split / label
        folder.mkdir(parents=True, exist_ok=True)
        for n, text in enumerate(texts):
            (folder / f"{n}_{8 if label == 'pos' else 2}.txt").write_bytes(text.encode("utf-8"))
    (root / "train" / "unsup").mkdir(parents=True, exist_ok=True)
    (root / "train" / "unsup" / "0_0.txt").write_text("not labelled")
    return root


def test_bytes_become_lra_ids_cut_and_padded():
    raw, lengths = data.to_bytes(["hé".encode(), b"abcdef"], 4)
    ids, mask = data.byte_ids(raw, lengths, torch.device("cpu"))
    assert ids.tolist() == [[ord("h") + 2, 0xC3 + 2, 0xA9 + 2, 0], [ord(c) + 2 for c in "abcd"]]
    assert mask.tolist() == [[True, True, True, False], [True] * 4]
    assert data.VOCAB_SIZE == 258 and data.PAD == 0


def test_imdb_layout_round_trip(tmp_path):
    splits = data.load_imdb(write_imdb(tmp_path / "aclImdb"), length=32, sizes=(100, 100, 100), data_seed=0)
    assert splits.classes == ("neg", "pos")
    assert len(splits.train) + len(splits.val) == 6 and len(splits.val) == 1  # 10% of train, at least one
    assert len(splits.test) == 4 and sorted(splits.test.labels.tolist()) == [0, 0, 1, 1]
    ids, mask, labels = splits.test.batch(torch.arange(4), torch.device("cpu"))
    texts = {bytes((ids[n][mask[n]] - 2).tolist()).decode(): int(labels[n]) for n in range(4)}
    assert texts == {"Awful.": 0, "": 0, "Brilliant.": 1, "Would watch again.": 1}
    assert ids.shape == (4, 32)

    cut = data.load_imdb(tmp_path / "aclImdb", length=3, sizes=(100, 100, 1), data_seed=0)
    assert cut.test.raw.shape == (1, 3) and len(cut.test) == 1 and int(cut.test.lengths.max()) <= 3


def test_empty_review_gives_finite_logits_through_the_cls_token():
    spec = plugins.get_attention("sdpa")
    model = SequenceClassifier(spec, vocab_size=data.VOCAB_SIZE, num_classes=2, max_len=9, dim=16, depth=1,
                               heads=2, ff_dim=32, pooling="cls")
    raw, lengths = data.to_bytes([b"", b"fine"], 8)
    ids, mask = data.byte_ids(raw, lengths, torch.device("cpu"))
    assert torch.isfinite(model(ids, mask)).all()


@pytest.mark.parametrize(("damage", "message"), [
    (lambda root: (root / "test" / "pos" / "0_8.txt").write_bytes(b"caf\xe9 au lait"), r"0_8\.txt is not UTF-8 text"),
    (lambda root: [p.unlink() for p in (root / "train" / "neg").glob("*.txt")], r"train/neg holds no \.txt files"),
    (lambda root: [p.unlink() for p in (root / "test" / "pos").iterdir()] and (root / "test" / "pos").rmdir(),
     r"lacks the folder test/pos/; expected the aclImdb layout"),
])
def test_bad_imdb_tree_is_one_line_data_error(tmp_path, damage, message):
    root = write_imdb(tmp_path / "aclImdb")
    damage(root)
    with pytest.raises(DataError, match=message) as info:
        data.load_imdb(root, length=16, sizes=(10, 10, 10), data_seed=0)
    assert "\n" not in str(info.value)


def test_missing_data_dir_says_what_it_expected(tmp_path):
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'nowhere'} does not exist") + ".*aclImdb layout"):
        data.load_imdb(tmp_path / "nowhere", length=16, sizes=(10, 10, 10), data_seed=0)


def test_news_default_is_real_and_sized_as_described():
    articles = news.news_articles()
    assert len(articles) == news.NUM_ARTICLES == 3824
    assert len(news.outlets()) == 9 and "tass.com" in news.outlets() and "bbc.co.uk" in news.outlets()
    assert sum(a.outlet == "aljazeera.com" for a in articles) == 559
    texts, labels, classes = data.news_documents()
    assert len(texts) == 3773 and len(set(texts)) == len(texts) and min(map(len, texts)) >= data.MIN_NEWS_BYTES
    assert set(labels) == set(range(9)) and classes == news.outlets()

    quick = TASK.profiles["quick"]
    splits = data.news_splits(quick["length"], (quick["n_train"], quick["n_val"], quick["n_test"]), quick["data_seed"])
    assert (len(splits.train), len(splits.val), len(splits.test)) == (2773, 250, 750)
    assert 0.1 < splits.test.majority_fraction() < 0.2
    # Splits are disjoint articles: no test text reappears in training.
    train_rows = {bytes(r.tolist()) for r in splits.train.raw}
    assert not any(bytes(r.tolist()) in train_rows for r in splits.test.raw)


def test_task_fields_and_profiles():
    assert plugins.get_task("lra-text") is TASK and isinstance(TASK, attnbench.Task)
    assert set(TASK.profiles) == set(attnbench.PROFILES)
    for profile in TASK.profiles.values():
        assert json.loads(json.dumps(profile)) == profile
    full = TASK.profiles["full"]
    assert (full["length"], full["dim"], full["depth"], full["heads"], full["ff_dim"]) == (4000, 256, 4, 4, 1024)
    assert TASK.profiles["quick"]["length"] >= 256


def test_smoke_pairing_is_ok_on_news_and_on_imdb(tmp_path):
    row = execute(Pairing(task="lra-text", variant="sdpa", profile="smoke", seed=0), torch.device("cpu"))
    assert row.status == "ok", row.error
    assert 0.0 <= row.metrics["accuracy"] <= 1.0 and 0.1 < row.metrics["majority_baseline"] < 0.3

    root = write_imdb(tmp_path / "aclImdb")
    row = execute(Pairing(task="lra-text", variant="softmax", profile="smoke", seed=0, data_dir=str(root)),
                  torch.device("cpu"))
    assert row.status == "ok", row.error
    assert row.metrics["majority_baseline"] == 0.5  # two negative, two positive test reviews
