"""The plugin author's side: attnbench's conformance kit on the two FlexAttention variants."""

from attnbench.testing import AttentionConformance


class TestFlexMods(AttentionConformance):
    attnbench_variants = ["softcap", "prefix-lm"]
