"""Each built-in variant against its floor: the fastest bare-torch formulation of the same math found.

For every (variant, L) one fresh subprocess builds the variant (B, H, D from the flags, not causal,
no mask, float32, CPU) and its floor, warms both up, then alternates timed calls of the two
(``attnbench.bench.measure.time_call``, one call at a time) so that load on a shared host hits
both alike; the median of each is reported with the ratio variant ÷ floor, for the forward
(no_grad, eval) and, for lengths in ``--backward-lengths``, forward+backward (train mode,
gradients to q, k, v and the parameters).

Floors (constants that depend only on L are built once, outside the timed calls):

* sdpa, sdpa-flash, sdpa-math, sdpa-efficient: ``F.scaled_dot_product_attention`` (default dispatch)
* softmax: textbook ``softmax(q kᵀ/√D) v`` (three ops)
* rope: cached cos/sin rotation of q and k, then SDPA
* alibi: SDPA with the precomputed float bias -m_h·|i-j|, as a 4-D (1, H, L, L) tensor (a 3-D one sends
  CPU SDPA to its unfused math path: the floor must be the fastest known formulation, not ours)
* relative: the learned table gathered at cached (L, L) buckets each call, then SDPA with it as a 4-D float mask
* talking-heads: textbook with two einsum head mixes around the softmax
* additive: the faster of two one-shot (unchunked, no checkpoint) formulations: einsum of tanh,
  and Σv - 2·vᵀσ(-2(Wq + Uk))
* local: SDPA with a cached bool band mask |i-j| ≤ w/2
* sparse: SDPA with the module's own cached (L, L) block pattern as bool mask
* linformer: E k, F v (the module's projections) then SDPA
* linear: φ = elu+1, φ(q)(φ(k)ᵀv) / φ(q)Σφ(k)
* performer: the module's random features, exp-logit feature maps, then the linear-attention products
* gqa, mqa: k and v mean-pooled to the module's key/value heads, then SDPA with ``enable_gqa``
* sigmoid: textbook ``sigmoid(q kᵀ/√D − log L) v``
* differential: two half-width SDPA calls, the λ-difference, ``F.rms_norm``
* nystrom, cosformer, lsh, retention, s4d: no separate bare-torch formulation was written (their modules are bare torch
  already).

Beside each own floor, the variant's PyPI peer from ``benchmarks/peers.py`` (when installed: the ``[peers]``
extra) is timed in the same alternation, and the floor is the faster of the two (the table names which).
For lsh the peer is reformer-pytorch at the same bucket size and rounds (a different definition: see
``peers.py``).

    OMP_NUM_THREADS=1 python benchmarks/variant_floor.py --lengths 1024,4096 --backward-lengths 1024
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ["sdpa", "sdpa-math", "sdpa-flash", "sdpa-efficient", "softmax", "rope", "alibi", "relative",
            "talking-heads", "additive", "local", "sparse", "linformer", "linear", "performer", "nystrom",
            "cosformer", "gqa", "mqa", "sigmoid", "differential", "lsh", "retention", "s4d"]


def build_floor(name: str, module, length: int, heads: int):  # noqa: C901 - one branch per variant
    """A callable ``floor(q, k, v)`` for ``name`` using ``module``'s parameters, and its description."""
    import torch
    import torch.nn.functional as F

    sdpa = F.scaled_dot_product_attention
    if name.startswith("sdpa"):
        return (lambda q, k, v: sdpa(q, k, v)), "SDPA (default dispatch)"
    if name == "softmax":
        return (lambda q, k, v: torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), -1) @ v), \
            "textbook matmul-softmax-matmul"
    if name == "rope":
        cos, sin = module.tables(length, torch.device("cpu"), torch.float32)
        h = module.half

        def rot(x):
            x1, x2 = x[..., :h], x[..., h:2 * h]
            return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin, x[..., 2 * h:]), -1)
        return (lambda q, k, v: sdpa(rot(q), rot(k), v)), "cached cos/sin rotation + SDPA"
    if name == "alibi":
        i = torch.arange(length)
        bias = (-module.slopes[:, None, None] * (i[:, None] - i[None, :]).abs())[None].contiguous()
        return (lambda q, k, v: sdpa(q, k, v, attn_mask=bias)), "SDPA + precomputed (1,H,L,L) float bias"
    if name == "relative":
        from attnbench_plugins.attention.relative import relative_position_bucket
        i = torch.arange(length)
        buckets = relative_position_bucket(i[None, :] - i[:, None], module.bidirectional, module.num_buckets,
                                           module.max_distance)
        table = module.embedding.weight
        return (lambda q, k, v: sdpa(q, k, v, attn_mask=table[buckets].permute(2, 0, 1)[None])), \
            "table[cached buckets] + SDPA 4-D float mask"
    if name == "talking-heads":
        pre, post = module.pre_softmax, module.post_softmax

        def th(q, k, v):
            s = torch.einsum("bhqk,hg->bgqk", q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), pre)
            return torch.einsum("bhqk,hg->bgqk", torch.softmax(s, -1), post) @ v
        return th, "textbook + einsum head mixes"
    if name == "additive":
        w, u, a = module.w, module.u, module.v

        def tanh_form(q, k, v):
            s = torch.einsum("bhqka,ha->bhqk", torch.tanh((q @ w).unsqueeze(-2) + (k @ u).unsqueeze(-3)), a)
            return torch.softmax(s, -1) @ v

        def sigmoid_form(q, k, v):
            x = (-2 * (q @ w)).unsqueeze(-2) + (-2 * (k @ u)).unsqueeze(-3)
            s = a.sum(-1)[:, None, None] - 2 * (torch.sigmoid(x) @ a[:, None, :, None]).squeeze(-1)
            return torch.softmax(s, -1) @ v
        return {"tanh": tanh_form, "sigmoid": sigmoid_form}, "one-shot (unchunked) {tanh, sigmoid} form"
    if name == "local":
        i = torch.arange(length)
        band = (i[None, :] - i[:, None]).abs() <= module.window // 2
        return (lambda q, k, v: sdpa(q, k, v, attn_mask=band)), "SDPA + cached bool band mask"
    if name == "sparse":
        pattern = module.pattern(length, False)
        return (lambda q, k, v: sdpa(q, k, v, attn_mask=pattern)), "SDPA + cached bool block pattern"
    if name == "linformer":
        pk, pv = module.proj_k, module.proj_v
        return (lambda q, k, v: sdpa(q, pk[:, :length] @ k, pv[:, :length] @ v)), "E k, F v + SDPA"
    if name == "linear":
        def lin(q, k, v):
            fq, fk = F.elu(q) + 1, F.elu(k) + 1
            return (fq @ (fk.transpose(-2, -1) @ v)) / (fq @ fk.sum(-2)[..., None])
        return lin, "elu+1 feature maps, φ(q)(φ(k)ᵀv)/φ(q)Σφ(k)"
    if name == "performer":
        def perf(q, k, v):
            lq, lk = module._logits(q), module._logits(k)
            fq = torch.exp(lq - lq.amax(-1, keepdim=True).detach())
            fk = torch.exp(lk - lk.amax(dim=(-2, -1), keepdim=True).detach())
            return (fq @ (fk.transpose(-2, -1) @ v)) / (fq @ fk.sum(-2)[..., None])
        return perf, "module's features, exp feature maps, linear products"
    if name in ("gqa", "mqa"):
        kv = module.num_kv_heads

        def pooled(x):
            return x.view(x.shape[0], kv, x.shape[1] // kv, *x.shape[2:]).mean(2)
        return (lambda q, k, v: sdpa(q, pooled(k), pooled(v), enable_gqa=True)), \
            f"k, v mean-pooled to {kv} head(s) + SDPA enable_gqa"
    if name == "sigmoid":
        return (lambda q, k, v: torch.sigmoid(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) - math.log(length)) @ v), \
            "textbook sigmoid(q kᵀ/√D − log L) v"
    if name == "differential":
        lam, lam_init, weight = module.lambda_, module.lambda_init, module.norm.weight

        def diff(q, k, v):
            (q1, q2), (k1, k2) = q.chunk(2, -1), k.chunk(2, -1)
            out = sdpa(q1, k1, v) - lam()[:, None, None] * sdpa(q2, k2, v)
            return F.rms_norm(out, (out.shape[-1],), weight, module.norm.eps) * (1 - lam_init)
        return diff, "two half-width SDPA calls, λ-difference, F.rms_norm"
    return None, "none written (module is bare torch)"


def peer_floor(name: str, module, length: int, heads: int, head_dim: int):
    """(callable, label) of the variant's installed PyPI peer (benchmarks/peers.py), or None."""
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        import peers
    finally:
        sys.path.pop(0)
    return peers.peer_for(name, getattr(module, "inner", module), length, heads, head_dim)


def measure(name: str, length: int, args) -> dict:
    """In this process: medians of alternating timed calls of ``name`` and its floor at ``length``."""
    import torch

    from attnbench import plugins
    from attnbench.bench.measure import time_call, warm_up
    from attnbench.nn.attention import build_attention
    from attnbench.specs import AttentionConfig

    device = torch.device("cpu")
    spec = plugins.get_attention(name)
    reason = spec.available(device) if callable(spec.available) else None
    if reason:
        return {"status": f"unavailable: {reason}"}
    torch.manual_seed(0)
    config = AttentionConfig(num_heads=args.heads, head_dim=args.head_dim, max_len=length)
    module = build_attention(spec, config)
    floor, how = build_floor(name, getattr(module, "inner", module), length, args.heads)  # past CheckedAttention
    shape = (args.batch, args.heads, length, args.head_dim)
    q, k, v = (torch.randn(shape) for _ in range(3))
    floors = floor if isinstance(floor, dict) else ({"": floor} if floor else {})
    peer = peer_floor(name, module, length, args.heads, args.head_dim)
    if peer:
        if "" in floors:
            floors["own"] = floors.pop("")
        floors["peer"], label = peer
        how = f"{how}; peer {label}"
    result = {"status": "ok", "floor": how}
    passes = [("fwd", False)] + ([("fwdbwd", True)] if length in args.backward_lengths else [])
    for tag, backward in passes:
        module.train(backward)
        for t in (q, k, v):
            t.requires_grad_(backward)
        grad = torch.randn(shape)

        def call(fn, backward=backward, grad=grad):
            if backward:
                fn(q, k, v).backward(grad)
            else:
                with torch.no_grad():
                    fn(q, k, v)

        def drop() -> None:
            for t in (q, k, v, *module.parameters()):
                t.grad = None
        fns = {"variant": lambda: call(module), **{f"floor{key}": (lambda f=f: call(f)) for key, f in floors.items()}}
        for fn in fns.values():
            warm_up(fn, args.warmup, before=drop)
        times: dict[str, list[float]] = {key: [] for key in fns}
        for _ in range(args.repeats):
            for key, fn in fns.items():
                times[key] += time_call(fn, device, repeats=1, before=drop)
        medians = {key: statistics.median(ts) * 1000 for key, ts in times.items()}
        result[f"{tag}_ms"] = medians["variant"]
        floor_keys = [key for key in medians if key.startswith("floor")]
        if floor_keys:
            best = min(floor_keys, key=medians.get)
            result[f"{tag}_floor_ms"] = medians[best]
            result[f"{tag}_floor_form"] = best[len("floor"):]
            # Adjacent calls share the host's load of that moment: their ratios' median is steadier.
            result[f"{tag}_paired"] = statistics.median(a / b for a, b in zip(times["variant"], times[best], strict=True))
    return result


def main() -> None:
    """Parse flags; as the parent, run one subprocess per (variant, L) and write the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="1024,4096")
    parser.add_argument("--backward-lengths", default="1024")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--skip", default="additive@4096", help="variant@L pairs not measured (too slow on CPU)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).with_name("variant-floor-cpu.md")))
    parser.add_argument("--note", default="", help="a line added to the table's header (e.g. the host's load)")
    parser.add_argument("--same-process", action="store_true",
                        help="measure every (variant, L) in this process (when starting torch per child is too slow)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.backward_lengths = {int(x) for x in args.backward_lengths.split(",") if x}
    if args.child:
        name, length = args.child.split("@")
        print(json.dumps(measure(name, int(length), args)))
        return
    skip = set(args.skip.split(",")) if args.skip else set()
    rows = []
    load_start = os.getloadavg()
    start = time.perf_counter()
    for length in (int(x) for x in args.lengths.split(",")):
        for name in args.variants.split(","):
            if f"{name}@{length}" in skip:
                rows.append((name, length, {"status": "skipped (--skip)"}))
                continue
            if args.same_process:
                try:
                    res = measure(name, length, args)
                except Exception as error:  # noqa: BLE001 - one variant's failure is a row, not the end
                    res = {"status": f"failed: {type(error).__name__}: {error}"[:120]}
                rows.append((name, length, res))
                print(name, length, res, flush=True)
                continue
            cmd = [sys.executable, __file__, "--child", f"{name}@{length}", *sys.argv[1:]]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                res = {"status": "failed: " + (done.stderr.strip().splitlines() or ["?"])[-1][:120]}
            else:
                res = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append((name, length, res))
            print(name, length, res, flush=True)
    table = render(rows)
    print(table)
    import torch
    header = [
        "# Each built-in variant against its floor (bare-torch formulation of the same math), CPU", "",
        "```", "OMP_NUM_THREADS=1 python benchmarks/variant_floor.py " + shlex.join(sys.argv[1:]), "```", "",
        f"- torch {torch.__version__}, Python {platform.python_version()}, {platform.processor() or platform.machine()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
        f"- B={args.batch}, H={args.heads}, D={args.head_dim}, float32, not causal, no mask; median of "
        f"{args.repeats} alternating timed calls (variant, floor, variant, …) after {args.warmup} warm-up each, "
        "×floor = the median of the ratios of adjacent calls (variant ÷ the fastest floor form); "
        + ("all in one process (--same-process)" if args.same_process else "one fresh process per (variant, L)"),
        f"- host load average (1/5/15 min) at start {'/'.join(f'{x:.2f}' for x in load_start)}, at end "
        f"{'/'.join(f'{x:.2f}' for x in os.getloadavg())}; wall {time.perf_counter() - start:.0f} s. The host is "
        "shared: absolute times are inflated and scattered, ratios from alternating calls are the figure to read"
        + (f"; {args.note}" if args.note else ""),
        "", table, "",
    ]
    Path(args.out).write_text("\n".join(header))
    print(f"wrote {args.out}")


def render(rows) -> str:
    """The markdown table: times, floors and ratios per variant and length."""
    lines = ["| variant | L | floor | fwd ms | floor fwd ms | fwd ×floor | fwd+bwd ms | floor fwd+bwd ms | "
             "fwd+bwd ×floor |", "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def fmt(x):
        return "—" if x is None else f"{x:,.1f}"

    for name, length, r in rows:
        if r.get("status") != "ok":
            lines.append(f"| {name} | {length} | {r['status']} | | | | | | |")
            continue
        cells = []
        for tag in ("fwd", "fwdbwd"):
            ms, floor = r.get(f"{tag}_ms"), r.get(f"{tag}_floor_ms")
            paired = r.get(f"{tag}_paired", ms / floor if ms and floor else None)
            ratio = f"{paired:.2f}×" if paired else "—"
            form = r.get(f"{tag}_floor_form")
            cells += [fmt(ms), fmt(floor) + (f" ({form})" if form else ""), ratio]
        lines.append(f"| {name} | {length} | {r['floor']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
