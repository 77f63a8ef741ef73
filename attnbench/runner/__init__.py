"""Running the matrix: pairings (:mod:`.pairing`), worker processes (:mod:`.worker`,
:mod:`.local`), the cost meter (:mod:`.meter`) and device handling (:mod:`.device`).

The names below are imported on first use, so ``attnbench.runner.overrides`` or
``attnbench.runner.device`` can be imported without torch (the CLI's start-up).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from attnbench.runner.matrix import plan, run_matrix, split_resumed
    from attnbench.runner.pairing import Pairing, execute

_WHERE = {"plan": "matrix", "run_matrix": "matrix", "split_resumed": "matrix", "Pairing": "pairing", "execute": "pairing"}

__all__ = ["Pairing", "execute", "plan", "run_matrix", "split_resumed"]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"attnbench.runner.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'attnbench.runner' has no attribute {name!r}")
