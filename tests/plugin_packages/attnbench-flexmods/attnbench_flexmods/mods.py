"""Two attention-gym mods registered as attnbench variants, each in a few lines with attnbench.flex.

* ``softcap`` — Gemma 2's logit soft-capping: score -> cap·tanh(score / cap) (cap 50 for
  attention; Gemma Team, "Gemma 2: Improving Open Language Models at a Practical Size", 2024).
* ``prefix-lm`` — the prefix-LM mask of T5/UniLM: every query sees the first ``prefix`` keys,
  later keys only causally (Raffel et al., "Exploring the Limits of Transfer Learning with a
  Unified Text-to-Text Transformer", JMLR 2020). ANDed with the model's masks, as every mask_mod.
"""

import torch

import attnbench
from attnbench.flex import variant


def softcap(score, b, h, q_idx, kv_idx, *, cap=50.0):
    """score_mod: squash each logit into (-cap, cap); ``cap`` is option softcap.cap."""
    return cap * torch.tanh(score / cap)


def prefix_lm(b, h, q_idx, kv_idx, *, prefix=16):
    """mask_mod: True where query q_idx may attend key kv_idx; ``prefix`` is option prefix-lm.prefix."""
    return (kv_idx < prefix) | (q_idx >= kv_idx)


@attnbench.hookimpl
def register_attention(register):
    """Register ``softcap`` and ``prefix-lm``."""
    register(variant("softcap", "Softmax over cap·tanh(scores/cap), Gemma 2's soft-capping", score_mod=softcap,
                     citation="Gemma Team 2024, Gemma 2"))
    register(variant("prefix-lm", "Bidirectional over the first `prefix` keys, causal after", mask_mod=prefix_lm,
                     citation="Raffel et al. 2020, T5 (prefix LM)"))
