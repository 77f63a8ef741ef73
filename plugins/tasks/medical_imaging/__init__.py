"""Medical imaging: a timm ViT on the attention variant classifies 2-D slices (simulated CT by default, or MedMNIST).

``simulator`` generates the CT slices, ``data`` reads MedMNIST ``.npz`` files, ``task``
holds the profiles and the run (the ViT comes from the image-classification package).
"""

from __future__ import annotations

import attnbench

from .task import TASK, MedicalImagingTask

__all__ = ["TASK", "MedicalImagingTask", "register_tasks"]


@attnbench.hookimpl
def register_tasks(register):
    """Register the medical-imaging task."""
    register(TASK)
