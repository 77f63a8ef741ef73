"""LRA Pathfinder: are two markers joined by one contour? (Linsley et al. 2018; Tay et al. 2021).

``generator`` reimplements the Pathfinder image generator as LRA ran it, ``data`` reads
LRA's released layout and caches generated splits, ``task`` holds the profiles; the
model and training are shared with ``lra-image`` (``lra_image.pixels``).
"""

from __future__ import annotations

import attnbench

from .task import TASK, LraPathfinderTask

__all__ = ["TASK", "LraPathfinderTask", "register_tasks"]


@attnbench.hookimpl
def register_tasks(register):
    """Register the LRA Pathfinder task."""
    register(TASK)
