"""The plugin author's side: two classes run attnbench's conformance kit on this plugin."""

from attnbench.testing import AttentionConformance, TaskConformance


class TestCosineAttention(AttentionConformance):
    attnbench_variants = ["cosine"]


class TestMajorityBits(TaskConformance):
    attnbench_tasks = ["majority-bits"]
