"""Sequential recommendation: MovieLens/RecBole ratings files, SASRec's leave-one-out, ranking metrics, a smoke run.

Every ratings file here is a small synthetic fixture written by the test (MovieLens data may
not be redistributed); only the default-data test reads the real MovieLens-100K in the
installed recbole wheel.
"""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import pytest
import torch
from attnbench_plugins.tasks.sequential_recommendation import TASK, data
from attnbench_plugins.tasks.sequential_recommendation.model import SASRec
from attnbench_plugins.tasks.sequential_recommendation.task import ndcg_hit, rank_batch

import attnbench
import attnbench.nn
from attnbench import plugins
from attnbench.errors import DataError
from attnbench.runner.meter import Meter
from attnbench.runner.pairing import Pairing, execute
from attnbench.specs import RunContext

CPU = torch.device("cpu")
N_USERS, N_ITEMS, PER_USER = 30, 40, 12


def fixture_rows(seed: int = 0) -> list[tuple[int, int, int, int]]:
    """(user, item, rating, timestamp) rows, shuffled so file order is not time order.

    User ``u`` rates items ``(7u + 3t) % 40`` at times t = 0..11: every item is rated 9 times,
    each user's next item is the last one plus 3, and raw ids are not 1..N.
    """
    rows = [(101 + u, 1000 + (7 * u + 3 * t) % N_ITEMS, 1 + (u + t) % 5, 880000000 + 1000 * u + 10 * t)
            for u in range(N_USERS) for t in range(PER_USER)]
    random.Random(seed).shuffle(rows)
    return rows


def write_format(root: Path, kind: str, rows=None) -> Path:
    """Write the fixture in one of the formats --data-dir reads; returns the file."""
    rows = fixture_rows() if rows is None else rows
    root.mkdir(parents=True, exist_ok=True)
    if kind == "u.data":
        text = "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows)
    elif kind == "ratings.dat":
        text = "".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in rows)
    elif kind == "ratings.csv":
        text = "userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},{r}.0,{t}\n" for u, i, r, t in rows)
    else:  # a RecBole atomic file, columns in another order than ml-100k.inter, token ids
        kind = "fixture.inter"
        text = "item_id:token\tuser_id:token\trating:float\ttimestamp:float\n" + "".join(
            f"m{i}\tu{u}\t{r}\t{t}\n" for u, i, r, t in rows)
    path = root / kind
    path.write_text(text)
    return path


class Progress:
    """Records what the task reports, as the runner's progress bar would."""

    def __init__(self) -> None:
        self.total = 0
        self.losses: list[float] = []

    def start(self, total: int, description: str = "") -> None:
        self.total = total

    def advance(self, steps: int = 1, **info: float) -> None:
        self.losses.append(info["loss"])


def make_context(tmp_path: Path, *, variant: str = "sdpa", seed: int = 0, data_dir: Path | None = None) -> RunContext:
    spec = plugins.get_attention(variant)
    return RunContext(
        attention=spec, make_attention=lambda cfg: attnbench.nn.build_attention(spec, cfg), device=CPU, seed=seed,
        profile="smoke", config=TASK.profiles["smoke"], data_dir=data_dir, progress=Progress(), workdir=tmp_path,
        meter=Meter(CPU),
    )


# --- reading the formats ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["u.data", "ratings.dat", "ratings.csv", "inter"])
def test_each_format_reads_to_the_same_time_ordered_sequences(tmp_path, kind):
    write_format(tmp_path, kind)
    seqs = data.to_sequences(data.read_dir(tmp_path), min_count=5)
    assert (seqs.n_users, seqs.n_items, len(seqs.items)) == (N_USERS, N_ITEMS, N_USERS * PER_USER)
    assert seqs.lengths.tolist() == [PER_USER] * N_USERS
    # Items are numbered 1..N in order of first appearance in the file; map them back to raw ids.
    raw: dict[int, int] = {}
    for _, item, _, _ in fixture_rows():
        raw.setdefault(item, len(raw) + 1)
    to_raw = {v: k for k, v in raw.items()}
    histories = sorted([to_raw[i] for i in seqs.items[seqs.offsets[u]:seqs.offsets[u + 1]].tolist()] for u in range(N_USERS))
    # Ordered by timestamp, not by file order (the fixture's rows are shuffled).
    assert histories == sorted([1000 + (7 * u + 3 * t) % N_ITEMS for t in range(PER_USER)] for u in range(N_USERS))


def test_min_count_drops_rare_items_and_short_users(tmp_path):
    rows = fixture_rows() + [(101, 5555, 3, 990000000), (999, 1000, 3, 1), (999, 1003, 3, 2)]
    write_format(tmp_path, "u.data", rows)
    seqs = data.to_sequences(data.read_dir(tmp_path), min_count=5)
    # Item 5555 has one rating and user 999 two: both dropped, as SASRec's preprocessing does.
    assert (seqs.n_users, seqs.n_items) == (N_USERS, N_ITEMS)
    with pytest.raises(DataError, match="no user has 3 or more ratings.*expected"):
        data.to_sequences(data.read_dir(tmp_path), min_count=50)


def test_first_format_found_wins(tmp_path):
    write_format(tmp_path, "inter")
    write_format(tmp_path, "ratings.dat")
    assert data.read_dir(tmp_path).source.startswith("MovieLens ratings.dat")


BAD_FILES = [
    ("u.data", "101\t1000\t3\n", "line 1: 3 tab-separated field(s)", "4 tab-separated fields"),
    ("u.data", "101\t1000\t3\t880000000\nabc\t1000\t3\t880000001\n", "line 2: user id 'abc' is not an integer",
     "integer ids"),
    ("u.data", "101\t1000\t3\t880000000\n101\t10.5\t3\t880000001\n", "line 2: item id '10.5' is not an integer",
     "integer ids"),
    ("ratings.dat", "1::1193::5::978300760\n1::661::3\n", "line 2: 3 '::'-separated field(s)", "UserID::MovieID"),
    ("ratings.dat", "1::x1193::5::978300760\n", "line 1: item id 'x1193' is not an integer", "UserID::MovieID"),
    ("ratings.dat", "1::1193::5::yesterday\n", "line 1: timestamp 'yesterday' is not a number", "UserID::MovieID"),
    ("ratings.csv", "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n1,1029,3.0\n",
     "line 3: 3 comma-separated field(s)", "userId,movieId,rating,timestamp"),
    ("ratings.csv", "user,item,rating,time\n1,31,2.5,1260759144\n", "line 1: header 'user,item,rating,time'",
     "userId,movieId,rating,timestamp"),
    ("ratings.csv", "userId,movieId,rating,timestamp\n", "holds no ratings", "userId,movieId,rating,timestamp"),
    ("u.data", "", "is empty", "4 tab-separated fields"),
    ("ratings.csv", "", "is empty", "userId,movieId"),
    ("x.inter", "user_id:token\titem_id:token\trating:float\n1\t2\t3\n", "line 1: header", "timestamp:float"),
    ("x.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n1\t2\n", "line 3: 2 tab-separated field(s)",
     "3 tab-separated fields"),
]


@pytest.mark.parametrize(("name", "body", "found", "expected"), BAD_FILES)
def test_bad_ratings_file_is_one_line_data_error_naming_file_line_and_expectation(tmp_path, name, body, found, expected):
    (tmp_path / name).write_text(body)
    with pytest.raises(DataError) as info:
        data.read_dir(tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / name) in message
    assert found in message and "expected" in message and expected in message


def test_bad_file_stops_the_run_before_training(tmp_path):
    rows = fixture_rows()
    path = write_format(tmp_path / "ml", "ratings.dat", rows)
    path.write_text(path.read_text() + "7::8::9\n")
    ctx = make_context(tmp_path, data_dir=tmp_path / "ml")
    with pytest.raises(DataError, match=re.escape(f"{path}, line {len(rows) + 1}: 3 '::'-separated field(s)")):
        TASK.run(ctx)
    assert ctx.progress.total == 0 and ctx.meter.train_seconds == 0  # no step was taken
    with pytest.raises(DataError, match="expected"):
        execute(Pairing(task=TASK.name, variant="sdpa", profile="smoke", seed=0, data_dir=str(tmp_path / "ml")), CPU)


def test_missing_or_empty_directory_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist.*u.data"):
        data.read_dir(tmp_path / "nowhere")
    (tmp_path / "README").write_text("not ratings")
    with pytest.raises(DataError, match=re.escape(str(tmp_path)) + ".*u.data, ratings.dat, ratings.csv, \\*.inter"):
        data.read_dir(tmp_path)


# --- the default data and the splits ---------------------------------------------------------------


def test_default_data_is_movielens_100k_with_claimed_sizes():
    ratings = data.movielens_100k()
    assert len(ratings.users) == 100_000
    assert len(set(ratings.users.tolist())) == 943 and len(set(ratings.items.tolist())) == 1682
    seqs = data.default_sequences(5)
    assert (seqs.n_users, seqs.n_items, len(seqs.items)) == (943, 1349, 99_287)  # SASRec's >= 5 ratings filter
    assert "MovieLens-100K" in TASK.description and "943 users, 1,349 movies, 99,287 ratings" in TASK.description


def test_leave_one_out_targets_windows_and_negatives(tmp_path):
    write_format(tmp_path, "u.data")
    seqs = data.to_sequences(data.read_dir(tmp_path), min_count=5)
    max_len = 6
    split = data.leave_one_out(seqs, max_len, eval_seed=3)
    history = seqs.items[: PER_USER].tolist()  # user 0
    assert split.test.targets[0] == history[-1] and split.val.targets[0] == history[-2]
    assert split.test.inputs[0].tolist() == history[-1 - max_len:-1]
    assert split.val.inputs[0].tolist() == history[-2 - max_len:-2]
    train = history[:-2]
    assert split.train_inputs[0].tolist() == train[:-1][-max_len:]
    assert split.train_targets[0].tolist() == train[1:][-max_len:]
    assert split.popularity[1:].sum() == N_USERS * (PER_USER - 2) and split.popularity[0] == 0

    short = data.leave_one_out(seqs, 20, eval_seed=3)  # longer than any history: right-padded with 0
    assert short.test.inputs[0].tolist() == history[:-1] + [0] * 9
    assert short.train_inputs[0].tolist() == train[:-1] + [0] * 11

    for user in range(seqs.n_users):
        rated = set(seqs.items[seqs.offsets[user]:seqs.offsets[user + 1]].tolist())
        for negatives in (split.test.negatives[user], split.val.negatives[user]):
            assert len(negatives) == 100 and not rated & set(negatives.tolist())
    again = data.leave_one_out(seqs, max_len, eval_seed=3)
    assert torch.equal(again.test.negatives, split.test.negatives)
    assert not torch.equal(data.leave_one_out(seqs, max_len, eval_seed=4).test.negatives, split.test.negatives)
    row, item = split.history(0, 2, held=1)
    assert row.tolist() == [0] * (PER_USER - 1) + [1] * (PER_USER - 1) and item[: PER_USER - 1].tolist() == history[:-1]


# --- metrics -------------------------------------------------------------------------------------------


def test_ndcg_and_hit_rate_with_ties_broken_in_expectation():
    others = torch.tensor([[0.0, 1.0, 2.0, 3.0] + [-1.0] * 96])
    ndcg, hit = ndcg_hit(torch.tensor([5.0]), others)
    assert ndcg.item() == 1.0 and hit.item() == 1.0
    ndcg, hit = ndcg_hit(torch.tensor([1.5]), others)  # two above it: rank 3
    assert ndcg.item() == pytest.approx(1 / math.log2(4)) and hit.item() == 1.0
    ndcg, hit = ndcg_hit(torch.tensor([-2.0]), others)
    assert ndcg.item() == 0.0 and hit.item() == 0.0
    ndcg, hit = ndcg_hit(torch.tensor([0.0]), torch.zeros(1, 100))  # a constant model is at chance, not perfect
    assert hit.item() == pytest.approx(10 / 101)
    assert ndcg.item() == pytest.approx(sum(1 / math.log2(r + 2) for r in range(10)) / 101)


def test_full_ranking_ignores_history_and_sampled_reads_the_negatives(tmp_path):
    write_format(tmp_path, "u.data")
    seqs = data.to_sequences(data.read_dir(tmp_path), min_count=5)
    split = data.leave_one_out(seqs, 8, eval_seed=0)
    users = torch.arange(4)
    scores = torch.zeros(4, seqs.n_items + 1, dtype=torch.float64)
    row, item = split.history(0, 4, held=1)
    scores[row, item] = 10.0  # every item the user already rated scores highest ...
    scores[users, split.test.targets[users]] = 5.0  # ... then the target
    totals = rank_batch(users, scores, split.test, split)
    # The history is not a competitor in the full ranking, and no negative is in the history.
    assert totals.tolist() == [4.0, 4.0, 4.0, 4.0]


# --- the model ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["sdpa", "softmax", "local"])
def test_padding_never_gives_nan_and_never_reaches_real_positions(variant):
    torch.manual_seed(0)
    model = SASRec(plugins.get_attention(variant), n_items=30, max_len=12, dim=16, depth=2, heads=2, ff_dim=16,
                   dropout=0.0)
    items = torch.tensor([[3, 4, 5] + [0] * 9, [7] + [0] * 11, list(range(1, 13))])
    mask = items != 0
    hidden = model(items, mask)
    assert torch.isfinite(hidden).all(), "padding gave NaN or Inf"
    # A shorter window (less padding) and other content under the padding change no real position.
    assert torch.allclose(model(items[:2, :4], mask[:2, :4])[mask[:2, :4]], hidden[:2][mask[:2]], atol=1e-5)
    assert torch.allclose(model(items.masked_fill(~mask, 9), mask)[mask], hidden[mask], atol=1e-5)
    hidden[mask].sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# --- the task ----------------------------------------------------------------------------------------------


def test_task_is_registered_and_profiles_are_json():
    assert plugins.get_task("sequential-recommendation") is TASK
    assert isinstance(TASK, attnbench.Task)
    assert set(TASK.profiles) == set(attnbench.PROFILES)
    for profile in TASK.profiles.values():
        assert json.loads(json.dumps(profile)) == profile
    assert TASK.metric.name == "ndcg10" and TASK.requires == frozenset({"causal", "padding_mask"})
    assert TASK.profiles["full"]["max_len"] == 200 and TASK.profiles["full"]["dim"] == 50


def test_non_causal_variant_is_unsupported():
    row = execute(Pairing(task=TASK.name, variant="linformer", profile="smoke", seed=0), CPU)
    assert row.status == "unsupported" and "causal" in row.error


@pytest.mark.slow
def test_smoke_run_through_the_harness_reports_metrics_and_baselines():
    row = execute(Pairing(task=TASK.name, variant="sdpa", profile="smoke", seed=0), CPU)
    assert row.status == "ok", row.error
    metrics = row.metrics
    assert {"ndcg10", "hr10", "ndcg10_full", "hr10_full", "val_ndcg10", "popularity_ndcg10", "popularity_hr10",
            "popularity_ndcg10_full", "final_loss"} <= set(metrics)
    for name in ("ndcg10", "hr10", "ndcg10_full", "popularity_ndcg10", "popularity_hr10"):
        assert 0.0 <= metrics[name] <= 1.0
    assert metrics["ndcg10"] <= metrics["hr10"] and metrics["ndcg10_full"] <= metrics["ndcg10"] + 1e-9
    assert metrics["popularity_ndcg10"] > 0.15  # MovieLens is popularity-heavy: a real, non-trivial baseline
    assert row.efficiency["params"] > 0 and row.efficiency["flops_per_example"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["u.data", "inter"])
def test_smoke_run_reads_the_data_dir_deterministically(tmp_path, kind):
    write_format(tmp_path / "data", kind)
    ctx = make_context(tmp_path, variant="softmax", data_dir=tmp_path / "data")
    metrics = TASK.run(ctx)
    assert TASK.metric.in_range(metrics["ndcg10"])
    assert ctx.progress.total == TASK.profiles["smoke"]["steps"] == len(ctx.progress.losses)
    assert ctx.meter.figures()["flops_per_example"] > 0
    assert TASK.run(make_context(tmp_path, variant="softmax", data_dir=tmp_path / "data")) == metrics
