"""LRA Image: an image classified from its pixels, one token a pixel (Tay et al. 2021).

``pixels`` holds what LRA's image tasks share (tokens, the classifier, the run), ``data``
reads the default MNIST digits and CIFAR-10 batches, ``task`` holds the profiles.
"""

from __future__ import annotations

import attnbench

from .task import TASK, LraImageTask

__all__ = ["TASK", "LraImageTask", "register_tasks"]


@attnbench.hookimpl
def register_tasks(register):
    """Register the LRA Image task."""
    register(TASK)
