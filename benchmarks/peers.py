"""Each built-in variant beside the PyPI implementation a user would pick instead, in one process.

For every pairing: our module and the peer are built with the same parameters where the math is the
same (copied tables, projections and random features), their outputs compared on one input
(max |ours − peer|), then timed by alternating calls (ours, peer, ours, …; ``--repeats`` pairs, the
time ratio the median of the pairs' ratios) so that load on a shared host hits both alike: forward
(no_grad) at each of ``--lengths``, forward+backward at ``--backward-length``, and the peak of live
tensor memory of one forward at ``--memory-length`` (``attnbench.memory``: torch.profiler's
allocation events on CPU, the caching allocator on CUDA). Ratio = ours ÷ peer: below 1 attnbench is faster or smaller. Where the
definitions differ, the row says how and the agreement column is blank.

The peers are the ``[peers]`` extra (``pip install -e .[peers]``); a pairing whose package is
missing is a row that says so. :func:`peer_for` hands ``benchmarks/variant_floor.py`` the same
callables, so its floor is the faster of our own bare-torch floor and the best peer.

    OMP_NUM_THREADS=1 python benchmarks/peers.py            # writes benchmarks/peers-cpu.md

Exit status: 0 table written, 2 bad flags.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

Fn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True, kw_only=True)
class Peer:
    """One pairing: our variant (with options, causal or not) and the peer's call that computes the same thing."""

    variant: str
    package: str  # the distribution on PyPI
    module: str  # imported to tell whether the peer is installed
    call: str  # what of the peer is called, in words
    build: Callable[[nn.Module, int, int, int], Fn]  # (our module, L, heads, head dim) -> peer(q, k, v)
    options: dict = field(default_factory=dict)
    causal: bool = False
    same_math: bool = True
    note: str = ""
    row: str = ""  # a label when one variant has several pairings

    @property
    def label(self) -> str:
        """The row's name: variant, pairing label and causal flag."""
        return self.variant + (f" ({self.row})" if self.row else "") + (" causal" if self.causal else "")

    def available(self) -> str | None:
        """None when the peer imports, else why not, in one line."""
        try:
            importlib.import_module(self.module)
        except Exception as error:  # noqa: BLE001 - any import failure means the peer is unavailable
            return f"{self.package} not installed ({type(error).__name__}: {error}); pip install -e .[peers]"
        return None


# --- the peers' calls ----------------------------------------------------------------------------

def _xt_attend(bias_of: Callable[[int, int], torch.Tensor]) -> Fn:
    from x_transformers.attend import Attend
    attend = Attend(flash=True)

    def call(q, k, v):
        return attend(q, k, v, attn_bias=bias_of(q.shape[-2], k.shape[-2]))[0]
    return call


def _alibi(module, length, heads, head_dim):
    from x_transformers.x_transformers import AlibiPositionalBias
    bias = AlibiPositionalBias(heads=heads, total_heads=heads)
    return _xt_attend(lambda i, j: bias(i, j))


def _relative(module, length, heads, head_dim):
    from x_transformers.x_transformers import RelativePositionBias
    bias = RelativePositionBias(scale=1.0, causal=not module.bidirectional, num_buckets=module.num_buckets,
                                max_distance=module.max_distance, heads=heads)
    bias.relative_attention_bias.weight = module.embedding.weight  # the same learned table
    return _xt_attend(lambda i, j: bias(i, j))


def _reformer(module, length, heads, head_dim):
    from reformer_pytorch.reformer_pytorch import LSHAttention
    lsh = LSHAttention(bucket_size=module.bucket_size, n_hashes=module.n_hashes)

    def call(q, k, v):  # shared QK: the peer hashes and scores q against (normalised) q
        b, h, n, d = q.shape
        return lsh(q.reshape(b * h, n, d), v.reshape(b * h, n, d))[0].view(b, h, n, -1)
    return call


def _fla_linear(module, length, heads, head_dim):
    from fla.ops.linear_attn.naive import naive_chunk_linear_attn

    def call(q, k, v):  # fla takes (B, L, H, D) and features already applied
        fq, fk = (F.elu(t) + 1 for t in (q, k))
        out = naive_chunk_linear_attn(*(t.transpose(1, 2) for t in (fq, fk, v)), scale=1.0, normalize=True)
        return out.transpose(1, 2)
    return call


def _performer(module, length, heads, head_dim):
    from performer_pytorch import FastAttention
    fast = FastAttention(dim_heads=module.head_dim, nb_features=module.features.shape[0])
    fast.projection_matrix.copy_(module.features)  # the same random features
    return fast


def _nystrom(module, length, heads, head_dim):
    from nystrom_attention import NystromAttention
    d = head_dim
    peer = NystromAttention(dim=heads * d, dim_head=d, heads=heads, num_landmarks=module.landmarks,
                            pinv_iterations=module.pinv_iterations, residual=False)
    peer.to_out = nn.Identity()
    return _through_projections(peer, "to_qkv", heads, concat=True)


def _linformer(module, length, heads, head_dim):
    from linformer import LinformerSelfAttention
    d = head_dim
    peer = LinformerSelfAttention(dim=heads * d, seq_len=length, k=module.k, heads=heads, dim_head=d)
    with torch.no_grad():  # the same E and F
        peer.proj_k.copy_(module.proj_k[:, :length].T)
        peer.proj_v.copy_(module.proj_v[:, :length].T)
    peer.to_out = nn.Identity()
    return _through_projections(peer, ("to_q", "to_k", "to_v"), heads, concat=False)


def _local(module, length, heads, head_dim):
    from local_attention import LocalAttention
    half = module.window // 2
    peer = LocalAttention(window_size=half, causal=False, look_backward=1, look_forward=1, exact_windowsize=True,
                          autopad=True, use_rotary_pos_emb=False)
    return lambda q, k, v: peer(q, k, v)


def _local_causal(module, length, heads, head_dim):
    from local_attention import LocalAttention
    # Ours: the w most recent keys, itself included; the peer's exact causal window reaches
    # window_size · look_backward keys back, so window_size = w − 1 and one block back.
    peer = LocalAttention(window_size=module.window - 1, causal=True, look_backward=1, exact_windowsize=True,
                          autopad=True, use_rotary_pos_emb=False)
    return lambda q, k, v: peer(q, k, v)


def _rope(module, length, heads, head_dim):
    from rotary_embedding_torch import RotaryEmbedding
    rotary = RotaryEmbedding(dim=2 * module.half, theta=module_rope_base(module))
    return lambda q, k, v: F.scaled_dot_product_attention(rotary.rotate_queries_or_keys(q),
                                                          rotary.rotate_queries_or_keys(k), v)


def _fla_retention(module, length, heads, head_dim):
    from fla.ops.retention.naive import naive_retention
    return lambda q, k, v: module._group_norm(naive_retention(q, k, v))  # plus our GroupNorm, as in RetNet


def module_rope_base(module) -> float:
    """rope's base θ, read back from its inverse frequencies."""
    return float(module.inv_freq[1]) ** -module.half if module.half > 1 else 10000.0  # inv_freq[i] = θ^(−i/half)


class _Given(nn.Module):
    """Stands in for a peer's input projection: returns the tensor set before the call."""

    def __init__(self) -> None:
        super().__init__()
        self.value: torch.Tensor | None = None

    def forward(self, x):
        return self.value


def _through_projections(peer: nn.Module, names, heads: int, *, concat: bool) -> Fn:
    """Call a peer that projects x itself with its projections replaced by our q, k, v (heads merged)."""
    if concat:
        given = _Given()
        setattr(peer, names, given)
    else:
        givens = [_Given() for _ in names]
        for name, g in zip(names, givens, strict=True):
            setattr(peer, name, g)

    def call(q, k, v):
        b, h, n, d = q.shape
        merged = [t.transpose(1, 2).reshape(b, n, h * d) for t in (q, k, v)]
        if concat:
            given.value = torch.cat(merged, dim=-1)
        else:
            for g, t in zip(givens, merged, strict=True):
                g.value = t
        out = peer(merged[0])
        return out.view(b, n, h, -1).transpose(1, 2)
    return call


PEERS: list[Peer] = [
    Peer(variant="alibi", package="x-transformers", module="x_transformers", build=_alibi,
         call="AlibiPositionalBias + Attend(flash=True) (SDPA with the bias)",
         note="the peer caches its (H, L, L) bias between calls (256 MiB at H=4, L=4k), held outside the measured "
         "call; ours builds an (H, 2L) vector per call and reverses k and v (2·L·D) to pass it as a strided view"),
    Peer(variant="relative", package="x-transformers", module="x_transformers", build=_relative,
         call="T5 RelativePositionBias + Attend(flash=True), our table copied",
         note="the peer builds the (H, L, L) bias each call; ours an (H, 2L) vector (the table gets gradients "
         "either way, which sends SDPA to its unfused path in training for both)"),
    Peer(variant="lsh", row="bucket 32, 2 rounds", package="reformer-pytorch", module="reformer_pytorch",
         build=_reformer, options={"bucket_size": 32, "n_hashes": 2}, call="LSHAttention(bucket_size=32, n_hashes=2)",
         same_math=False, note="Reformer shares QK (keys = normalised queries) and lets chunks straddle buckets; "
         "ours hashes q and k apart, chunks aligned to buckets (no causal leak); same rounds, 2·bucket_size keys a query"),
    Peer(variant="lsh", row="bucket 64, 8 rounds", package="reformer-pytorch", module="reformer_pytorch",
         build=_reformer, options={"bucket_size": 64, "n_hashes": 8}, call="LSHAttention(bucket_size=64, n_hashes=8)",
         same_math=False, note="Reformer's defaults; differences as above"),
    Peer(variant="linear", package="fla-core", module="fla.ops.linear_attn.naive", build=_fla_linear, causal=True,
         call="naive_chunk_linear_attn(elu+1 features, normalize=True)",
         note="fla's normaliser guard is 1e-10, ours 1e-6"),
    Peer(variant="performer", package="performer-pytorch", module="performer_pytorch", build=_performer,
         call="FastAttention, our random features copied",
         note="the peer adds kernel_epsilon 1e-4 to every feature; agreement measured with it set to 0"),
    Peer(variant="nystrom", package="nystrom-attention", module="nystrom_attention", build=_nystrom,
         call="NystromAttention(residual=False), projections bypassed",
         note="the peer scales the pseudo-inverse's first iterate by the largest row and column sums over the whole "
         "batch, ours per (batch, head) matrix (the paper's Z₀): after 6 iterations the outputs differ by 1e-4 to 1e-3"),
    Peer(variant="linformer", package="linformer", module="linformer", build=_linformer,
         call="LinformerSelfAttention, E and F copied, projections bypassed"),
    Peer(variant="local", package="local-attention", module="local_attention", build=_local,
         call="LocalAttention(window/2, look 1 back and 1 forward, exact_windowsize, no rotary)"),
    Peer(variant="local", package="local-attention", module="local_attention", build=_local_causal, causal=True,
         call="LocalAttention(window − 1, causal, look 1 back, exact_windowsize, no rotary)",
         note="the peer's blocks are w − 1 = 63 positions (padded to a multiple of 63); window 21 looking 3 back "
         "timed within 5 % of it"),
    Peer(variant="rope", package="rotary-embedding-torch", module="rotary_embedding_torch", build=_rope,
         call="RotaryEmbedding.rotate_queries_or_keys + SDPA",
         note="the peer rotates interleaved pairs (x0,x1), ours halves (x0,x_D/2): agreement on inputs permuted to match"),
    Peer(variant="retention", package="fla-core", module="fla.ops.retention.naive", build=_fla_retention, causal=True,
         options={"rotary": False}, call="naive_retention (parallel, O(L²)) + our GroupNorm",
         note="fla's reference is the O(L²) parallel form; ours is chunkwise O(L)"),
]


def peer_for(variant: str, module: nn.Module, length: int, heads: int, head_dim: int, *,
             causal: bool = False) -> tuple[Fn, str] | None:
    """The first installed peer of ``variant`` at this causality, built to ``module``'s settings, or None."""
    for peer in PEERS:
        if peer.variant == variant and peer.causal == causal and peer.available() is None:
            return peer.build(module, length, heads, head_dim), f"{peer.package}: {peer.call}"
    return None


# --- measuring -------------------------------------------------------------------------------------

def build_ours(peer: Peer, length: int, heads: int, head_dim: int) -> nn.Module:
    """Our variant through the registry, unwrapped from the harness's checks, in eval mode."""
    from attnbench import plugins
    from attnbench.nn.attention import build_attention
    from attnbench.specs import AttentionConfig

    torch.manual_seed(0)
    config = AttentionConfig(num_heads=heads, head_dim=head_dim, max_len=length, causal=peer.causal,
                             options=peer.options)
    module = build_attention(plugins.get_attention(peer.variant), config)
    return getattr(module, "inner", module).eval()


def _inputs(shape, seed: int, grad: bool = False):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(shape, generator=g).requires_grad_(grad) for _ in range(3))


def agreement(peer: Peer, args) -> float | None:
    """max |ours − peer| on one input at ``--agreement-length`` (None when the definitions differ)."""
    if not peer.same_math:
        return None
    length = args.agreement_length
    ours = build_ours(peer, length, args.heads, args.head_dim)
    theirs = peer.build(ours, length, args.heads, args.head_dim)
    q, k, v = _inputs((args.batch, args.heads, length, args.head_dim), seed=1)
    with torch.no_grad():
        mine = ours(q, k, v, is_causal=peer.causal)
        if peer.variant == "rope":  # the peer pairs (x0, x1), ours (x0, x_D/2): interleave the halves
            half = args.head_dim // 2
            q, k = (torch.stack([t[..., :half], t[..., half:]], dim=-1).flatten(-2) for t in (q, k))
        if peer.variant == "performer":
            import performer_pytorch.performer_pytorch as pp
            saved = pp.softmax_kernel.__kwdefaults__["eps"]
            pp.softmax_kernel.__kwdefaults__["eps"] = 0.0
            try:
                other = theirs(q, k, v)
            finally:
                pp.softmax_kernel.__kwdefaults__["eps"] = saved
        else:
            other = theirs(q, k, v)
    return (mine - other).abs().max().item()


def timed_pair(ours: Callable[[], object], theirs: Callable[[], object], repeats: int,
               before=None) -> tuple[float, float, float]:
    """Medians (ms) of alternating timed calls after one warm-up call of each, and the median of the
    per-pair ratios ours_i ÷ peer_i (two adjacent calls share the host's load of that moment, so the
    paired ratio holds up better on a busy machine than the ratio of the two medians)."""
    for fn in (ours, theirs):
        if before:
            before()
        fn()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for slot, fn in enumerate((ours, theirs)):
            if before:
                before()
            start = time.perf_counter()
            fn()
            times[slot].append(time.perf_counter() - start)
    paired = statistics.median(a / b for a, b in zip(*times, strict=True))
    return statistics.median(times[0]) * 1e3, statistics.median(times[1]) * 1e3, paired


def measure(peer: Peer, args) -> dict:
    """Every figure of one row."""
    from attnbench import memory

    reason = peer.available()
    if reason:
        return {"status": reason}
    row: dict = {"status": "ok", "agreement": agreement(peer, args)}
    shape = (args.batch, args.heads)
    for length in args.lengths:
        ours = build_ours(peer, length, args.heads, args.head_dim)
        theirs = peer.build(ours, length, args.heads, args.head_dim)
        q, k, v = _inputs((*shape, length, args.head_dim), seed=2)
        mine = partial(ours, q, k, v, is_causal=peer.causal)
        other = partial(theirs, q, k, v)
        with torch.no_grad():
            row[f"fwd{length}"] = timed_pair(mine, other, args.repeats)
            if length == args.memory_length:
                cpu = torch.device("cpu")
                row["memory"] = (memory.peak_tensor_mb(mine, cpu), memory.peak_tensor_mb(other, cpu))
    length = args.backward_length
    ours = build_ours(peer, length, args.heads, args.head_dim).train()
    theirs = peer.build(ours, length, args.heads, args.head_dim)
    q, k, v = _inputs((*shape, length, args.head_dim), seed=3, grad=True)
    grad = torch.randn(*shape, length, args.head_dim)
    params = [p for p in ours.parameters() if p.requires_grad]

    def drop():
        for t in (q, k, v, *params):
            t.grad = None
    row[f"fwdbwd{length}"] = timed_pair(lambda: ours(q, k, v, is_causal=peer.causal).backward(grad),
                                        lambda: theirs(q, k, v).backward(grad), args.repeats, before=drop)
    return row


def render(rows: list[tuple[Peer, dict]], args) -> str:
    """The markdown table: agreement, time ratios and memory per pairing."""
    def size(n: int) -> str:
        return f"{n // 1024}k" if n % 1024 == 0 else str(n)

    head = ["variant vs peer", "peer call", "agreement"] + [f"fwd {size(n)}" for n in args.lengths]
    head += [f"fwd+bwd {size(args.backward_length)}", f"memory {size(args.memory_length)} (MiB)", "differences"]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(["---"] * 3 + ["---:"] * (len(head) - 4) + ["---"]) + " |"]
    for peer, r in rows:
        name = f"{peer.label} vs {peer.package}"
        if r.get("status") != "ok":
            lines.append(f"| {name} | {peer.call} | {r['status']} |" + " |" * (len(head) - 3))
            continue
        agree = "different definition" if r["agreement"] is None else f"{r['agreement']:.1e}"
        cells = [name, peer.call, agree]
        for key in [f"fwd{n}" for n in args.lengths] + [f"fwdbwd{args.backward_length}"]:
            mine, theirs, paired = r[key]
            cells.append(f"**{paired:.2f}** ({mine:,.1f} vs {theirs:,.1f} ms)")
        mem = r.get("memory")
        cells.append("—" if not mem or not mem[1] else f"**{mem[0] / mem[1]:.2f}** ({mem[0]:,.1f} vs {mem[1]:,.1f})")
        cells.append(peer.note)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse flags, measure every pairing, write the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="1024,4096", help="forward lengths (comma-separated)")
    parser.add_argument("--backward-length", type=int, default=1024)
    parser.add_argument("--memory-length", type=int, default=4096, help="one of --lengths")
    parser.add_argument("--agreement-length", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--variants", default="", help="only these variants (comma-separated)")
    parser.add_argument("--note", default="", help="a line added under the table's header (e.g. the host's load)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("peers-cpu.md")))
    args = parser.parse_args(argv)
    try:
        args.lengths = [int(x) for x in args.lengths.split(",") if x]
    except ValueError:
        parser.error(f"--lengths {args.lengths!r}: expected integers separated by commas, e.g. 1024,4096")
    if args.memory_length not in args.lengths:
        parser.error(f"--memory-length {args.memory_length} is not one of --lengths {args.lengths}; add it there")
    wanted = {v for v in args.variants.split(",") if v}
    unknown = wanted - {p.variant for p in PEERS}
    if unknown:
        parser.error(f"--variants: no peer for {sorted(unknown)}; known: {sorted({p.variant for p in PEERS})}")
    load_start, start = os.getloadavg(), time.perf_counter()
    rows = []
    for peer in PEERS:
        if wanted and peer.variant not in wanted:
            continue
        try:
            result = measure(peer, args)
        except Exception as error:  # noqa: BLE001 - one pairing's failure is a row, not the end
            result = {"status": f"failed: {type(error).__name__}: {error}"[:160]}
        rows.append((peer, result))
        print(peer.label, result, flush=True)
    table = render(rows, args)
    command = "OMP_NUM_THREADS=1 python benchmarks/peers.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    text = "\n".join([
        "# attnbench's built-in variants beside their PyPI peers, CPU", "",
        "```", command.strip(), "```", "",
        f"- torch {torch.__version__}, Python {platform.python_version()}, {platform.machine()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, threads {torch.get_num_threads()}",
        f"- B={args.batch}, H={args.heads}, D={args.head_dim}, float32; time ratio = attnbench ÷ peer (below 1: "
        f"attnbench faster), the median over {args.repeats} pairs of adjacent calls (ours, peer) in one process after "
        "one warm-up each, with each side's median ms in brackets; "
        f"memory = peak live tensor memory of one forward; agreement = max |ours − peer| at L={args.agreement_length}",
        f"- host load average (1/5/15 min) at start {'/'.join(f'{x:.2f}' for x in load_start)}, at end "
        f"{'/'.join(f'{x:.2f}' for x in os.getloadavg())}; wall {time.perf_counter() - start:.0f} s"
        + (f"; {args.note}" if args.note else ""), "", table, "",
    ])
    Path(args.out).write_text(text)
    print(table)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
