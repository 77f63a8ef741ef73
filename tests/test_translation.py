"""The translation task: the embedded real pairs, Moses-style files, bad input, decoding, and smoke runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import sacrebleu
import torch
from attnbench_plugins.tasks.translation import TASK, corpus, data, task
from attnbench_plugins.tasks.translation.model import Seq2SeqTransformer, beam_search, greedy

import attnbench
import attnbench.nn
from attnbench import plugins
from attnbench.errors import DataError
from attnbench.runner.meter import Meter
from attnbench.runner.pairing import Pairing, execute
from attnbench.specs import RunContext

EN = ["Hello world.", "The cat sleeps.", "Save and continue editing", "Delete selected items",
      "two hundred and one", "Add another user"]
FR = ["Bonjour le monde.", "Le chat dort.", "Enregistrer et continuer les modifications",
      "Supprimer les éléments sélectionnés", "deux cent un", "Ajouter un autre utilisateur"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Tokenizers trained here go to a temporary cache, not the user's."""
    monkeypatch.setenv("ATTNBENCH_CACHE_DIR", str(tmp_path / "cache"))


class Progress:
    def __init__(self) -> None:
        self.total = 0
        self.losses: list[float] = []

    def start(self, total: int, description: str = "") -> None:
        self.total = total

    def advance(self, steps: int = 1, **info: float) -> None:
        self.losses.append(info["loss"])


def make_context(tmp_path: Path, *, variant: str = "sdpa", data_dir: Path | None = None) -> RunContext:
    spec = plugins.get_attention(variant)
    return RunContext(
        attention=spec, make_attention=lambda cfg: attnbench.nn.build_attention(spec, cfg),
        device=torch.device("cpu"), seed=0, profile="smoke", config=TASK.profiles["smoke"], data_dir=data_dir,
        progress=Progress(), workdir=tmp_path, meter=Meter(torch.device("cpu")),
    )


def write_moses(root: Path, suffixes=("en", "fr"), valid_stem: str = "dev", lines: int = 6) -> Path:
    """A parallel corpus exactly as IWSLT/WMT preparation scripts leave it: one sentence a line."""
    root.mkdir(parents=True, exist_ok=True)
    for stem, rows in (("train", slice(0, lines)), (valid_stem, slice(0, 2)), ("test", slice(2, 5))):
        for suffix, side in zip(suffixes, (EN, FR), strict=True):
            (root / f"{stem}.{suffix}").write_text("".join(f"{s}\n" for s in side[rows]), encoding="utf-8")
    return root


# --- the embedded default ---------------------------------------------------------------------------

PO = r'''# header comment
msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\n"

#: admin.py:12
msgid "Save"
msgstr "Enregistrer"

#, python-format
msgid ""
"Ensure this value has at most %(limit)d "
"characters."
msgstr ""
"Assurez-vous que cette valeur comporte\n"
"au plus %(limit)d caractères."

#, fuzzy
msgid "Guessed"
msgstr "Deviné"

msgid "Untranslated"
msgstr ""

msgctxt "month name"
msgid "May"
msgstr "mai"

msgid "%(count)s item"
msgid_plural "%(count)s items"
msgstr[0] "%(count)s élément"
msgstr[1] "%(count)s éléments"

#~ msgid "Old"
#~ msgstr "Vieux"
msgid "Say \"hi\""
msgstr "Dites « salut »"
'''


def test_po_reader_joins_lines_and_skips_fuzzy_empty_and_obsolete(tmp_path):
    path = tmp_path / "django.po"
    path.write_text(PO, encoding="utf-8")
    assert corpus.read_po(path) == [
        ("Save", "Enregistrer"),
        ("Ensure this value has at most %(limit)d characters.",
         "Assurez-vous que cette valeur comporte au plus %(limit)d caractères."),
        ("May", "mai"),
        ("%(count)s item", "%(count)s élément"),
        ("%(count)s items", "%(count)s éléments"),
        ('Say "hi"', "Dites « salut »"),
    ]


def test_default_mix_is_real_sized_as_described_and_split_without_leaks():
    pairs = data.default_from_config(TASK.profiles["quick"])
    counts = {name: sum(o == name for s in data.SPLITS for o in pairs.origin[s]) for name in corpus.SOURCES}
    assert counts == {name: task.DEFAULT_SIZES[name] for name in corpus.SOURCES}
    assert {s: pairs.size(s) for s in data.SPLITS} == {s: task.DEFAULT_SIZES[s] for s in data.SPLITS}
    assert f"{sum(counts.values()):,} pairs" in TASK.description
    english = [{s.casefold() for s in pairs.src[split]} for split in data.SPLITS]
    assert not (english[0] & english[1] or english[0] & english[2] or english[1] & english[2])
    everything = {(s, t) for split in data.SPLITS for s, t in zip(pairs.src[split], pairs.tgt[split], strict=True)}
    assert ("Spain", "Espagne") in everything  # CLDR territory
    assert ("Czech", "Tchèque") in everything  # Django's language list
    assert ("Delete", "Supprimer") in everything  # Django admin
    for split in data.SPLITS:
        assert set(pairs.origin[split]) == set(corpus.SOURCES)  # every source in every split
        assert all(max(len(s), len(t)) <= 80 for s, t in zip(pairs.src[split], pairs.tgt[split], strict=True))
    assert corpus._say(1984, "year", "en") == "nineteen eighty-four"
    assert corpus._say(1984, "year", "fr") == "mille neuf cent quatre-vingt-quatre"


def test_tokenizer_is_deterministic_cached_and_round_trips(tmp_path):
    cache = tmp_path / "tok"
    first = data.train_tokenizer(EN, FR, 300, cache)
    assert len(list(cache.glob("bpe-300-*.json"))) == 1
    again = data.train_tokenizer(EN, FR, 300, cache)
    assert first.to_str() == again.to_str() == data._train_bpe([*EN, *FR], 300).to_str()
    encoded = data.encode(first, ["Supprimer les éléments"], ["Ajouter « un » élément"], 48, drop_long=False)
    assert encoded.tgt[0][0] == data.BOS and encoded.tgt[0][-1] == data.EOS
    assert data.decode(first, [encoded.src[0], encoded.tgt[0][1:]]) == ["Supprimer les éléments", "Ajouter « un » élément"]


# --- Moses-style files -------------------------------------------------------------------------------


def test_moses_files_with_language_suffixes(tmp_path):
    pairs = data.load_dir(write_moses(tmp_path / "corpus"))
    assert pairs.direction == ("en", "fr")
    assert pairs.src["train"] == EN and pairs.tgt["train"] == FR
    assert pairs.src["valid"] == EN[:2] and pairs.tgt["test"] == FR[2:5]


def test_moses_src_tgt_and_direction_from_directory_name(tmp_path):
    pairs = data.load_dir(write_moses(tmp_path / "plain", suffixes=("src", "tgt"), valid_stem="valid"))
    assert pairs.direction == ("src", "tgt") and pairs.tgt["valid"] == FR[:2]
    # fairseq's IWSLT folder names the direction: German source, English target.
    root = write_moses(tmp_path / "iwslt14.tokenized.de-en", suffixes=("en", "de"))
    pairs = data.load_dir(root)
    assert pairs.direction == ("de", "en") and pairs.src["train"] == FR
    assert data.load_dir(write_moses(tmp_path / "wmt14_fr_en", suffixes=("en", "fr"))).direction == ("fr", "en")


def test_only_newlines_end_sentences(tmp_path):
    root = write_moses(tmp_path / "corpus")
    # Windows line ends, and a U+2028 inside a sentence: still six pairs, aligned.
    (root / "train.en").write_bytes("".join(f"{s}\r\n" for s in ["A\u2028B", *EN[1:]]).encode())
    pairs = data.load_dir(root)
    assert pairs.src["train"] == ["A\u2028B", *EN[1:]] and pairs.tgt["train"] == FR


def _corrupt(root: Path, case: str) -> None:
    if case == "missing":
        (root / "test.fr").unlink()
    elif case == "mismatch":
        (root / "train.fr").write_text("".join(f"{s}\n" for s in FR[:4]), encoding="utf-8")
    elif case == "empty":
        (root / "dev.en").write_text("", encoding="utf-8")
        (root / "dev.fr").write_text("", encoding="utf-8")
    elif case == "encoding":
        (root / "test.en").write_bytes("Caf\u00e9\n".encode("latin-1") + b"x\nyy\n")


@pytest.mark.parametrize(("case", "pattern"), [
    ("missing", r"test\.fr does not exist; expected it beside test\.en"),
    ("mismatch", r"train\.en has 6 lines but .*train\.fr has 4; expected parallel files"),
    ("empty", r"dev\.en and .*dev\.fr hold no sentence pairs .*expected at least one sentence"),
    ("encoding", r"test\.en is not utf-8 text \(byte 3: .*\); expected UTF-8 text"),
])
def test_bad_input_is_one_line_data_error_before_training(tmp_path, case, pattern):
    root = write_moses(tmp_path / "corpus")
    _corrupt(root, case)
    ctx = make_context(tmp_path, data_dir=root)
    with pytest.raises(DataError, match=pattern) as info:
        TASK.run(ctx)
    assert "\n" not in str(info.value) and str(root) in str(info.value)
    assert ctx.progress.total == 0  # nothing trained


def test_directory_without_train_files_says_what_it_expected(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "train.txt").write_text("x\n")
    (tmp_path / "other" / "notes").write_text("x\n")
    with pytest.raises(DataError, match=r"1 suffix\(es\) \(txt\); expected exactly two"):
        data.load_dir(tmp_path / "other")
    with pytest.raises(DataError, match="does not exist or is not a directory; expected Moses-style"):
        data.load_dir(tmp_path / "nowhere")


# --- decoding ----------------------------------------------------------------------------------------


class ScriptedModel(torch.nn.Module):
    """A 'model' whose next-token probabilities depend only on the prefix, as a table.

    Greedy takes A (0.6), then A (0.35), then </s>: probability 0.21. The better sentence
    B </s> (0.4 x 0.9 = 0.36) starts with the less likely token; beam 2 must find it.
    """

    A, B = 3, 4
    TABLE = {(): {A: 0.6, B: 0.4}, (A,): {A: 0.35, B: 0.34, data.EOS: 0.31}, (B,): {data.EOS: 0.9, A: 0.1}}

    def __init__(self) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(5, 1)
        self.max_len = 10

    def encode(self, src, src_mask):
        return torch.zeros(src.shape[0], src.shape[1], 1)

    def decode(self, tgt_in, memory, src_mask, tgt_mask=None):
        logits = torch.full((tgt_in.shape[0], tgt_in.shape[1], 5), -30.0)
        for row, prefix in enumerate(tgt_in[:, 1:].tolist()):
            key = tuple(t for t in prefix if t != data.PAD)
            for token, p in self.TABLE.get(key, {data.EOS: 1.0}).items():
                logits[row, -1, token] = math.log(p)
        return logits


def test_beam_search_finds_what_greedy_misses():
    model, src = ScriptedModel(), torch.tensor([[5, 6], [7, 0]])
    mask = src != data.PAD
    a, b, eos = ScriptedModel.A, ScriptedModel.B, data.EOS
    assert greedy(model, src, mask) == [[a, a, eos], [a, a, eos]]
    assert beam_search(model, src, mask, beam=1) == greedy(model, src, mask)
    assert beam_search(model, src, mask, beam=2, length_penalty=0.0) == [[b, eos], [b, eos]]


def test_greedy_and_beam_one_agree_on_a_transformer():
    torch.manual_seed(0)
    model = Seq2SeqTransformer(plugins.get_attention("sdpa"), vocab_size=40, max_len=20, dim=16, encoder_depth=1,
                               decoder_depth=1, heads=2, ff_dim=32).eval()
    src = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0], [11, 0, 0, 0]])
    assert greedy(model, src, src != 0) == beam_search(model, src, src != 0, beam=1)


# --- the task -----------------------------------------------------------------------------------------


def test_task_is_registered_with_its_requirements_and_json_profiles():
    assert plugins.get_task("translation") is TASK and isinstance(TASK, attnbench.Task)
    assert TASK.requires == frozenset({"causal", "cross", "padding_mask"})
    assert TASK.metric.name == "bleu" and (TASK.metric.lower, TASK.metric.upper) == (0.0, 100.0)
    assert set(TASK.profiles) == set(attnbench.PROFILES)
    for profile in TASK.profiles.values():
        assert json.loads(json.dumps(profile)) == profile
    assert [TASK.profiles[p]["beam"] for p in attnbench.PROFILES] == [1, 1, 4, 5]


def test_smoke_pairing_through_the_harness(tmp_path):
    row = execute(Pairing(task="translation", variant="sdpa", profile="smoke", seed=0), torch.device("cpu"),
                  workdir=tmp_path)
    assert row.status == "ok", row.error
    assert {"bleu", "chrf", "copy_bleu", "copy_chrf", "val_loss", "final_loss"} <= set(row.metrics)
    assert {f"bleu_{name}" for name in corpus.SOURCES} <= set(row.metrics)
    assert TASK.metric.in_range(row.metrics["bleu"]) and 0 < row.metrics["copy_bleu"] < 100
    assert row.efficiency["flops_per_example"] > 0 and row.efficiency["params"] > 0

    unsupported = execute(Pairing(task="translation", variant="local", profile="smoke", seed=0), torch.device("cpu"))
    assert unsupported.status == "unsupported" and "cross" in unsupported.error


def test_smoke_run_on_moses_files_reports_progress(tmp_path):
    ctx = make_context(tmp_path, data_dir=write_moses(tmp_path / "corpus"))
    metrics = TASK.run(ctx)
    assert TASK.metric.in_range(metrics["bleu"]) and not any(k.startswith("bleu_") for k in metrics)
    steps = TASK.profiles["smoke"]["steps"]
    assert ctx.progress.total == steps and len(ctx.progress.losses) == steps
    assert metrics["copy_bleu"] == pytest.approx(sacrebleu.corpus_bleu(EN[2:5], [FR[2:5]]).score)


@pytest.mark.parametrize("variant", ["sdpa", "rope", "alibi", "linear", "gqa", "cosformer"])
def test_stepped_decoding_gives_the_tokens_of_recomputing(variant):
    """Greedy and beam search step the decoder's cache (incremental variants) or recompute (cosformer):
    either way the tokens equal those of re-running the decoder over the whole prefix."""
    torch.manual_seed(0)
    model = Seq2SeqTransformer(plugins.get_attention(variant), vocab_size=50, max_len=30, dim=32, encoder_depth=1,
                               decoder_depth=2, heads=4, ff_dim=64).eval()
    src = torch.randint(4, 50, (4, 9), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(src, dtype=torch.bool)
    mask[1, 6:], mask[3, 3:] = False, False
    src[~mask] = data.PAD
    assert model.decoder.incremental == plugins.get_attention(variant).incremental
    recomputed = greedy(model, src, mask, cache=False)
    assert greedy(model, src, mask) == recomputed and sum(map(len, recomputed)) > 20
    assert beam_search(model, src, mask, beam=3) == beam_search(model, src, mask, beam=3, cache=False)
