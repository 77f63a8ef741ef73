"""LRA retrieval: the news-view pairs, LRA's AAN TSV files, their errors, the two-tower model, a smoke pairing."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from attnbench_plugins.tasks.lra_retrieval import TASK, DualEncoder, data

import attnbench
from attnbench import plugins
from attnbench.errors import DataError
from attnbench.runner.pairing import Pairing, execute

# As LRA's release writes them: no header, float labels, ids, texts as Python bytes literals.
AAN_LINES = [
    "1.0\tP05-1001\tW04-3250\tb'Statistical machine translation with phrases.'\tb'Phrase-based decoding, revisited.'",
    "0.0\tP05-1001\tJ93-2004\tb'Statistical machine translation with phrases.'\tb'Building a treebank of English.'",
    "1\tN03-1017\tP02-1040\tb'Phrase tables \\xc3\\xa9t\\xc3\\xa9'\tb'BLEU: a method for evaluation.'",
    "0\tN03-1017\tC96-2141\tb'Phrase tables \\xc3\\xa9t\\xc3\\xa9'\tb'HMM-based word alignment.'",
]


def write_aan(root: Path, lines: list[str] = AAN_LINES, **replace: list[str] | bytes) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for split in data.AAN_SPLITS:
        body = replace.get(split, lines)
        raw = body if isinstance(body, bytes) else "".join(f"{line}\n" for line in body).encode()
        data.aan_path(root, split).write_bytes(raw)
    return root


def test_views_are_disjoint_alternate_sentences():
    a, b = data.views("One fish. Two fish! Red fish? Blue fish.  ")
    assert (a, b) == (b"One fish. Red fish?", b"Two fish! Blue fish.")


@pytest.mark.parametrize("hard", [0.0, 0.5, 1.0])
def test_negative_partners_are_a_derangement_within_outlet_when_hard(hard):
    outlets = [n % 3 for n in range(60)] + [7]  # outlet 7 has a single article
    partner = data.negative_partners(outlets, hard, np.random.default_rng(0))
    assert sorted(partner.tolist()) == list(range(61)) and not (partner == np.arange(61)).any()
    same = np.mean([outlets[i] == outlets[p] for i, p in enumerate(partner)])
    if hard == 1.0:
        assert same > 0.95  # all but the lone article's cycle
    if hard == 0.0:
        assert same < 0.6


def test_news_pairs_are_balanced_and_only_the_relation_predicts_the_label():
    pairs, outlets = data.news_views()
    assert len(pairs) == 3693 and min(min(len(a), len(b)) for a, b in pairs) >= data.MIN_VIEW_BYTES
    quick = TASK.profiles["quick"]
    splits = data.news_splits(quick["length"], (quick["n_train"], quick["n_val"], quick["n_test"]),
                              quick["data_seed"], quick["hard_negatives"])
    assert (len(splits.train), len(splits.val), len(splits.test)) == (5986, 400, 1000)
    for split in (splits.train, splits.test):
        assert split.positive_fraction() == 0.5
        # Every document appears equally often under each label, on either side.
        for raw in (split.raw1, split.raw2):
            seen = Counter((bytes(r.tolist()), int(y)) for r, y in zip(raw, split.labels, strict=True))
            docs = {doc for doc, _ in seen}
            assert all(seen[(doc, 0)] == seen[(doc, 1)] for doc in docs)
    train_docs = {bytes(r.tolist()) for r in splits.train.raw1}
    assert not any(bytes(r.tolist()) in train_docs for r in splits.test.raw1)


def test_aan_files_round_trip(tmp_path):
    splits = data.load_aan(write_aan(tmp_path / "aan"), length=24, sizes=(10, 10, 3), data_seed=0)
    assert splits.train.labels.tolist() == [1, 0, 1, 0] and len(splits.test) == 3
    ids1, mask1, ids2, mask2, labels = splits.train.batch(torch.arange(4), torch.device("cpu"))
    assert ids1.shape == ids2.shape == (4, 24) and bool(mask1.all())  # texts longer than 24 bytes are cut
    assert bytes((ids1[0] - 2).tolist()) == b"b'Statistical machine tra"[:24]
    assert bytes((ids2[1][mask2[1]] - 2).tolist()) == b"b'Building a treebank of "[:24]


@pytest.mark.parametrize(("split", "body", "message"), [
    ("eval", AAN_LINES[:2] + ["1.0\tP05-1001\tb'only one text'"],
     r"new_aan_pairs\.eval\.tsv, line 3: 3 tab-separated field\(s\); expected 5: label<TAB>id1<TAB>id2<TAB>text1<TAB>text2"),
    ("test", AAN_LINES + ["yes\ta\tb\tc\td"], r"new_aan_pairs\.test\.tsv, line 5: label 'yes'; expected 0 or 1"),
    ("train", [], r"new_aan_pairs\.train\.tsv holds no pairs \(empty split\)"),
    ("train", "\n".join(AAN_LINES[:1]).encode() + b"\n0\ta\tb\tcaf\xe9\tx\n",
     r"new_aan_pairs\.train\.tsv, line 2: bytes that are not UTF-8 .*; expected UTF-8 text"),
])
def test_bad_aan_file_is_one_line_data_error_naming_file_and_line(tmp_path, split, body, message):
    root = write_aan(tmp_path / "aan", **{split: body})
    with pytest.raises(DataError, match=message) as info:
        data.load_aan(root, length=16, sizes=(10, 10, 10), data_seed=0)
    assert "\n" not in str(info.value)


def test_missing_aan_file_or_dir_is_a_data_error(tmp_path):
    root = write_aan(tmp_path / "aan")
    data.aan_path(root, "test").unlink()
    with pytest.raises(DataError, match=r"lacks new_aan_pairs\.test\.tsv; expected LRA's AAN retrieval files"):
        data.load_aan(root, length=16, sizes=(10, 10, 10), data_seed=0)
    with pytest.raises(DataError, match=r"does not exist.*new_aan_pairs\.train\.tsv"):
        data.load_aan(tmp_path / "nowhere", length=16, sizes=(10, 10, 10), data_seed=0)


def test_two_towers_share_one_encoder_and_swap_consistently():
    torch.manual_seed(0)
    model = DualEncoder(plugins.get_attention("sdpa"), length=8, dim=16, depth=1, heads=2, ff_dim=32,
                        dropout=0.0, pooling="mean").eval()
    ids = torch.randint(2, 258, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.bool)
    u = model.encoder.encode(ids[:1], mask[:1])
    v = model.encoder.encode(ids[1:], mask[1:])
    expected = model.head(torch.cat([u, v, u * v, u - v], dim=-1))
    assert torch.allclose(model(ids[:1], mask[:1], ids[1:], mask[1:]), expected, atol=1e-6)
    assert model.head[0].in_features == 4 * 16
    assert not model.encoder.position_embedding.weight.requires_grad  # LRA's fixed sinusoids


def test_task_fields_and_profiles():
    assert plugins.get_task("lra-retrieval") is TASK and isinstance(TASK, attnbench.Task)
    assert set(TASK.profiles) == set(attnbench.PROFILES)
    for profile in TASK.profiles.values():
        assert json.loads(json.dumps(profile)) == profile
    full = TASK.profiles["full"]
    assert (full["length"], full["dim"], full["depth"], full["heads"], full["ff_dim"], full["pooling"]) == (
        4000, 128, 4, 4, 512, "cls")
    assert TASK.profiles["quick"]["length"] >= 256


def test_smoke_pairing_is_ok_on_news_and_on_aan(tmp_path):
    row = execute(Pairing(task="lra-retrieval", variant="sdpa", profile="smoke", seed=0), torch.device("cpu"))
    assert row.status == "ok", row.error
    assert 0.0 <= row.metrics["accuracy"] <= 1.0 and row.metrics["chance"] == 0.5
    assert row.metrics["majority_baseline"] == 0.5

    root = write_aan(tmp_path / "aan")
    row = execute(Pairing(task="lra-retrieval", variant="softmax", profile="smoke", seed=0, data_dir=str(root)),
                  torch.device("cpu"))
    assert row.status == "ok", row.error
