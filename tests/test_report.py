"""The report a reader sees: an HTML page with tables and plots, JSON and CSV for machines,
and tables that survive a pipe."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import run_cli


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two short ListOps pairings (softmax returns attention weights, sdpa does not)."""
    path = tmp_path_factory.mktemp("report") / "results.sqlite"
    ran = run_cli("run", "--tasks", "listops", "--variants", "sdpa,softmax", "--profile", "smoke",
                  "--set", "steps=3", "--store", str(path))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    (path.parent / "run.out").write_text(ran.stdout)  # what the run showed, for the live-matrix test
    return path


def test_html_report_is_one_self_contained_page_with_tables_and_plots(store: Path, tmp_path: Path):
    result = run_cli("report", "--store", str(store), "--out", str(tmp_path / "md"), "--html", str(tmp_path / "site"))
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "site" / "report.html").read_text()
    assert "<h2>overall" in page and "<h2>listops</h2>" in page and "step peak MB" in page
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) >= 3  # quality vs time, quality vs memory, training loss
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert 'alt="listops training loss"' in page


def test_run_shows_the_filled_matrix_and_an_eta_as_whole_lines_off_a_terminal(store: Path):
    lines = (store.parent / "run.out").read_text().splitlines()
    assert "matrix: ✓ ok  ✗ failed  ⏱ timeout  – unsupported  ~ diverged  ▶ running  · to do" in lines
    assert any(re.fullmatch(r"\s*listops\s+✓\s+✓\s*", line) for line in lines), lines  # one cell per variant
    assert "1=sdpa  2=softmax" in lines
    assert any(line.startswith("pairings ") and "2/2" in line and "ETA" in line for line in lines), lines
    assert any(re.fullmatch(r"2 pairing\(s\) in [\d.]+ s", line) for line in lines), lines


def test_json_and_csv_reports_carry_ranks_and_every_row(store: Path):
    result = run_cli("report", "--store", str(store), "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)  # nothing but JSON on stdout
    (table,) = data["tasks"]
    assert {e["variant"] for e in table["entries"]} == {"sdpa", "softmax"}
    assert all(e["rank"] >= 1 and "step_peak_mb" in e["cost"] for e in table["entries"])
    sdpa = next(e for e in table["entries"] if e["variant"] == "sdpa")
    assert sdpa["cost_ratio_to_sdpa"]["train_s"] == pytest.approx(1.0)
    rows = list(csv.DictReader(io.StringIO(run_cli("report", "--store", str(store), "--format", "csv").stdout)))
    assert {r["variant"] for r in rows} == {"sdpa", "softmax"} and all(r["task"] == "listops" for r in rows)


def test_piped_report_keeps_each_heading_on_one_line(store: Path, tmp_path: Path):
    from attnbench.store import Store

    with Store(store) as s:
        environment = s.rows()[0].environment
    lines = run_cli("report", "--store", str(store), "--out", str(tmp_path), env={"COLUMNS": "80"}).stdout.splitlines()
    # The narrow overall matrix must not fold its long environment heading.
    heading = f"overall · smoke · {environment} (per-task cells: --wide, or overall.md)"
    assert heading in [line.rstrip() for line in lines], lines


def test_piped_tables_keep_whole_names_and_machine_formats_parse():
    piped = run_cli("list", "attention", env={"COLUMNS": "80"})
    lines = [line for line in piped.stdout.splitlines() if "sdpa-efficient" in line]
    assert lines and "O(L^2)" in lines[0]  # one line per variant, not folded at 80 columns
    listed = json.loads(run_cli("list", "attention", "--format", "json").stdout)
    local = next(v for v in listed if v["name"] == "local")
    assert local["causal"] is True and "window=64" in local["options"]
    settings = list(csv.DictReader(io.StringIO(run_cli("list", "--settings", "smoke", "--format", "csv").stdout)))
    assert {"task": "listops", "setting": "steps", "smoke": "20"} in settings


BENCH_JSON = Path(__file__).parent.parent / "benchmarks" / "variant-cost-cpu.json"  # written by `attnbench bench --out`


@pytest.fixture(scope="module")
def bench_page(store: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The HTML report of ``store`` with the committed bench json's scaling section."""
    site = tmp_path_factory.mktemp("bench-site")
    result = run_cli("report", "--store", str(store), "--out", str(site / "md"), "--html", str(site), "--bench",
                     str(BENCH_JSON))
    assert result.returncode == 0, result.stderr
    return (site / "report.html").read_text()


def test_html_report_adds_scaling_curves_with_fitted_slopes_from_a_bench_json(bench_page: str):
    page = bench_page
    assert "<h2>scaling with sequence length (variant-cost-cpu.json)</h2>" in page
    (figure,) = re.findall(r'alt="time and peak memory vs L, variant-cost-cpu.json" src="data:image/png;base64,([^"]+)"',
                           page)
    assert base64.b64decode(figure).startswith(b"\x89PNG")
    # Every slope the bench printed is in the page's slope table, on its variant's row.
    summary = json.loads(BENCH_JSON.read_text())["summary"]
    table = page[page.index("Scaling: log-log slope"):]
    for s in summary:
        if s["status"] != "ok":
            continue
        cells = re.search(rf"<tr><td>{re.escape(s['variant'])}</td>(.*?)</tr>", table).group(1)
        fwd, memory = s["slopes"]["fwd_ms"]["slope"], s["slopes"]["peak_fwd_mb"]["slope"]
        assert f"<td>{fwd:.2f}</td>" in cells and f"<td>{memory:.2f}" in cells, (s["variant"], cells)


DECODE_JSON = Path(__file__).parent.parent / "benchmarks" / "decode-cpu.json"  # written by `attnbench bench --decode --out`


def test_html_report_shows_a_decode_run_with_its_crossover_table(store: Path, tmp_path: Path):
    site = tmp_path / "site"
    result = run_cli("report", "--store", str(store), "--out", str(tmp_path / "md"), "--html", str(site), "--bench",
                     str(DECODE_JSON))
    assert result.returncode == 0, result.stderr
    page = (site / "report.html").read_text()
    assert "<h2>decoding cost versus context (decode-cpu.json)</h2>" in page
    (figure,) = re.findall(r'alt="decoding cost vs context, decode-cpu.json" src="data:image/png;base64,([^"]+)"', page)
    assert base64.b64decode(figure).startswith(b"\x89PNG")
    # every variant of the run has its row in the summary, and every crossover the json holds is shown on it
    payload = json.loads(DECODE_JSON.read_text())
    table = page[page.index("Decoding summary"):]
    for variant in {m["variant"] for m in payload["measurements"]}:
        assert f"<tr><td>{variant}</td>" in table, variant
    truncated = tmp_path / "cut.json"
    truncated.write_text(json.dumps({"kind": "decode", "meta": {}}))
    bad = run_cli("report", "--store", str(store), "--html", str(tmp_path / "other"), "--bench", str(truncated))
    assert bad.returncode == 2
    assert f"--bench {truncated} is not a whole `attnbench bench --decode` json" in bad.stderr.splitlines()[0]
    assert not (tmp_path / "other").exists()


def test_a_bench_file_that_is_not_a_bench_json_is_refused_by_name(store: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]):
    from attnbench.cli import main

    bad = tmp_path / "leaderboard.json"
    bad.write_text('{"tasks": []}')
    assert main(["report", "--store", str(store), "--html", str(tmp_path / "site"), "--bench", str(bad)]) == 2
    assert f"--bench {bad} is not an `attnbench bench` json" in capsys.readouterr().err
    assert not (tmp_path / "site").exists()
    assert main(["report", "--store", str(store), "--bench", str(BENCH_JSON)]) == 2
    assert "pass --html DIR as well" in capsys.readouterr().err


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")

#: Appended to a copy of the page: once everything has loaded, the title says how many images decoded.
IMAGE_CHECK = """<script>window.addEventListener("load", () => {
  const images = [...document.images];
  const broken = images.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt);
  document.title = `images ${images.length} decoded ${images.length - broken.length} broken [${broken.join("; ")}]`;
});</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH: the headless-browser check of the HTML report "
                    "needs it (Debian: apt-get install chromium); CI does not depend on it")
def test_html_report_renders_in_headless_chromium_with_every_image_decoded(bench_page: str, tmp_path: Path):
    checked = tmp_path / "checked.html"
    checked.write_text(bench_page.replace("</body>", IMAGE_CHECK + "</body>"))
    browser = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000"]
    dom = subprocess.run([*browser, "--dump-dom", checked.as_uri()], capture_output=True, text=True, timeout=120)
    title = re.search(r"<title>(.*?)</title>", dom.stdout)
    assert title, dom.stdout[-2000:] + dom.stderr[-2000:]
    count = len(re.findall(r"<img ", bench_page))
    assert count >= 4 and title.group(1) == f"images {count} decoded {count} broken []", title.group(1)
    shot = tmp_path / "report.png"
    subprocess.run([*browser, f"--screenshot={shot}", "--window-size=1280,2000", checked.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 10_000


def test_two_environments_on_one_device_keep_their_own_files(tmp_path: Path):
    """Rows from two torch versions on one CPU never share a ranking, and neither's files overwrite the other's."""
    from attnbench import ResultRow
    from attnbench.store import Store

    path = tmp_path / "results.sqlite"
    with Store(path) as s:
        for env, (a, b) in {"cpu:X | torch 2.8.0 | py 3.11.7": (0.6, 0.5),
                            "cpu:X | torch 2.9.1 | py 3.11.7": (0.7, 0.4)}.items():
            for variant, value in (("sdpa", a), ("linear", b)):
                for key, lr in (("base", 0.001), ("swept", 0.003)):
                    s.write(ResultRow(task="listops", variant=variant, profile="quick", seed=0, environment=env,
                                      config_hash=key, status="ok", metrics={"accuracy": value},
                                      efficiency={"train_s": 1.0}, config={"steps": 10, "lr": lr}))
    shown = run_cli("report", "--store", str(path), "--out", str(tmp_path / "out"))
    assert shown.returncode == 0, shown.stderr
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    tables = [n for n in names if n.startswith("listops-quick-") and n.endswith(".md") and "-vs-" not in n]
    assert len(tables) == 4, names  # 2 setups × 2 environments
    assert {n for n in tables if "torch-2.8.0" in n} and {n for n in tables if "torch-2.9.1" in n}
    sweeps = [n for n in names if "-vs-lr-" in n]
    assert len(sweeps) == 2 and all("torch" in n for n in sweeps), names
    for name in tables:
        text = (tmp_path / "out" / name).read_text()
        assert ("torch 2.8.0" in text) == ("torch-2.8.0" in name)  # each file holds its own environment's table
