"""`attnbench run` as a script sees it: exit codes (0 ok/unsupported, 1 failed/timeout/diverged,
2 usage error, 130 Ctrl-C in tests/test_runner.py), what it says before it starts (a created
store folder, rows it will replace), per-task settings, and a live matrix that tells the truth
(the ETA, resumed cells). Faulty pairings come from tests/plugin_packages/attnbench-faults."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest
from conftest import run_cli
from rich.console import Console

from attnbench import ResultRow
from attnbench.cli.live import Estimate, MatrixProgress, RichDisplay
from attnbench.cli.run import parse_data_dirs
from attnbench.errors import AttnbenchError, UnknownNameError
from attnbench.runner.matrix import plan
from attnbench.runner.pairing import Pairing

#: One pairing that is unsupported (listops needs padding masks, sdpa-flash has none): the cheapest real run.
UNSUPPORTED = ("--tasks", "listops", "--variants", "sdpa-flash", "--profile", "smoke")


def _rows(store: Path) -> list[tuple]:
    db = sqlite3.connect(store)
    try:
        return db.execute("SELECT task, variant, status FROM results ORDER BY task, variant").fetchall()
    finally:
        db.close()


def test_run_help_documents_the_exit_codes():
    shown = run_cli("run", "--help").stdout
    assert "exit status" in shown
    for code, meaning in (("0", "ok or unsupported"), ("1", "failed, timeout or diverged"), ("2", "usage error"),
                          ("130", "interrupted"), ("143", "SIGTERM")):
        assert any(line.strip().startswith(code) and meaning in line for line in shown.splitlines()), (code, shown)


@pytest.mark.slow
def test_failed_timeout_and_diverged_pairings_exit_1_and_are_named(plugin_site: Path, tmp_path: Path):
    store = tmp_path / "r.sqlite"
    ran = run_cli("run", "--tasks", "fault-raises,fault-nan,fault-hang", "--variants", "sdpa", "--profile", "smoke",
                  "--timeout", "10", "--jobs", "2", "--store", str(store), site=plugin_site, cwd=tmp_path)
    assert ran.returncode == 1, ran.stdout[-2000:] + ran.stderr[-2000:]
    assert _rows(store) == [("fault-hang", "sdpa", "timeout"), ("fault-nan", "sdpa", "diverged"),
                            ("fault-raises", "sdpa", "failed")]
    for status, task in (("failed", "fault-raises"), ("diverged", "fault-nan"), ("timeout", "fault-hang")):
        assert f"{status} {task} × sdpa (seed 0)" in " ".join(ran.stdout.split()), ran.stdout
    assert "3 of 3 pairing(s) did not succeed" in ran.stderr and "exit status 1" in ran.stderr
    assert "Traceback" not in ran.stderr


@pytest.mark.slow
def test_ok_and_unsupported_exit_0_a_new_folder_is_said_and_a_rerun_says_it_replaces(tmp_path: Path):
    store = tmp_path / "new" / "deeper" / "r.sqlite"
    first = run_cli("run", *UNSUPPORTED, "--store", str(store), cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == f"created folder {tmp_path / 'new'} for the store {store}"
    assert _rows(store) == [("listops", "sdpa-flash", "unsupported")]
    again = run_cli("run", *UNSUPPORTED, "--store", str(store), cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    lines = again.stdout.splitlines()
    assert lines[0] == (f"note: 1 of 1 pairing(s) already have rows in {store} (1 finished); running them again "
                        "replaces those rows (pass --resume to skip the finished ones)")
    assert lines[1].startswith("running 1 pairing(s)")
    resumed = run_cli("run", *UNSUPPORTED, "--store", str(store), "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert resumed.stdout.splitlines()[:2] == [f"resume: 1 of 1 pairings already in {store}",
                                               f"running 0 pairing(s) on cpu at profile smoke, 1 at a time on local "
                                               f"workers → {store}"]


# --- per-task settings -----------------------------------------------------------------------------

def _by_task(pairings: list[Pairing]) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for p in pairings:
        found.setdefault(p.task, []).append(dict(p.overrides))
    return found


def test_a_bare_setting_changes_every_selected_task_that_has_it():
    pairings = plan(tasks=["listops", "lra-text"], variants=["sdpa"], profile="smoke", seeds=[0],
                    overrides={"length": 48, "steps": 3})
    assert _by_task(pairings) == {"listops": [{"steps": 3}], "lra-text": [{"length": 48, "steps": 3}]}
    with pytest.raises(UnknownNameError, match="none of the selected tasks .listops, lra-text. has a setting 'lenght'"):
        plan(tasks=["listops", "lra-text"], variants=["sdpa"], profile="smoke", seeds=[0], overrides={"lenght": 64})


def test_a_task_setting_changes_that_task_and_wins_over_the_bare_one():
    pairings = plan(tasks=["listops", "lra-text"], variants=["sdpa"], profile="smoke", seeds=[0],
                    overrides={"lra-text.steps": 5, "steps": 3})
    assert _by_task(pairings) == {"listops": [{"steps": 3}], "lra-text": [{"steps": 5}]}
    with pytest.raises(UnknownNameError, match="names task 'listop', which is not among the selected tasks .* "
                                               "did you mean 'listops'"):
        plan(tasks=["listops"], variants=["sdpa"], profile="smoke", seeds=[0], overrides={"listop.steps": 5})
    with pytest.raises(UnknownNameError, match="task 'listops' has no setting 'length'"):
        plan(tasks=["listops", "lra-text"], variants=["sdpa"], profile="smoke", seeds=[0],
             overrides={"listops.length": 64})


def test_a_task_sweep_leaves_the_other_tasks_at_one_run():
    pairings = plan(tasks=["listops", "lra-text"], variants=["sdpa"], profile="smoke", seeds=[0],
                    sweep=("lra-text.length", [32, 48]))
    assert _by_task(pairings) == {"listops": [{}], "lra-text": [{"length": 32}, {"length": 48}]}


def test_data_dirs_per_task_are_part_of_the_configuration_hash(tmp_path: Path):
    from attnbench import plugins
    from attnbench.runner.pairing import config_hash

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    assert parse_data_dirs([str(a)]) == str(a)
    assert parse_data_dirs([f"listops={a}", str(b)]) == {"listops": str(a), None: str(b)}
    weird = tmp_path / "x=y"
    weird.mkdir()
    assert parse_data_dirs([str(weird)]) == str(weird)  # an existing folder with '=' in its name is a folder
    with pytest.raises(AttnbenchError, match="given a folder for task 'listops' twice"):
        parse_data_dirs([f"listops={a}", f"listops={b}"])
    pairings = plan(tasks=["listops", "lra-text"], variants=["sdpa"], profile="smoke", seeds=[0],
                    data_dir={"listops": str(a), None: str(b)})
    dirs = {p.task: p.data_dir for p in pairings}
    assert dirs == {"listops": str(a.resolve()), "lra-text": str(b.resolve())}
    task = plugins.get_task("listops")
    (listops,) = [p for p in pairings if p.task == "listops"]
    assert config_hash(task, listops) != config_hash(task, Pairing(task="listops", variant="sdpa", profile="smoke", seed=0))
    assert config_hash(task, listops) != config_hash(task, Pairing(**{**listops.__dict__, "data_dir": str(b)}))
    with pytest.raises(UnknownNameError, match="--data-dir lra-txt=.* names task 'lra-txt'.*did you mean 'lra-text'"):
        plan(tasks=["listops", "lra-text"], variants=["sdpa"], profile="smoke", seeds=[0], data_dir={"lra-txt": str(a)})


# --- the live matrix -------------------------------------------------------------------------------

def _p(task: str, variant: str, seed: int = 0) -> Pairing:
    return Pairing(task=task, variant=variant, profile="smoke", seed=seed)


def test_the_eta_comes_from_the_first_finished_pairing_per_task_scaled_by_what_remains():
    pairings = [_p("a", "x"), _p("a", "y"), _p("a", "z"), _p("b", "x"), _p("b", "y")]
    estimate = Estimate(pairings, jobs=1)
    estimate.started(pairings[0], now=0.0)
    assert estimate.seconds_left(now=5.0) is None  # nothing has finished yet
    estimate.finished(pairings[0], "ok", now=10.0)
    # a: 2 left at 10 s; b has no finished pairing yet, so its 2 are costed at the mean over all (10 s)
    assert estimate.seconds_left(now=10.0) == pytest.approx(40.0)
    estimate.started(pairings[1], now=10.0)
    estimate.finished(pairings[1], "ok", now=40.0)  # a's mean is now 20 s
    estimate.started(pairings[2], now=40.0)
    assert estimate.seconds_left(now=45.0) == pytest.approx(15.0 + 2 * 20.0)  # the running one has 15 s to go


def test_the_eta_shares_the_work_among_jobs_and_ignores_unsupported_pairings():
    pairings = [_p("a", v) for v in "uvwxyz"]
    estimate = Estimate(pairings, jobs=2)
    estimate.started(pairings[0], now=0.0)
    estimate.finished(pairings[0], "unsupported", now=0.1)
    estimate.started(pairings[1], now=0.1)
    estimate.finished(pairings[1], "ok", now=8.1)
    assert estimate.seconds_left(now=8.1) == pytest.approx(4 * 8.0 / 2)


def _render(display_args: dict) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    progress = MatrixProgress(console=console)
    RichDisplay(progress, **display_args)
    console.print(progress.matrix)
    return console.file.getvalue()


def test_resumed_cells_are_done_and_variants_keep_their_numbers():
    pairings = [_p("listops", v) for v in ("sdpa", "linear", "local")]
    fresh = _render({"pairings": pairings})
    resumed = _render({"pairings": pairings, "finished": {pairings[0]: "ok", pairings[2]: "unsupported"}})
    key = "1=sdpa  2=linear  3=local"
    assert key in fresh and key in resumed
    (row,) = [line for line in resumed.splitlines() if line.strip().startswith("listops")]
    assert row.split()[1:] == ["✓", "·", "–"]


def test_a_finished_row_marks_its_cell():
    pairings = [_p("listops", "sdpa"), _p("listops", "linear")]
    console = Console(file=io.StringIO(), width=200, color_system=None)
    progress = MatrixProgress(console=console)
    display = RichDisplay(progress, pairings, finished={pairings[0]: "ok"})
    display.started(pairings[1])
    display.finished(pairings[1], ResultRow(task="listops", variant="linear", profile="smoke", seed=0, environment="e",
                                            config_hash="h", status="failed", error="boom"))
    console.print(progress.matrix)
    (row,) = [line for line in console.file.getvalue().splitlines() if line.strip().startswith("listops")]
    assert row.split()[1:] == ["✓", "✗"]
