"""Running the matrix: pairings (:mod:`.pairing`), worker processes (:mod:`.worker`,
:mod:`.local`), the cost meter (:mod:`.meter`) and device handling (:mod:`.device`)."""

from attnbench.runner.matrix import plan, run_matrix, split_resumed
from attnbench.runner.pairing import Pairing, execute

__all__ = ["Pairing", "execute", "plan", "run_matrix", "split_resumed"]
