"""A two-stage DETR: CNN stem, Transformer encoder with a dense head, top-k query selection, DETR decoder.

Plain DETR (learned object queries, Carion et al. 2020) needs hundreds of epochs; on this
benchmark's CPU budget it does not learn (mAP@.5 0.001 after 40 s). This model follows the
two-stage design of Deformable DETR (Zhu et al. 2021, "two-stage") and DINO's query
selection (Zhang et al. 2023), with ordinary (not deformable) attention throughout:

1. a CNN stem (three 3×3 convolutions, two of stride 2) maps the image to a (S/4 × S/4) grid of ``dim``-wide tokens, plus
   learned position embeddings;
2. a Transformer encoder (:class:`attnbench.nn.Encoder`, the variant in self-attention);
3. a dense head predicts a class (with a no-object class) and a box for every cell, the box
   as an offset from the cell's anchor;
4. the ``num_queries`` cells most likely to hold an object become the decoder's queries:
   content from the cell's feature, position from its proposed box (detached);
5. a DETR decoder (:class:`QueryDecoderLayer`: self-attention among the queries, which is
   not causal, then cross-attention to the encoder memory, both with the variant) refines
   them; each query predicts a class and a box relative to its proposal.

Both the dense head and the decoder are trained with the Hungarian loss (:mod:`.loss`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from attnbench.nn import Encoder, MultiheadAttention
from attnbench.specs import AttentionSpec

#: The stem's downsampling: a 48×48 canvas becomes a 12×12 grid of tokens.
STRIDE = 4
#: Side of a cell's anchor box, as a fraction of the canvas, before the head's offset.
ANCHOR_SIZE = 0.3


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims, dims[1:], strict=False)):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


def _logit(x: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    x = x.clamp(eps, 1 - eps)
    return torch.log(x / (1 - x))


class QueryDecoderLayer(nn.Module):
    """DETR's decoder layer, pre-norm: self-attention among the queries (not causal),
    cross-attention to the memory, feed-forward. The query position embedding is added
    to the normalised input of both attentions, as DETR adds it to queries and keys."""

    def __init__(self, dim: int, heads: int, attention: AttentionSpec, *, ff_dim: int, dropout: float, max_len: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = MultiheadAttention(dim, heads, attention, max_len=max_len, dropout=dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = MultiheadAttention(dim, heads, attention, max_len=max_len, cross=True, dropout=dropout)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        h, _ = self.self_attn(self.norm1(x) + pos)
        x = x + self.dropout(h)
        h, _ = self.cross_attn(self.norm2(x) + pos, memory)
        x = x + self.dropout(h)
        return x + self.dropout(self.ff(self.norm3(x)))


class TwoStageDetector(nn.Module):
    """The detector described in the module docstring.

    ``forward(images)`` takes (B, C, S, S) floats in [0, 1] and returns a dict: ``logits``
    (B, Q, K + 1) and ``boxes`` (B, Q, 4) of the decoder, ``dense_logits`` (B, L, K + 1) and
    ``dense_boxes`` (B, L, 4) of the encoder's dense head, and ``proposals`` (B, Q) — the
    indices of the cells chosen as queries. Boxes are ``cx, cy, w, h`` in [0, 1]; the last
    class is "no object".
    """

    def __init__(
        self,
        attention: AttentionSpec,
        *,
        in_channels: int,
        num_classes: int,
        canvas: int,
        dim: int,
        heads: int,
        enc_depth: int,
        dec_depth: int,
        ff_dim: int,
        num_queries: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        grid = math.ceil(math.ceil(canvas / 2) / 2)
        tokens = grid * grid
        if num_queries > tokens:
            raise ValueError(f"num_queries {num_queries} exceeds the {tokens} cells of a {canvas}-pixel canvas")
        self.num_queries = num_queries
        groups = math.gcd(8, dim // 2)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, dim // 2, 3, stride=2, padding=1), nn.GroupNorm(groups, dim // 2), nn.GELU(),
            nn.Conv2d(dim // 2, dim, 3, stride=2, padding=1), nn.GroupNorm(groups, dim), nn.GELU(),
            nn.Conv2d(dim, dim, 3, padding=1),
        )
        self.pos = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        max_len = tokens
        self.encoder = Encoder(enc_depth, dim, heads, attention, ff_dim=ff_dim, dropout=dropout, max_len=max_len)
        self.dense_class = nn.Linear(dim, num_classes + 1)
        self.dense_box = _mlp([dim, dim, 4])
        centers = (torch.arange(grid, dtype=torch.float32) + 0.5) / grid
        cy, cx = torch.meshgrid(centers, centers, indexing="ij")
        anchors = torch.stack([cx, cy, torch.full_like(cx, ANCHOR_SIZE), torch.full_like(cy, ANCHOR_SIZE)], -1)
        self.register_buffer("anchors", _logit(anchors.reshape(1, tokens, 4)), persistent=False)
        self.query_content = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim))
        self.query_pos = _mlp([4, dim, dim])
        self.decoder = nn.ModuleList(
            QueryDecoderLayer(dim, heads, attention, ff_dim=ff_dim, dropout=dropout, max_len=max_len) for _ in range(dec_depth)
        )
        self.decoder_norm = nn.LayerNorm(dim)
        self.class_head = nn.Linear(dim, num_classes + 1)
        self.box_head = _mlp([dim, dim, dim, 4])
        for head in (self.dense_box[-1], self.box_head[-1]):  # start at the anchor / the proposal
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        tokens = self.stem(images).flatten(2).transpose(1, 2) + self.pos
        memory = self.encoder(tokens)
        dense_logits = self.dense_class(memory)
        dense_boxes = torch.sigmoid(self.dense_box(memory) + self.anchors)

        objectness = 1 - dense_logits.detach().softmax(-1)[..., -1]
        proposals = objectness.topk(self.num_queries, dim=1).indices  # (B, Q)
        gather = proposals[..., None]
        reference = dense_boxes.detach().gather(1, gather.expand(-1, -1, 4))
        x = self.query_content(memory.gather(1, gather.expand(-1, -1, memory.shape[-1])))
        pos = self.query_pos(reference)
        keys = memory + self.pos
        for layer in self.decoder:
            x = layer(x, pos, keys)
        x = self.decoder_norm(x)
        return {
            "logits": self.class_head(x),
            "boxes": torch.sigmoid(self.box_head(x) + _logit(reference)),
            "dense_logits": dense_logits,
            "dense_boxes": dense_boxes,
            "proposals": proposals,
        }
