"""Leaderboards from the results store: ranked task tables and the overall matrix."""

from attnbench.leaderboard.tables import Matrix, TaskTable, overall_matrix, task_tables

__all__ = ["Matrix", "TaskTable", "overall_matrix", "task_tables"]
