"""The selective-copy probe, with length extrapolation.

``data`` holds the generator, ``task`` the profiles and the run (shared with the other
probes through :mod:`attnbench.training.probes`).
"""

from __future__ import annotations

import attnbench

from .task import TASK, SelectiveCopyTask

__all__ = ["TASK", "SelectiveCopyTask", "register_tasks"]


@attnbench.hookimpl
def register_tasks(register):
    """Register the selective-copy task."""
    register(TASK)
