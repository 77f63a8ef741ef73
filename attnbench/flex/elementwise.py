"""Mods evaluated with FlexAttention's semantics: element by element, vectorised by ``torch.vmap``.

FlexAttention calls ``score_mod(score, b, h, q_idx, kv_idx)`` once per element, each argument
a 0-d tensor, and vectorises the calls with ``torch.vmap`` over the four index dimensions
(``_vmap_for_bhqkv``; attention-gym's ``create_score_mod`` does the same to draw a mod). A mod
may therefore index captured tensors with the indices (``intervals[i][0]``,
``query_rope[b, h, q_idx]``), call ``torch.dot`` on the rows it gathers, or take ``.any(-1)``
over a gathered row — none of which works on broadcast index grids. :func:`evaluate` does what
FlexAttention does, so every mod ``flex_attention`` accepts runs on the dense path too.

When a mod fails, :func:`diagnose` calls it on single elements at the corners of the index box
(plain 0-d tensors, no vmap) while recording every tensor indexing, so the error names the real
cause: which captured tensor was indexed out of range with which index, or that the mod uses
Python control flow on a tensor, which no vmap can trace.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch.overrides import TorchFunctionMode

from attnbench.errors import PluginError


class _IndexWithTensors(TorchFunctionMode):
    """``t[i, j]`` with tensor indices as ``aten.index`` (what flex_attention's
    ``TransformGetItemToIndex`` does): plain ``__getitem__`` would call ``__index__`` on the
    0-d index, which vmap cannot do."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.Tensor.__getitem__:
            leaves = pytree.tree_leaves(args[1])
            if leaves and all(isinstance(x, torch.Tensor) for x in leaves):
                return torch.ops.aten.index(args[0], leaves)
            mixed = _as_index_list(args[0], args[1])
            if mixed is not None:
                return torch.ops.aten.index(args[0], mixed)
        return func(*args, **(kwargs or {}))


def _as_index_list(target: torch.Tensor, index: Any) -> list[torch.Tensor | None] | None:
    """``table[b, q_idx, kv_idx, 2]`` or ``table[h, :, kv_idx]`` as ``aten.index`` indices: an int is a
    0-d index (integers among tensor indices are advanced indices, as in NumPy), a full slice None.
    None where the index has other parts (a partial slice, a new axis, an ellipsis)."""
    parts = index if isinstance(index, tuple) else (index,)
    if not any(isinstance(p, torch.Tensor) for p in parts) or len(parts) > target.dim():
        return None
    out: list[torch.Tensor | None] = []
    for part in parts:
        if isinstance(part, torch.Tensor):
            out.append(part)
        elif isinstance(part, int) and not isinstance(part, bool):
            out.append(torch.tensor(part, device=target.device))
        elif isinstance(part, slice) and part == slice(None):
            out.append(None)
        else:
            return None
    return out


def _vmapped(fn: Callable[..., Any], score: bool) -> Callable[..., Any]:
    prefix = (0,) if score else ()
    for dims in ((None, None, None, 0), (None, None, 0, None), (None, 0, None, None), (0, None, None, None)):
        fn = torch.vmap(fn, in_dims=prefix + dims, out_dims=0)
    return fn


def indices(batch: int, heads: int, q_len: int, kv_len: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """The four index vectors ``b``, ``h``, ``q_idx``, ``kv_idx`` (int64, as flex_attention's math path)."""
    return tuple(torch.arange(n, device=device) for n in (batch, heads, q_len, kv_len))


def evaluate(variant: str, role: str, mod: Callable[..., Any], scores: torch.Tensor | None,
             idx: tuple[torch.Tensor, ...], names: Mapping[int, str]) -> torch.Tensor:
    """``mod`` over every (b, h, q_idx, kv_idx) as FlexAttention evaluates it: a (B, H, Lq, Lk)
    tensor (the modified scores, or the bool mask). ``names`` maps ``id(tensor)`` to the name of
    each tensor the mod may index, for error messages."""
    score = role == "score_mod"
    args = (scores, *idx) if score else idx
    try:
        with _IndexWithTensors():
            result = _vmapped(mod, score)(*args)
    except PluginError:
        raise
    except Exception as exc:  # noqa: BLE001 - a mod may fail in any way; diagnose says how
        raise PluginError(diagnose(variant, role, mod, scores, idx, names, exc)) from exc
    shape = (len(idx[0]), len(idx[1]), len(idx[2]), len(idx[3]))
    if not isinstance(result, torch.Tensor) or tuple(result.shape) != shape:
        got = f"shape {tuple(result.shape[4:])}" if isinstance(result, torch.Tensor) else type(result).__name__
        raise PluginError(
            f"flex variant {variant!r}: {role} returned {got} for one element; it must return one "
            f"{'score' if score else 'bool'} per (b, h, q_idx, kv_idx), a 0-d tensor"
        )
    if not score and result.dtype != torch.bool:
        raise PluginError(
            f"flex variant {variant!r}: mask_mod returned dtype {result.dtype}, expected torch.bool "
            "(True = may attend); compare, e.g. q_idx >= kv_idx"
        )
    return result


class _RecordIndexing(TorchFunctionMode):
    """Raises :class:`_OutOfRange` before a tensor is indexed past its end."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.Tensor.__getitem__ and isinstance(args[0], torch.Tensor):
            target, index = args[0], args[1] if isinstance(args[1], tuple) else (args[1],)
            dim = 0
            for item in index:
                if item is None:
                    continue
                if item is Ellipsis:
                    break
                if isinstance(item, torch.Tensor) and not item.dtype.is_floating_point and item.dtype != torch.bool:
                    size = target.shape[dim] if dim < target.dim() else 0
                    if item.numel() and (int(item.max()) >= size or int(item.min()) < -size):
                        bad = int(item.max()) if int(item.max()) >= size else int(item.min())
                        raise _OutOfRange(target, dim, bad)
                dim += 1
        return func(*args, **(kwargs or {}))


class _OutOfRange(Exception):
    def __init__(self, target: torch.Tensor, dim: int, index: int) -> None:
        super().__init__(f"index {index} on dim {dim}")
        self.target, self.dim, self.index = target, dim, index


def diagnose(variant: str, role: str, mod: Callable[..., Any], scores: torch.Tensor | None,
             idx: tuple[torch.Tensor, ...], names: Mapping[int, str], exc: BaseException) -> str:
    """The message for ``mod`` failing under vmap with ``exc``: probes single elements to find
    an out-of-range index (naming the tensor) or an element-wise error, else blames vmap."""
    head = f"flex variant {variant!r}: {role} failed"
    sizes = tuple(len(i) for i in idx)
    where = f"(this call: batch {sizes[0]}, {sizes[1]} heads, q_len {sizes[2]}, kv_len {sizes[3]})"
    corners = itertools.product(*({0, n - 1} for n in sizes))
    for corner in sorted(corners, key=lambda c: [-x for x in c]):
        point = tuple(idx[i][c] for i, c in enumerate(corner))
        at = ", ".join(f"{n}={c}" for n, c in zip(("b", "h", "q_idx", "kv_idx"), corner, strict=False))
        args = ((scores[corner],) if scores is not None else ()) + point
        try:
            with torch.no_grad(), _RecordIndexing():
                mod(*args)
        except _OutOfRange as bad:
            name = names.get(id(bad.target), "a tensor it computed")
            return (f"{head}: it indexes {name} ({_shape(bad.target)}) with index {bad.index} on dim {bad.dim} "
                    f"at {at}, past its size {bad.target.shape[bad.dim] if bad.dim < bad.target.dim() else 0} "
                    f"{where}; size the tensor for the task's batch, heads and lengths (per-batch tensors "
                    "belong in attnbench.flex.batch_context, not captured at import)")
        except Exception as element_exc:  # noqa: BLE001 - reported with the element that failed
            return f"{head} at {at} {where}: {type(element_exc).__name__}: {element_exc}"
    first = str(exc).split(". ")[0].split("\n")[0]
    return (f"{head} under torch.vmap, which evaluates it element by element as flex_attention does "
            f"({type(exc).__name__}: {first}); data-dependent Python control flow cannot be vmapped: use "
            "torch.where for if/else, & and | for and/or, and no .item() or .tolist() on its arguments")


def _shape(tensor: torch.Tensor) -> str:
    return f"shape ({', '.join(map(str, tensor.shape))}{',' if tensor.dim() == 1 else ''})"
