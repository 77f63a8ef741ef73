"""Bad input across every built-in task's on-disk loader, through the public API: each task
contributes its own --data-dir fixture (the writers of its test module), and one file of it is
made corrupt or truncated. The pairing must stop with a one-line DataError that names that file,
before anything trains. A task added without a case here fails the completeness test.

Also: a CIFAR batch that would run code when unpickled is refused with no side effect.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import test_detection as detection_t
import test_image_classification as image_t
import test_language_modeling as lm_t
import test_listops as listops_t
import test_lra_image as lra_image_t
import test_lra_pathfinder as pathfinder_t
import test_lra_retrieval as retrieval_t
import test_lra_text as lra_text_t
import test_medical_imaging as medical_t
import test_sequential_recommendation as recsys_t
import test_speech_commands as speech_t
import test_text_classification as text_t
import test_translation as translation_t
import torch

from attnbench import plugins
from attnbench.errors import DataError
from attnbench.runner import Pairing, execute

CPU = torch.device("cpu")
GARBAGE = b"\x89\x00\xfe\xff not this format \x80\xc3" * 32


def _retrieval(root: Path) -> tuple[Path, Path]:
    retrieval_t.write_aan(root)
    return root, retrieval_t.data.aan_path(root, retrieval_t.data.AAN_SPLITS[0])


def _lra_text(root: Path) -> tuple[Path, Path]:
    lra_text_t.write_imdb(root)
    return root, root / "train" / "pos" / "1_8.txt"  # "Loved it — «très bien»!": multi-byte characters


def _pathfinder(root: Path) -> tuple[Path, Path]:
    level = pathfinder_t.write_lra_level(root, side=16, count=12)
    return level, level / pathfinder_t.LEVEL / "imgs" / "0" / "sample_2.png"


def _text(root: Path) -> tuple[Path, Path]:
    text_t.write(root, {"train.tsv": text_t.TRAIN_TSV, "test.tsv": text_t.TEST_TSV})
    return root, root / "train.tsv"


#: task → writes a valid --data-dir under the given folder and returns (data dir, the file to damage).
CASES: dict[str, Callable[[Path], tuple[Path, Path]]] = {
    "detection": lambda r: (detection_t.write_coco(r), r / "annotations" / "instances_train2017.json"),
    "image-classification": lambda r: (image_t.write_cifar(r), r / "data_batch_1"),
    "language-modeling": lambda r: (lm_t.write_wikitext(r), r / "wiki.train.tokens"),
    "listops": lambda r: (listops_t.write_lra_dir(r), r / "basic_train.tsv"),
    "lra-image": lambda r: (lra_image_t.write_cifar(r), r / "data_batch_1"),
    "lra-pathfinder": _pathfinder,
    "lra-retrieval": _retrieval,
    "lra-text": _lra_text,
    "medical-imaging": lambda r: (medical_t.write_npz(r), r / "pneumoniamnist.npz"),
    "sequential-recommendation": lambda r: (r, recsys_t.write_format(r, "u.data")),
    "speech-commands": lambda r: (speech_t.write_speech_commands(r), r / "yes" / "spk0_nohash_0.wav"),
    "text-classification": _text,
    "translation": lambda r: (translation_t.write_moses(r), r / "train.en"),
}


def _truncate(path: Path) -> None:
    """Keep the first part of the file, cut inside a line (and, for text, inside a character when it can)."""
    raw = path.read_bytes()
    cut = len(raw) // 2
    multibyte = [i for i in range(1, len(raw)) if 0x80 <= raw[i] < 0xC0 and raw[i - 1] >= 0xC0]  # a lead byte's next
    if multibyte:
        cut = multibyte[0]  # between a character's first and second byte
    elif raw[cut - 1:cut] == b"\n":
        cut += 1
    path.write_bytes(raw[:cut])


#: Built-in tasks that generate their data and refuse any --data-dir (tested below instead of CASES).
GENERATED = {"mqar", "induction-heads", "selective-copy", "passkey"}


def test_every_built_in_task_has_a_bad_input_case():
    loaded = plugins.load()
    built_in = {t.name for t in loaded.tasks if loaded.info_for("tasks", t.name).distribution == "attnbench"}
    assert len(built_in) >= 12, sorted(built_in)
    missing = built_in - set(CASES) - GENERATED
    assert not missing, f"add a case to tests/test_bad_input.py for {sorted(missing)}"


@pytest.mark.parametrize("task", sorted(GENERATED))
def test_a_generated_probe_refuses_a_data_dir_in_one_line(task, tmp_path):
    with pytest.raises(DataError) as info:
        execute(Pairing(task=task, variant="sdpa", profile="smoke", seed=0, data_dir=str(tmp_path)), CPU)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path) in message and "generates its data" in message, message


@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
@pytest.mark.parametrize("task", sorted(CASES))
def test_a_damaged_file_stops_the_pairing_with_a_one_line_error_naming_it(task, damage, tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNBENCH_CACHE_DIR", str(tmp_path / "cache"))  # tokenizers trained here stay here
    data_dir, target = CASES[task](tmp_path / "data")
    assert target.is_file(), target
    if damage == "corrupt":
        target.write_bytes(GARBAGE)
    else:
        _truncate(target)
    with pytest.raises(DataError) as info:
        execute(Pairing(task=task, variant="sdpa", profile="smoke", seed=0, data_dir=str(data_dir)), CPU)
    message = str(info.value)
    assert "\n" not in message, message
    assert target.name in message, message


def test_a_cifar_batch_that_would_run_code_is_refused_with_no_side_effect(tmp_path):
    root = image_t.write_cifar(tmp_path / "cifar")
    marker = tmp_path / "the pickle ran"

    class Exploit:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    (root / "data_batch_1").write_bytes(pickle.dumps({b"data": Exploit(), b"labels": [0]}, protocol=2))
    for task in ("image-classification", "lra-image"):
        with pytest.raises(DataError, match=r"data_batch_1 is not a readable CIFAR python batch .*refusing to load "
                                            r"posix\.mkdir") as info:
            execute(Pairing(task=task, variant="sdpa", profile="smoke", seed=0, data_dir=str(root)), CPU)
        assert "\n" not in str(info.value)
        assert not marker.exists()


# --- the command line: every option, name and path a user or plugin supplies ----------------------
# Each case exits 2 before any work, with one `error:` line naming the value and the fix, and leaves
# a store that already holds a row exactly as it was (no row, no artifacts folder, same bytes).

LONG_NAME = "very-" * 59 + "long1"  # what attnbench-importwork's long-name plugin tries to register

#: (id, run's arguments, the start of stderr's first line); "{store}" is the store's path.
CLI_CASES = [
    ("steps below 1", ["--set", "steps=-3"], "error: --set steps (task 'listops') must be an integer ≥ 1, got -3"),
    ("batch size 0", ["--set", "batch_size=0"], "error: --set batch_size (task 'listops') must be an integer ≥ 1, got 0"),
    ("dropout of 1", ["--set", "dropout=1"], "error: --set dropout (task 'listops') must be a number in [0, 1), got 1.0"),
    ("empty --variants", ["--variants", ""], "error: --variants '' names no variant; name some (see `attnbench list "
                                             "attention`), or leave it out to run every variant"),
    ("empty --tasks", ["--tasks", ","], "error: --tasks ',' names no task; name some"),
    ("empty --seeds", ["--seeds", ""], "error: --seeds '' names no seed; give integers separated by commas"),
    ("negative seed", ["--seeds", "-1"], "error: seed -1 is not an integer from 0 to 4294967295"),
    ("negative --timeout", ["--timeout", "-5"], "error: --timeout -5: give a positive number of seconds, or leave it "
                                                "out for no limit"),
    ("zero --timeout", ["--timeout", "0"], "error: --timeout 0: give a positive number of seconds"),
    ("zero --max-memory", ["--max-memory", "0"], "error: --max-memory 0: give a positive number of MB, or leave it out "
                                                 "for no cap"),
    ("zero --jobs", ["--jobs", "0"], "error: --jobs 0: run at least one pairing at a time, pass --jobs 1 or more"),
    ("glob matching nothing", ["--variants", "zz*"], "error: no attention matches the pattern 'zz*'"),
    ("setting no task has", ["--tasks", "listops,lra-text", "--set", "nope=1"],
     "error: none of the selected tasks (listops, lra-text) has a setting 'nope'"),
    ("setting of an unselected task", ["--set", "lra-text.length=64"],
     "error: --set lra-text.length=… names task 'lra-text', which is not among the selected tasks (listops)"),
    ("--data-dir of an unselected task", ["--data-dir", "lra-text=/"],
     "error: --data-dir lra-text=/ names task 'lra-text', which is not among the selected tasks (listops)"),
    ("missing --data-dir of a task", ["--data-dir", "listops=/no/such/dir"],
     "error: --data-dir listops=/no/such/dir does not exist or is not a directory"),
    ("--tensorboard a file", ["--tensorboard", "{store}"], "error: --tensorboard {store}: {store} is a file, not a folder"),
    ("--address without ray", ["--address", "auto"], "error: --address auto names a Ray cluster; add --executor ray"),
    ("--max-memory with ray", ["--executor", "ray", "--max-memory", "100"], "error: --max-memory 100 caps local CPU workers"),
    ("store under a file", ["--store", "{store}/x.sqlite"],
     "error: cannot create the folder of store {store}/x.sqlite: {store} is a file, not a folder"),
    ("positions not a scheme", ["--tasks", "mqar", "--set", "positions=bad"],
     "error: --set positions (task 'mqar') must be one of 'none', 'shift', 'sinusoidal', 'learned', got 'bad'"),
    ("positions of one task", ["--tasks", "mqar,passkey", "--set", "passkey.positions=rope"],
     "error: --set positions (task 'passkey') must be one of 'none', 'shift', 'sinusoidal', 'learned', got 'rope'"),
    ("swept positions", ["--tasks", "language-modeling", "--sweep", "positions=shift,alibi"],
     "error: --set positions (task 'language-modeling') must be one of 'none', 'shift', 'sinusoidal', 'learned', "
     "got 'alibi'"),
    ("positions a number", ["--tasks", "selective-copy", "--set", "positions=3"],
     "error: --set positions (task 'selective-copy') must be one of 'none', 'shift', 'sinusoidal', 'learned', got '3'"),
    ("pooling not a pooling", ["--tasks", "lra-image", "--set", "pooling=max"],
     "error: --set pooling (task 'lra-image') must be one of 'mean', 'cls', got 'max'"),
    ("pathfinder positions", ["--tasks", "lra-pathfinder", "--set", "positions=shift"],
     "error: --set positions (task 'lra-pathfinder') must be one of 'learned', 'sincos2d', got 'shift'"),
    ("tokens not a vocabulary", ["--tasks", "text-classification", "--set", "tokens=words"],
     "error: --set tokens (task 'text-classification') must be one of 'bpe', 'bytes', got 'words'"),
    ("pool not a ViT pooling", ["--tasks", "image-classification", "--set", "pool=mean"],
     "error: --set pool (task 'image-classification') must be one of 'avg', 'max', 'avgmax', 'token', got 'mean'"),
]


def _store_with_a_row(folder: Path) -> Path:
    from attnbench import ResultRow
    from attnbench.store import Store

    folder.mkdir()
    path = folder / "results.sqlite"
    with Store(path) as store:
        store.write(ResultRow(task="listops", variant="sdpa", profile="smoke", seed=0, environment="cpu",
                              config_hash="abc", status="ok", metrics={"accuracy": 0.5}))
    return path


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"" for p in sorted(folder.rglob("*"))}


def _refused(args: list[str], first_line: str, tmp_path: Path, site: Path | None = None) -> None:
    from conftest import run_cli

    store = _store_with_a_row(tmp_path / "shelf")
    before = _snapshot(store.parent)
    args = [a.replace("{store}", str(store)) for a in args]
    defaults = {"--tasks": "listops", "--variants": "sdpa", "--profile": "smoke", "--store": str(store)}
    extra = [x for flag, value in defaults.items() if flag not in args for x in (flag, value)]
    result = run_cli("run", *args, *extra, site=site, cwd=tmp_path)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("warning:")]
    assert lines[0].startswith(first_line.replace("{store}", str(store))), lines
    assert len([line for line in lines if line.startswith("error:")]) == 1, lines
    assert _snapshot(store.parent) == before  # the store, byte for byte, and nothing beside it


@pytest.mark.parametrize(("args", "first_line"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_a_bad_option_is_one_line_exit_2_and_the_store_is_unchanged(args, first_line, tmp_path):
    _refused(args, first_line, tmp_path)


def test_every_enumerated_setting_lists_the_values_its_profiles_use_and_stays_out_of_the_hash():
    from attnbench.runner.overrides import OverrideError, apply_task_overrides, setting_choices
    from attnbench.runner.pairing import config_hash

    loaded = plugins.load()
    declared = {t.name: setting_choices(t) for t in loaded.tasks if setting_choices(t)}
    assert {"mqar", "induction-heads", "selective-copy", "passkey", "language-modeling"} <= set(declared)
    assert all(c["positions"] == ("none", "shift", "sinusoidal", "learned") for n, c in declared.items()
               if n in {"mqar", "induction-heads", "selective-copy", "passkey", "language-modeling"})
    for name, choices in declared.items():
        task = loaded.tasks.get(name)
        for profile, config in task.profiles.items():
            for key, allowed in choices.items():
                assert key in config, (name, profile, key)
                assert config[key] in allowed, (name, profile, key, config[key])
                for value in allowed:  # every listed value passes; the check never touches the hash
                    assert apply_task_overrides(name, config, [(key, value)], choices)[key] == value
        with pytest.raises(OverrideError):
            apply_task_overrides(name, task.profiles["smoke"], [(next(iter(choices)), "no-such-value")], choices)
    mqar = loaded.tasks.get("mqar")
    plain = Pairing(task="mqar", variant="sdpa", profile="quick", seed=0)
    assert config_hash(mqar, plain) == config_hash(type("Bare", (), {"name": "mqar", "profiles": mqar.profiles})(), plain)


def test_list_shows_the_values_an_enumerated_setting_takes():
    from conftest import run_cli

    described = run_cli("list", "tasks", "language-modeling", "--format", "json")
    assert json.loads(described.stdout)["setting_choices"] == {"positions": ["none", "shift", "sinusoidal", "learned"]}
    assert "positions takes one of: none, shift, sinusoidal, learned" in run_cli("list", "tasks", "mqar").stdout


@pytest.fixture(scope="module")
def importwork_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_worker_isolation import install_plugin_package

    return install_plugin_package(tmp_path_factory, "attnbench-importwork")


@pytest.mark.parametrize(("name", "first_line"), [
    (LONG_NAME, f"error: unknown attention {LONG_NAME[:39]!r}"[:-1] + "…' (300 characters)"),
    ("sdpa/nested", "error: unknown attention 'sdpa/nested'"),
])
def test_a_name_a_plugin_could_not_register_is_unknown_to_run(name, first_line, importwork_site, tmp_path):
    _refused(["--variants", name], first_line, tmp_path, site=importwork_site)
