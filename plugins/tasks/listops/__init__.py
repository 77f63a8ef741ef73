"""LRA ListOps: the value of a long nested MIN/MAX/MED/SM expression, generated or read from LRA's TSV.

``generator`` reimplements LRA's data generator, ``data`` reads LRA's TSV files and
tokenises, ``task`` holds the profiles and the training run.
"""

from __future__ import annotations

import attnbench

from .task import TASK, ListOpsTask

__all__ = ["TASK", "ListOpsTask", "register_tasks"]


@attnbench.hookimpl
def register_tasks(register):
    """Register the ListOps task."""
    register(TASK)
