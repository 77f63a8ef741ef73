"""Any attnbench attention variant inside timm's Vision Transformer.

timm's ``VisionTransformer(..., attn_layer=cls)`` and ``Block(..., attn_layer=cls)`` build
their self-attention from a class. :func:`attention_layer` returns such a class: it keeps
timm's ``Attention`` parameters and sub-module names (``qkv``, ``q_norm``, ``k_norm``,
``attn_drop``, ``norm``, ``gate``, ``proj``, ``proj_drop``), so timm weights load into it,
and hands the (B, H, L, D) core to the variant through :func:`attnbench.nn.build_attention`::

    from attnbench.nn.timm import attention_layer, replace_attention, vision_transformer

    vit = vision_transformer("performer", img_size=32, patch_size=4, num_classes=10,
                             embed_dim=192, depth=6, num_heads=3)      # random init, no download
    vit = timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=4, attn_layer=attention_layer("linformer", max_len=65))
    vit = replace_attention(timm.create_model("vit_tiny_patch16_224"), "local", window=32)

Checked against timm 1.0.x, whose ``Block`` calls ``attn_layer(dim, num_heads=…,
qkv_bias=…, qk_norm=…, scale_norm=…, proj_bias=…, attn_drop=…, proj_drop=…,
norm_layer=…, device=…, dtype=…)`` and the module as ``attn(x, attn_mask=…, is_causal=…)``.

Differences from timm's own module, all deliberate: attention dropout is the variant's
(``AttentionConfig.dropout = attn_drop``; the ``attn_drop`` module is kept only for the
state-dict and attribute layout), and ``attn_mask`` must be boolean (True = may attend)
or an additive 0/-inf float mask, which is turned into a boolean one.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from attnbench.nn.attention import CheckedAttention, build_attention
from attnbench.specs import AttentionConfig, AttentionSpec

__all__ = ["VariantAttention", "attention_layer", "replace_attention", "token_count", "vision_transformer"]


def _resolve(spec: AttentionSpec | str) -> AttentionSpec:
    if isinstance(spec, AttentionSpec):
        return spec
    from attnbench import plugins

    return plugins.get_attention(spec)


class VariantAttention(nn.Module):
    """timm's ``Attention`` with an attnbench variant as its core (build it via :func:`attention_layer`).

    The class attributes ``attention_spec``, ``max_len`` and ``options`` are set on the
    subclass :func:`attention_layer` makes, because timm passes a class, not an instance.
    """

    attention_spec: AttentionSpec | None = None
    max_len: int | None = None
    options: Mapping[str, Any] = {}

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        attn_head_dim: int | None = None,
        dim_out: int | None = None,
        qkv_bias: bool = False,
        qk_norm: bool = False,
        scale_norm: bool = False,
        proj_bias: bool = True,
        gated: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        norm_layer: type[nn.Module] | None = None,
        device: Any = None,
        dtype: Any = None,
        **_unused: Any,  # e.g. ``depth``, which timm passes to some attention classes only
    ) -> None:
        super().__init__()
        if self.attention_spec is None:
            raise TypeError("VariantAttention needs a variant: use attnbench.nn.timm.attention_layer(spec)")
        dd = {"device": device, "dtype": dtype}
        dim_out = dim_out or dim
        head_dim = attn_head_dim
        if head_dim is None:
            if dim % num_heads:
                raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
            head_dim = dim // num_heads
        if (qk_norm or scale_norm) and norm_layer is None:
            raise ValueError("norm_layer must be given when qk_norm or scale_norm is set")
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.attn_dim = num_heads * head_dim
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, self.attn_dim * 3, bias=qkv_bias, **dd)
        self.q_norm = norm_layer(head_dim, **dd) if qk_norm else nn.Identity()
        self.k_norm = norm_layer(head_dim, **dd) if qk_norm else nn.Identity()
        self.attn_drop = nn.Dropout(attn_drop)
        self.norm = norm_layer(self.attn_dim, **dd) if scale_norm else nn.Identity()
        self.gate = nn.Linear(dim, self.attn_dim, bias=qkv_bias, **dd) if gated else None
        self.proj = nn.Linear(self.attn_dim, dim_out, bias=proj_bias, **dd)
        self.proj_drop = nn.Dropout(proj_drop)
        config = AttentionConfig(
            num_heads=num_heads, head_dim=head_dim, max_len=self.max_len, causal=False, cross=False,
            dropout=attn_drop, options=dict(self.options),
        )
        self.attention: CheckedAttention = build_attention(self.attention_spec, config)
        if device is not None or dtype is not None:
            self.attention.to(**{k: v for k, v in dd.items() if v is not None})
        # timm's ViT re-initialises every nn.Linear below it after building; keep the
        # variant's own initialisation so it can be put back (see restore_variant_init).
        self._variant_init = copy.deepcopy(self.attention.state_dict())

    def restore_variant_init(self) -> None:
        """Put back the variant's own initial parameters (timm's weight init overwrote its Linears)."""
        if self._variant_init is not None:
            self.attention.load_state_dict(self._variant_init)
            self._variant_init = None

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        b, n, _ = x.shape
        gate = self.gate(x).sigmoid() if self.gate is not None else None
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        x = self.attention(q, k, v, attn_mask=_boolean_mask(attn_mask), is_causal=is_causal)
        x = x.transpose(1, 2).reshape(b, n, self.attn_dim)
        x = self.norm(x)
        if gate is not None:
            x = x * gate
        return self.proj_drop(self.proj(x))

    def extra_repr(self) -> str:
        name = self.attention_spec.name if self.attention_spec else None
        return f"variant={name!r}, num_heads={self.num_heads}, head_dim={self.head_dim}, max_len={self.max_len}"


def _boolean_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """timm's mask as attnbench's boolean one (True = may attend)."""
    if mask is None or mask.dtype == torch.bool:
        return mask
    finite = torch.isfinite(mask)
    if bool((mask[finite] != 0).any()):
        raise ValueError("attnbench variants take boolean masks; got an additive float mask with values other than 0 and -inf")
    return finite


def attention_layer(spec: AttentionSpec | str, *, max_len: int | None = None, **options: Any) -> type[VariantAttention]:
    """A class for timm's ``attn_layer`` that runs variant ``spec`` (a spec or a registered name).

    ``max_len`` is the token count (patches plus class/register tokens; see
    :func:`token_count`): variants that fix their length at build time need it.
    ``options`` go to the variant as ``AttentionConfig.options`` (``window``, ``k``, …).
    """
    spec = _resolve(spec)
    name = "".join(part.capitalize() for part in spec.name.replace("_", "-").split("-")) + "Attention"
    return type(name, (VariantAttention,), {
        "attention_spec": spec, "max_len": max_len, "options": dict(options), "__module__": __name__,
    })


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def token_count(img_size: int | tuple[int, int] = 224, patch_size: int | tuple[int, int] = 16, *,
                class_token: bool = True, reg_tokens: int = 0) -> int:
    """How many tokens a timm ViT's blocks see: the patch grid (as timm's ``PatchEmbed`` counts
    it, rounding down) plus class and register tokens."""
    (h, w), (ph, pw) = _pair(img_size), _pair(patch_size)
    return (h // ph) * (w // pw) + int(bool(class_token)) + int(reg_tokens)


def _restore_all(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, VariantAttention):
            module.restore_variant_init()
    return model


def vision_transformer(spec: AttentionSpec | str, *, options: Mapping[str, Any] | None = None,
                       **vit_kwargs: Any) -> nn.Module:
    """A timm ``VisionTransformer`` (random init, nothing downloaded) whose attention is variant ``spec``.

    ``vit_kwargs`` are ``VisionTransformer``'s own (``img_size``, ``patch_size``,
    ``in_chans``, ``num_classes``, ``embed_dim``, ``depth``, ``num_heads``, …); the token
    count is passed to the variant as ``max_len``. ``options`` go to the variant.
    """
    from timm.models.vision_transformer import VisionTransformer

    if "attn_layer" in vit_kwargs:
        raise TypeError("vision_transformer() sets attn_layer itself; pass the variant as spec")
    if vit_kwargs.get("dynamic_img_size") or vit_kwargs.get("dynamic_img_pad"):
        raise ValueError("dynamic_img_size/dynamic_img_pad are not supported: the token count is fixed at build "
                         "time (variants that need max_len depend on it); pad images to a multiple of the patch")
    tokens = token_count(
        vit_kwargs.get("img_size", 224), vit_kwargs.get("patch_size", 16),
        class_token=vit_kwargs.get("class_token", True), reg_tokens=vit_kwargs.get("reg_tokens", 0),
    )
    layer = attention_layer(spec, max_len=tokens, **dict(options or {}))
    return _restore_all(VisionTransformer(attn_layer=layer, **vit_kwargs))


def replace_attention(model: nn.Module, spec: AttentionSpec | str, *, max_len: int | None = None,
                      **options: Any) -> nn.Module:
    """Swap every timm ``Attention`` in ``model`` for variant ``spec``, in place, keeping its weights.

    The new modules share the old ones' ``qkv``/``proj``/norm sub-modules, so a pretrained
    timm ViT keeps its weights. ``max_len`` defaults to the model's token count
    (``patch_embed.num_patches + num_prefix_tokens``) where the model has one.
    Returns ``model``.
    """
    from timm.layers import Attention

    if max_len is None and hasattr(model, "patch_embed") and hasattr(model.patch_embed, "num_patches"):
        max_len = int(model.patch_embed.num_patches) + int(getattr(model, "num_prefix_tokens", 0))
    layer = attention_layer(spec, max_len=max_len, **options)
    targets = [(name, module) for name, module in model.named_modules() if type(module) is Attention]
    for name, old in targets:
        if not name:
            raise ValueError("replace_attention swaps attention modules inside a model; pass the model, not the module")
        new = layer(
            old.qkv.in_features, num_heads=old.num_heads, attn_head_dim=old.head_dim,
            dim_out=old.proj.out_features, qkv_bias=old.qkv.bias is not None,
            proj_bias=old.proj.bias is not None, attn_drop=old.attn_drop.p, proj_drop=old.proj_drop.p,
        )
        for part in ("qkv", "q_norm", "k_norm", "attn_drop", "norm", "proj", "proj_drop"):
            setattr(new, part, getattr(old, part))
        new.gate = getattr(old, "gate", None)
        new.restore_variant_init()
        new.to(device=old.qkv.weight.device)
        new.train(old.training)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
    return model
