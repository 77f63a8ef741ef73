"""What a person sees in a 100-column terminal, what a pipe gets, and help that says what the
commands do. Terminal runs go through a real pseudo-terminal, so the CLI takes its terminal path."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli

from attnbench import ResultRow
from attnbench.store import Store

README = Path(__file__).parent.parent / "README.md"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

#: A reason as long as the ones that were cut mid-word before (`… This is likely`).
REASON = ("attention 'lsh' does not support padding masks: it hashes every position into buckets and sorts them, "
          "so a padded key cannot be dropped without breaking the buckets' sizes, which task 'listops' requires. "
          "This is likely to stay so: pad-free batching is the way to run lsh on this task.")


def in_terminal(*args: str, columns: int = 100, timeout: float = 240) -> str:
    """``python -m attnbench ARGS`` with a pseudo-terminal as stdout; its output without colour codes."""
    main, child = pty.openpty()
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-m", "attnbench", *args], stdout=child, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env)
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=timeout)
    os.close(main)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    return ANSI.sub("", b"".join(chunks).decode()).replace("\r\n", "\n")


def _row(variant: str, seed: int, score: float | None, status: str = "ok", error: str = "") -> ResultRow:
    metrics = {"accuracy": score, "majority_baseline": 0.2} if status == "ok" else {}
    return ResultRow(task="listops", variant=variant, profile="quick", seed=seed, environment="cpu | test",
                     config_hash="h", status=status, metrics=metrics, error=error, config={"steps": 10},
                     efficiency={"params": 1000.0, "train_s": 10.0 + seed, "step_peak_mb": 5.0,
                                 "infer_ms_per_batch": 2.0, "flops_per_example": 1e6, "peak_rss_mb": 300.0})


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("terminal") / "results.sqlite"
    with Store(path) as s:
        for seed, (a, b) in enumerate([(0.70, 0.66), (0.74, 0.69), (0.72, 0.70)]):
            s.write(_row("sdpa", seed, a))
            s.write(_row("linear", seed, b))
        s.write(_row("lsh", 0, None, status="unsupported", error=REASON))
    return path


def _widest(text: str) -> int:
    return max(len(line) for line in text.splitlines())


def _unwrapped(text: str) -> str:
    """The text with line breaks and table borders removed, so a wrapped sentence reads whole again."""
    return " ".join(re.sub(r"[│┃]", " ", text).split())


def test_report_fits_100_columns_with_the_narrow_columns_and_the_whole_reason(store: Path, tmp_path: Path):
    shown = in_terminal("report", "--store", str(store), "--out", str(tmp_path))
    assert _widest(shown) <= 100, shown
    header = next(line for line in shown.splitlines() if "rank" in line and "variant" in line)
    cells = [c.strip() for c in header.strip("┃ ").split("┃")]
    assert cells == ["rank", "variant", "accuracy ↑", "seeds", "train ×sdpa", "memory ×sdpa", "flags"]
    assert REASON in _unwrapped(shown)  # wrapped at words in the terminal, never cut
    # the files hold every column and the whole reason
    (md,) = tmp_path.glob("listops-*.md")
    assert REASON in md.read_text() and "| params |" in md.read_text()
    data = json.loads((tmp_path / "leaderboard.json").read_text())
    assert next(e for e in data["tasks"][0]["entries"] if e["variant"] == "lsh")["note"] == REASON


def test_columns_and_wide_choose_the_terminal_columns(store: Path, tmp_path: Path):
    chosen = run_cli("report", "--store", str(store), "--out", str(tmp_path), "--columns", "variant,delta_sdpa,params")
    assert chosen.returncode == 0, chosen.stderr
    header = next(line for line in chosen.stdout.splitlines() if "variant" in line)
    assert [c.strip() for c in header.strip("┃ ").split("┃")] == ["variant", "Δ sdpa", "params"]
    wide = run_cli("report", "--store", str(store), "--out", str(tmp_path), "--wide")
    for column in ("status", "majority_baseline", "FLOPs/ex", "infer ×sdpa", "peak RSS MB", "pareto", "note"):
        assert column in wide.stdout, column
    bad = run_cli("report", "--store", str(store), "--out", str(tmp_path), "--columns", "rank,speed")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().startswith("error: --columns: unknown column 'speed'; these tables have:"), bad.stderr


def test_piped_report_never_wraps_a_line(store: Path, tmp_path: Path):
    piped = run_cli("report", "--store", str(store), "--out", str(tmp_path), env={"COLUMNS": "60"})
    assert piped.returncode == 0, piped.stderr
    assert f"  lsh: {REASON}" in piped.stdout.splitlines()  # one line, whole
    assert any(re.fullmatch(r"│ 1\s+│ sdpa\s+│ 0\.720 ± 0\.050\s+│ 3\s+│.*", line) for line in piped.stdout.splitlines())


def test_list_fits_100_columns_with_whole_names_and_one_task_in_full():
    shown = in_terminal("list")
    assert _widest(shown) <= 100, max(shown.splitlines(), key=len)
    listed = json.loads(run_cli("list", "--format", "json").stdout)  # both lists, as one json object
    names = [v["name"] for v in listed["attention"]] + [t["name"] for t in listed["tasks"]]
    lines = shown.splitlines()
    for name in names:  # every name whole on one line, never split (`cosforme|r`)
        assert any(re.match(rf"│ {re.escape(name)}\s+│", line) for line in lines), name
    tasks = json.loads(run_cli("list", "tasks", "--format", "json").stdout)
    listops = next(t for t in tasks if t["name"] == "listops")
    one = in_terminal("list", "tasks", "listops")
    assert _widest(one) <= 100
    assert listops["description"] in _unwrapped(one)  # the long description, whole
    assert re.search(r"│ steps\s+│ 20\s+│", one)  # and the settings of every profile
    described = json.loads(run_cli("list", "tasks", "listops", "--format", "json").stdout)
    assert described["description"] == listops["description"] and described["profiles"]["smoke"]["steps"] == 20


def test_list_a_misspelt_name_suggests_the_right_one():
    result = run_cli("list", "tasks", "listop")
    assert result.returncode == 2 and "unknown task 'listop' — did you mean 'listops'" in result.stderr


REPORT_FILES = ("<task>-<profile>-<config>-<device>.md", "<task>-<profile>-<config>-<device>.csv",
                "<task>-<profile>-vs-<key>-<device>.md", "<task>-<profile>-extrapolation-<device>.md",
                "<task>-<profile>-extrapolation-<device>.csv", "overall.md", "overall-<profile>-<environment>.csv",
                "leaderboard.json", "report.html")


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile("".join("[^/]+" if part.startswith("<") else re.escape(part)
                              for part in re.split(r"(<[a-z]+>)", name)) + "$")


def test_the_files_report_writes_are_the_ones_its_help_and_the_readme_name(store: Path, tmp_path: Path):
    from attnbench.cli.report import OUTPUT_FILES

    assert [name for name, _ in OUTPUT_FILES] + ["report.html"] == list(REPORT_FILES)
    help_text = run_cli("report", "--help").stdout
    readme = README.read_text()
    for name in REPORT_FILES:
        assert name in help_text, f"report --help does not name {name}"
        assert f"`{name}`" in readme, f"the README does not name {name}"
    result = run_cli("report", "--store", str(store), "--out", str(tmp_path / "out"), "--html", str(tmp_path / "site"))
    assert result.returncode == 0, result.stderr
    written = [p.name for p in (tmp_path / "out").iterdir()] + [p.name for p in (tmp_path / "site").iterdir()]
    for name in written:
        assert any(_pattern(p).match(name) for p in REPORT_FILES), f"{name} is written but its help does not name it"
    assert {"overall.md", "leaderboard.json", "report.html"} <= set(written)


def test_a_file_given_as_html_folder_is_refused_before_anything_is_written(store: Path, tmp_path: Path):
    blocker = tmp_path / "site"
    blocker.write_text("not a folder")
    result = run_cli("report", "--store", str(store), "--out", str(tmp_path / "out"), "--html", str(blocker))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: --html {blocker} is a file; pass a folder (it is created if missing)"
    assert not (tmp_path / "out" / "overall.md").exists()


def test_plugins_json_is_an_alias_of_format_json():
    alias, full = run_cli("plugins", "--json"), run_cli("plugins", "--format", "json")
    assert alias.stdout == full.stdout and json.loads(alias.stdout)[0]["distribution"]
    assert "alias of --format json" in " ".join(run_cli("plugins", "--help").stdout.split())


def test_without_a_usable_default_folder_the_tables_are_shown_and_no_file_is_written(store: Path, tmp_path: Path):
    # A read-only folder beside the store behaves the same way; root cannot make one, so a file stands in the way.
    copy = tmp_path / "results.sqlite"
    copy.write_bytes(store.read_bytes())
    (tmp_path / "report").write_text("in the way")
    result = run_cli("report", "--store", str(copy))
    assert result.returncode == 0, result.stderr
    assert "│ sdpa" in result.stdout and "wrote" not in result.stdout
    assert result.stderr.strip() == (f"note: no files written: cannot create {tmp_path / 'report'} beside the store; "
                                     "pass --out DIR to write them")
    assert (tmp_path / "report").read_text() == "in the way"
