"""The passkey probe, with length extrapolation.

``data`` holds the generator, ``task`` the profiles and the run (shared with the other
probes through :mod:`attnbench.training.probes`).
"""

from __future__ import annotations

import attnbench

from .task import TASK, PasskeyTask

__all__ = ["TASK", "PasskeyTask", "register_tasks"]


@attnbench.hookimpl
def register_tasks(register):
    """Register the passkey task."""
    register(TASK)
