"""Conformance checks for attention variants, usable with or without pytest.

Each check takes an :class:`AttentionSpec`, raises ``AssertionError`` with a message
that names the variant when the contract is broken, and raises :class:`NotApplicable`
when the spec does not claim the capability the check is about.

Grouped-query variants (spec ``kv_heads``) are checked with :data:`GROUPED_HEADS` query heads,
built with ``AttentionConfig(num_kv_heads=spec.kv_heads(config))`` and fed k, v with that
many heads, as ``attnbench.nn.MultiheadAttention`` feeds them; "exact" then means equal to
softmax attention with each key/value head repeated over its group of query heads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from attnbench.nn.attention import build_attention
from attnbench.specs import AttentionConfig, AttentionSpec

B, H, L, D = 2, 2, 32, 16
MAX_LEN = 64
#: Query heads for grouped-query variants: with 2, a default grouping could share nothing.
GROUPED_HEADS = 4


class NotApplicable(Exception):
    """The spec does not claim what the check tests."""


def _config(spec: AttentionSpec, *, causal: bool = False, cross: bool = False, **options) -> AttentionConfig:
    """The kit's config for ``spec``: grouped-query variants get their key/value head count."""
    heads = GROUPED_HEADS if spec.kv_heads is not None else H
    config = AttentionConfig(num_heads=heads, head_dim=D, max_len=MAX_LEN, causal=causal, cross=cross, options=options)
    if spec.kv_heads is not None:
        config = dataclasses.replace(config, num_kv_heads=int(spec.kv_heads(config)))
    return config


def _build(spec: AttentionSpec, *, causal: bool = False, cross: bool = False, **options) -> torch.nn.Module:
    if spec.available is not None and (why := spec.available(torch.device("cpu"))):
        raise NotApplicable(f"not available on cpu: {why}")
    config = _config(spec, causal=causal, cross=cross, **options)
    torch.manual_seed(0)
    return build_attention(spec, config).eval()


def _qkv(spec: AttentionSpec, lq: int = L, lk: int = L, scale: float = 1.0, seed: int = 1, grad: bool = False):
    config = _config(spec)
    heads, kv_heads = config.num_heads, config.num_kv_heads or config.num_heads
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, heads, lq, D, generator=g) * scale
    k = torch.randn(B, kv_heads, lk, D, generator=g) * scale
    v = torch.randn(B, kv_heads, lk, D, generator=g)
    if grad:
        for t in (q, k, v):
            t.requires_grad_(True)
    return q, k, v


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def check_shape_and_dtype(spec: AttentionSpec) -> None:
    """Output is (B, H, Lq, D) in the input's dtype, and finite."""
    q, k, v = _qkv(spec)
    out = _build(spec)(q, k, v)
    assert out.shape == q.shape, f"{spec.name}: output shape {tuple(out.shape)}, expected {tuple(q.shape)}"
    assert out.dtype == q.dtype, f"{spec.name}: output dtype {out.dtype}, expected {q.dtype}"
    assert torch.isfinite(out).all(), f"{spec.name}: output contains NaN or Inf"


def check_gradients(spec: AttentionSpec) -> None:
    """Gradients reach q, k, v (v only for an ``attention_free`` baseline) and every
    trainable parameter of the module."""
    q, k, v = _qkv(spec, grad=True)
    module = _build(spec).train()
    module(q, k, v).square().mean().backward()
    inputs = (("v", v),) if spec.attention_free else (("q", q), ("k", k), ("v", v))
    for name, t in inputs:
        assert t.grad is not None and torch.isfinite(t.grad).all(), f"{spec.name}: no finite gradient for {name}"
        assert t.grad.abs().sum() > 0, f"{spec.name}: gradient for {name} is all zero"
    for pname, p in module.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{spec.name}: parameter {pname} received no gradient"


def check_padding_mask(spec: AttentionSpec) -> None:
    """Changing a key masked out by a (B, 1, 1, Lk) padding mask does not change the output."""
    if not spec.padding_mask:
        raise NotApplicable("spec declares padding_mask=False")
    q, k, v = _qkv(spec)
    mask = torch.ones(B, 1, 1, L, dtype=torch.bool)
    mask[0, ..., L - 8:] = False
    mask[1, ..., L - 3:] = False
    module = _build(spec)
    before = module(q, k, v, attn_mask=mask)
    k2, v2 = k.clone(), v.clone()
    k2[~mask[:, 0, 0, :][:, None, :, None].expand_as(k2)] = 7.0
    v2[~mask[:, 0, 0, :][:, None, :, None].expand_as(v2)] = -7.0
    after = module(q, k2, v2, attn_mask=mask)
    diff = _max_diff(before, after)
    assert diff < 1e-4, f"{spec.name}: changing padded-out keys changed the output by {diff:.3g}"


def check_causal(spec: AttentionSpec) -> None:
    """With is_causal=True, changing keys after position t does not change outputs up to t."""
    if not spec.causal:
        raise NotApplicable("spec declares causal=False")
    q, k, v = _qkv(spec)
    module = _build(spec, causal=True)
    before = module(q, k, v, is_causal=True)
    t = L // 2
    k2, v2 = k.clone(), v.clone()
    k2[..., t + 1:, :] = torch.randn_like(k2[..., t + 1:, :]) * 3
    v2[..., t + 1:, :] = torch.randn_like(v2[..., t + 1:, :]) * 3
    after = module(q, k2, v2, is_causal=True)
    diff = _max_diff(before[..., : t + 1, :], after[..., : t + 1, :])
    assert diff < 1e-4, f"{spec.name}: changing future keys changed past outputs by {diff:.3g}"
    assert _max_diff(before[..., t + 1:, :], after[..., t + 1:, :]) > 1e-3, (
        f"{spec.name}: outputs after t ignore the keys they may attend to"
    )


def check_cross(spec: AttentionSpec) -> None:
    """Query and key lengths may differ: output is (B, H, Lq, D)."""
    if not spec.cross:
        raise NotApplicable("spec declares cross=False")
    q, k, v = _qkv(spec, lq=24, lk=40)
    out = _build(spec, cross=True)(q, k, v)
    assert out.shape == q.shape, f"{spec.name}: cross output {tuple(out.shape)}, expected {tuple(q.shape)}"


def check_weights(spec: AttentionSpec) -> None:
    """need_weights=True returns the (B, H, Lq, Lk) weights that produced the output.

    ``out == weights @ v`` (each key/value head repeated over its group for grouped-query
    variants), zero weight on padded keys, and, for exact variants, rows that sum to 1. Maps
    of other variants need not be distributions (sigmoid attention, talking-heads' mixed maps).
    """
    if not spec.weights:
        raise NotApplicable("spec declares weights=False")
    q, k, v = _qkv(spec)
    mask = torch.ones(B, 1, 1, L, dtype=torch.bool)
    mask[..., L - 5:] = False
    out, weights = _build(spec)(q, k, v, attn_mask=mask if spec.padding_mask else None, need_weights=True)
    assert weights.shape[-2:] == (L, L), f"{spec.name}: weights shape {tuple(weights.shape)}"
    v_full = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    diff = _max_diff(out, weights @ v_full)
    assert diff < 1e-4, f"{spec.name}: the returned weights do not produce the output (|out - weights @ v| = {diff:.3g})"
    if spec.exact:
        sums = weights.sum(-1)
        assert torch.allclose(sums, torch.ones_like(sums), atol=1e-4), f"{spec.name}: weight rows do not sum to 1"
    if spec.padding_mask:
        assert weights[..., L - 5:].abs().max() < 1e-6, f"{spec.name}: weights on padded keys are not zero"


def softmax_reference(q, k, v, mask=None, causal=False, bias=None):
    """``softmax(q kᵀ/√D + bias + mask) v`` written out: the ground truth for checks and tests.

    k, v may have fewer heads than q (grouped-query attention): each key/value head is then
    repeated over its group of H / H_kv consecutive query heads.
    """
    from attnbench.nn.masks import dense_mask

    if k.shape[-3] != q.shape[-3]:
        group = q.shape[-3] // k.shape[-3]
        k, v = k.repeat_interleave(group, dim=-3), v.repeat_interleave(group, dim=-3)
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
    if bias is not None:
        scores = scores + bias
    full = dense_mask(mask, causal, q.shape[-2], k.shape[-2], q.device)
    if full is not None:
        scores = scores.masked_fill(~full, float("-inf"))
    return torch.softmax(scores, -1) @ v


def check_exact(spec: AttentionSpec) -> None:
    """Exact variants equal softmax attention to 1e-5 (float32), with masks and causality."""
    if not spec.exact:
        raise NotApplicable("spec does not claim exact")
    q, k, v = _qkv(spec)
    diff = _max_diff(_build(spec)(q, k, v), softmax_reference(q, k, v))
    assert diff < 1e-5, f"{spec.name}: differs from softmax attention by {diff:.3g} (> 1e-5)"
    if spec.padding_mask:
        mask = torch.ones(B, 1, 1, L, dtype=torch.bool)
        mask[0, ..., L - 6:] = False
        diff = _max_diff(_build(spec)(q, k, v, attn_mask=mask), softmax_reference(q, k, v, mask))
        assert diff < 1e-5, f"{spec.name}: with a padding mask, differs from softmax by {diff:.3g}"
    if spec.causal:
        diff = _max_diff(_build(spec, causal=True)(q, k, v, is_causal=True), softmax_reference(q, k, v, causal=True))
        assert diff < 1e-5, f"{spec.name}: causal output differs from softmax by {diff:.3g}"


def check_approximates(spec: AttentionSpec) -> None:
    """Approximations built with ``tolerance_options`` land within ``tolerance`` of softmax
    on a smooth input (mean absolute difference), and closer than the uniform average of v."""
    if spec.exact or spec.tolerance is None:
        raise NotApplicable("spec claims no approximation tolerance")
    q, k, v = _qkv(spec, scale=0.8)
    out = _build(spec, **dict(spec.tolerance_options))(q, k, v)
    ref = softmax_reference(q, k, v)
    err = (out - ref).abs().mean().item()
    trivial = (v.mean(-2, keepdim=True).expand_as(ref) - ref).abs().mean().item()
    assert err <= spec.tolerance, (
        f"{spec.name}: mean |out - softmax| = {err:.4g} exceeds its stated tolerance {spec.tolerance}"
    )
    assert err < trivial, f"{spec.name}: error {err:.4g} is no better than averaging v ({trivial:.4g})"


def check_compiles(spec: AttentionSpec) -> None:
    """torch.compile gives the eager output (opt-in: slow on CPU)."""
    q, k, v = _qkv(spec)
    module = _build(spec)
    eager = module(q, k, v)
    # Every variant shares CheckedAttention.forward: without a reset, dynamo's recompile limit
    # would let later variants fall back to eager silently and pass without being compiled.
    torch._dynamo.reset()
    compiled = torch.compile(module)(q, k, v)
    diff = _max_diff(eager, compiled)
    assert diff < 1e-4, f"{spec.name}: compiled output differs from eager by {diff:.3g}"


#: Decoding checks: a sequence of this many positions, stepped in chunks of these sizes.
DECODE_LEN = 50
DECODE_CHUNKS = (1, 7)


def _decoder(spec: AttentionSpec) -> torch.nn.Module:
    if not spec.incremental:
        raise NotApplicable("spec does not declare incremental=True")
    return _build(spec, causal=True)


def _stepped(module: torch.nn.Module, q, k, v, chunk: int) -> torch.Tensor:
    """Outputs of stepping ``module`` over q, k, v in consecutive chunks of ``chunk`` positions."""
    state = module.init_state(q.shape[0], device=q.device, dtype=q.dtype)
    outs = []
    for start in range(0, q.shape[-2], chunk):
        part = slice(start, start + chunk)
        out, state = module.step(q[..., part, :], k[..., part, :], v[..., part, :], state)
        outs.append(out)
    return torch.cat(outs, dim=-2)


def check_incremental_declared(spec: AttentionSpec) -> None:
    """A variant that says ``incremental=True`` has ``init_state``, ``step`` and ``state_nbytes``.

    A causal variant without them should say why in ``not_incremental`` (every built-in does);
    the kit reports a missing reason as not applicable rather than failing a third party's suite.
    """
    if not spec.causal:
        raise NotApplicable("spec declares causal=False")
    if not spec.incremental:
        raise NotApplicable(f"no incremental form: {spec.not_incremental or 'no reason given (set not_incremental)'}")
    inner = _build(spec, causal=True).inner
    missing = [m for m in ("init_state", "step", "state_nbytes") if not callable(getattr(inner, m, None))]
    assert not missing, f"{spec.name}: spec says incremental=True but its module lacks {', '.join(missing)}"


def check_incremental_matches_forward(spec: AttentionSpec) -> None:
    """Stepping one position at a time, and in prefill chunks of 7, equals the causal forward to 1e-5 (float32)."""
    module = _decoder(spec)
    q, k, v = _qkv(spec, lq=DECODE_LEN, lk=DECODE_LEN)
    with torch.no_grad():
        want = module(q, k, v, is_causal=True)
        for chunk in DECODE_CHUNKS:
            got = _stepped(module, q, k, v, chunk)
            diff = _max_diff(got, want)
            assert diff < 1e-5, (
                f"{spec.name}: stepping in chunks of {chunk} differs from the causal forward by {diff:.3g} (> 1e-5)"
            )


def check_incremental_state_is_per_sequence(spec: AttentionSpec) -> None:
    """A sequence's outputs do not depend on the other sequences of its batch, nor on earlier states."""
    module = _decoder(spec)
    q, k, v = _qkv(spec, lq=DECODE_LEN, lk=DECODE_LEN)
    q2, k2, v2 = (t.clone() for t in (q, k, v))
    g = torch.Generator().manual_seed(7)
    for t in (q2, k2, v2):
        t[1:] = torch.randn(t[1:].shape, generator=g) * 2
    with torch.no_grad():
        first = _stepped(module, q, k, v, 1)
        other = _stepped(module, q2, k2, v2, 1)
        again = _stepped(module, q, k, v, 1)
    diff = _max_diff(first[:1], other[:1])
    assert diff < 1e-6, f"{spec.name}: changing sequence 1 of the batch changed sequence 0's decoded outputs by {diff:.3g}"
    diff = _max_diff(first, again)
    assert diff < 1e-6, f"{spec.name}: a fresh state decodes differently after an earlier decode (by {diff:.3g})"


def _growth(complexity: str) -> str:
    """What a state's size does as the context grows, read from the spec's complexity string."""
    c = complexity.replace(" ", "")
    if "L^2" in c or "L²" in c:
        return "linear"
    if "w" in c:
        return "bounded"
    return "constant"


def check_incremental_state_growth(spec: AttentionSpec) -> None:
    """``state_nbytes`` grows as the complexity says: linearly (a KV cache, O(L^2)), bounded (a window,
    O(L·w)), or not at all (a recurrent state, O(L) and below)."""
    module = _decoder(spec)
    q, k, v = _qkv(spec, lq=256, lk=256)
    sizes: dict[int, int] = {}
    with torch.no_grad():
        state = module.init_state(q.shape[0], device=q.device, dtype=q.dtype)
        for start in range(0, 256, 16):
            part = slice(start, start + 16)
            _, state = module.step(q[..., part, :], k[..., part, :], v[..., part, :], state)
            sizes[start + 16] = int(module.state_nbytes(state))
    kind = _growth(spec.complexity)
    small, mid, large = sizes[16], sizes[128], sizes[256]
    assert large > 0, f"{spec.name}: state_nbytes is 0 after 256 positions"
    if kind == "linear":
        ratio = large / max(mid, 1)
        assert 1.9 <= ratio <= 2.1, (
            f"{spec.name}: complexity {spec.complexity} means a cache linear in the context, but state_nbytes went "
            f"from {mid} at 128 positions to {large} at 256 (x{ratio:.2f}, expected x2)"
        )
    elif kind == "bounded":
        assert large <= mid, (
            f"{spec.name}: complexity {spec.complexity} means a bounded window, but state_nbytes grew from {mid} "
            f"at 128 positions to {large} at 256"
        )
    else:
        assert small == mid == large, (
            f"{spec.name}: complexity {spec.complexity} means a constant recurrent state, but state_nbytes was "
            f"{small}, {mid}, {large} at 16, 128, 256 positions"
        )


#: Backends the kit runs a flex variant on: ``compiled`` takes minutes to compile on a CPU and is
#: left to ``check_compiles`` (opt-in) and to GPU runs.
FLEX_BACKENDS: tuple[str, ...] = ("dense", "flex")


def check_mods(spec: AttentionSpec) -> None:
    """A FlexAttention variant (``attnbench.flex.variant``) equals the element-wise reference —
    each mod called once per (b, h, q_idx, kv_idx) with 0-d tensors, softmax over the kept keys,
    ``output_mod`` applied — on every backend in :data:`FLEX_BACKENDS`, with a padding mask, with
    causality, and with packed ``document_ids`` when the variant reads them; its weights equal the
    reference's on every backend."""
    from attnbench import flex
    from attnbench.flex.reference import elementwise_reference

    definition = flex.definition_of(spec)
    if definition is None:
        raise NotApplicable("not a FlexAttention variant (attnbench.flex.variant)")
    required = [n for n, default in definition.context.items() if default is None and n not in flex.STANDARD_CONTEXT]
    if required:
        raise NotApplicable(f"reads per-batch {', '.join(required)} with no default; the kit cannot invent it")
    length = 12
    context = {}
    if "document_ids" in definition.context:
        context["document_ids"] = torch.tensor([[0] * 5 + [1] * 4 + [2] * 3, [0] * 7 + [1] * 5])
    padding = torch.ones(B, 1, 1, length, dtype=torch.bool)
    padding[1, ..., length - 3:] = False
    cases = [("a padding mask", False, padding)] + ([("is_causal", True, None)] if spec.causal else [])
    q, k, v = _qkv(spec, lq=length, lk=length)
    for backend in FLEX_BACKENDS:
        for what, causal, mask in cases:
            module = _build(spec, causal=causal, backend=backend)
            with flex.batch_context(**context), module.inner.own_tensors():
                out = module(q, k, v, attn_mask=mask, is_causal=causal)
                ran = module.inner.last_backend
                mods = module.inner.bound_mods(B, length, length, q.device)
                want, want_weights = elementwise_reference(mods, q, k, v, mask, causal)
                weights = module(q, k, v, attn_mask=mask, is_causal=causal, need_weights=True)[1] if spec.weights else None
            assert ran == backend, f"{spec.name}: asked for backend {backend}, the module ran {ran}"
            scale = max(1.0, want.abs().max().item())
            diff = _max_diff(out, want)
            assert diff < 1e-4 * scale, (
                f"{spec.name}: backend {backend}, with {what}: differs from the element-wise reference by {diff:.3g}"
            )
            if weights is not None:
                diff = _max_diff(weights, want_weights)
                assert diff < 1e-5, f"{spec.name}: backend {backend}, with {what}: weights differ by {diff:.3g}"
            trained = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
            if trained:  # captured and declared parameters train on this backend too
                out.square().mean().backward()
                for name, p in trained:
                    assert p.grad is not None and torch.isfinite(p.grad).all(), (
                        f"{spec.name}: backend {backend}: parameter {name} received no finite gradient"
                    )


ATTENTION_CHECKS: dict[str, Callable[[AttentionSpec], None]] = {
    "shape_and_dtype": check_shape_and_dtype,
    "gradients": check_gradients,
    "padding_mask": check_padding_mask,
    "causal": check_causal,
    "cross": check_cross,
    "weights": check_weights,
    "exact": check_exact,
    "approximates": check_approximates,
    "incremental_declared": check_incremental_declared,
    "incremental_matches_forward": check_incremental_matches_forward,
    "incremental_state_is_per_sequence": check_incremental_state_is_per_sequence,
    "incremental_state_growth": check_incremental_state_growth,
    "mods": check_mods,
}
