"""Plugin discovery through real installed packages: a working third-party plugin and broken siblings."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pluggy
import pytest
from conftest import run_cli

import attnbench
from attnbench import hookspecs, plugins
from attnbench.errors import DuplicateNameError, UnknownNameError
from attnbench.registry import Registry


def test_builtins_register_through_the_entry_point_group():
    loaded = plugins.load()
    assert {"softmax", "sdpa"} <= set(loaded.attention.names())
    assert "listops" in loaded.tasks.names()
    assert loaded.info_for("attention", "sdpa").distribution == "attnbench"


def test_third_party_plugin_is_listed_and_runs(plugin_site: Path, tmp_path: Path):
    listed = run_cli("list", site=plugin_site)
    assert listed.returncode == 0, listed.stderr
    assert "cosine" in listed.stdout and "majority-bits" in listed.stdout
    assert "attnbench-example:example" in listed.stdout
    store = tmp_path / "r.sqlite"
    ran = run_cli("run", "--tasks", "majority-bits", "--variants", "cosine,sdpa", "--profile", "smoke",
                  "--store", str(store), site=plugin_site, cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.count(" ok ") >= 2, ran.stdout
    # the broken siblings were reported, not fatal
    assert "attnbench-broken:broken-import" in ran.stderr


def test_broken_plugins_are_reported_with_distribution_entry_point_and_error(plugin_site: Path):
    result = run_cli("plugins", "--json", site=plugin_site)
    infos = {i["name"]: i for i in json.loads(result.stdout)}
    assert "No module named 'a_module_that_does_not_exist'" in infos["broken-import"]["error"]
    assert infos["broken-import"]["distribution"] == "attnbench-broken"
    assert "register_attentions" in infos["misspelt-hook"]["error"]
    dup = infos["steals-name"]["error"]
    assert "attnbench:softmax" in dup and "attnbench-broken:steals-name" in dup
    assert infos["example"]["attention"] == ["cosine"] and infos["example"]["tasks"] == ["majority-bits"]
    assert infos["softmax"]["error"] is None  # the built-in keeps its name
    table = run_cli("plugins", site=plugin_site)
    assert table.returncode == 1 and "error" in table.stdout


def test_disabling_plugins_by_distribution_or_entry_point(plugin_site: Path):
    result = run_cli("plugins", "--json", site=plugin_site,
                     env={"ATTNBENCH_DISABLE_PLUGINS": "attnbench-broken,example"})
    infos = {i["name"]: i for i in json.loads(result.stdout)}
    assert infos["broken-import"]["disabled"] and infos["broken-import"]["error"] is None
    assert infos["example"]["disabled"] and infos["example"]["attention"] == []
    listed = run_cli("list", "attention", site=plugin_site, env={"ATTNBENCH_DISABLE_PLUGINS": "example"})
    assert "cosine" not in listed.stdout


def test_registry_suggests_close_names_and_rejects_duplicates():
    reg: Registry[object] = Registry("attention", "attnbench list attention")
    first, second = object(), object()
    reg.add("linformer", first, source="a:one")
    reg.add("linformer", first, source="a:one")  # the same object again is harmless
    with pytest.raises(DuplicateNameError, match="by a:one and by b:two"):
        reg.add("linformer", second, source="b:two")
    with pytest.raises(UnknownNameError, match="did you mean 'linformer'"):
        reg.get("linfromer")
    with pytest.raises(UnknownNameError, match="no attention matches the pattern 'nope\\*'"):
        reg.select(["nope*"])
    assert str(UnknownNameError("x")) == "x"  # reads well, unlike KeyError's repr


def test_every_hook_is_documented_and_tested():
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    hooks = sorted(n for n in dir(pm.hook) if not n.startswith("_"))
    assert hooks == ["register_attention", "register_tasks"], "a new hook needs docs, tests and this list"
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    tests = "".join(p.read_text() for p in Path(__file__).parent.rglob("*.py"))
    for name in hooks:
        doc = inspect.getdoc(getattr(hookspecs, name))
        assert doc and ":param register:" in doc, f"{name} lacks reference documentation"
        assert f"{name}(register)" in readme, f"Missing from plugin hook documentation: {name}"
        assert f"def {name}(" in tests, f"no test plugin implements {name}"


def test_public_api_is_reexported():
    for name in ("hookimpl", "AttentionSpec", "AttentionConfig", "Task", "Metric", "RunContext", "ResultRow"):
        assert hasattr(attnbench, name)
    assert attnbench.__version__


def test_plugin_authors_run_the_conformance_kit_with_pytest(plugin_site: Path):
    """The example package's own tests use the pytest11 kit, as a third party's would."""
    import os
    import subprocess
    import sys

    tests_dir = Path(__file__).parent / "plugin_packages" / "attnbench-example" / "tests"
    env = {**os.environ, "PYTHONPATH": str(plugin_site), "ATTNBENCH_DISABLE_PLUGINS": "attnbench-broken,attnbench-faults"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
                             str(tests_dir), str(tests_dir)], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
