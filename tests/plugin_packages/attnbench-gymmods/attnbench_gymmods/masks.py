"""mask_mod factories in attention-gym's style (meta-pytorch/attention-gym, ``attn_gym/masks/``).

Each ``generate_*`` returns a closure over the tensors it needs and is evaluated by
FlexAttention element by element: ``b``, ``h``, ``q_idx``, ``kv_idx`` are 0-d tensors.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.attention.flex_attention import _mask_mod_signature, and_masks


def causal_mask(b, h, q_idx, kv_idx):
    """Query i sees keys j <= i (imitates ``attn_gym/masks/causal.py``)."""
    return q_idx >= kv_idx


def full_mask(b, h, q_idx, kv_idx):
    """Every key is visible: the inner mask of a bidirectional document mask."""
    return q_idx >= 0


def generate_sliding_window(window_size: int) -> _mask_mod_signature:
    """Causal sliding window of ``window_size`` keys back (imitates ``attn_gym/masks/sliding_window.py``)."""

    def sliding_window(b, h, q_idx, kv_idx):
        return q_idx - kv_idx <= window_size

    sliding_window_mask = and_masks(sliding_window, causal_mask)
    sliding_window_mask.__name__ = f"sliding_window_{window_size}"
    return sliding_window_mask


def generate_doc_mask_mod(mask_mod: _mask_mod_signature, document_ids: Tensor) -> _mask_mod_signature:
    """Attention within each document of a packed batch, ``mask_mod`` applied at logical positions.

    Imitates ``attn_gym/masks/document_mask.py``'s ``generate_doc_mask_mod``, with per-batch
    document ids (B, L) instead of one stacked sequence's offsets: ``document_ids[b, q_idx]``.
    """
    batch, length = document_ids.shape
    positions = torch.arange(length, device=document_ids.device).expand(batch, length)
    first = torch.ones_like(document_ids, dtype=torch.bool)
    first[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
    starts = torch.cummax(torch.where(first, positions, torch.zeros_like(positions)), dim=1).values

    def doc_mask_mod(b, h, q_idx, kv_idx):
        same_doc = document_ids[b, q_idx] == document_ids[b, kv_idx]
        q_logical = q_idx - starts[b, q_idx]
        kv_logical = kv_idx - starts[b, kv_idx]
        inner_mask = mask_mod(b, h, q_logical, kv_logical)
        return same_doc & inner_mask

    return doc_mask_mod


def one_document(*, batch_size: int, q_len: int, kv_len: int, device: torch.device) -> Tensor:
    """``document_ids`` for a task that packs nothing: the whole sequence is one document."""
    return torch.zeros(batch_size, max(q_len, kv_len), dtype=torch.long, device=device)


def generate_vision_cross_attention_mask_mod(intervals: Tensor, image_token_length: int) -> _mask_mod_signature:
    """Flamingo's mask: text positions in ``intervals[i]`` see the tokens of image i.

    Imitates ``attn_gym/masks/flamingo.py``: ``intervals`` (num_images, 2) holds [start, end) of
    the queries that see each image; keys are the images' tokens, ``image_token_length`` each.
    ``interval[0]`` indexes the gathered pair: an element-wise-only construction.
    """
    num_images = intervals.shape[0]
    image_boundaries = torch.repeat_interleave(torch.arange(num_images, device=intervals.device),
                                               repeats=image_token_length)

    def vision_cross_attention_mask_mod(b, h, q_idx, kv_idx):
        image_idx = image_boundaries[kv_idx]
        interval = intervals[image_idx]
        return (q_idx >= interval[0]) & (q_idx < interval[1])

    return vision_cross_attention_mask_mod


def generate_interleaved_flamingo(max_len: int, image_token_length: int = 16) -> _mask_mod_signature:
    """Flamingo's mask over one sequence of ``max_len`` positions cut into "images" of
    ``image_token_length`` tokens: queries from an image's start onwards see it (text after an
    image attends to that image), so every query sees at least image 0."""
    num_images = -(-max_len // image_token_length)
    starts = torch.arange(num_images) * image_token_length
    intervals = torch.stack([starts, torch.full_like(starts, max_len)], dim=1)
    return generate_vision_cross_attention_mask_mod(intervals, image_token_length)
