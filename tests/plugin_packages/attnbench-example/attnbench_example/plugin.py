"""Registers the ``cosine`` attention variant and the ``majority-bits`` task."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import attnbench
from attnbench.errors import DataError
from attnbench.nn import Encoder
from attnbench.nn.masks import dense_mask


class CosineAttention(nn.Module):
    """Softmax over cosine similarities with a learned temperature (Henry et al. 2020, QKNorm)."""

    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, q, k, v, attn_mask=None, is_causal=False, need_weights=False):
        q = nn.functional.normalize(q, dim=-1)
        k = nn.functional.normalize(k, dim=-1)
        scores = (q @ k.transpose(-2, -1)) * self.log_scale.exp()
        mask = dense_mask(attn_mask, is_causal, q.shape[-2], k.shape[-2], q.device)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(-1)
        out = weights @ v
        return (out, weights) if need_weights else out


def _load_bits(data_dir: Path) -> torch.Tensor:
    """Read ``bits.txt``: one string of 0/1 per line, all of one odd length."""
    path = data_dir / "bits.txt"
    if not path.is_file():
        raise DataError(f"{path} is missing; expected bits.txt with one 0/1 string per line")
    lines = path.read_text().split()
    if not lines or any(set(line) - {"0", "1"} or len(line) != len(lines[0]) for line in lines):
        raise DataError(f"{path}: expected lines of 0/1 characters, all of one length")
    return torch.tensor([[int(c) for c in line] for line in lines])


class MajorityBits:
    """Is there a majority of ones in a random bit string? (seeded, generated)"""

    name = "majority-bits"
    domain = "synthetic"
    description = "Classify whether a random bit string holds more ones than zeros."
    metric = attnbench.Metric(name="accuracy", lower=0.0, upper=1.0)
    requires = frozenset({"padding_mask"})
    profiles = {
        profile: {"length": 16, "examples": 256, "steps": steps, "batch": 32, "dim": 16}
        for profile, steps in (("smoke", 20), ("quick", 60), ("standard", 200), ("full", 400))
    }

    def run(self, ctx: attnbench.RunContext) -> dict[str, float]:
        cfg = ctx.config
        bits = _load_bits(ctx.data_dir) if ctx.data_dir else torch.randint(
            0, 2, (cfg["examples"], cfg["length"] | 1), generator=torch.Generator().manual_seed(1234))
        labels = (bits.sum(1) * 2 > bits.shape[1]).long()
        embed = nn.Embedding(2, cfg["dim"])
        encoder = Encoder(1, cfg["dim"], 2, ctx.attention, max_len=bits.shape[1])
        head = nn.Linear(cfg["dim"], 2)
        model = nn.ModuleDict({"embed": embed, "encoder": encoder, "head": head}).to(ctx.device)

        def forward(x: torch.Tensor) -> torch.Tensor:
            mask = torch.ones_like(x, dtype=torch.bool)
            return head(encoder(embed(x), key_padding_mask=mask).mean(1))

        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        ctx.progress.start(cfg["steps"], "train")
        with ctx.meter.train():
            for _step in range(cfg["steps"]):
                idx = torch.randint(0, len(bits), (cfg["batch"],))
                loss = nn.functional.cross_entropy(forward(bits[idx].to(ctx.device)), labels[idx].to(ctx.device))
                opt.zero_grad()
                loss.backward()
                opt.step()
                ctx.meter.count(cfg["batch"])
                ctx.progress.advance(1, loss=loss.item())

        class Model(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.parts = model

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return forward(x)

        with torch.no_grad():
            accuracy = (forward(bits.to(ctx.device)).argmax(1).cpu() == labels).float().mean().item()
        ctx.meter.model(Model(), bits[:32].to(ctx.device))
        return {"accuracy": accuracy, "majority_baseline": max(labels.float().mean().item(), 1 - labels.float().mean().item())}


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(
        name="cosine", build=CosineAttention, summary="softmax over cosine similarity, learned temperature",
        complexity="O(L^2)", weights=True, arbitrary_mask=True, citation="Henry et al. 2020, Query-Key Normalization",
    ))


@attnbench.hookimpl
def register_tasks(register):
    register(MajorityBits())
