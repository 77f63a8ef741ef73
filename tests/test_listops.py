"""The ListOps task: LRA's generator grammar, LRA's TSV format, errors, and a smoke run."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from attnbench_plugins.tasks.listops import TASK, data, generator

import attnbench
import attnbench.nn
from attnbench import plugins
from attnbench.errors import DataError
from attnbench.runner.meter import Meter
from attnbench.specs import RunContext

# Exactly as LRA's script writes a file: csv's tab dialect, "\r\n" line ends, pair parentheses.
LRA_TSV = (
    "Source\tTarget\r\n"
    "( ( ( [MAX 2 ) 9 ) ] )\t9\r\n"
    "( ( ( ( [SM 3 ) 4 ) ( ( ( [MAX 1 ) 9 ) ] ) ) ] )\t6\r\n"
    "( ( ( ( ( [MED 1 ) 2 ) 8 ) 7 ) ] )\t4\r\n"
    "( ( ( [MIN 5 ) ( ( ( [SM 9 ) 9 ) ] ) ) ] )\t5\r\n"
)


class Progress:
    """Records what the task reports, as the runner's progress bar would."""

    def __init__(self) -> None:
        self.total = 0
        self.losses: list[float] = []

    def start(self, total: int, description: str = "") -> None:
        self.total = total

    def advance(self, steps: int = 1, **info: float) -> None:
        self.losses.append(info["loss"])


def make_context(tmp_path: Path, *, variant: str = "sdpa", seed: int = 0, data_dir: Path | None = None,
                 config: dict | None = None) -> RunContext:
    spec = plugins.get_attention(variant)
    return RunContext(
        attention=spec, make_attention=lambda cfg: attnbench.nn.build_attention(spec, cfg),
        device=torch.device("cpu"), seed=seed, profile="smoke", config=config or TASK.profiles["smoke"],
        data_dir=data_dir, progress=Progress(), workdir=tmp_path, meter=Meter(torch.device("cpu")),
    )


def write_lra_dir(root: Path, train: str = LRA_TSV, val: str = LRA_TSV, test: str = LRA_TSV) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for split, text in (("train", train), ("val", val), ("test", test)):
        (root / f"basic_{split}.tsv").write_bytes(text.encode())
    return root


# --- the generator --------------------------------------------------------------------------


@pytest.mark.parametrize(("expression", "value"), [
    ("[SM 3 4 [MAX 1 9 ] ]", 6),
    ("[MIN 5 [SM 9 9 ] ]", 5),
    ("[MAX 2 9 [MIN 4 7 ] 0 ]", 9),
    ("[MED 7 1 5 ]", 5),
    ("[MED 1 2 ]", 1),  # even count: the mean of the middle two, truncated, as LRA's int(np.median)
    ("[MED 3 8 1 6 ]", 4),
    ("[SM 9 9 9 ]", 7),
    ("[MIN [MAX 0 3 ] [MED 9 9 2 ] ]", 3),
])
def test_evaluate_known_expressions(expression, value):
    assert generator.evaluate(generator.parse(expression)) == value


def test_text_is_lra_layout_and_parses_back():
    tree = generator.parse("[SM 3 4 [MAX 1 9 ] ]")
    assert generator.to_string(tree) == "( ( ( ( [SM 3 ) 4 ) ( ( ( [MAX 1 ) 9 ) ] ) ) ] )"
    assert generator.to_brackets(tree) == "[SM 3 4 [MAX 1 9 ] ]"
    assert generator.parse(generator.to_string(tree)) == tree
    for bad in ("[SM 3 4", "[SM ]", "3 4", "[XOR 1 2 ]"):
        with pytest.raises(ValueError):
            generator.parse(bad)


def test_generation_is_seeded_distinct_and_in_range():
    first = generator.generate_examples(200, seed=3, min_length=10, max_length=40)
    assert first == generator.generate_examples(200, seed=3, min_length=10, max_length=40)
    assert first != generator.generate_examples(200, seed=4, min_length=10, max_length=40)
    trees = [tree for tree, _ in first]
    assert len(set(trees)) == len(trees)
    for tree, value in first:
        assert 10 < len(generator.to_brackets(tree).split()) < 40  # LRA's bounds are exclusive
        assert value == generator.evaluate(tree)
        assert generator.parse(generator.to_string(tree)) == tree
    labels = {value for _, value in first}
    assert labels == set(range(10))


def test_depth_and_arity_follow_lra_limits():
    def depth_arity(tree, depth=1):
        if isinstance(tree, int):
            return depth, 0
        inner = [depth_arity(a, depth + 1) for a in tree[1]]
        return max(d for d, _ in inner), max([len(tree[1])] + [a for _, a in inner])

    for tree, _ in generator.generate_examples(300, seed=0, min_length=20, max_length=200, max_depth=4, max_args=3):
        depth, arity = depth_arity(tree)
        assert depth <= 4 and 2 <= arity <= 3


def test_generated_splits_are_disjoint_and_padded():
    config = TASK.profiles["smoke"]
    splits = data.generated(config)
    rows = [{tuple(r.tolist()) for r in split.tokens} for split in (splits.train, splits.val, splits.test)]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (config["n_train"], config["n_val"], config["n_test"])
    assert not (rows[0] & rows[1] or rows[0] & rows[2] or rows[1] & rows[2])
    assert splits.train.tokens.shape[1] == config["max_length"]
    assert bool(((splits.train.lengths > config["min_length"]) & (splits.train.lengths < config["max_length"])).all())


# --- LRA's TSV files --------------------------------------------------------------------------


def test_lra_tsv_round_trip(tmp_path):
    splits = data.load_dir(write_lra_dir(tmp_path / "lra"), max_length=16)
    ids = data.TOKEN_IDS
    assert splits.train.labels.tolist() == [9, 6, 4, 5]
    assert splits.train.tokens[0, :4].tolist() == [ids["[MAX"], ids["2"], ids["9"], ids["]"]]
    assert splits.train.lengths.tolist() == [4, 8, 6, 7]
    tokens, mask, labels = splits.test.batch(torch.tensor([1]), torch.device("cpu"))
    assert tokens.shape == (1, 16) and int(mask.sum()) == 8 and labels.tolist() == [6]

    examples = generator.generate_examples(30, seed=1, min_length=5, max_length=60)
    generator.write_tsv(tmp_path / "written.tsv", examples)
    read = data.read_tsv(tmp_path / "written.tsv")
    assert [label for _, label in read] == [value for _, value in examples]
    assert [ids for ids, _ in read] == [data.encode(generator.to_brackets(tree)) for tree, _ in examples]


def test_generator_command_writes_lra_files(tmp_path):
    generator.main([
        "--output-dir", str(tmp_path), "--num-train-samples", "20", "--num-valid-samples", "5",
        "--num-test-samples", "5", "--min-length", "5", "--max-length", "50",
    ])
    splits = data.load_dir(tmp_path, max_length=50)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (20, 5, 5)
    assert (tmp_path / "basic_train.tsv").read_text().startswith("Source\tTarget\n")


@pytest.mark.parametrize(("body", "message"), [
    ("", "is empty"),
    ("Input\tLabel\r\n( ( ( [MAX 2 ) 9 ) ] )\t9\r\n", "line 1: expected LRA's header"),
    ("Source\tTarget\r\n", "holds a header but no examples"),
    (LRA_TSV + "( ( ( [MAX 2 ) 9", "line 6: expected 'Source<TAB>Target'"),  # cut mid-line
    (LRA_TSV + "( ( ( [MAX 2 ) 9 )\t9\r\n", "line 6: 1 operator(s) not closed"),
    (LRA_TSV + "( ( ( [MAX 2 ) 9 ) ] )\t12\r\n", "line 6: label '12' is not a digit"),
    (LRA_TSV + "( ( ( [MAX 2 ) 9 ) ] )\t\r\n", "line 6: label '' is not a digit"),
    ("Source\tTarget\r\n( ( ( [XOR 2 ) 9 ) ] )\t9\r\n", "line 2: unknown token '[XOR'"),
])
def test_corrupt_file_is_a_data_error_naming_file_and_line(tmp_path, body, message):
    root = write_lra_dir(tmp_path / "lra", val=body)
    with pytest.raises(DataError, match=re.escape(message)) as info:
        data.load_dir(root, max_length=32)
    assert "basic_val.tsv" in str(info.value)


def test_missing_directory_or_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist.*basic_train.tsv, basic_val.tsv, basic_test.tsv"):
        data.load_dir(tmp_path / "nowhere", max_length=32)
    root = write_lra_dir(tmp_path / "lra")
    (root / "basic_test.tsv").unlink()
    with pytest.raises(DataError, match="lacks basic_test.tsv.*'Source<TAB>Target' header"):
        data.load_dir(root, max_length=32)


# --- the task ---------------------------------------------------------------------------------


def test_task_is_registered_and_profiles_are_json():
    assert plugins.get_task("listops") is TASK
    assert isinstance(TASK, attnbench.Task)
    assert set(TASK.profiles) == set(attnbench.PROFILES)
    for profile in TASK.profiles.values():
        assert json.loads(json.dumps(profile)) == profile
    assert TASK.metric.name == "accuracy" and TASK.requires == frozenset({"padding_mask"})


def test_smoke_run_is_in_range_reported_and_deterministic(tmp_path):
    ctx = make_context(tmp_path)
    metrics = TASK.run(ctx)
    assert set(metrics) == {"accuracy", "val_accuracy", "majority_baseline", "final_loss"}
    assert TASK.metric.in_range(metrics["accuracy"])
    assert 0.0 < metrics["majority_baseline"] < 1.0 and math.isfinite(metrics["final_loss"])
    steps = TASK.profiles["smoke"]["steps"]
    assert ctx.progress.total == steps and len(ctx.progress.losses) == steps
    figures = ctx.meter.figures()
    assert figures["params"] > 0 and figures["flops_per_example"] > 0 and figures["train_s"] > 0

    assert TASK.run(make_context(tmp_path)) == metrics
    assert TASK.run(make_context(tmp_path, seed=1)) != metrics


def test_smoke_run_reads_lra_files_from_data_dir(tmp_path):
    root = write_lra_dir(tmp_path / "lra")
    metrics = TASK.run(make_context(tmp_path, variant="softmax", data_dir=root))
    assert TASK.metric.in_range(metrics["accuracy"])
    assert metrics["majority_baseline"] == 0.25  # four examples, four labels
