"""sparse: BigBird-style block-sparse softmax attention (window + global + random blocks).

The sequence is cut into blocks of ``b`` keys. Each query block attends to ``window_blocks``
neighbouring blocks (a count of blocks, odd; named apart from the token ``window`` that tasks
give local-style variants, so a task's even token window never reaches it), to the
``globals`` first blocks, and to ``random`` other blocks drawn once per sequence length from
a seed fixed at build time; the global blocks' queries attend to every key. Key blocks are
gathered per query block, so the largest tensor is (L, (globals + window_blocks + random)·b)
plus (globals·b, L): linear in L for a fixed block size, never a masked (L, L) matrix.
Causal: future window/random blocks are dropped and the diagonal block is masked by position.

Zaheer et al., "Big Bird: Transformers for Longer Sequences", NeurIPS 2020.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from attnbench_plugins.attention.local import masked_softmax
from torch import nn

import attnbench
from attnbench.nn.masks import key_padding


class BlockSparseAttention(nn.Module):
    """Block-sparse attention. Options: ``block`` (32), ``window_blocks`` (3, odd),
    ``globals`` (1 block), ``random`` (2 blocks per query block)."""

    def __init__(self, config: attnbench.AttentionConfig) -> None:
        super().__init__()
        self.block = int(config.option("block", 32))
        self.window = int(config.option("window_blocks", 3))
        self.globals = int(config.option("globals", 1))
        self.random = int(config.option("random", 2))
        if self.block < 1 or self.window < 1 or self.window % 2 == 0 or self.globals < 0 or self.random < 0:
            raise ValueError(
                f"sparse attention: need block >= 1, an odd window_blocks >= 1, globals >= 0, random >= 0; "
                f"got block={self.block}, window_blocks={self.window}, globals={self.globals}, random={self.random}"
            )
        # Drawn from torch's RNG so torch.manual_seed before build fixes the random blocks.
        self.seed = int(torch.randint(0, 2**31 - 1, ()).item())
        self.dropout = nn.Dropout(config.dropout)
        self._tables: dict[tuple[int, bool], tuple[torch.Tensor, torch.Tensor]] = {}

    def table(self, nblocks: int, causal: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """For each non-global query block: the key-block indices it reads and which are real.

        Only called with ``nblocks > globals`` (otherwise every query is global).

        Returns ``(index, valid)``, each (nblocks − globals, slots). A slot is invalid when it
        falls off the sequence, lies in the future (causal), or repeats a block already read —
        a repeated block would be counted twice by the softmax.
        """
        key = (nblocks, causal)
        if key not in self._tables:
            gen = torch.Generator().manual_seed(self.seed + nblocks)
            half = self.window // 2
            rows_index, rows_valid = [], []
            for n in range(self.globals, nblocks):
                seen = set(range(self.globals))
                window = range(n - half, n + 1 if causal else n + half + 1)
                slots = [(j, True) for j in range(self.globals)]
                for j in window:
                    fresh = 0 <= j < nblocks and j not in seen
                    slots.append((j if fresh else 0, fresh))
                    seen.add(j)
                limit = n if causal else nblocks
                candidates = [j for j in range(limit) if j not in seen]
                picks = torch.randperm(len(candidates), generator=gen)[: self.random].tolist()
                slots += [(candidates[i], True) for i in sorted(picks)]
                slots += [(0, False)] * (self.random - len(picks))
                rows_index.append([j for j, _ in slots])
                rows_valid.append([ok for _, ok in slots])
            self._tables[key] = (
                torch.tensor(rows_index, dtype=torch.long),
                torch.tensor(rows_valid, dtype=torch.bool),
            )
        return self._tables[key]

    def pattern(self, length: int, causal: bool) -> torch.Tensor:
        """The dense (L, L) boolean pattern this module attends with: for tests and plots only."""
        block = min(self.block, length)
        nblocks = math.ceil(length / block)
        out = torch.zeros(nblocks * block, nblocks * block, dtype=torch.bool)
        out[: self.globals * block] = True
        index, valid = self.table(nblocks, causal)
        for row, n in enumerate(range(self.globals, nblocks)):
            for j in index[row][valid[row]].tolist():
                out[n * block : (n + 1) * block, j * block : (j + 1) * block] = True
        out = out[:length, :length]
        out[:, : self.globals * block] = True
        return out.tril() if causal else out

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> torch.Tensor:
        if need_weights:
            raise NotImplementedError("sparse attention does not return weights (its spec says weights=False)")
        length = q.shape[-2]
        if k.shape[-2] != length:
            raise ValueError(
                f"sparse attention is self-attention only (cross=False): query length {length} "
                f"!= key length {k.shape[-2]}"
            )
        scale = q.shape[-1] ** -0.5
        device = q.device
        keep = key_padding(attn_mask)  # (B, L) or None
        block = min(self.block, length)
        nblocks = math.ceil(length / block)
        padded = nblocks * block
        nglobal = min(self.globals * block, length)

        # Global queries attend to every key: (globals·b, L) scores.
        allowed_g = torch.ones(nglobal, length, dtype=torch.bool, device=device)
        if is_causal:
            allowed_g = allowed_g.tril()
        if keep is not None:
            allowed_g = allowed_g & keep[:, None, None, :]
        scores_g = (q[..., :nglobal, :] @ k.transpose(-2, -1)) * scale
        # Without padding no row is empty: every query reads its own block (the diagonal).
        empty_rows = keep is not None
        out_g = self.dropout(masked_softmax(scores_g, allowed_g, empty_rows)) @ v
        if nblocks <= self.globals:
            return out_g

        # Every other query block gathers its key blocks: (n, slots·b) keys per block of b queries.
        index, valid = (t.to(device) for t in self.table(nblocks, is_causal))
        pad = (0, 0, 0, padded - length)
        qb = F.pad(q, pad).unflatten(-2, (nblocks, block))[..., self.globals :, :, :]
        kb = F.pad(k, pad).unflatten(-2, (nblocks, block))[..., index, :, :].flatten(-3, -2)
        vb = F.pad(v, pad).unflatten(-2, (nblocks, block))[..., index, :, :].flatten(-3, -2)
        scores = (qb @ kb.transpose(-2, -1)) * scale  # (B, H, n − globals, b, slots·b)

        kpos = (index[..., None] * block + torch.arange(block, device=device)).flatten(-2)  # (n', slots·b)
        allowed = (valid.repeat_interleave(block, dim=-1) & (kpos < length))[:, None, :]
        if is_causal:
            qpos = torch.arange(self.globals * block, padded, device=device).view(-1, block, 1)
            allowed = allowed & (kpos[:, None, :] <= qpos)
        if keep is not None:  # (B, L) -> (B, 1, n', 1, slots·b)
            keep_b = F.pad(keep, (0, padded - length))[:, kpos]
            allowed = allowed & keep_b[:, None, :, None, :]
        out = self.dropout(masked_softmax(scores, allowed, empty_rows)) @ vb
        out = out.flatten(-3, -2)[..., : length - nglobal, :]
        return torch.cat([out_g, out], dim=-2)


@attnbench.hookimpl
def register_attention(register):
    register(attnbench.AttentionSpec(
        name="sparse",
        build=BlockSparseAttention,
        summary="BigBird block-sparse attention: window + global + seeded random blocks, gathered per block",
        # Per query: (globals + window_blocks + random)·b keys, plus globals·b rows over all L keys.
        complexity="O(L·b)",
        exact=False,
        causal=True,
        padding_mask=True,
        cross=False,
        weights=False,
        # With 4 blocks of 8, window 3 + 1 global + 4 random cover every block: any error
        # beyond rounding would mean a block is missed or counted twice.
        tolerance=1e-5,
        tolerance_options={"block": 8, "random": 4},
        not_incremental="its random blocks are drawn per sequence length, so a position's keys depend on how "
        "long the whole sequence will be",
        citation="Zaheer et al. 2020, Big Bird: Transformers for Longer Sequences (NeurIPS)",
        options={"block": 32, "window_blocks": 3, "globals": 1, "random": 2},
    ))
