"""LRA Retrieval: byte-level two-document matching (news-article views by default, LRA's AAN pairs from ``--data-dir``).

``data`` builds the pairs and reads LRA's AAN TSV files; ``task`` holds the profiles, the
two-tower model and the training run.
"""

from __future__ import annotations

import attnbench

from .task import TASK, DualEncoder, LraRetrievalTask

__all__ = ["TASK", "DualEncoder", "LraRetrievalTask", "register_tasks"]


@attnbench.hookimpl
def register_tasks(register):
    """Register the LRA retrieval task."""
    register(TASK)
