"""Store throughput: rows a second committed to one results store by one writer process, and by
two writer processes writing the same store at once, measured in one run of this script.

Each writer is a fresh subprocess (timed from here with ``harness_overhead._wall``, so both
sides pay for the interpreter and the import) that opens the store and writes ``--rows``
rows of a realistic size, each in its own transaction as ``attnbench run`` does. A second
figure subtracts an empty writer (same imports, no rows) so the ratio compares writing alone.

    python benchmarks/store_throughput.py --rows 500
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness_overhead import _wall  # noqa: E402 — the benchmarks share their timing helper

WRITER = """
import sys
from attnbench import ResultRow
from attnbench.store import Store
path, name, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
metrics = {f"metric_{i}": 0.5 for i in range(6)}
efficiency = {f"figure_{i}": 1234.5 for i in range(8)}
config = {f"key_{i}": i for i in range(20)}
with Store(path) as store:
    for i in range(rows):
        store.write(ResultRow(task="listops", variant=name, profile="smoke", seed=i, environment="cpu | bench",
                              config_hash="0123456789abcdef", status="ok", metrics=metrics, efficiency=efficiency,
                              config=config, finished_at=float(i), duration_s=1.0))
"""


def _concurrent(commands: list[list[str]]) -> float:
    start = time.perf_counter()
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"a writer failed: {err[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=500, help="rows per writer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        def writer(store: Path, name: str, rows: int) -> list[str]:
            return [sys.executable, "-c", WRITER, str(store), name, str(rows)]

        empty = _wall(writer(Path(tmp) / "empty.sqlite", "none", 0))
        one = _wall(writer(Path(tmp) / "one.sqlite", "a", args.rows))
        two_store = Path(tmp) / "two.sqlite"
        two = _concurrent([writer(two_store, "a", args.rows), writer(two_store, "b", args.rows)])
        stored = sqlite3.connect(two_store).execute("SELECT count(*) FROM results").fetchone()[0]
    one_rate, two_rate = args.rows / one, 2 * args.rows / two
    one_net, two_net = args.rows / max(one - empty, 1e-9), 2 * args.rows / max(two - empty, 1e-9)
    print(f"rows per writer={args.rows}; empty writer (start-up, imports, open) {empty:.2f} s")
    print(f"one writer     : {one:6.2f} s  {one_rate:8.1f} rows/s  (minus start-up: {one_net:8.1f} rows/s)")
    print(f"two writers    : {two:6.2f} s  {two_rate:8.1f} rows/s  (minus start-up: {two_net:8.1f} rows/s); "
          f"rows in the store {stored} of {2 * args.rows}")
    print(f"ratio two/one  : {two_rate / one_rate:.2f} (total rows/s), {two_net / one_net:.2f} (minus start-up)")


if __name__ == "__main__":
    main()
