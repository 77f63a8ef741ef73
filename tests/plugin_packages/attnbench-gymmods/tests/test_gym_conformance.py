"""The plugin author's side: attnbench's conformance kit on the attention-gym-style variants."""

from attnbench.testing import AttentionConformance


class TestGymMods(AttentionConformance):
    attnbench_variants = ["gym-*"]
