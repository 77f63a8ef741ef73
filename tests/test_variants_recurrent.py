"""lsh and retention against their papers' formulas, through the registered specs.

LSH (Reformer): rounds combined by log-sum-exp (without duplicate correction, Reformer's
default) give exactly ``softmax(q·k/√D + log N_ij)`` over the pairs that met (N_ij > 0 rounds),
so a dense softmax with the meeting counts rebuilt here item by item from the hash buckets is the
reference. Retention (RetNet): the parallel form ``(Q Kᵀ ⊙ D) V`` and the recurrent form
``S_n = γ S_{n−1} + k_nᵀ v_n, o_n = q_n S_n`` must both equal the chunkwise computation.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from attnbench_plugins.attention.lsh import lsh_buckets, lsh_dense_reference
from attnbench_plugins.attention.retention import retention_decays

from attnbench import AttentionConfig, plugins
from attnbench.nn.attention import build_attention
from attnbench.testing.attention import softmax_reference


def build(name: str, heads: int = 2, dim: int = 8, **options):
    torch.manual_seed(0)
    config = AttentionConfig(num_heads=heads, head_dim=dim, options=options)
    return build_attention(plugins.get_attention(name), config).eval()


def qkv(lq: int, lk: int | None = None, heads: int = 2, dim: int = 8, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    lk = lq if lk is None else lk
    return (torch.randn(2, heads, lq, dim, generator=g), torch.randn(2, heads, lk, dim, generator=g),
            torch.randn(2, heads, lk, dim, generator=g))


# --- LSH ---------------------------------------------------------------------------------------

def lsh_meetings(module, q, k, keep, causal: bool) -> torch.Tensor:
    """(B, H, Lq, Lk) counts N_ij: the rounds in which key j is in query i's window, rebuilt item by item.

    Per round: bucket every normalised query and key; rank the queries of a bucket by position, and
    its keys likewise; c = bucket_size, h = max(1, c // 2) queries and ceil(h·Lk/Lq) keys per
    sub-chunk, w = ceil(2c / h) (one sub-chunk of all Lq queries and all Lk keys when c >= Lq);
    query i sees key j of its bucket when j's sub-chunk lies among the w ending at i's, and the
    bucket has a query sub-chunk at j's index.
    """
    inner = module.inner
    b, h, lq, _ = q.shape
    lk = k.shape[-2]
    c = inner.bucket_size
    per_q = max(1, c // 2) if c < lq else lq
    per_k, w = (math.ceil(per_q * lk / lq), math.ceil(2 * c / per_q)) if c < lq else (lk, 1)
    nb = inner.n_buckets(lq + lk)
    if nb == 1:
        qb = kb = torch.zeros(b, h, inner.n_hashes, lq + lk, dtype=torch.long)
    else:
        qb = lsh_buckets(q, inner.rotations(nb, q.device))
        kb = lsh_buckets(k, inner.rotations(nb, q.device))
    met = torch.zeros(b, h, lq, lk)
    for bi in range(b):
        for hi in range(h):
            for r in range(inner.n_hashes):
                bq, bk = qb[bi, hi, r].tolist(), kb[bi, hi, r].tolist()
                q_rank, k_rank, q_count, k_count = {}, {}, {}, {}
                for i in range(lq):
                    q_rank[i] = q_count.get(bq[i], 0)
                    q_count[bq[i]] = q_rank[i] + 1
                for j in range(lk):
                    if keep[bi, j]:
                        k_rank[j] = k_count.get(bk[j], 0)
                        k_count[bk[j]] = k_rank[j] + 1
                for i in range(lq):
                    for j in k_rank:
                        if bq[i] != bk[j] or (causal and j > i):
                            continue
                        chunks = math.ceil(q_count[bq[i]] / per_q)
                        behind = q_rank[i] // per_q - k_rank[j] // per_k
                        met[bi, hi, i, j] += k_rank[j] // per_k < chunks and 0 <= behind < w
    return met


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n_hashes", [1, 3])
def test_lsh_is_softmax_over_its_hash_rounds_meetings(causal, n_hashes):
    q, k, v = qkv(40)
    keep = torch.ones(2, 40, dtype=torch.bool)
    keep[1, 33:] = False
    keep[0, 5] = False
    module = build("lsh", n_hashes=n_hashes, bucket_size=4)
    out = module(q, k, v, attn_mask=keep[:, None, None, :], is_causal=causal)
    met = lsh_meetings(module, q, k, keep, causal)
    assert 0.05 < (met > 0).float().mean() < 0.6, "the buckets should neither be empty nor hold everything"
    # Rounds combined by log-sum-exp without duplicate correction: softmax(q·k/√D + log N) over N > 0.
    ref = softmax_reference(q, k, v, mask=met > 0, bias=met.clamp(min=1).log())
    ref = torch.where((met > 0).any(-1, keepdim=True), ref, torch.zeros_like(ref))  # no candidate: output 0
    assert (out - ref).abs().max() < 1e-5, (out - ref).abs().max()
    # and it is a restriction of full softmax, not full softmax
    full = softmax_reference(q, k, v, mask=keep[:, None, None, :], causal=causal)
    assert (out - full).abs().max() > 1e-2


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("lq", "lk"), [(40, 40), (24, 40), (40, 24)])
def test_lsh_outputs_and_gradients_equal_its_dense_formula(causal, lq, lk):
    q, k, v = (t.requires_grad_() for t in qkv(lq, lk))
    keep = torch.ones(2, lk, dtype=torch.bool)
    keep[1, lk - 6:] = False
    mask = keep[:, None, None, :]
    module = build("lsh", n_hashes=3, bucket_size=4)
    grad = torch.randn(2, 2, lq, 8)
    out = module(q, k, v, attn_mask=mask, is_causal=causal)
    ref = lsh_dense_reference(module.inner, q, k, v, mask, causal)
    assert (out - ref).abs().max() < 1e-5
    got = torch.autograd.grad(out, (q, k, v), grad)
    want = torch.autograd.grad(ref, (q, k, v), grad)
    for name, a, b in zip("qkv", got, want, strict=True):
        assert (a - b).abs().max() < 1e-4, f"d{name} differs by {(a - b).abs().max():.3g}"


def test_lsh_cross_lengths_and_one_bucket_is_exact_softmax():
    q, k, v = qkv(12, 30)
    out = build("lsh", bucket_size=1000)(q, k, v)
    assert (out - softmax_reference(q, k, v)).abs().max() < 1e-5
    out = build("lsh", bucket_size=1000)(q, k, v, is_causal=True)
    assert (out - softmax_reference(q, k, v, causal=True)).abs().max() < 1e-5


def test_lsh_more_hash_rounds_come_closer_to_full_attention():
    # Keys in a few tight clusters, queries near them: what LSH is meant for (Reformer fig. 5 trend).
    g = torch.Generator().manual_seed(3)
    centres = torch.randn(2, 2, 8, 16, generator=g) * 3
    pick = torch.randint(0, 8, (2, 2, 128), generator=g)
    k = centres.gather(2, pick[..., None].expand(-1, -1, -1, 16)) + 0.3 * torch.randn(2, 2, 128, 16, generator=g)
    q = k[:, :, torch.randperm(128, generator=g)] + 0.3 * torch.randn(2, 2, 128, 16, generator=g)
    v = torch.randn(2, 2, 128, 16, generator=g)
    ref = softmax_reference(q, k, v)
    err = {r: (build("lsh", dim=16, n_hashes=r, bucket_size=8)(q, k, v) - ref).abs().mean().item() for r in (1, 8)}
    print(f"lsh mean |out - softmax| on clustered keys: 1 round {err[1]:.4f}, 8 rounds {err[8]:.4f}")
    assert err[8] < err[1]


def test_lsh_rotations_are_fixed_by_the_seed_option():
    q, k, v = qkv(64)
    a, b = build("lsh", bucket_size=4)(q, k, v), build("lsh", bucket_size=4)(q, k, v)
    assert torch.equal(a, b)
    assert not torch.allclose(a, build("lsh", bucket_size=4, seed=1)(q, k, v))


def test_lsh_rejects_bad_options_by_name():
    with pytest.raises(ValueError, match="n_hashes must be >= 1, got 0"):
        build("lsh", n_hashes=0)


# --- retention ---------------------------------------------------------------------------------

def test_retention_decays_are_the_papers():
    assert retention_decays(4).tolist() == [1 - 2**-5, 1 - 2**-6, 1 - 2**-7, 1 - 2**-8]


def parallel_retention(module, q, k, v, keep, causal: bool) -> torch.Tensor:
    """RetNet's parallel form (Q Kᵀ ⊙ D) V with D_nm = γ^(n−m) (causal) or γ^|n−m|, then GroupNorm."""
    inner = module.inner
    q, k = inner.rotate(q) * q.shape[-1] ** -0.5, inner.rotate(k)
    pos = torch.arange(q.shape[-2])
    rel = pos[:, None] - pos[None, :]
    gamma = retention_decays(q.shape[1]).float()[:, None, None]
    decay = gamma ** rel.abs() * ((rel >= 0) if causal else 1)
    scores = (q @ k.transpose(-2, -1)) * decay * keep[:, None, None, :]
    out = F.layer_norm(scores @ v, (q.shape[-1],), eps=inner.eps)
    return out * inner.norm_weight[:, None] + inner.norm_bias[:, None]


@pytest.mark.parametrize("causal", [True, False])
def test_retention_chunkwise_equals_the_parallel_form(causal):
    q, k, v = qkv(45, heads=3)
    keep = torch.ones(2, 45, dtype=torch.bool)
    keep[0, 40:] = False
    keep[1, 7] = False
    module = build("retention", heads=3, chunk=8)  # 45 is not a multiple of the chunk
    with torch.no_grad():
        module.inner.norm_weight.uniform_(0.5, 1.5)
        module.inner.norm_bias.uniform_(-0.1, 0.1)
    out = module(q, k, v, attn_mask=keep[:, None, None, :], is_causal=causal)
    ref = parallel_retention(module, q, k, v, keep, causal)
    assert (out - ref).abs().max() < 1e-4, (out - ref).abs().max()


def test_retention_causal_equals_the_recurrent_form():
    q, k, v = qkv(20, heads=2)
    module = build("retention", heads=2, chunk=6, rotary=False)
    out = module(q, k, v, is_causal=True)
    gamma = retention_decays(2).float()[None, :, None, None]
    state = torch.zeros(2, 2, 8, 8)
    steps = []
    for n in range(20):  # S_n = γ S_{n−1} + k_nᵀ v_n ;  o_n = q_n S_n
        state = gamma * state + k[:, :, n, :, None] * v[:, :, n, None, :]
        steps.append((q[:, :, n, None, :] * 8**-0.5) @ state)
    ref = F.layer_norm(torch.cat(steps, dim=2), (8,), eps=module.inner.eps)
    assert (out - ref).abs().max() < 1e-4, (out - ref).abs().max()


def test_retention_refuses_other_head_counts_and_cross():
    module = build("retention", heads=2)
    q, k, v = qkv(10, heads=3)
    with pytest.raises(ValueError, match="built for 2 heads"):
        module.inner(q, k, v)
    q, k, v = qkv(10, 12)
    with pytest.raises(ValueError, match="query length 10 != key length 12"):
        module.inner(q, k, v)


# --- s4d (module only: not registered, see its test below) ---------------------------------------

def s4d_spec():
    from attnbench_plugins.attention import s4d

    found = []
    s4d.register_attention(register=found.append)
    return found[0]


@pytest.mark.parametrize("causal", [True, False])
def test_s4d_fft_convolution_equals_the_state_space_recurrence(causal):
    """x_l = e^(ΔA) x_{l−1} + (e^(ΔA) − 1)/A · u_l ;  y_l = 2·Re(C x_l) + D u_l, run step by step
    (and, when not causal, a second recurrence backwards from the end with the second C)."""
    spec = s4d_spec()
    torch.manual_seed(0)
    module = spec.build(AttentionConfig(num_heads=2, head_dim=3, options={"state_size": 8}))
    v = torch.randn(2, 2, 13, 3, generator=torch.Generator().manual_seed(4))
    keep = torch.ones(2, 13, dtype=torch.bool)
    keep[1, 10:] = False
    out = module(v, v, v, attn_mask=keep[:, None, None, :], is_causal=causal)
    u = (v * keep[:, None, :, None]).transpose(-2, -1).reshape(2, 6, 13).double()
    a = torch.complex(-module.log_a_real.exp(), module.a_imag).detach().to(torch.complex128)
    dta = module.log_dt.exp().detach().double()[:, None] * a  # ΔA, S4D-Lin: A_n = −1/2 + iπn
    c = torch.view_as_complex(module.c.detach()).to(torch.complex128)
    ys = torch.zeros(2, 6, 13, dtype=torch.float64)
    x = torch.zeros(2, 6, 4, dtype=torch.complex128)
    for step in range(13):
        x = dta.exp() * x + (dta.exp() - 1) / a * u[..., step, None]
        ys[..., step] = 2 * (c[0] * x).sum(-1).real
    if not causal:  # look-ahead: the state of u_{l+1..}, one step further in the past for y_l
        x = torch.zeros(2, 6, 4, dtype=torch.complex128)
        for step in reversed(range(13)):
            ys[..., step] += 2 * (c[1] * x).sum(-1).real
            x = dta.exp() * x + (dta.exp() - 1) / a * u[..., step, None]
    ref = ys + module.d.double()[:, None] * u
    got = out.transpose(-2, -1).reshape(2, 6, 13).double()
    assert (got - ref).abs().max() < 1e-4, (got - ref).abs().max()


def test_s4d_is_registered_as_an_attention_free_baseline_that_ignores_q_and_k():
    """The kit asks an attention-free baseline for gradients on v only; q and k truly play no part."""
    spec = plugins.load().attention.get("s4d")
    assert spec.attention_free and not spec.weights and not spec.cross
    module = spec.build(AttentionConfig(num_heads=2, head_dim=8)).eval()
    q, k, v = torch.randn(3, 2, 2, 12, 8).unbind(0)
    assert torch.equal(module(q, k, v), module(torch.randn_like(q), torch.randn_like(k), v))
