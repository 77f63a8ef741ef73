"""Learning-rate fairness, convergence and equal-time tables in the report: ``report --best-of lr``
picks each variant's rate per seed on validation only (and refuses a task without a validation
metric), a table whose sdpa has not plateaued says "early training", and rows trained for a time
budget are ranked apart from step-based ones. Every store is a real SQLite file written through
the public store API."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from conftest import run_cli

from attnbench import Metric, ResultRow
from attnbench.leaderboard import overall_matrix, task_tables
from attnbench.leaderboard.best_of import BestOfTable, best_of
from attnbench.leaderboard.formats import json_text, task_rows
from attnbench.leaderboard.sweeps import sweeps
from attnbench.leaderboard.tables import setup_hash
from attnbench.store import Store

ACC = Metric(name="accuracy", baseline="majority_baseline")


def _row(task: str, variant: str, seed: int, test: float, *, val: float | None = None, lr: float | None = None,
         budget: float | None = None, late: float | None = None, steps: int = 100, status: str = "ok",
         finished: float = 0.0) -> ResultRow:
    metrics = {"accuracy": test, "majority_baseline": 0.1} if status == "ok" else {}
    if val is not None and status == "ok":
        metrics["val_accuracy"] = val
    config: dict = {"steps": 100}
    if lr is not None:
        config["lr"] = lr
    if budget is not None:
        config["time_budget_s"] = budget
    efficiency = {"params": 1000.0, "train_s": 10.0, "train_steps": float(steps)}
    if late is not None:
        efficiency["late_drop_share"] = late
    return ResultRow(task=task, variant=variant, profile="quick", seed=seed, environment="cpu | test",
                     config_hash=json.dumps(config, sort_keys=True), status=status, metrics=metrics,
                     efficiency=efficiency, config=config,
                     finished_at=finished or float(seed), error="" if status == "ok" else "loss was nan")


def _rows(path: Path, rows: list[ResultRow]) -> list[ResultRow]:
    with Store(path) as store:
        for r in rows:
            store.write(r)
    with Store(path, readonly=True) as store:
        return store.rows()


#: ``trap`` scores better on test at lr 3e-3 on every seed, but better on validation at 1e-3 on seeds 0 and 1:
#: selecting on test would pick 3e-3 everywhere and report 0.80.
GRID = [
    *[_row("t", "sdpa", s, 0.60 + 0.01 * s, val=0.61 + 0.01 * s, lr=1e-3) for s in range(3)],
    *[_row("t", "sdpa", s, 0.50 + 0.01 * s, val=0.52 + 0.01 * s, lr=3e-3) for s in range(3)],
    *[_row("t", "trap", s, 0.70, val=0.75, lr=1e-3) for s in range(2)],
    _row("t", "trap", 2, 0.70, val=0.60, lr=1e-3),
    *[_row("t", "trap", s, 0.80, val=0.65, lr=3e-3) for s in range(3)],
    _row("t", "trap", 0, 0.0, lr=1e-2, status="diverged"),
]


def test_best_of_lr_picks_on_validation_per_seed_and_reports_test(tmp_path: Path):
    rows = _rows(tmp_path / "r.sqlite", GRID)
    found = best_of(rows, {"t": ACC}, "lr")
    assert found.refused == [] and found.rest == []
    (table,) = found.tables
    assert isinstance(table, BestOfTable) and table.grid == [1e-3, 3e-3, 1e-2]
    picked = {v: {s: c.value for s, c in by.items()} for v, by in table.chosen.items()}
    assert picked == {"sdpa": {0: 1e-3, 1: 1e-3, 2: 1e-3}, "trap": {0: 1e-3, 1: 1e-3, 2: 3e-3}}
    entries = {e.variant: e for e in table.entries}
    # The test scores of the rows picked on validation, never the best test score (0.80 on every seed).
    assert entries["trap"].per_seed == {0: 0.70, 1: 0.70, 2: 0.80}
    assert entries["sdpa"].per_seed == {0: 0.60, 1: 0.61, 2: 0.62}
    assert "best of lr ∈ {0.001, 0.003, 0.01} per variant and seed, picked on val_accuracy" in table.title
    header, body = task_rows(table)
    line = {r[1]: dict(zip(header, r, strict=True)) for r in body}
    assert line["trap"]["lr tried"] == "0.001, 0.003, 0.01 (diverged)"
    assert line["trap"]["lr picked"] == "0.001 (seeds 0, 1); 0.003 (seed 2)"
    assert line["sdpa"]["lr picked"] == "0.001 (seeds 0, 1, 2)"
    data = json.loads(json_text(found.tables, overall_matrix(found.tables), best_of={"key": "lr", "refused": []}))
    task = data["tasks"][0]
    assert task["grid"] == [1e-3, 3e-3, 1e-2] and task["selection"] == "best of lr"
    assert task["chosen"]["trap"]["2"] == {"value": 3e-3, "validation": 0.65, "test": 0.80}


def test_lower_is_better_picks_the_lowest_validation_and_ties_go_to_the_smaller_rate(tmp_path: Path):
    bpb = Metric(name="bits_per_byte", higher_is_better=False)
    rows = [ResultRow(task="lm", variant="sdpa", profile="quick", seed=0, environment="e", config_hash=str(lr),
                      status="ok", metrics={"bits_per_byte": test, "val_bits_per_byte": val}, config={"lr": lr}, finished_at=lr)
            for lr, val, test in ((1e-3, 2.0, 2.1), (3e-3, 1.5, 2.5), (1e-2, 1.5, 1.0))]
    (table,) = best_of(_rows(tmp_path / "r.sqlite", rows), {"lm": bpb}, "lr").tables
    assert table.chosen["sdpa"][0].value == 3e-3 and table.entries[0].metrics["bits_per_byte"] == 2.5


def test_best_of_is_refused_without_a_validation_metric(tmp_path: Path):
    rows = _rows(tmp_path / "r.sqlite", [_row("t", "sdpa", 0, 0.6, lr=lr) for lr in (1e-3, 3e-3)]
                 + [_row("u", "sdpa", 0, 0.6, val=0.6, lr=lr) for lr in (1e-3, 3e-3)])
    found = best_of(rows, {"t": ACC, "u": ACC}, "lr")
    assert [t.task for t in found.tables] == ["u"]
    (line,) = found.refused
    assert line.startswith("best of lr refused for t · quick: its rows report no validation metric 'val_accuracy'")
    assert "\n" not in line
    assert sorted(r.config["lr"] for r in found.rest) == [1e-3, 3e-3]  # shown per rate instead
    assert len(task_tables(found.rest, {"t": ACC})) == 2


def test_report_cli_best_of_lr_writes_the_grid_and_refuses_a_task_without_validation(tmp_path: Path):
    # listops reports val_accuracy; translation reports val_loss but no val_bleu, so it is refused.
    rows = [_row("listops", r.variant, r.seed, r.metrics.get("accuracy", 0.0), val=r.metrics.get("val_accuracy"),
                 lr=r.config["lr"], status=r.status) for r in GRID]
    rows += [ResultRow(task="translation", variant="sdpa", profile="quick", seed=0, environment="cpu | test",
                       config_hash=str(lr), status="ok", metrics={"bleu": 20.0 + lr, "val_loss": 2.0, "copy_bleu": 1.0},
                       config={"lr": lr}) for lr in (1e-3, 3e-3)]
    # Rows trained for 30 s at one rate: their own equal-time table, never part of the grid above.
    rows += [_row("listops", v, 0, 0.5, val=0.5, lr=1e-3, budget=30.0, steps=n) for v, n in (("sdpa", 80), ("trap", 240))]
    store = tmp_path / "r.sqlite"
    _rows(store, rows)
    out = tmp_path / "report"
    done = run_cli("report", "--store", str(store), "--best-of", "lr", "--out", str(out))
    assert done.returncode == 0, done.stderr
    refusal = ("best of lr refused for translation · quick: its rows report no validation metric 'val_bleu' "
               "(they report val_loss, not the primary metric's twin)")
    assert refusal in done.stderr and refusal in (out / "overall.md").read_text()
    data = json.loads((out / "leaderboard.json").read_text())
    assert data["best_of"]["refused"][0].startswith(refusal)
    listops = [t for t in data["tasks"] if t["task"] == "listops"]
    timed, best = sorted(listops, key=lambda t: "chosen" in t)
    assert best["chosen"]["trap"]["0"]["value"] == 1e-3 and best["time_budget_s"] is None
    assert timed["time_budget_s"] == 30.0 and timed["config"]["lr"] == 1e-3
    # The terminal's default columns show the picks, and the steps reached in the equal-time table.
    assert "lr picked" in done.stdout and "0.001 (seeds 0, 1); 0.003 (seed 2)" in done.stdout
    assert "equal time: what learns most in 30 s on this hardware" in done.stdout and "steps reached" in done.stdout
    assert len([t for t in data["tasks"] if t["task"] == "translation"]) == 2  # one table per rate
    (md,) = [p for p in out.glob("listops-*.md") if "-vs-" not in p.name and "equal time" not in p.read_text()]
    assert "best of lr" in md.read_text() and "0.001 (seeds 0, 1); 0.003 (seed 2)" in md.read_text()
    (table_csv,) = [p for p in out.glob("listops-*.csv") if "lr picked" in p.read_text()]
    trap = next(r for r in csv.DictReader(io.StringIO(table_csv.read_text())) if r["variant"] == "trap")
    assert trap["lr picked"] == "0.001 (seeds 0, 1); 0.003 (seed 2)" and trap["lr tried"].endswith("0.01 (diverged)")
    assert "best of lr" in next(t for t in data["overall"][0]["columns"].values() if "accuracy" in t)

    bad = run_cli("report", "--store", str(store), "--best-of", "dropout", "--out", str(out))
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "--best-of dropout" in bad.stderr and "--sweep dropout=" in bad.stderr


def test_a_table_whose_sdpa_has_not_plateaued_says_early_training(tmp_path: Path):
    rows = [_row("early", "sdpa", s, 0.6, late=share) for s, share in enumerate((0.30, 0.25, 0.40))]
    rows += [_row("early", "fast", s, 0.7, late=0.02) for s in range(3)]
    rows += [_row("flat", "sdpa", s, 0.6, late=share) for s, share in enumerate((0.05, 0.30, 0.08))]
    rows += [_row("old", "sdpa", s, 0.6) for s in range(3)]  # rows from before the figure: no label
    tables = {t.task: t for t in task_tables(_rows(tmp_path / "r.sqlite", rows), {"early": ACC, "flat": ACC, "old": ACC})}
    assert tables["early"].title.endswith(
        "early training: sdpa's last fifth of steps brought 30.0% of its loss drop (plateaued: ≤ 10%)")
    assert "early training" not in tables["flat"].title  # median 0.08: plateaued, though one seed was not
    assert "early training" not in tables["old"].title
    header, body = task_rows(tables["early"])
    assert {r[1]: r[header.index("late drop share")] for r in body} == {"sdpa": "0.30", "fast": "0.02"}
    assert "late drop share" not in task_rows(tables["old"])[0]
    data = json.loads(json_text(list(tables.values()), []))
    flags = {t["task"]: t["early_training"] for t in data["tasks"]}
    assert flags["early"].startswith("early training") and flags["flat"] is None and flags["old"] is None
    assert next(t for t in data["tasks"] if t["task"] == "early")["entries"][0]["cost"]["late_drop_share"] == 0.02


def test_budget_rows_are_ranked_apart_in_their_own_tables_and_matrix(tmp_path: Path):
    rows = [_row("t", v, s, score, steps=100) for s in range(2) for v, score in (("sdpa", 0.6), ("fast", 0.5))]
    rows += [_row("t", v, s, score, budget=30.0, steps=n) for s in range(2)
             for v, score, n in (("sdpa", 0.55, 80), ("fast", 0.65, 240))]
    stored = _rows(tmp_path / "r.sqlite", rows)
    assert len({setup_hash(r) for r in stored}) == 2
    tables = task_tables(stored, {"t": ACC})
    steps, timed = sorted(tables, key=lambda t: t.time_budget_s is not None)
    assert steps.time_budget_s is None and timed.time_budget_s == 30.0
    assert {e.variant: e.metrics["accuracy"] for e in timed.entries} == {"sdpa": 0.55, "fast": 0.65}
    assert "equal time: what learns most in 30 s on this hardware" in timed.title
    assert "equal time" not in steps.title
    header, body = task_rows(timed)
    assert {r[1]: r[header.index("steps reached")] for r in body} == {"sdpa": "80", "fast": "240"}
    assert "steps reached" not in task_rows(steps)[0] and "steps" in task_rows(steps)[0]
    matrices = overall_matrix(tables)
    assert len(matrices) == 2 and [m.tasks for m in matrices] == [["t"], ["t"]]
    assert sum("equal time" in m.environment for m in matrices) == 1
    assert sweeps(stored, {"t": ACC}) == []  # a budget is not a swept setting beside step-based rows


def test_a_budget_enters_the_setup_hash_by_construction():
    from attnbench import plugins
    from attnbench.runner.pairing import Pairing, row_config

    task = next(t for t in plugins.load().tasks if t.name == "listops")

    def hashed(**budget) -> str:
        config = row_config(task, Pairing(task="listops", variant="sdpa", profile="quick", seed=0, **budget))
        return setup_hash(ResultRow(task="listops", variant="sdpa", profile="quick", seed=0, environment="e",
                                    config_hash="h", status="ok", config=config))

    assert hashed() != hashed(budget_s=30.0) != hashed(budget_s=60.0)
