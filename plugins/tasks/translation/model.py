"""The encoder–decoder Transformer, with batched greedy and beam-search decoding.

Every attention in it is the variant under test: the encoder's self-attention (source
padding as a key-padding mask), the decoder's causal self-attention and its
cross-attention to the encoder's output. Source and target share one subword vocabulary,
so one embedding table serves both sides and the output projection (tied weights).

Decoding steps the decoder one token at a time when the variant decodes incrementally (its
spec says ``incremental``: a KV cache or a recurrent state, DESIGN.md "Incremental decoding"),
with the cross-attention's keys and values projected once per sentence; otherwise it re-runs
the decoder over the whole prefix at each step. Both give the same tokens (the stepped
outputs equal the full forward's to float tolerance; ``cache=False`` forces re-running). It
stays cheap because sentences are decoded in batches of similar source length, finished rows
leave the batch (greedy), and each batch stops as soon as every row has produced ``</s>``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from attnbench.nn import Decoder, Encoder
from attnbench.nn.kv_cache import select_batch
from attnbench.nn.layers import DecoderState
from attnbench.specs import AttentionSpec

from .data import BOS, EOS, PAD


class Seq2SeqTransformer(nn.Module):
    """Pre-norm Transformer (Vaswani et al. 2017) on any attention variant.

    ``forward(src, src_mask, tgt_in, tgt_mask)`` returns next-token logits (B, Lt, V) for
    teacher forcing: ``src`` (B, Ls) and ``tgt_in`` (B, Lt) are token ids, the masks are
    True for real tokens.
    """

    def __init__(self, attention: AttentionSpec, *, vocab_size: int, max_len: int, dim: int, encoder_depth: int,
                 decoder_depth: int, heads: int, ff_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dim = dim
        self.max_len = max_len
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=PAD)
        self.position = nn.Embedding(max_len, dim)
        layer = {"ff_dim": ff_dim, "dropout": dropout, "max_len": max_len}
        self.encoder = Encoder(encoder_depth, dim, heads, attention, **layer)
        self.decoder = Decoder(decoder_depth, dim, heads, attention, **layer)
        self.dropout = nn.Dropout(dropout)
        nn.init.normal_(self.embedding.weight, std=dim**-0.5)
        nn.init.normal_(self.position.weight, std=0.02)
        with torch.no_grad():
            self.embedding.weight[PAD].zero_()

    def embed(self, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
        positions = torch.arange(start, start + tokens.shape[1], device=tokens.device)
        return self.dropout(self.embedding(tokens) * math.sqrt(self.dim) + self.position(positions))

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        """The encoder's output (B, Ls, dim)."""
        return self.encoder(self.embed(src), key_padding_mask=src_mask)

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor,
               tgt_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits (B, Lt, V) of ``tgt_in`` given the encoder's ``memory``."""
        h = self.decoder(self.embed(tgt_in), memory, key_padding_mask=tgt_mask, memory_padding_mask=src_mask)
        return h @ self.embedding.weight.T

    def start_decoding(self, memory: torch.Tensor, src_mask: torch.Tensor) -> DecoderState:
        """The decoder's state before the first target token (see :meth:`decode_step`)."""
        return self.decoder.init_state(memory, src_mask)

    def decode_step(self, tokens: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        """Next-token logits (B, T, V) of the T newest target ``tokens`` (B, T), and the state after them."""
        h, state = self.decoder.step(self.embed(tokens, state.position), state)
        return h @ self.embedding.weight.T, state

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor,
                tgt_mask: torch.Tensor) -> torch.Tensor:
        return self.decode(tgt_in, self.encode(src, src_mask), src_mask, tgt_mask)


def _length_limit(model: Seq2SeqTransformer, src_mask: torch.Tensor, extra: int) -> int:
    """How many tokens to generate at most: twice the longest source plus ``extra``, within the model."""
    return min(model.max_len, 2 * int(src_mask.sum(1).max()) + extra)


class _NextLogits:
    """The last position's logits for a growing prefix: stepped with the decoder's state when the
    variant is incremental (and ``cache``), else by re-running the decoder over the whole prefix."""

    def __init__(self, model: Seq2SeqTransformer, memory: torch.Tensor, src_mask: torch.Tensor, cache: bool) -> None:
        self.model, self.memory, self.src_mask = model, memory, src_mask
        stepped = cache and isinstance(getattr(model, "decoder", None), Decoder) and model.decoder.incremental
        self.state = model.start_decoding(memory, src_mask) if stepped else None

    def __call__(self, seqs: torch.Tensor) -> torch.Tensor:
        if self.state is None:
            return self.model.decode(seqs, self.memory, self.src_mask)[:, -1]
        logits, self.state = self.model.decode_step(seqs[:, self.state.position:], self.state)
        return logits[:, -1]

    def select(self, index: torch.Tensor) -> None:
        """Keep (or reorder) the sequences ``index`` of the batch."""
        if self.state is None:
            self.memory, self.src_mask = self.memory[index], self.src_mask[index]
        else:
            self.state = select_batch(self.state, index)


@torch.no_grad()
def greedy(model: Seq2SeqTransformer, src: torch.Tensor, src_mask: torch.Tensor, extra: int = 10,
           cache: bool = True) -> list[list[int]]:
    """The most likely next token at every step, for a batch; each row ends at its ``</s>``."""
    memory = model.encode(src, src_mask)
    n = src.shape[0]
    out = torch.full((n, 1), BOS, dtype=torch.long, device=src.device)
    active = torch.arange(n, device=src.device)
    finished: list[list[int]] = [[] for _ in range(n)]
    next_logits = _NextLogits(model, memory, src_mask, cache)
    for _ in range(_length_limit(model, src_mask, extra)):
        logits = next_logits(out)
        token = logits.argmax(-1)
        out = torch.cat([out, token[:, None]], dim=1)
        done = token == EOS
        for row, ids in zip(active[done].tolist(), out[done, 1:].tolist(), strict=True):
            finished[row] = ids
        if bool(done.all()):
            break
        keep = ~done
        active, out = active[keep], out[keep]
        next_logits.select(keep.nonzero().view(-1))
    else:
        for row, ids in zip(active.tolist(), out[:, 1:].tolist(), strict=True):
            finished[row] = ids
    return finished


@torch.no_grad()
def beam_search(model: Seq2SeqTransformer, src: torch.Tensor, src_mask: torch.Tensor, beam: int,
                length_penalty: float = 1.0, extra: int = 10, cache: bool = True) -> list[list[int]]:
    """Beam search for a batch; hypotheses are ranked by log-probability / length**``length_penalty``.

    A hypothesis that produced ``</s>`` keeps its slot in the beam (extended by padding at no
    cost). A sentence is done, and leaves the batch, when every slot has finished or when its
    best finished hypothesis beats what every open one would score if it ended now (the
    stopping rule of Hugging Face's ``generate``); its answer is the best finished
    hypothesis, or the best open one if none finished within the length limit.
    """
    n, vocab, device = src.shape[0], model.embedding.num_embeddings, src.device
    memory = model.encode(src, src_mask).repeat_interleave(beam, 0)
    mask = src_mask.repeat_interleave(beam, 0)
    seqs = torch.full((n * beam, 1), BOS, dtype=torch.long, device=device)
    scores = torch.full((n, beam), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first
    finished = torch.zeros(n * beam, dtype=torch.bool, device=device)
    lengths = torch.zeros(n * beam, device=device)
    active = torch.arange(n, device=device)
    results: list[list[int]] = [[] for _ in range(n)]
    limit = _length_limit(model, src_mask, extra)
    next_logits = _NextLogits(model, memory, mask, cache)
    for step in range(limit):
        m = active.shape[0]
        logp = next_logits(seqs).float().log_softmax(-1)
        logp[finished] = float("-inf")
        logp[finished, PAD] = 0.0
        top, index = (scores.view(-1, 1) + logp).view(m, beam * vocab).topk(beam, dim=1)
        origin = (torch.arange(m, device=device)[:, None] * beam + index // vocab).view(-1)
        token = (index % vocab).view(-1)
        seqs = torch.cat([seqs[origin], token[:, None]], dim=1)
        next_logits.select(origin)
        lengths = lengths[origin] + (~finished[origin]).float()
        finished = finished[origin] | (token == EOS)
        scores = top

        done_slots = finished.view(m, beam)
        normalised = scores / lengths.view(m, beam).clamp_min(1.0) ** length_penalty
        best_finished = normalised.masked_fill(~done_slots, float("-inf")).amax(1)
        best_open = normalised.masked_fill(done_slots, float("-inf")).amax(1)
        done = done_slots.all(1) | (best_finished >= best_open)
        if step == limit - 1:
            done[:] = True
        if not bool(done.any()):
            continue
        ranked = torch.where(done_slots.any(1, keepdim=True), normalised.masked_fill(~done_slots, float("-inf")), normalised)
        best = ranked.argmax(1) + torch.arange(m, device=device) * beam
        for j in done.nonzero().view(-1).tolist():
            results[int(active[j])] = [t for t in seqs[best[j], 1:].tolist() if t != PAD]
        keep = ~done
        if not bool(keep.any()):
            break
        slots = keep.repeat_interleave(beam)
        active, scores = active[keep], scores[keep]
        seqs, finished, lengths = seqs[slots], finished[slots], lengths[slots]
        next_logits.select(slots.nonzero().view(-1))
    return results
