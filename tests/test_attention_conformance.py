"""Every registered variant against the conformance kit (new variants are tested on registration)."""

from attnbench.testing import AttentionConformance


class TestEveryVariant(AttentionConformance):
    """Parametrized over all registered variants by attnbench's pytest plugin."""
