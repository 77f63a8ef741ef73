"""Speech Commands keyword spotting: 12 classes from log-mel spectrograms by a Transformer.

``synthesize`` writes the shipped synthetic clips (espeak-ng, flite), ``data`` reads them or
a Speech Commands v0.02 folder, ``model`` holds the front end and the Transformer, ``task``
the profiles and the training run.
"""

from __future__ import annotations

import attnbench

from .task import TASK, SpeechCommandsTask

__all__ = ["TASK", "SpeechCommandsTask", "register_tasks"]


@attnbench.hookimpl
def register_tasks(register):
    """Register the speech-commands task."""
    register(TASK)
