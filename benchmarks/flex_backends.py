"""attnbench.flex backends on this machine: forward+backward time of one score_mod / mask_mod per backend.

    OMP_NUM_THREADS=1 python benchmarks/flex_backends.py [--backends dense,flex] [--repeats 5]

Prints the median time of each backend and its ratio to ``dense`` (the default off CUDA), for
Gemma 2 soft-capping plus a key-padding mask at ListOps' quick shape (B=32, H=4, L=128, D=16).
``compiled`` compiles on its first call (tens of seconds on CPU); a backend that fails is reported
as failed (attnbench.flex never swaps an explicit backend for ``dense``) and the others still run.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

import attnbench


def softcap(score, b, h, q_idx, kv_idx, *, cap=50.0):
    """Gemma 2's soft-capping."""
    return cap * torch.tanh(score / cap)


def main() -> None:
    """Time each backend and print medians and ratios to dense."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="dense,flex")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shape", default="32,4,128,16", help="B,H,L,D")
    args = parser.parse_args()
    b, h, length, d = map(int, args.shape.split(","))
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(length // 4, length + 1, (b,), generator=g)
    padding = (torch.arange(length)[None, :] < lengths[:, None])[:, None, None, :]
    q, k, v = (torch.randn(b, h, length, d, generator=g) for _ in range(3))
    medians = {}
    for backend in args.backends.split(","):
        spec = attnbench.flex.variant("softcap", "bench", score_mod=softcap, backend=backend)
        module = spec.build(attnbench.AttentionConfig(num_heads=h, head_dim=d))
        times = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                for _ in range(args.repeats + 1):  # the first call warms up (and compiles, for compiled)
                    qq, kk, vv = (t.clone().requires_grad_(True) for t in (q, k, v))
                    start = time.perf_counter()
                    module(qq, kk, vv, attn_mask=padding).sum().backward()
                    times.append(time.perf_counter() - start)
            except attnbench.AttnbenchError as exc:
                print(f"{backend:9s} failed: {exc}")
                continue
        medians[backend] = statistics.median(times[1:])
        print(f"{backend:9s} ran {module.last_backend:6s} first call {times[0] * 1e3:9.1f} ms  "
              f"median fwd+bwd {medians[backend] * 1e3:8.1f} ms  ×dense "
              f"{medians[backend] / medians.get('dense', medians[backend]):.2f}")


if __name__ == "__main__":
    main()
