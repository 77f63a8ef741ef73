"""Every registered variant plugs into attnbench.nn and trains on ListOps at the smoke profile."""

from __future__ import annotations

import pytest
import torch

from attnbench import plugins
from attnbench.runner import Pairing, execute

VARIANTS = plugins.load().attention.names()


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_trains_on_listops_smoke(variant: str):
    spec = plugins.get_attention(variant)
    row = execute(Pairing(task="listops", variant=variant, profile="smoke", seed=0), torch.device("cpu"))
    why_not = spec.missing({"padding_mask"}) or (spec.available and spec.available(torch.device("cpu")))
    if why_not:
        assert row.status == "unsupported" and row.error, f"{variant}: {row.status} {row.error}"
        return
    assert row.status == "ok", f"{variant}: {row.status}\n{row.error}"
    assert 0.0 <= row.metrics["accuracy"] <= 1.0
    assert row.efficiency["params"] > 0 and row.efficiency["flops_per_example"] > 0
