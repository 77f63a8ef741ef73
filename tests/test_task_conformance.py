"""Every registered task against the conformance kit."""

from attnbench.testing import TaskConformance


class TestEveryTask(TaskConformance):
    """Parametrized over all registered tasks by attnbench's pytest plugin."""
