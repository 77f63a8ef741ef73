"""The committed reference leaderboard cannot drift from the code: each of its task tables was
made with the configuration the code gives that task and profile today.

The hash compared is :func:`attnbench.leaderboard.tables.setup_hash` — the one that names a
table and its files (``<task>-<profile>-<config>-<device>.md``): it covers the task's resolved
profile settings (and a data directory when one is passed), not the variant's options, seed,
device or versions. A changed profile (a new key, a new value) changes it; then new rows would
never join the reference tables and ``--resume`` against the reference store would rerun
everything. Fix it by regenerating the reference (its command is in leaderboards/README.md),
or by reverting the profile change (a new option can be read with a default instead of being
listed in the profile at its no-op value).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attnbench import ResultRow, plugins
from attnbench.leaderboard.tables import setup_hash

#: The reference quick matrices (leaderboards/README.md): the one-seed matrix and the three-seed one
#: being landed in stages; the other folders record older runs and sweeps.
REFERENCES = [Path(__file__).parent.parent / "leaderboards" / name for name in ("cpu-quick-all", "cpu-quick-3seed")]


#: Tables known to be stale, with why they cannot be regenerated here and now. Strict: once the reference is
#: regenerated the test passes, and pytest fails until the entry is removed.
STALE: dict[tuple[str, str], str] = {}


def _committed() -> list:
    tables = [(folder, t) for folder in REFERENCES if (folder / "leaderboard.json").exists()
              for t in json.loads((folder / "leaderboard.json").read_text())["tasks"]]
    return [pytest.param(entry, marks=pytest.mark.xfail(strict=True, reason=STALE[(entry[1]["task"], entry[1]["profile"])]))
            if (entry[1]["task"], entry[1]["profile"]) in STALE else entry for entry in tables]


def _code_config(task: str, profile: str) -> dict:
    """The configuration a default run of ``task`` at ``profile`` stores in its rows today."""
    from attnbench.runner.pairing import Pairing, row_config

    return row_config(plugins.get_task(task), Pairing(task=task, variant="sdpa", profile=profile, seed=0))


def test_the_reference_matrix_of_one_seed_is_committed():
    assert (REFERENCES[0] / "leaderboard.json").exists()


@pytest.mark.parametrize("folder", [f for f in REFERENCES if (f / "leaderboard.json").exists()], ids=lambda f: f.name)
def test_the_reference_has_one_json_table_per_committed_table_file(folder: Path):
    committed = json.loads((folder / "leaderboard.json").read_text())["tasks"]
    tables = {f"{t['task']}-{t['profile']}-{t['config_hash'][:8]}" for t in committed}
    files = {p.stem for p in folder.glob("*.md")
             if p.name not in ("overall.md", "README.md") and "-extrapolation-" not in p.name}
    assert {f for f in files if not any(f.startswith(t) for t in tables)} == set(), "a table file not in leaderboard.json"
    assert {t for t in tables if not any(f.startswith(t) for f in files)} == set(), "a json table without its file"


@pytest.mark.parametrize("entry", _committed(), ids=lambda e: f"{e[0].name}-{e[1]['task']}-{e[1]['profile']}")
def test_a_reference_table_was_made_with_the_configuration_the_code_gives_today(entry: tuple[Path, dict]):
    folder, table = entry
    task, profile, committed = table["task"], table["profile"], table["config_hash"]
    assert task in plugins.load().tasks, (f"{folder.name} holds task {task!r}, which is no longer installed: "
                                          "regenerate the reference or remove its tables")
    config = _code_config(task, profile)
    now = setup_hash(ResultRow(task=task, variant="sdpa", profile=profile, seed=0, environment="", config_hash="",
                               status="ok", config=config))
    if now == committed:
        return
    old = table.get("config")  # written by reports since the table config was stored
    if old:
        changed = sorted(k for k in set(old) | set(config) if old.get(k, "<absent>") != config.get(k, "<absent>"))
        detail = "; ".join(f"{k}: {old.get(k, '<absent>')!r} → {config.get(k, '<absent>')!r}" for k in changed)
    else:
        detail = (f"this reference predates stored configurations, so the changed key is not named; the code's "
                  f"{profile} settings are {json.dumps(config, sort_keys=True, default=str)}")
    pytest.fail(f"leaderboards/{folder.name}: {task} at {profile} was made with config {committed[:8]}, but the code "
                f"configures it as {now[:8]} ({detail}). Regenerate that reference (command in "
                "leaderboards/README.md), or revert the profile change (read a new option with a default instead of "
                "listing it at its no-op value)", pytrace=False)


def test_a_neutral_setting_stays_out_of_the_hash_at_its_value_and_in_it_otherwise():
    from attnbench.runner.pairing import Pairing, config_hash, resolved_config

    task = plugins.get_task("listops")
    assert task.neutral_settings == {"pack": 1}
    default = Pairing(task="listops", variant="sdpa", profile="quick", seed=0)
    explicit = Pairing(task="listops", variant="sdpa", profile="quick", seed=0, overrides=(("pack", 1),))
    packed = Pairing(task="listops", variant="sdpa", profile="quick", seed=0, overrides=(("pack", 2),))
    assert "pack" not in resolved_config(task, default) and "pack" not in resolved_config(task, explicit)
    assert config_hash(task, default) == config_hash(task, explicit) != config_hash(task, packed)
    assert resolved_config(task, packed)["pack"] == 2
