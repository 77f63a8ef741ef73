"""Sequential recommendation: SASRec-style next-item prediction on MovieLens, judged by NDCG@10.

``data`` reads MovieLens/RecBole ratings files and builds SASRec's leave-one-out splits,
``model`` holds SASRec on any causal attention variant, ``task`` the profiles, training and
the ranking metrics.
"""

from __future__ import annotations

import attnbench

from .task import TASK, SequentialRecommendationTask

__all__ = ["TASK", "SequentialRecommendationTask", "register_tasks"]


@attnbench.hookimpl
def register_tasks(register):
    """Register the sequential-recommendation task."""
    register(TASK)
