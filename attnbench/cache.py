"""Where tasks keep what they derive from their data (trained tokenizers, generated sets).

``$ATTNBENCH_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/attnbench``, else
``~/.cache/attnbench``; one sub-folder per task. Never inside the repository.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(task: str) -> Path:
    """The cache folder of ``task`` (not created here)."""
    root = os.environ.get("ATTNBENCH_CACHE_DIR")
    if root:
        return Path(root) / task
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "attnbench" / task
