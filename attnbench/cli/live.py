"""The live view of ``attnbench run``: the (task × variant) matrix filling in, an overall bar
whose ETA comes from the durations of finished pairings, and one bar per running pairing.

Variants are numbered over the whole plan and pairings skipped by ``--resume`` are drawn as
done, so a resumed run looks like the first one did where it stopped.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.progress import Progress, ProgressColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from attnbench.specs import ResultRow

if TYPE_CHECKING:
    from attnbench.runner.pairing import Pairing

STATUS_STYLE = {"ok": "green", "failed": "red", "timeout": "yellow", "unsupported": "dim", "diverged": "magenta"}

#: One character a cell in the live matrix: pending, running, then the row's status.
CELL = {"pending": "[dim]·[/]", "running": "[cyan]▶[/]", "ok": "[green]✓[/]", "failed": "[red]✗[/]",
        "timeout": "[yellow]⏱[/]", "unsupported": "[dim]–[/]", "diverged": "[magenta]~[/]"}


MATRIX_LEGEND = "matrix: ✓ ok  ✗ failed  ⏱ timeout  – unsupported  ~ diverged  ▶ running  · to do"


class Estimate:
    """Time left for the run, from the durations of its finished pairings.

    Each task's remaining pairings are costed at the mean duration of that task's finished
    ones (a task with none yet: the mean over all tasks), a running pairing at that mean
    less the time it has run, and the total is shared among the ``jobs`` lanes. Unsupported
    pairings (which take no time) are left out of the means while others exist. None until
    the first pairing finishes.
    """

    def __init__(self, pairings: Sequence[Pairing], jobs: int = 1) -> None:
        self.jobs = max(1, jobs)
        self._pending = Counter(p.task for p in pairings)
        self._running: dict[Pairing, float] = {}
        self._ran: dict[str, list[float]] = {}
        self._skipped: list[float] = []

    def started(self, pairing: Pairing, now: float | None = None) -> None:
        self._pending[pairing.task] -= 1
        self._running[pairing] = time.monotonic() if now is None else now

    def finished(self, pairing: Pairing, status: str, now: float | None = None) -> None:
        start = self._running.pop(pairing, None)
        if start is None:
            return
        seconds = (time.monotonic() if now is None else now) - start
        (self._skipped if status == "unsupported" else self._ran.setdefault(pairing.task, [])).append(seconds)

    def seconds_left(self, now: float | None = None) -> float | None:
        """Estimated seconds until every pairing has finished (None: nothing finished yet)."""
        now = time.monotonic() if now is None else now
        every = [s for durations in self._ran.values() for s in durations] or self._skipped
        if not every:
            return None
        overall = sum(every) / len(every)

        def mean(task: str) -> float:
            durations = self._ran.get(task)
            return sum(durations) / len(durations) if durations else overall

        work = sum(n * mean(task) for task, n in self._pending.items() if n > 0)
        work += sum(max(mean(p.task) - (now - start), 0.0) for p, start in self._running.items())
        lanes = min(self.jobs, sum(n for n in self._pending.values() if n > 0) + len(self._running)) or 1
        return work / lanes


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class EtaColumn(ProgressColumn):
    """Time remaining: for the overall bar from an :class:`Estimate`, for a pairing's bar from its steps."""

    def __init__(self) -> None:
        super().__init__()
        self._per_bar = TimeRemainingColumn()
        self.overall: int | None = None
        self.estimate: Estimate | None = None

    def render(self, task) -> Text:
        if task.id != self.overall or self.estimate is None:
            return self._per_bar.render(task)
        if task.finished:
            return Text(_clock(0), style="progress.remaining")
        left = self.estimate.seconds_left()
        return Text("-:--:--" if left is None else _clock(left), style="progress.remaining")


class MatrixProgress(Progress):
    """rich Progress with the (task × variant) matrix drawn above the bars while it fills."""

    matrix: RenderableType | None = None

    def get_renderables(self):
        if self.matrix is not None:
            yield self.matrix
        yield from super().get_renderables()


class RichDisplay:
    """The live matrix (one row per task, one cell per variant), an overall bar with an ETA,
    and one bar per running pairing.

    ``pairings`` is the whole plan; ``finished`` maps those of its pairings that
    ``--resume`` skips to their stored status, drawn as done from the start. Variants are
    numbered over the whole plan, so a resumed run numbers them as the first run did.
    """

    def __init__(self, progress: Progress, pairings: Sequence[Pairing], *, finished: Mapping[Pairing, str] | None = None,
                 jobs: int = 1, eta: EtaColumn | None = None) -> None:
        finished = dict(finished or {})
        todo = [p for p in pairings if p not in finished]
        self._progress = progress
        self._overall = progress.add_task("pairings", total=len(todo), info="")
        self._bars: dict[Pairing, int] = {}
        self._tasks = list(dict.fromkeys(p.task for p in pairings))
        self._variants = list(dict.fromkeys(p.variant for p in pairings))
        self._cells: dict[tuple[str, str], list[str]] = {}
        for p in pairings:
            self._cells.setdefault((p.task, p.variant), []).append(finished.get(p, "pending"))
        self.estimate = Estimate(todo, jobs)
        if eta is not None:
            eta.overall, eta.estimate = self._overall, self.estimate
        self._draw()

    def _draw(self) -> None:
        if not isinstance(self._progress, MatrixProgress) or not self._cells:
            return
        table = Table(box=None, padding=(0, 1))
        table.add_column("task")
        for index in range(len(self._variants)):
            table.add_column(str(index + 1), justify="center")
        for task in self._tasks:
            table.add_row(task, *(" ".join(CELL[s] for s in self._cells.get((task, v), [])) for v in self._variants))
        key = "  ".join(f"{i + 1}={v}" for i, v in enumerate(self._variants))
        # Legend and key are lines of their own: as title and caption rich would wrap them to the table's width.
        self._progress.matrix = Group(Text(MATRIX_LEGEND), table, Text(key))

    def _mark(self, pairing: Pairing, old: str, new: str) -> None:
        states = self._cells.get((pairing.task, pairing.variant))
        if states and old in states:
            states[states.index(old)] = new
            self._draw()

    @staticmethod
    def _label(p: Pairing) -> str:
        changed = "".join(f" {k}={v}" for k, v in (*p.overrides, *p.variant_options))
        return f"{p.task} × {p.variant} (seed {p.seed}{changed})"

    def started(self, pairing: Pairing) -> None:
        self.estimate.started(pairing)
        self._bars[pairing] = self._progress.add_task(self._label(pairing), total=None, info="starting")
        self._mark(pairing, "pending", "running")

    def progress(self, pairing: Pairing, done: int, total: int, description: str, info: dict[str, float]) -> None:
        text = " ".join(f"{k}={v:.4g}" for k, v in info.items())
        self._progress.update(self._bars[pairing], completed=done, total=total or None,
                              info=f"{description} {text}".strip())

    def finished(self, pairing: Pairing, row: ResultRow) -> None:
        self.estimate.finished(pairing, row.status)
        self._mark(pairing, "running", row.status)
        self._progress.remove_task(self._bars.pop(pairing))
        self._progress.advance(self._overall)
        style = STATUS_STYLE.get(row.status, "")
        self._progress.console.print(
            f"[{style}]{row.status:>11}[/] {escape(self._label(pairing))} {escape(_brief(row))}", highlight=False
        )


def _brief(row: ResultRow) -> str:
    if row.status == "ok":
        shown = ", ".join(f"{k}={v:.4g}" for k, v in list(row.metrics.items())[:3])
        return f"{shown} [{row.duration_s:.1f} s]"
    return row.error.strip().splitlines()[-1][:160] if row.error else ""
