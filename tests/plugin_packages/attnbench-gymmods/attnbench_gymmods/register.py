"""The attention-gym-style mods registered as attnbench variants, as an attention-gym user would.

* ``gym-document`` — attention within each packed document (``document_ids`` per batch from the
  task; one document when the task packs nothing).
* ``gym-flamingo`` — Flamingo's interval mask with ``interval[0]`` on a gathered pair.
* ``gym-latent-rope`` — MLA's decoupled RoPE term, ``torch.dot`` of gathered rows.
* ``gym-graphormer`` — Graphormer's learnable spatial bias, one table per layer, trained.
* ``gym-sliding-window`` — the factory ``generate_sliding_window(window_size)``; option
  ``gym-sliding-window.window_size``.
* ``gym-alibi`` — ``generate_alibi_bias(H)`` with the task's head count.
* ``gym-gelu`` — softmax replaced by GELU, the output recovered by ``undo_softmax`` (output_mod).
"""

from __future__ import annotations

import torch

import attnbench
from attnbench.flex import variant
from attnbench_gymmods.masks import (
    full_mask,
    generate_doc_mask_mod,
    generate_interleaved_flamingo,
    generate_sliding_window,
    one_document,
)
from attnbench_gymmods.mods import (
    MAX_DISTANCE,
    chain_distances,
    generate_activation_score_mod,
    generate_alibi_bias,
    generate_graphormer_spatial_bias,
    generate_latent_rope,
    undo_softmax,
)


def _spatial_bias(config: attnbench.AttentionConfig) -> torch.Tensor:
    """Graphormer's table: one scalar per head and distance bucket (max distance + far + self)."""
    return 0.1 * torch.randn(config.num_heads, MAX_DISTANCE + 2)


@attnbench.hookimpl
def register_attention(register):
    """Register the seven ``gym-*`` variants."""
    register(variant("gym-document", "Attention within each packed document (per-batch document_ids)",
                     factory=generate_doc_mask_mod, options={"mask_mod": full_mask},
                     context={"document_ids": one_document}, cross=False,
                     citation="attention-gym masks/document_mask.py"))
    register(variant("gym-flamingo", "Flamingo interval mask: text after an image sees its tokens",
                     factory=generate_interleaved_flamingo, options={"image_token_length": 16},
                     citation="Alayrac et al. 2022, Flamingo; attention-gym masks/flamingo.py"))
    register(variant("gym-latent-rope", "MLA decoupled RoPE: score + scale·dot(q_rope, k_rope)",
                     factory=generate_latent_rope, citation="DeepSeek-AI 2024, DeepSeek-V2; "
                     "attention-gym mods/latent_attention.py"))
    register(variant("gym-graphormer", "Graphormer learnable spatial bias over shortest-path distance",
                     factory=generate_graphormer_spatial_bias, params={"spatial_bias": _spatial_bias},
                     context={"distances": chain_distances},
                     citation="Ying et al. 2021, Graphormer; attention-gym mods/graphormer.py"))
    register(variant("gym-sliding-window", "Causal sliding window of window_size keys",
                     factory=generate_sliding_window, options={"window_size": 8},
                     complexity="O(L·w)", citation="attention-gym masks/sliding_window.py"))
    register(variant("gym-alibi", "ALiBi linear distance bias, slopes from the model's head count",
                     factory=generate_alibi_bias, from_config={"H": "num_heads"},
                     citation="Press et al. 2022, ALiBi; attention-gym mods/alibi.py"))
    register(variant("gym-gelu", "GELU attention: softmax replaced by an activation (log-space trick)",
                     factory=generate_activation_score_mod, output_mod=undo_softmax, options={"offset": 1.0},
                     citation="attention-gym mods/activation.py"))
