"""The variants of issue 21 against their reference implementations, and their own forms against each other.

References: flash-linear-attention's pure-PyTorch ``fla/ops/*/naive.py`` (the ``[references]``
extra, ``fla-core``; the tests load only those CPU modules and skip with the reason when the
package is absent), and, where the reference lives in another repository, its math written
out here from the paper, cited at the test. Each recurrent variant's chunked training form is
also checked against its step-by-step recurrence, and ``step`` over consecutive chunks against
the whole causal forward (the incremental-decoding contract of DESIGN.md).
"""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F

from attnbench import AttentionConfig, plugins
from attnbench.nn.chunked_scan import (
    chunked_delta_rule,
    chunked_gated_linear,
    recurrent_delta_rule,
    recurrent_gated_linear,
)

B, H, L, D = 2, 2, 40, 8
REFERENCE_TOL = 1e-4
FORMS_TOL = 1e-5


def fla_naive(op: str):
    """``fla.ops.<op>.naive``: flash-linear-attention's CPU reference, or a skip saying why."""
    pytest.importorskip("fla", reason="flash-linear-attention (fla-core) is not installed: pip install -e '.[references]'")
    return importlib.import_module(f"fla.ops.{op}.naive")


def spec(name: str):
    return plugins.load().attention.get(name)


def build(name: str, heads: int = H, dim: int = D, causal: bool = True, **options):
    torch.manual_seed(0)
    config = AttentionConfig(num_heads=heads, head_dim=dim, max_len=256, causal=causal, options=options)
    return spec(name).build(config).eval()


def qkv(length: int = L, heads: int = H, dim: int = D, seed: int = 1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(B, heads, length, dim, generator=g, dtype=dtype) for _ in range(3))


def bthd(*xs):
    """(B, H, T, …) → fla's (B, T, H, …)."""
    return [x.transpose(1, 2) for x in xs]


def max_diff(a, b) -> float:
    return (a - b).abs().max().item()


# -- the chunked scans against their recurrences ----------------------------------------------

@pytest.mark.parametrize("strength", [3.0, 1 / 16])  # strong decays: the exact form; GLA-like: factorised
@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("chunk", [1, 7, 16])
def test_chunked_gated_linear_equals_its_recurrence(per_channel, chunk, strength):
    q, k, v = qkv(dtype=torch.float64)
    g = F.logsigmoid(torch.randn(B, H, L, D if per_channel else 1, dtype=torch.float64) * 3) * strength
    s0 = torch.randn(B, H, D, D, dtype=torch.float64)
    out, state = chunked_gated_linear(q, k, v, g, chunk=chunk, initial_state=s0)
    ref, ref_state = recurrent_gated_linear(q, k, v, g, initial_state=s0)
    assert max_diff(out, ref) < 1e-10 and max_diff(state, ref_state) < 1e-10


@pytest.mark.parametrize("gated", [True, False])
@pytest.mark.parametrize("chunk", [1, 8, 32])
def test_chunked_delta_rule_equals_its_recurrence(gated, chunk):
    q, k, v = qkv(dtype=torch.float64)
    k = F.normalize(k, dim=-1)
    beta = torch.rand(B, H, L, dtype=torch.float64)
    g = F.logsigmoid(torch.randn(B, H, L, dtype=torch.float64)) if gated else None
    s0 = torch.randn(B, H, D, D, dtype=torch.float64)
    out, state = chunked_delta_rule(q, k, v, beta, g, chunk=chunk, initial_state=s0)
    ref, ref_state = recurrent_delta_rule(q, k, v, beta, g, initial_state=s0)
    assert max_diff(out, ref) < 1e-10 and max_diff(state, ref_state) < 1e-10


def test_strong_decay_does_not_overflow():
    """Decays are formed as differences of cumulative log-gates: e^{-1000·C} underflows to 0, never inf."""
    q, k, v = qkv()
    g = torch.full((B, H, L, D), -1000.0)
    out, _ = chunked_gated_linear(q, k, v, g, chunk=16)
    assert torch.isfinite(out).all()
    assert max_diff(out, (q * k).sum(-1, keepdim=True) * v) < 1e-4  # only the own write survives


# -- each variant against flash-linear-attention's reference -----------------------------------

def test_gla_matches_fla_naive_recurrent_gla():
    naive = fla_naive("gla")
    module = build("gla")
    q, k, v = qkv()
    g = module.log_decay(k).detach()
    out, _ = chunked_gated_linear(q * D ** -0.5, k, v, g, chunk=16)
    ref, _ = naive.naive_recurrent_gla(*bthd(q, k, v, g))
    assert max_diff(out, ref.transpose(1, 2)) < REFERENCE_TOL


def test_deltanet_matches_fla_delta_rule():
    naive = fla_naive("delta_rule")
    module = build("deltanet", chunk=8)
    q, k, v = qkv()
    beta = module.write_strength(k).detach()
    qn, kn = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    out, _ = chunked_delta_rule(qn * D ** -0.5, kn, v, beta, chunk=8)
    ref, _ = naive.delta_rule_recurrence(qn, kn, v, beta)
    assert max_diff(out, ref) < REFERENCE_TOL
    chunk_ref, _ = naive.delta_rule_chunkwise(qn, kn, v, beta, chunk_size=8)
    assert max_diff(out, chunk_ref) < REFERENCE_TOL


def test_gated_deltanet_matches_fla_gated_delta_rule():
    naive = fla_naive("gated_delta_rule")
    module = build("gated-deltanet")
    q, k, v = qkv()
    beta, g = module.write_strength(k).detach(), module.log_decay(k).detach()
    assert (g < 0).all()
    qn, kn = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    out, _ = chunked_delta_rule(qn * D ** -0.5, kn, v, beta, g, chunk=32)
    ref, _ = naive.naive_recurrent_gated_delta_rule(*bthd(qn, kn, v, beta, g))
    assert max_diff(out, ref.transpose(1, 2)) < REFERENCE_TOL
    chunk_ref, _ = naive.naive_chunk_gated_delta_rule(*bthd(qn, kn, v, g, beta), chunk_size=16)
    assert max_diff(out, chunk_ref.transpose(1, 2)) < REFERENCE_TOL


def ssd_minimal(x, dt_a, b, c):
    """Mamba-2's ``ssd_minimal_discrete`` (state-spaces/mamba, ``mamba_ssm/modules/ssd_minimal.py``),
    one chunk, written out: ``y = (L ∘ C Bᵀ) x`` with ``L_ij = exp(segsum(ΔA))_ij`` (Dao & Gu 2024, eq. 16).

    x (B, H, T, P) already scaled by Δ; dt_a (B, H, T); b, c (B, H, T, N).
    """
    t = dt_a.shape[-1]
    cum = dt_a.cumsum(-1)
    segsum = (cum[..., :, None] - cum[..., None, :]).masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(), float("-inf"))
    return ((c @ b.transpose(-2, -1)) * segsum.exp()) @ x


def test_mamba2_matches_ssd_minimal_and_fla_simple_gla():
    naive = fla_naive("simple_gla")
    module = build("mamba2")
    q, k, v = qkv()
    _, kdt, _, g = (t.detach() for t in module.prepare(q, k, v, None))
    out, _ = chunked_gated_linear(q, kdt, v, g, chunk=16)
    dt = module.step_size(k).detach()
    ref = ssd_minimal(v * dt[..., None], g[..., 0], k, q)
    assert max_diff(out, ref) < REFERENCE_TOL
    fla_out, _ = naive.naive_recurrent_simple_gla(*bthd(q, kdt, v, g[..., 0]), scale=1.0)
    assert max_diff(out, fla_out.transpose(1, 2)) < REFERENCE_TOL


# -- the module's forms agree: chunked forward, recurrence, incremental steps ------------------

RECURRENT = ["gla", "deltanet", "gated-deltanet", "mamba2"]


@pytest.mark.parametrize("name", RECURRENT)
def test_causal_forward_equals_the_recurrence(name):
    module = build(name).double()
    q, k, v = qkv(dtype=torch.float64)
    with torch.no_grad():
        assert max_diff(module(q, k, v, is_causal=True), module.reference(q, k, v)) < FORMS_TOL


@pytest.mark.parametrize("name", RECURRENT)
def test_bidirectional_form_is_both_scans(name):
    """Non-causal: the first output depends on the last key, as a right-to-left scan makes it."""
    module = build(name)
    q, k, v = qkv()
    with torch.no_grad():
        before = module(q, k, v)
        k2 = k.clone()
        k2[..., -1, :] += 3
        assert max_diff(before[..., 0, :], module(q, k2, v)[..., 0, :]) > 1e-4


def step_through(module, q, k, v, sizes):
    """Decode ``q, k, v`` chunk by chunk with ``step``; return the outputs and the states' sizes."""
    state = module.init_state(q.shape[0], device=q.device, dtype=q.dtype)
    outs, nbytes, start = [], [], 0
    for size in sizes:
        out, state = module.step(*(t[..., start:start + size, :] for t in (q, k, v)), state)
        outs.append(out)
        nbytes.append(module.state_nbytes(state))
        start += size
    assert start == q.shape[-2]
    return torch.cat(outs, dim=-2), nbytes


INCREMENTAL = [*RECURRENT, "sinks", "forgetting", "softpick", "stickbreaking", "mla", "based", "nsa"]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", INCREMENTAL)
def test_step_equals_causal_forward(name, dtype):
    assert spec(name).incremental
    module = build(name).to(dtype)
    q, k, v = qkv(dtype=dtype)
    with torch.no_grad():
        whole = module(q, k, v, is_causal=True)
        stepped, nbytes = step_through(module, q, k, v, [1, 1, 5, 17, 1, L - 25])
    assert max_diff(whole, stepped) < (FORMS_TOL if dtype == torch.float64 else 1e-4)
    if name in RECURRENT:
        assert len(set(nbytes)) == 1, f"{name}: a recurrent state should not grow ({nbytes})"


def test_padding_is_a_no_op_position():
    """A padded position neither decays nor writes the state: the causal outputs before and after it
    equal those of the sequence without it."""
    module = build("gated-deltanet")
    q, k, v = qkv()
    mask = torch.ones(B, 1, 1, L, dtype=torch.bool)
    mask[..., 10] = False
    with torch.no_grad():
        padded = module(q, k, v, attn_mask=mask, is_causal=True)
        keep = [i for i in range(L) if i != 10]
        dropped = module(q[..., keep, :], k[..., keep, :], v[..., keep, :], is_causal=True)
    assert max_diff(padded[..., keep, :], dropped) < 1e-5


def test_cross_attention_is_refused_with_the_reason():
    module = build("gla")
    q, _, _ = qkv(length=10)
    _, k, v = qkv(length=12)
    with pytest.raises(ValueError, match="self-attention only"):
        module(q, k, v)


# -- softmax-family variants ------------------------------------------------------------------

def sink_reference(q, k, v, window, sinks, sink_logit, causal, keep=None):
    """Dense sliding window + sink tokens + sink logit, written out from StreamingLLM (Xiao et al.
    2024, §3.2: the first tokens stay in the cache beside the window) and gpt-oss's sink logits
    (FlashAttention's ``naive_attn_with_sink``: a logit column appended before the softmax, dropped after)."""
    n = q.shape[-2]
    i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
    window_ok = (j <= i) & (j > i - window) if causal else (j - i).abs() <= window // 2
    allowed = window_ok | ((j < sinks) & ((j <= i) if causal else True))
    if keep is not None:
        allowed = allowed & keep[:, None, None, :]
    scores = (q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5).masked_fill(~allowed, float("-inf"))
    column = sink_logit.view(1, -1, 1, 1).expand(*scores.shape[:-1], 1)
    weights = torch.softmax(torch.cat([scores, column], dim=-1), dim=-1)[..., :-1]
    return weights @ v


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("window,sinks", [(5, 3), (8, 0), (1, 2), (100, 4)])
def test_sinks_match_the_dense_reference(causal, window, sinks):
    module = build("sinks", window=window, sinks=sinks)
    with torch.no_grad():
        module.sink_logit.copy_(torch.tensor([0.5, -1.0]))
    q, k, v = qkv()
    keep = torch.ones(B, L, dtype=torch.bool)
    keep[0, -6:] = False
    keep[1, 1] = False
    with torch.no_grad():
        out = module(q, k, v, attn_mask=keep[:, None, None, :], is_causal=causal)
    ref = sink_reference(q, k, v, window, sinks, module.sink_logit.detach(), causal, keep)
    assert max_diff(out, ref) < REFERENCE_TOL


def test_sinks_step_with_a_small_window():
    module = build("sinks", window=5, sinks=3)
    q, k, v = qkv()
    with torch.no_grad():
        whole = module(q, k, v, is_causal=True)
        stepped, nbytes = step_through(module, q, k, v, [1, 2, 1, 9, 1, L - 14])
    assert max_diff(whole, stepped) < FORMS_TOL
    assert nbytes[-1] == nbytes[-2], "the window's state should stop growing"


def test_forgetting_matches_fla_naive_forgetting_attn():
    naive = fla_naive("forgetting_attn")
    module = build("forgetting")
    q, k, v = qkv()
    with torch.no_grad():
        out = module(q, k, v, is_causal=True)
        g = module.log_forget(k)
    ref = naive.naive_forgetting_attn(*bthd(q, k, v, g))
    assert max_diff(out, ref.transpose(1, 2)) < REFERENCE_TOL


def test_forgetting_without_forgetting_is_causal_softmax():
    from attnbench.testing.attention import softmax_reference

    module = build("forgetting")
    with torch.no_grad():
        module.forget_proj.bias.fill_(50.0)  # σ(50) = 1: nothing is forgotten
        module.forget_proj.down.zero_()
    q, k, v = qkv()
    with torch.no_grad():
        assert max_diff(module(q, k, v, is_causal=True), softmax_reference(q, k, v, causal=True)) < 1e-5


def softpick_reference(q, k, v, causal):
    """The authors' ``naive_softpick_attn`` (zaydzuhri/softpick-attention, ``naive_softpick_attn.py``;
    Zuhri et al. 2025, eq. 2), written out: ``ReLU(e^{x−m} − e^{−m}) / (Σ_finite |e^{x−m} − e^{−m}| + 1e-8)``."""
    x = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
    if causal:
        x = x.masked_fill(~torch.ones(x.shape[-2:], dtype=torch.bool).tril(), float("-inf"))
    m = x.amax(-1, keepdim=True)
    e = torch.exp(x - m) - torch.exp(-m)
    return (torch.relu(e) / (torch.where(x.isfinite(), e.abs(), 0).sum(-1, keepdim=True) + 1e-8)) @ v


@pytest.mark.parametrize("causal", [True, False])
def test_softpick_matches_the_authors_naive_form(causal):
    module = build("softpick")
    q, k, v = qkv()
    q = q * 2  # wide scores: some rows then have keys with negative scores (weight 0) and large ones
    with torch.no_grad():
        out, weights = module(q, k, v, is_causal=causal, need_weights=True)
    assert max_diff(out, softpick_reference(q, k, v, causal)) < REFERENCE_TOL
    assert (weights >= 0).all() and (weights.sum(-1) <= 1 + 1e-6).all()
    assert (weights == 0).any(), "non-positive scores should get exactly zero weight"


@pytest.mark.parametrize("attend_current", [True, False])
def test_stickbreaking_matches_fla_naive_stickbreaking_attn(attend_current):
    naive = fla_naive("stickbreaking_attn")
    module = build("stickbreaking", attend_current=attend_current)
    q, k, v = qkv()
    with torch.no_grad():
        out = module(q, k, v, is_causal=True)
    ref, _ = naive.naive_stickbreaking_attn(*bthd(q, k, v), attend_current=attend_current)
    assert max_diff(out, ref.transpose(1, 2)) < REFERENCE_TOL


def test_stickbreaking_non_causal_is_the_mean_of_both_sticks():
    module = build("stickbreaking")
    q, k, v = qkv()
    with torch.no_grad():
        both = module(q, k, v)
        left = module(q, k, v, is_causal=True)
        right = module(q.flip(-2), k.flip(-2), v.flip(-2), is_causal=True).flip(-2)
    assert max_diff(both, (left + right) / 2) < 1e-5


@pytest.mark.parametrize("causal", [True, False])
def test_mla_naive_and_absorbed_forms_agree(causal):
    """DeepSeek-V3's ``inference/model.py`` computes MLA two ways (``attn_impl`` "naive": expand k, v per
    head; "absorb": fold W_UK into q and W_UV after the sum, attending over the latent): equal math."""
    module = build("mla", heads=4, dim=16, latent=24, rope_dim=8).double()
    q, k, v = qkv(heads=4, dim=16, dtype=torch.float64)
    with torch.no_grad():
        assert max_diff(module(q, k, v, is_causal=causal), module.absorbed(q, k, v, is_causal=causal)) < 1e-10


def test_mla_decode_cache_holds_only_the_latent():
    module = build("mla", heads=4, dim=16, latent=24, rope_dim=8)
    q, k, v = qkv(heads=4, dim=16)
    with torch.no_grad():
        whole = module(q, k, v, is_causal=True)
        stepped, nbytes = step_through(module, q, k, v, [3, 1, L - 4])
    assert max_diff(whole, stepped) < FORMS_TOL
    assert nbytes[-1] == B * L * (24 + 8) * 4  # (r + d_R) floats per position; a KV cache would hold 2·H·D = 128


def test_based_taylor_part_matches_fla_naive_based():
    naive = fla_naive("based")
    module = build("based", window=0, chunk=16)
    q, k, v = qkv(length=32)
    with torch.no_grad():
        fq, fk = module.q_features(q), module.k_features(k)
        expected = naive.naive_parallel_based(fq, fk, v, use_norm=True)
        assert max_diff(expected, naive.naive_chunk_based(fq, fk, v, chunk_size=16)) < REFERENCE_TOL
        for form in (module, module.taylor_parallel, module.taylor_linear):  # forward picks the quadratic form at L=32
            assert max_diff(form(q, k, v, is_causal=True), expected) < REFERENCE_TOL


@pytest.mark.parametrize("causal", [True, False])
def test_based_quadratic_and_linear_forms_agree(causal):
    """Below 1 + f + f² positions based takes the quadratic form; it must be the linear form's sums."""
    module = build("based", window=0, chunk=8, feature_dim=4).double()  # 21 features: L=32 would go linear
    q, k, v = (t.double().requires_grad_() for t in qkv(length=20))
    keep = torch.ones(B, 20, dtype=torch.bool)
    keep[0, 13:] = False
    outs, grads = [], []
    for form in (module.taylor_parallel, module.taylor_linear):
        out = form(q, k, v, keep, is_causal=causal)
        outs.append(out)
        grads.append(torch.autograd.grad((out * out).sum(), (q, k, v)))
    assert max_diff(*outs) < 1e-10
    for a, b in zip(*grads, strict=True):
        assert max_diff(a, b) < 1e-10
    with torch.no_grad():
        long_q, long_k, long_v = (t.double() for t in qkv(length=32))
        assert max_diff(module(long_q, long_k, long_v, is_causal=causal),
                        module.taylor_linear(long_q, long_k, long_v, is_causal=causal)) == 0  # 32 ≥ 21: linear


def test_based_is_taylor_plus_window_and_steps_with_a_small_window():
    module = build("based", window=6, chunk=8)
    local = build("local", window=6)
    q, k, v = qkv()
    with torch.no_grad():
        whole = module(q, k, v, is_causal=True)
        assert max_diff(whole, module.taylor(q, k, v) + local(q, k, v, is_causal=True)) < 1e-5
        stepped, nbytes = step_through(module, q, k, v, [1, 9, 1, 3, L - 14])
    assert max_diff(whole, stepped) < FORMS_TOL
    assert nbytes[-1] == nbytes[-2]


def window_reference(q, k, v, window):
    n = q.shape[-2]
    i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
    scores = (q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5).masked_fill(~((j <= i) & (j > i - window)), float("-inf"))
    return torch.softmax(scores, -1) @ v


def test_nsa_matches_fla_naive_branches():
    """fla's ``naive_nsa`` itself needs its Triton mean-pooling kernel and flash-attn for the window;
    its three CPU parts (compression, top-k, selection) are the reference here, with the window written out."""
    naive = fla_naive("nsa")
    from attnbench_plugins.attention.nsa import compress_blocks, compressed_attention, select_blocks

    block, selected, window = 4, 3, 6
    module = build("nsa", block=block, selected=selected, window=window)
    q, k, v = qkv()
    scale = D ** -0.5
    k_cmp, v_cmp = k.unflatten(2, (L // block, block)).mean(3), v.unflatten(2, (L // block, block)).mean(3)
    o_cmp, _ = naive.naive_nsa_compression(*bthd(q, k_cmp, v_cmp), block_size=block, scale=scale)
    index = naive.naive_nsa_topk(*bthd(q, k_cmp), block_counts=selected, block_size=block, scale=scale)
    o_slc = naive.naive_nsa_selection(*bthd(q, k, v), index, block_size=block, scale=scale)
    with torch.no_grad():
        g = torch.sigmoid(module.gates(q))
        out = module(q, k, v, is_causal=True)
        # the same blocks are selected (as sets: the order of ties is the reference's own)
        mine_k, mine_v, has_key = compress_blocks(k, v, None, block)
        assert max_diff(mine_k, k_cmp) < 1e-6
        qpos = torch.arange(L)
        _, probs, visible = compressed_attention(q, mine_k, mine_v, has_key, qpos, block, True)
        mine, usable = select_blocks(probs, visible, qpos, block, selected, True)
    mine = torch.where(usable, mine, -1).sort(-1).values
    assert torch.equal(mine, index.transpose(1, 2).sort(-1).values)
    ref = (g[..., 0:1] * o_cmp.transpose(1, 2) + g[..., 1:2] * o_slc.transpose(1, 2)
           + g[..., 2:3] * window_reference(q, k, v, window))
    assert max_diff(out, ref) < REFERENCE_TOL


def test_nsa_steps_with_small_blocks():
    module = build("nsa", block=4, selected=3, window=6)
    q, k, v = qkv()
    with torch.no_grad():
        whole = module(q, k, v, is_causal=True)
        stepped, _ = step_through(module, q, k, v, [1, 6, 1, 1, 13, L - 22])
    assert max_diff(whole, stepped) < FORMS_TOL


# -- nsa: the fast path against the reference path (the per-query gathers it replaced) ----------

NSA_CASES = [  # length, block, selected, window
    (64, 16, 4, 16),  # MQAR's quick options: every block is selected, the branch is plain softmax attention
    (40, 4, 3, 6),  # two widths of groups' unions, the wider one every block
    (100, 8, 5, 8),
    (37, 5, 2, 3),  # a partial last block
]


def nsa_forms(causal: bool, **options):
    """nsa's fast and reference modules with the same parameters."""
    fast = build("nsa", causal=causal, **options)
    reference = build("nsa", causal=causal, **options)
    reference.fused = False
    assert fast.fused and list(fast.state_dict()) == list(reference.state_dict())
    return fast, reference


def outputs_and_grads(module, fn, *inputs):
    """``fn(*leaves)`` for fresh leaf copies of ``inputs``, and the gradients of a fixed random
    projection of it with respect to the inputs and the module's parameters."""
    leaves = [x.detach().clone().requires_grad_() for x in inputs]
    module.zero_grad(set_to_none=True)
    out = fn(*leaves)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(7))
    (out * weight).sum().backward()
    return [out, *(x.grad for x in leaves), *(p.grad for p in module.parameters())]


def assert_close_forms(fast, reference):
    for a, b in zip(fast, reference, strict=True):
        assert a is not None and b is not None
        assert max_diff(a, b) <= FORMS_TOL * max(1.0, b.abs().max().item())


def nsa_padding(batch: int, length: int) -> torch.Tensor:
    """(B, 1, 1, L): a sequence cut at L/3, one with every key padded, one with its first keys padded."""
    keep = torch.ones(batch, length, dtype=torch.bool)
    keep[0, length // 3:] = False
    keep[1, :] = False
    keep[2, :5] = False
    return keep[:, None, None, :]


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("case", NSA_CASES, ids=lambda c: "L{}-b{}-n{}-w{}".format(*c))
def test_nsa_fast_path_equals_the_reference_in_outputs_and_gradients(case, causal, padded, monkeypatch):
    from attnbench_plugins.attention import nsa

    length, block, selected, window = case
    fast, reference = nsa_forms(causal, block=block, selected=selected, window=window)
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(3, H, length, D, generator=g) for _ in range(3))
    mask = nsa_padding(3, length) if padded else None
    widths, chosen = [], nsa._bucket_widths

    def record(width, nb):
        widths.append(chosen(width, nb))
        return widths[-1]

    monkeypatch.setattr(nsa, "_bucket_widths", record)
    got = outputs_and_grads(fast, lambda *x: fast(*x, attn_mask=mask, is_causal=causal), q, k, v)
    want = outputs_and_grads(reference, lambda *x: reference(*x, attn_mask=mask, is_causal=causal), q, k, v)
    assert_close_forms(got, want)
    assert not got[0].isnan().any()
    if padded:  # a sequence with every key padded gives 0
        assert got[0][1].abs().max() == 0
    if selected >= -(-length // block):
        assert widths == []  # every block selected: no blocks gathered
    else:  # the groups' unions padded to one width, or two (here: a few wide groups do not widen the rest)
        assert len(widths) == 1 and len(widths[0]) == (2 if case == (40, 4, 3, 6) else len(widths[0]))


@pytest.mark.parametrize("chunk", [1, 7])
def test_nsa_fast_decoding_equals_the_reference(chunk):
    """A chunk's queries over the whole cache (``attend_cache``: queries not at 0 … L−1), and ``step``
    chunk by chunk, fast and reference alike."""
    fast, reference = nsa_forms(True, block=4, selected=3, window=6)
    q, k, v = qkv()
    got = outputs_and_grads(fast, lambda q, k, v: fast.attend_cache(q[..., -chunk:, :], k, v), q, k, v)
    want = outputs_and_grads(reference, lambda q, k, v: reference.attend_cache(q[..., -chunk:, :], k, v), q, k, v)
    assert_close_forms(got, want)
    with torch.no_grad():
        stepped = [step_through(module, q, k, v, [1, 6, 1, 1, 13, L - 22])[0] for module in (fast, reference)]
    assert max_diff(*stepped) < FORMS_TOL


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("length", [40, 37])
def test_nsa_fast_compression_is_the_reference_bit_for_bit(length, padded):
    """The top-n choice must see the very same block probabilities (ties, near-ties included)."""
    from attnbench_plugins.attention.nsa import compress_blocks, compress_blocks_fast

    g = torch.Generator().manual_seed(5)
    k, v = (torch.randn(3, length, H, D, generator=g).transpose(1, 2) for _ in range(2))  # not contiguous
    keep = nsa_padding(3, length)[:, 0, 0] if padded else None
    for a, b in zip(compress_blocks_fast(k, v, keep, 4), compress_blocks(k, v, keep, 4), strict=True):
        assert torch.equal(a, b)


def test_nsa_bucket_widths():
    from attnbench_plugins.attention.nsa import _bucket_widths

    assert _bucket_widths(torch.tensor([3, 3, 3]), 8) == [3]
    assert _bucket_widths(torch.tensor([2, 3, 3, 3, 3, 3, 3, 8]), 8) == [3, 8]  # 7·3 + 8 < 8·8
    assert _bucket_widths(torch.tensor([2, 7, 8, 8]), 8) == [2, 8]  # 2 + 3·8 = 26 ≤ 7/8 of 4·8
    assert _bucket_widths(torch.tensor([7, 8, 8, 8]), 8) == [8]  # 7 + 3·8 = 31: not worth a second call
