"""``attnbench run --tensorboard DIR``: each pairing's training curve as TensorBoard event files.

The shared training loop saves a pairing's per-step losses as ``loss-<name>.json`` in its
work directory and records the file as the row's ``loss_curve`` artifact (``loss_curve_<name>``
for a second loop). The process that runs the matrix — the store's only writer — turns
each arriving row's curves into scalars under
``DIR/<task>/<variant>/<profile>-seed<N>-<config hash>`` (the layout of the work
directories), so it works the same for local workers and Ray tasks. Point
``tensorboard --logdir DIR`` at the folder to compare variants' curves.
"""

from __future__ import annotations

import json
from pathlib import Path

from attnbench.errors import AttnbenchError
from attnbench.specs import ResultRow

#: What to install when ``--tensorboard`` is asked for without the package.
INSTALL_HINT = "--tensorboard needs the tensorboard package: pip install 'attnbench[tensorboard]'"


class TensorBoardError(AttnbenchError):
    """``--tensorboard`` cannot be honoured (the package is missing, or the folder is a file)."""


def _summary_writer():
    # torch.utils.tensorboard raises ImportError itself when tensorboard is absent or too old.
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise TensorBoardError(f"{INSTALL_HINT} ({exc})") from None
    return SummaryWriter


def run_dir(root: Path, row: ResultRow) -> Path:
    """Where ``row``'s events go: ``root/<task>/<variant>/<profile>-seed<N>-<config hash>``."""
    return Path(root) / row.task / row.variant / f"{row.profile}-seed{row.seed}-{row.config_hash}"


def _curves(row: ResultRow) -> dict[str, list[tuple[int, float]]]:
    """The row's loss curves by TensorBoard tag: ``loss/train``, ``loss/<name>`` for others."""
    curves = {}
    for kind, path in sorted(row.artifacts.items()):
        if kind != "loss_curve" and not kind.startswith("loss_curve_"):
            continue
        data = json.loads(Path(path).read_text())
        name = "train" if kind == "loss_curve" else kind.removeprefix("loss_curve_")
        curves[f"loss/{name}"] = list(zip(data["step"], data["loss"], strict=True))
    return curves


class TensorBoardLog:
    """Writes each finished row's loss curves as TensorBoard scalars under one folder.

    Creating it checks that tensorboard is installed and that ``root`` is not a file
    (:class:`TensorBoardError` otherwise), so ``attnbench run`` can refuse before any work starts.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        blocker = next((p for p in (self.root, *self.root.parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise TensorBoardError(f"--tensorboard {root}: {blocker} is a file, not a folder; pass a folder "
                                   "(it is created if missing)")
        self._writer_class = _summary_writer()

    def write(self, row: ResultRow) -> Path | None:
        """Write ``row``'s loss curves (steps as TensorBoard steps, values as recorded).

        Returns the run folder, or None when the row has no curve (unsupported, failed
        before training). A curve file that cannot be read raises ``ValueError`` naming it.
        """
        try:
            curves = _curves(row)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"cannot read the loss curve of {row.task} × {row.variant} (seed {row.seed}) "
                             f"from {dict(row.artifacts)}: {exc}") from exc
        if not curves:
            return None
        folder = run_dir(self.root, row)
        writer = self._writer_class(log_dir=str(folder))
        try:
            for tag, points in curves.items():
                for step, loss in points:
                    writer.add_scalar(tag, float(loss), int(step))
            writer.add_text("pairing", f"{row.task} × {row.variant}, profile {row.profile}, seed {row.seed}, "
                            f"status {row.status}, config {row.config_hash}, {row.environment}", 0)
        finally:
            writer.close()
        return folder
