"""Attention maps for vision tasks: capture a variant's weights on one forward, save a PNG overlay.

Only variants whose spec declares ``weights`` can return maps; for the others nothing is
captured and nothing is written. A task does it in one call after evaluation::

    from attnbench.nn.attention_maps import record_attention_map

    record_attention_map(ctx, model, lambda: model(images[:1]), images[0], grid=(7, 7))

which runs the forward once with ``need_weights=True`` on the model's last attention
module, saves ``ctx.workdir / "attention_map.png"`` (the image, the head-mean map over
it, and each head's map) and records it as ``ctx.meter.artifact("attention_map", path)``.

The pieces are usable alone:

* :func:`capture_attention` — a context manager that asks one attention module (by
  default the model's last :class:`~attnbench.nn.CheckedAttention`, i.e. the core of the
  last :class:`~attnbench.nn.MultiheadAttention` or timm adapter layer) for its weights
  on every forward inside the block and keeps the latest ``(B, H, Lq, Lk)``.
* :func:`save_attention_overlay` — draw one query's weights over an image's patch grid.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from attnbench.nn.attention import CheckedAttention

__all__ = ["AttentionCapture", "capture_attention", "record_attention_map", "save_attention_overlay"]

#: Heads drawn one by one beside the head mean (more would make an unreadable strip).
MAX_HEAD_PANELS = 8


@dataclass
class AttentionCapture:
    """What :func:`capture_attention` caught: ``weights`` (B, H, Lq, Lk) on the CPU, or None."""

    module: CheckedAttention | None
    weights: torch.Tensor | None = None


def last_attention(model: nn.Module) -> CheckedAttention | None:
    """The last variant core in ``model``'s module order (None when it has none)."""
    found = None
    for module in model.modules():
        if isinstance(module, CheckedAttention):
            found = module
    return found


@contextlib.contextmanager
def capture_attention(model: nn.Module, *, enabled: bool = True,
                      module: CheckedAttention | None = None) -> Iterator[AttentionCapture]:
    """Within the block, ``module`` (default: the model's last attention core) returns weights.

    The caller's own code is unchanged: its call still gets what it asked for, while the
    weights of the latest forward land in ``capture.weights``. Nothing is hooked, and
    ``weights`` stays None, when ``enabled`` is false or the module's variant cannot
    return weights (its spec lacks ``weights``).
    """
    target = module if module is not None else last_attention(model)
    capture = AttentionCapture(module=target)
    if not enabled or target is None or not target.spec.weights:
        yield capture
        return
    caller_wanted: list[bool] = []

    def before(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]):
        if len(args) > 5:  # need_weights given positionally
            caller_wanted.append(bool(args[5]))
            return (*args[:5], True, *args[6:]), kwargs
        caller_wanted.append(bool(kwargs.get("need_weights", False)))
        return args, {**kwargs, "need_weights": True}

    def after(_module: nn.Module, _args: tuple[Any, ...], _kwargs: dict[str, Any], output: Any):
        out, weights = output
        capture.weights = weights.detach().float().cpu()
        return output if caller_wanted.pop() else out

    handles = [
        target.register_forward_pre_hook(before, with_kwargs=True),
        target.register_forward_hook(after, with_kwargs=True),
    ]
    try:
        yield capture
    finally:
        for handle in handles:
            handle.remove()


def _image_array(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) floats in [0, 1] from (H, W), (1|3, H, W) or (H, W, 1|3)."""
    array = image.detach().float().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image, dtype=np.float32)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3):
        raise ValueError(f"image must be (H, W), (C, H, W) or (H, W, C) with C 1 or 3, got shape {array.shape}")
    low, high = float(array.min()), float(array.max())
    return (array - low) / (high - low) if high > low else np.zeros_like(array)


def _query_maps(weights: torch.Tensor | np.ndarray, grid: tuple[int, int], query_index: int | str) -> np.ndarray:
    """(heads, gh, gw): one query's weights over the patch keys (leading prefix keys dropped)."""
    w = weights.detach().float().cpu().numpy() if isinstance(weights, torch.Tensor) else np.asarray(weights, np.float32)
    if w.ndim == 4:
        if w.shape[0] != 1:
            raise ValueError(f"weights for one example expected; got a batch of {w.shape[0]} (pass weights[i])")
        w = w[0]
    if w.ndim == 2:
        w = w[None]
    if w.ndim != 3:
        raise ValueError(f"weights must be (heads, Lq, Lk) or (Lq, Lk), got shape {tuple(w.shape)}")
    gh, gw = int(grid[0]), int(grid[1])
    prefix = w.shape[-1] - gh * gw
    if prefix < 0:
        raise ValueError(f"{w.shape[-1]} keys cannot cover a {gh}x{gw} patch grid")
    if query_index == "mean":
        rows = w.mean(axis=1)
    else:
        index = 0 if query_index == "cls" else int(query_index)
        if not -w.shape[1] <= index < w.shape[1]:
            raise ValueError(f"query_index {query_index!r} is outside {w.shape[1]} queries")
        rows = w[:, index]
    return rows[:, prefix:].reshape(-1, gh, gw)


def save_attention_overlay(
    image: torch.Tensor | np.ndarray,
    weights: torch.Tensor | np.ndarray,
    grid: tuple[int, int],
    path: str | Path,
    *,
    query_index: int | str = "cls",
    title: str | None = None,
) -> Path:
    """Draw where one query attends over ``image``'s patch grid and save it as a PNG at ``path``.

    ``image``: (H, W), (C, H, W) or (H, W, C), C 1 or 3, any value range (min-max scaled).
    ``weights``: (heads, Lq, Lk) or (Lq, Lk) (or (1, heads, Lq, Lk)); the keys are the
    ``grid`` = (gh, gw) patches in row-major order, after any prefix tokens (class,
    register tokens), which are dropped. ``query_index``: a query row, ``"cls"`` (row 0,
    a ViT's class token) or ``"mean"`` (all queries averaged). The figure shows the
    image, the head-mean map over it, then each head's map (up to 8). Returns ``path``.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    picture = _image_array(image)
    maps = _query_maps(weights, grid, query_index)
    height, width = picture.shape[:2]
    extent = (-0.5, width - 0.5, height - 0.5, -0.5)
    panels = [("image", None), ("mean of heads", maps.mean(axis=0))]
    panels += [(f"head {h}", maps[h]) for h in range(min(len(maps), MAX_HEAD_PANELS))]
    figure = Figure(figsize=(1.9 * len(panels), 2.3), dpi=100)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    cmap = "gray" if picture.ndim == 2 else None
    for axis, (label, heat) in zip(axes, panels, strict=True):
        axis.imshow(picture, cmap=cmap, extent=extent, vmin=0.0, vmax=1.0)
        if heat is not None:
            axis.imshow(heat, cmap="inferno", alpha=0.55, extent=extent, interpolation="nearest")
        axis.set_title(label, fontsize=8)
        axis.set_axis_off()
    query = {"cls": "class token", "mean": "all queries"}.get(str(query_index), f"query {query_index}")
    figure.suptitle(title or f"attention of {query} over a {grid[0]}x{grid[1]} patch grid", fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", bbox_inches="tight")
    return path


def record_attention_map(
    ctx: Any,
    model: nn.Module,
    forward: Callable[[], Any],
    image: torch.Tensor | np.ndarray,
    grid: tuple[int, int],
    *,
    query_index: int | str = "cls",
    name: str = "attention_map",
    module: CheckedAttention | None = None,
    title: str | None = None,
) -> Path | None:
    """Save and record the attention map of one fixed example, when ``ctx.attention`` returns weights.

    ``forward()`` runs the model on that one example (batch of 1); it is called in eval
    mode without gradients. The PNG goes to ``ctx.workdir / f"{name}.png"`` and is
    recorded with ``ctx.meter.artifact(name, path)``. Returns the path, or None when the
    variant cannot return weights (nothing is run or written then).
    """
    if not ctx.attention.weights:
        return None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), capture_attention(model, module=module) as capture:
            forward()
    finally:
        model.train(was_training)
    if capture.weights is None:
        return None
    weights = capture.weights[0]
    if title is None:
        heads = weights.shape[0]
        title = f"{ctx.attention.name}: last layer, {heads} head{'s' if heads != 1 else ''}"
    path = save_attention_overlay(image, weights, grid, Path(ctx.workdir) / f"{name}.png",
                                  query_index=query_index, title=title)
    ctx.meter.artifact(name, path)
    return path

