"""Image classification: a timm ViT on the attention variant, on real MNIST digits, CIFAR-10 or an ImageFolder tree.

``vit`` holds the ViT classifier, training and attention-map code the vision tasks share,
``data`` the MNIST default and the ``--data-dir`` readers, ``task`` the profiles and run.
"""

from __future__ import annotations

import attnbench

from .task import TASK, ImageClassificationTask

__all__ = ["TASK", "ImageClassificationTask", "register_tasks"]


@attnbench.hookimpl
def register_tasks(register):
    """Register the image-classification task."""
    register(TASK)
