"""``attnbench run --tensorboard DIR``: the training curves the store points at, as TensorBoard events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli

from attnbench.store import Store


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_each_pairing_s_losses_become_tensorboard_scalars(tmp_path: Path):
    pytest.importorskip("tensorboard", reason="pip install 'attnbench[tensorboard]' to test --tensorboard")
    store, board = tmp_path / "results.sqlite", tmp_path / "tb"
    ran = run_cli("run", "--tasks", "listops", "--variants", "sdpa,linear", "--profile", "smoke", "--set", "steps=4",
                  "--store", str(store), "--tensorboard", str(board))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    with Store(store) as s:
        rows = s.rows()
    assert {r.variant for r in rows} == {"sdpa", "linear"} and all(r.status == "ok" for r in rows)
    for r in rows:
        run_dir = board / r.task / r.variant / f"{r.profile}-seed{r.seed}-{r.config_hash}"
        assert list(run_dir.glob("events.out.tfevents.*")), f"no event file in {run_dir}"
        stored = json.loads(Path(r.artifacts["loss_curve"]).read_text())
        scalars = _scalars(run_dir)
        assert [step for step, _ in scalars["loss/train"]] == stored["step"] == [1, 2, 3, 4]
        # TensorBoard keeps float32: equal to the stored float64 losses to float32 precision.
        assert [value for _, value in scalars["loss/train"]] == pytest.approx(stored["loss"], rel=1e-6)


def test_without_tensorboard_the_option_is_refused_before_any_work(tmp_path: Path):
    # A package named tensorboard that fails to import stands in for an environment without it.
    shadow = tmp_path / "shadow" / "tensorboard"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('tensorboard is not installed here')\n")
    store = tmp_path / "results.sqlite"
    ran = run_cli("run", "--tasks", "listops", "--variants", "sdpa", "--profile", "smoke",
                  "--store", str(store), "--tensorboard", str(tmp_path / "tb"), site=shadow.parent)
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert "--tensorboard needs the tensorboard package: pip install 'attnbench[tensorboard]'" in ran.stderr
    assert "Traceback" not in ran.stderr
    assert not store.exists() and not (tmp_path / "tb").exists()  # nothing ran, nothing was written
