"""A variant and a task whose module does multi-threaded tensor work at import time.

The ``argsort`` of 2 million numbers and the 2048 × 2048 distance table run on torch's
intra-op thread pool, so importing this module starts that pool in the importing process
(attnbench's parent process imports every plugin). A worker forked from such a process
would wait forever on a pool that does not exist in it.
"""

from __future__ import annotations

import torch
from torch import nn

import attnbench
from attnbench.nn.masks import dense_mask

#: Built at import, as plugins that precompute document ids or a top-k index do.
DOCUMENT_IDS = torch.rand(2_000_000).argsort()[:4096] % 7
MAX_LEN = 2048
DISTANCE = (torch.arange(MAX_LEN)[:, None] - torch.arange(MAX_LEN)[None, :]).abs().float()


class DistanceBias(nn.Module):
    """Softmax attention with a linear penalty on the distance between query and key (ALiBi-like)."""

    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__()
        self.slope = nn.Parameter(torch.tensor(0.1))

    def forward(self, q, k, v, attn_mask=None, is_causal=False, need_weights=False):
        lq, lk = q.shape[-2], k.shape[-2]
        scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
        scores = scores - self.slope * DISTANCE[:lq, :lk].to(q.device, q.dtype)
        mask = dense_mask(attn_mask, is_causal, lq, lk, q.device)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(-1)
        out = weights @ v
        return (out, weights) if need_weights else out


class DocumentOrder:
    """Is the first document id of a window larger than the last? (from the ids built at import)"""

    name = "doc-order"
    domain = "synthetic"
    description = "Classify whether a window of document ids starts with a larger id than it ends with."
    metric = attnbench.Metric(name="accuracy", lower=0.0, upper=1.0)
    requires = frozenset({"padding_mask"})
    profiles = {profile: {"length": 12, "steps": steps, "batch_size": 16, "dim": 16}
                for profile, steps in (("smoke", 4), ("quick", 40), ("standard", 200), ("full", 400))}

    def run(self, ctx: attnbench.RunContext) -> dict[str, float]:
        from attnbench.nn import Encoder

        cfg = ctx.config
        windows = DOCUMENT_IDS[: (len(DOCUMENT_IDS) // cfg["length"]) * cfg["length"]].view(-1, cfg["length"])
        labels = (windows[:, 0] > windows[:, -1]).long()
        embed = nn.Embedding(7, cfg["dim"])
        encoder = Encoder(1, cfg["dim"], 2, ctx.attention, max_len=cfg["length"])
        head = nn.Linear(cfg["dim"], 2)
        model = nn.ModuleDict({"embed": embed, "encoder": encoder, "head": head}).to(ctx.device)

        def forward(x: torch.Tensor) -> torch.Tensor:
            mask = torch.ones_like(x, dtype=torch.bool)
            return head(encoder(embed(x), key_padding_mask=mask).mean(1))

        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        generator = torch.Generator().manual_seed(ctx.seed)
        ctx.progress.start(cfg["steps"], "train")
        with ctx.meter.train():
            for _step in range(cfg["steps"]):
                idx = torch.randint(0, len(windows), (cfg["batch_size"],), generator=generator)
                loss = nn.functional.cross_entropy(forward(windows[idx].to(ctx.device)), labels[idx].to(ctx.device))
                opt.zero_grad()
                loss.backward()
                opt.step()
                ctx.meter.count(cfg["batch_size"])
                ctx.progress.advance(1, loss=loss.item())
        with torch.no_grad():
            accuracy = (forward(windows.to(ctx.device)).argmax(1).cpu() == labels).float().mean().item()
        return {"accuracy": accuracy}


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(
        name="distance-bias", build=DistanceBias, summary="softmax minus a learned slope times |i - j|",
        complexity="O(L^2)", weights=True, arbitrary_mask=True, needs_max_len=False,
    ))


@attnbench.hookimpl
def register_tasks(register):
    register(DocumentOrder())
