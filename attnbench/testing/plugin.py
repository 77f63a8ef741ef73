"""attnbench's pytest plugin (entry point ``pytest11``): conformance tests for plugin authors.

Installed with attnbench, it adds options and parametrizes two fixtures:

* ``attention_spec`` — every registered variant, or those named by
  ``--attnbench-variants=a,b*`` or a test class's ``attnbench_variants`` attribute;
* ``attnbench_task`` — every registered task, or ``--attnbench-tasks`` /
  ``attnbench_tasks``.

A plugin author checks their variant with two lines in a test module::

    from attnbench.testing import AttentionConformance

    class TestMyAttention(AttentionConformance):
        attnbench_variants = ["mine"]

It does nothing unless a test requests those fixtures; opt out entirely with
``pytest -p no:attnbench``.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("attnbench", "attnbench conformance kit")
    group.addoption("--attnbench-variants", default=None,
                    help="comma-separated variant names or globs to check (default: all registered)")
    group.addoption("--attnbench-tasks", default=None,
                    help="comma-separated task names or globs to check (default: all registered)")
    group.addoption("--attnbench-compile", action="store_true", default=False,
                    help="also check each variant under torch.compile (slow on CPU)")


def _selected(metafunc: pytest.Metafunc, attr: str, option: str) -> list[str] | None:
    names = getattr(metafunc.cls, attr, None) if metafunc.cls else None
    if names is None and metafunc.config.getoption(option):
        names = metafunc.config.getoption(option).split(",")
    return list(names) if names else None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "attention_spec" not in metafunc.fixturenames and "attnbench_task" not in metafunc.fixturenames:
        return
    from attnbench import plugins

    loaded = plugins.load()
    if "attention_spec" in metafunc.fixturenames:
        specs = loaded.attention.select(_selected(metafunc, "attnbench_variants", "--attnbench-variants"))
        metafunc.parametrize("attention_spec", specs, ids=[s.name for s in specs])
    if "attnbench_task" in metafunc.fixturenames:
        tasks = loaded.tasks.select(_selected(metafunc, "attnbench_tasks", "--attnbench-tasks"))
        metafunc.parametrize("attnbench_task", tasks, ids=[t.name for t in tasks])
