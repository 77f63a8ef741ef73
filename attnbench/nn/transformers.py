"""Run any attnbench attention variant inside a Hugging Face ``transformers`` model.

::

    from attnbench.nn.transformers import register
    name = register("linear")                                    # -> "attnbench:linear"
    model = BertModel(BertConfig(..., attn_implementation=name))  # a model from a config
    model.set_attn_implementation(name)                          # or switch a built/pretrained one
    AutoModel.from_pretrained(path, attn_implementation=name)    # or load it that way

:func:`register` adds the variant to transformers' ``AttentionInterface`` under
``attnbench:<variant>`` (see :func:`implementation_name`), together with transformers' own ``sdpa_mask`` in its
``AttentionMaskInterface``, so every attention layer of a model that dispatches through
``AttentionInterface`` (BERT, GPT-2, Llama, ViT, …) calls the variant, and receives a
boolean mask of shape (B, 1, Lq, Lk) combining padding and causality (or None).

That mask is translated into the attnbench contract (DESIGN.md): a variant declaring
``arbitrary_mask`` gets it as is; any other variant gets it split back into a key-padding
mask (B, 1, 1, Lk) and ``is_causal``, and a mask that is not such a combination (sliding
windows, packed sequences, cache decoding with several new tokens) is refused with an
:class:`~attnbench.errors.PluginError` naming the variant and the missing capability, as
are causal attention without ``causal``, padding without ``padding_mask``,
``output_attentions`` without ``weights`` and additive position biases. Nothing is ever
silently approximated.

Each Hugging Face attention module builds the variant once, at its first call (heads and
head size are read from the query), and keeps it as a submodule
``attnbench_attention[<variant>]``, so variants with parameters train with the model.
Call :func:`prepare` with one batch before building the optimiser when the variant has
parameters. Grouped-query attention is expanded with ``repeat_kv``; a ``scaling`` other
than 1/√D is applied by rescaling the query. Queries that may attend no key at all (left
padding under a causal mask) get zeros, as with transformers' ``sdpa``; their gradients
are only finite for variants that stay finite on such rows, so train with right padding.

Generation: :func:`generate` runs ``model.generate`` with a :class:`DecodingCache` when the
variant decodes incrementally (its spec says ``incremental``): each layer keeps the variant's
own state (a KV cache, a window, a recurrent state; DESIGN.md "Incremental decoding") and
steps it with the newest tokens only. A variant without an incremental form falls back to
``use_cache=False`` (every step recomputes the whole prefix) with a warning that says why.
transformers' own KV cache (plain ``model.generate()``) hands the variant one query against all
cached keys, which only ``exact`` variants read correctly; any other variant is refused there
with a message naming :func:`generate`.
"""

from __future__ import annotations

import contextvars
import math
import warnings
from typing import Any

import torch
from torch import nn

from attnbench.errors import PluginError
from attnbench.nn.attention import build_attention
from attnbench.nn.kv_cache import select_batch
from attnbench.nn.masks import causal_mask
from attnbench.specs import AttentionConfig, AttentionSpec

PREFIX = "attnbench:"
#: The attribute (an ``nn.ModuleDict`` keyed by variant name) on each HF attention module.
CACHE_ATTRIBUTE = "attnbench_attention"
#: Keyword arguments that would change the scores in a way the attnbench contract cannot carry.
_UNSUPPORTED_KWARGS = ("position_bias", "softcap", "s_aux", "sinks", "sliding_window")
#: Where HF configs keep the attention-dropout rate, in the order tried.
_DROPOUT_FIELDS = ("attention_dropout", "attention_probs_dropout_prob", "attn_pdrop", "attention_probs_dropout")


def implementation_name(variant: str) -> str:
    """The ``attn_implementation`` string for ``variant``: ``"attnbench:<variant>"``.

    transformers treats every implementation name containing ``flash`` as a FlashAttention
    kernel to fetch, so that word is upper-cased: ``sdpa-flash`` → ``"attnbench:sdpa-FLASH"``.
    """
    return f"{PREFIX}{variant.replace('flash', 'FLASH')}"


def _spec(variant: str | AttentionSpec) -> AttentionSpec:
    if isinstance(variant, AttentionSpec):
        return variant
    from attnbench import plugins

    return plugins.get_attention(variant)


def register(variant: str | AttentionSpec) -> str:
    """Register ``variant`` (a name or a spec) with transformers and return its ``attn_implementation`` name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    spec = _spec(variant)
    name = implementation_name(spec.name)
    _REGISTERED[name] = spec

    def attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs):
        return forward(spec, module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                       is_causal=is_causal, **kwargs)

    attention_forward.__name__ = f"attnbench_{spec.name.replace('-', '_')}_attention_forward"
    attention_forward.__doc__ = f"transformers' AttentionInterface entry for the attnbench variant {spec.name!r}."
    AttentionInterface.register(name, attention_forward)
    AttentionMaskInterface.register(name, sdpa_mask)
    return name


#: Every spec registered by :func:`register`, by implementation name (for :func:`generate`).
_REGISTERED: dict[str, AttentionSpec] = {}
#: The decoding layer whose ``update`` ran last, waiting for its attention call (see :class:`DecodingCache`).
_PENDING: contextvars.ContextVar[Any] = contextvars.ContextVar("attnbench_pending_decoding_layer", default=None)


def _decoding_layer_class():
    from transformers.cache_utils import DynamicLayer

    class DecodingLayer(DynamicLayer):
        """One layer of :class:`DecodingCache`: the variant's own decoding state, no keys or values.

        ``update`` counts the new positions and hands the layer to the attention call that follows
        it, which steps the variant with the new keys and values only.
        """

        is_croppable = False

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.seen = 0
            self.state: Any = None
            self.returned: torch.Tensor | None = None

        def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
            self.device = key_states.device
            self.is_initialized = True

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            self.seen += key_states.shape[-2]
            self.returned = key_states  # the attention call that follows gets this very tensor
            _PENDING.set(self)
            return key_states, value_states

        def get_seq_length(self) -> int:
            return self.seen

        def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
            return self.seen + query_length, 0

        def reset(self) -> None:
            self.seen, self.state, self.returned, self.is_initialized = 0, None, None, False

        def crop(self, tokens_to_remove: int) -> None:
            raise PluginError("an attnbench decoding state cannot be cropped (no assisted or speculative decoding)")

        def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
            self.state = None if self.state is None else select_batch(self.state, beam_idx)

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            self.reorder_cache(indices)

        def batch_repeat_interleave(self, repeats: int) -> None:
            if self.state is not None:
                index = torch.arange(self.state.batch_size, device=self.device).repeat_interleave(repeats)
                self.state = select_batch(self.state, index)

    return DecodingLayer


def DecodingCache():  # noqa: N802 — reads as the class it builds; transformers is imported only when called
    """A transformers ``Cache`` that holds each layer's attnbench decoding state instead of keys and values.

    Pass it as ``model.generate(..., cache=DecodingCache())`` (:func:`generate` does)
    for a model whose attention is an incremental attnbench variant.
    """
    from transformers.cache_utils import Cache

    return Cache(layer_class_to_replicate=_decoding_layer_class())


def generate(model: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """``model.generate(*args, **kwargs)`` with the attnbench variant's own decoding state.

    An incremental variant steps through a :class:`DecodingCache`; any other gets
    ``use_cache=False`` and a warning naming its reason (every new token then recomputes the
    whole prefix, as slow as it sounds). The model's ``attn_implementation`` must be a name
    returned by :func:`register`.
    """
    name = getattr(model.config, "_attn_implementation", None)
    spec = _REGISTERED.get(name)
    if spec is None:
        raise PluginError(f"generate: the model's attn_implementation is {name!r}, not an attnbench variant; "
                          "build it with attn_implementation=attnbench.nn.transformers.register(VARIANT)")
    if spec.incremental:
        if kwargs.get("past_key_values") is None:  # transformers 5.x names it ``cache`` (past_key_values is deprecated)
            kwargs.pop("past_key_values", None)
            kwargs.setdefault("cache", DecodingCache())
    else:
        warnings.warn(f"attention {spec.name!r} has no incremental form ({spec.not_incremental or 'not declared'}); "
                      "generating without a cache: every new token recomputes the whole prefix", stacklevel=2)
        kwargs["use_cache"] = False
    return model.generate(*args, **kwargs)


def _step(spec: AttentionSpec, layer: Any, module: nn.Module, query: torch.Tensor, key: torch.Tensor,
          value: torch.Tensor, attention_mask: torch.Tensor | None, dropout: float) -> torch.Tensor:
    """One decoding step of the variant through a :class:`DecodingCache` layer: the newest positions only."""
    if not spec.incremental:
        raise PluginError(f"attention {spec.name!r} cannot decode incrementally ({spec.not_incremental}); "
                          "generate with use_cache=False, or through attnbench.nn.transformers.generate")
    lq = query.shape[2]
    total = layer.seen
    if attention_mask is not None:
        full = _boolean(attention_mask, spec)
        expected = torch.ones(lq, total, dtype=torch.bool, device=full.device).tril(total - lq)
        if tuple(full.shape[-2:]) != (lq, total) or not bool((full == expected).all()):
            raise PluginError(
                f"attention {spec.name!r}: an attnbench decoding state takes no padding (its mask must be plain "
                "causal); generate prompts of one length per batch, without padding")
    attention = _variant_module(spec, module, query, dropout, True)
    if layer.state is None:
        layer.state = attention.init_state(query.shape[0], device=query.device, dtype=query.dtype)
    out, layer.state = attention.step(query, key, value, layer.state)
    return out


def register_all() -> list[str]:
    """Register every attention variant attnbench has loaded; returns their implementation names."""
    from attnbench import plugins

    registry = plugins.load().attention
    return [register(registry.get(name)) for name in registry.names()]


def prepare(model: nn.Module, *args: Any, **kwargs: Any) -> nn.Module:
    """Run one forward pass without gradients so every attention module builds its variant now
    (needed before creating the optimiser when the variant has parameters); returns ``model``."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(*args, **kwargs)
    finally:
        model.train(was_training)
    return model


def _refuse(spec: AttentionSpec, capability: str, why: str) -> PluginError:
    return PluginError(
        f"attention {spec.name!r} cannot run this transformers attention layer: {why}, which needs the "
        f"{capability!r} capability it does not declare. Pick a variant that does (attnbench list attention)"
    )


def _dropout_rate(module: nn.Module, dropout: float) -> float:
    if dropout:
        return float(dropout)
    config = getattr(module, "config", None)
    for field in _DROPOUT_FIELDS:
        value = getattr(config, field, None)
        if isinstance(value, (int, float)):
            return float(value)
    return 0.0


def _variant_module(spec: AttentionSpec, module: nn.Module, query: torch.Tensor, dropout: float, causal: bool) -> nn.Module:
    """The variant built for ``module``: made at the first call, then reused."""
    cache = getattr(module, CACHE_ATTRIBUTE, None)
    if cache is None:
        cache = nn.ModuleDict()
        module.add_module(CACHE_ATTRIBUTE, cache)
    if spec.name not in cache:
        config = getattr(module, "config", None)
        max_len = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        built = build_attention(spec, AttentionConfig(
            num_heads=query.shape[1], head_dim=query.shape[-1], max_len=max_len, causal=causal,
            cross=bool(getattr(module, "is_cross_attention", False)), dropout=_dropout_rate(module, dropout),
        ))
        cache[spec.name] = built.to(device=query.device, dtype=query.dtype)
        cache[spec.name].train(module.training)
    return cache[spec.name]


def _boolean(mask: torch.Tensor, spec: AttentionSpec) -> torch.Tensor:
    """A boolean mask (True = may attend) from transformers' boolean or additive float mask."""
    if mask.dtype == torch.bool:
        return mask
    blocked = mask <= torch.finfo(mask.dtype).min / 2
    if not bool(((mask == 0) | blocked).all()):
        raise PluginError(
            f"attention {spec.name!r}: the model passed an additive attention bias (values other than 0 and "
            "-inf); the attnbench contract carries boolean masks only"
        )
    return ~blocked


def split_mask(
    mask: torch.Tensor, spec: AttentionSpec, batch: int, lq: int, lk: int
) -> tuple[torch.Tensor | None, bool]:
    """Split a (B, 1|H, Lq, Lk) boolean mask into a key-padding mask (B, 1, 1, Lk) or None, and ``is_causal``.

    Raises :class:`PluginError` when the mask is not ``padding`` or ``padding & causal``
    (top-left aligned, as attnbench's ``is_causal``).
    """
    full = mask.expand(batch, mask.shape[1], lq, lk)
    if full.shape[1] > 1:
        if not bool((full == full[:, :1]).all()):
            raise _refuse(spec, "arbitrary_mask", "its mask differs between heads")
        full = full[:, :1]
    padding = full.any(dim=-2, keepdim=True)  # (B, 1, 1, Lk): keys some query may see
    causal = False
    if not bool((full == padding).all()):
        if not (lq == lk and bool((full == (padding & causal_mask(lq, lk, full.device))).all())):
            raise _refuse(spec, "arbitrary_mask", f"its (B, 1, {lq}, {lk}) mask is neither key padding nor padding "
                          "with causality (a sliding window, packed sequences or cached decoding of several tokens?)")
        causal = True
    return (None if bool(padding.all()) else padding), causal


def forward(
    spec: AttentionSpec,
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """transformers' attention function contract, served by ``spec``'s variant.

    q (B, H, Lq, D), k/v (B, Hkv, Lk, D) -> (output (B, Lq, H, D), weights (B, H, Lq, Lk) or None).
    """
    for name in _UNSUPPORTED_KWARGS:
        if kwargs.get(name) is not None:
            raise PluginError(f"attention {spec.name!r}: the model passes {name!r}, which the attnbench attention "
                              "contract cannot carry; run this model with its own attention implementation")
    need_weights = bool(kwargs.get("output_attentions", False))
    if need_weights and not spec.weights:
        raise _refuse(spec, "weights", "output_attentions=True asks for attention maps")

    layer = _PENDING.get()
    if layer is not None:
        _PENDING.set(None)
        if getattr(layer, "returned", None) is not key:  # not the call right after this layer's update
            layer = None
    groups = int(getattr(module, "num_key_value_groups", 1) or 1)
    if groups > 1:
        from transformers.integrations.sdpa_attention import repeat_kv

        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    batch, _, lq, head_dim = query.shape
    if scaling is not None and not math.isclose(scaling, head_dim**-0.5, rel_tol=1e-6):
        query = query * (scaling * math.sqrt(head_dim))
    if layer is not None:  # a DecodingCache layer updated just before this call: step the variant's state
        out = _step(spec, layer, module, query, key, value, attention_mask, dropout)
        return out.transpose(1, 2).contiguous(), None
    module_is_causal = bool(is_causal if is_causal is not None else getattr(module, "is_causal", False))
    if (module_is_causal and lq < key.shape[2] and not spec.exact
            and not getattr(module, "is_cross_attention", False)):
        raise PluginError(
            f"attention {spec.name!r}: transformers' own KV cache hands it {lq} new quer{'y' if lq == 1 else 'ies'} "
            f"against {key.shape[2]} cached keys, which only exact variants read correctly (positions and kernel "
            "states are the variant's own); generate with attnbench.nn.transformers.generate (its DecodingCache, "
            "or use_cache=False)")

    module_causal = bool(is_causal if is_causal is not None else getattr(module, "is_causal", False))
    mask, dead = None, None
    if attention_mask is None:
        causal = lq > 1 and module_causal
        if causal and key.shape[2] > lq:  # as transformers' sdpa: prefill into a larger (static) cache
            key, value = key[:, :, :lq], value[:, :, :lq]
    else:
        full = _boolean(attention_mask, spec)
        # Queries that may attend no key (left padding under a causal mask): transformers' sdpa gives them zeros.
        dead = ~full.any(dim=-1, keepdim=True)
        dead = dead if bool(dead.any()) else None
        if spec.arbitrary_mask:
            mask, causal = (full if dead is None else full | dead), False
        else:
            mask, causal = split_mask(full, spec, batch, lq, key.shape[2])
    lk = key.shape[2]
    if causal and not spec.causal:
        raise _refuse(spec, "causal", "the layer is causal (a decoder)")
    if mask is not None and not spec.arbitrary_mask and not spec.padding_mask:
        raise _refuse(spec, "padding_mask", "the batch has padding")
    if lq != lk and not spec.cross:
        raise _refuse(spec, "cross", f"query length {lq} differs from key length {lk} (cross-attention or cached decoding)")

    attention = _variant_module(spec, module, query, dropout, module_causal)
    result = attention(query, key, value, attn_mask=mask, is_causal=causal, need_weights=need_weights)
    out, weights = result if need_weights else (result, None)
    if dead is not None:
        out = out.masked_fill(dead, 0.0)
        weights = None if weights is None else weights.masked_fill(dead, 0.0)
    return out.transpose(1, 2).contiguous(), weights
