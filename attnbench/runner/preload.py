"""What the local executor's fork server imports once, before it forks any worker.

CPU workers are forked from a *fork server*: a fresh interpreter started by the executor
(not a copy of the process that runs the matrix), which imports this module and then
only forks. Each worker therefore starts from a process that has imported torch,
attnbench's core and attnbench's own plugin modules, and has run no tensor work, opened
no file and started no thread pool of a plugin's; whatever a third-party plugin does at
import time (building tensors, starting threads) happens in the worker, which imports it
itself when it loads the plugin set. A multi-threaded torch op in the matrix's process
(a plugin that sorts 2 million numbers when imported) can no longer leave every forked
worker waiting forever on a thread pool that does not exist in it.

attnbench's own plugin modules are imported here because they are most of a worker's
start-up: with them, a worker is ready after about 0.05 s of CPU time instead of 1.2 s
(spawning a fresh interpreter per pairing costs about 1.8 s; ``benchmarks/worker_startup.py``).
They do no multi-threaded tensor work at import: if they did, every forked worker would hang,
and tests/test_worker_isolation.py, which runs built-in pairings through these workers,
would fail. An import that fails here is left to fail again, and be reported, in the worker.
"""

from __future__ import annotations

import contextlib
import importlib
from importlib import metadata

import torch  # noqa: F401 — imported once here, inherited by every worker

import attnbench.runner.worker  # noqa: F401 — the worker's entry point and what it imports

#: The distribution whose plugin modules are imported here (attnbench's built-ins).
BUILT_IN = "attnbench"


def built_in_modules() -> list[str]:
    """The modules of attnbench's own entry points (``attnbench_plugins.…``)."""
    return [ep.module for ep in metadata.entry_points(group="attnbench")
            if ep.dist is not None and ep.dist.name == BUILT_IN]


for _module in built_in_modules():
    with contextlib.suppress(Exception):
        importlib.import_module(_module)
