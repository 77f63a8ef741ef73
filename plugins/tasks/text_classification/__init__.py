"""Text classification: sentiment of real Rotten Tomatoes review snippets, or aclImdb / TSV from --data-dir.

``data`` reads the corpora, ``tokens`` turns text into ids (BPE trained on the training
split, or bytes), ``task`` holds the profiles and the training run.
"""

from __future__ import annotations

import attnbench

from .task import TASK, TextClassificationTask

__all__ = ["TASK", "TextClassificationTask", "register_tasks"]


@attnbench.hookimpl
def register_tasks(register):
    """Register the text-classification task."""
    register(TASK)
