"""Machine translation (English→French by default), scored by sacrebleu's BLEU.

``corpus`` gathers the embedded real translations (Django's catalogs, CLDR names through
Babel, num2words phrases), ``data`` reads Moses-style parallel text, trains the BPE
vocabulary and makes tensors, ``model`` holds the encoder–decoder and its decoding,
``task`` the profiles and the training run.
"""

from __future__ import annotations

import attnbench

from .task import TASK, TranslationTask

__all__ = ["TASK", "TranslationTask", "register_tasks"]


@attnbench.hookimpl
def register_tasks(register):
    """Register the translation task."""
    register(TASK)
