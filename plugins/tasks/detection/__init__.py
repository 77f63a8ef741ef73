"""Object detection: a two-stage DETR on scenes composed from real digits, or on COCO, judged by COCO mAP.

``scenes`` composes the default data, ``coco`` reads a COCO folder, ``model`` holds the
detector, ``loss`` the Hungarian set loss, ``task`` the profiles and the training run.
"""

from __future__ import annotations

import attnbench

from .task import TASK, DetectionTask

__all__ = ["TASK", "DetectionTask", "register_tasks"]


@attnbench.hookimpl
def register_tasks(register):
    """Register the detection task."""
    register(TASK)
