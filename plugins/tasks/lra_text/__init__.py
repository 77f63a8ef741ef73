"""LRA Text: byte-level classification of long documents (news outlets by default, aclImdb from ``--data-dir``).

``data`` turns documents into LRA's byte ids and reads the aclImdb layout; ``task`` holds
the profiles and the training run.
"""

from __future__ import annotations

import attnbench

from .task import TASK, LraTextTask

__all__ = ["TASK", "LraTextTask", "register_tasks"]


@attnbench.hookimpl
def register_tasks(register):
    """Register the LRA text task."""
    register(TASK)
