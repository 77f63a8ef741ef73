"""Tensors and modules a mod captures, found so the built module can own them.

A FlexAttention mod reads tensors it closes over (``bias[h, q_idx - kv_idx]``), takes as
defaults, receives through ``functools.partial`` or reads as module globals. attnbench
registers each one on the built module — an ``nn.Parameter`` (or any leaf tensor that
requires grad) as a parameter, any other tensor as a non-persistent buffer, an ``nn.Module``
as a submodule — so it moves with ``.to(device)``, counts in ``params`` and is trained by the
task's optimiser. Each built module gets its own copy of a captured parameter, as every layer
gets its own weights; the mod is then called with the module's tensors in place of the
originals (:func:`rebind`).

What is searched: closure cells, ``__defaults__`` / ``__kwdefaults__``, globals named in the
code, ``functools.partial`` arguments, bound methods, and lists, tuples and dicts of these,
recursively (so ``and_masks(f, g)`` and attention-gym's factory closures are covered). Tensors
held as attributes of arbitrary objects are not found: pass those as ``params=`` or options.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Iterator
from typing import Any

_MAX_DEPTH = 12


def _torch():
    import torch

    return torch


def walk(obj: Any, path: str, depth: int = 0, seen: set[int] | None = None) -> Iterator[tuple[str, Any]]:
    """``(path, value)`` for every tensor and ``nn.Module`` reachable from ``obj`` (see the module docs)."""
    torch = _torch()
    seen = set() if seen is None else seen
    if depth > _MAX_DEPTH or id(obj) in seen:
        return
    if isinstance(obj, (torch.Tensor, torch.nn.Module)):
        seen.add(id(obj))
        yield path, obj
        return
    if isinstance(obj, (str, bytes, int, float, bool, type(None), type)):
        return
    seen.add(id(obj))
    if isinstance(obj, functools.partial):
        yield from walk(obj.func, path, depth + 1, seen)
        for i, arg in enumerate(obj.args):
            yield from walk(arg, f"{path}.args[{i}]", depth + 1, seen)
        for key, arg in obj.keywords.items():
            yield from walk(arg, f"{path}.{key}", depth + 1, seen)
    elif isinstance(obj, types.MethodType):
        yield from walk(obj.__self__, f"{path}.__self__", depth + 1, seen)
    elif isinstance(obj, types.FunctionType):
        code = obj.__code__
        for name, cell in zip(code.co_freevars, obj.__closure__ or (), strict=False):
            try:
                content = cell.cell_contents
            except ValueError:  # an empty cell (a name assigned after the closure was made)
                continue
            yield from walk(content, name, depth + 1, seen)
        for i, default in enumerate(obj.__defaults__ or ()):
            yield from walk(default, f"{code.co_name}.defaults[{i}]", depth + 1, seen)
        for key, default in (obj.__kwdefaults__ or {}).items():
            yield from walk(default, key, depth + 1, seen)
        for name in code.co_names:
            value = obj.__globals__.get(name)
            if isinstance(value, (torch.Tensor, torch.nn.Module)):
                yield from walk(value, name, depth + 1, seen)
    elif isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            yield from walk(item, f"{path}[{i}]", depth + 1, seen)
    elif isinstance(obj, dict):
        for key, item in obj.items():
            yield from walk(item, f"{path}[{key!r}]", depth + 1, seen)


def rebind(obj: Any, replace: dict[int, Any], depth: int = 0) -> Any:
    """``obj`` rebuilt with every captured tensor or module whose ``id`` is in ``replace`` swapped
    for its replacement (globals excepted: see :func:`global_uses`); parts that capture none of
    them are returned as they are."""
    if not replace or depth > _MAX_DEPTH:
        return obj
    if id(obj) in replace:
        return replace[id(obj)]
    if isinstance(obj, (str, bytes, int, float, bool, type(None), type)):
        return obj
    if isinstance(obj, functools.partial):
        func = rebind(obj.func, replace, depth + 1)
        args = tuple(rebind(a, replace, depth + 1) for a in obj.args)
        keywords = {k: rebind(a, replace, depth + 1) for k, a in obj.keywords.items()}
        if func is obj.func and all(a is b for a, b in zip(args, obj.args, strict=False)) and all(
                keywords[k] is obj.keywords[k] for k in keywords):
            return obj
        return functools.partial(func, *args, **keywords)
    if isinstance(obj, types.MethodType):
        owner = rebind(obj.__self__, replace, depth + 1)
        return obj if owner is obj.__self__ else types.MethodType(obj.__func__, owner)
    if isinstance(obj, types.FunctionType):
        return _rebind_function(obj, replace, depth)
    if isinstance(obj, (list, tuple)):
        items = [rebind(item, replace, depth + 1) for item in obj]
        if all(a is b for a, b in zip(items, obj, strict=False)):
            return obj
        return type(obj)(items) if isinstance(obj, list) or type(obj) is tuple else obj
    if isinstance(obj, dict):
        items = {k: rebind(v, replace, depth + 1) for k, v in obj.items()}
        return obj if all(items[k] is obj[k] for k in obj) else items
    return obj


def _rebind_function(fn: types.FunctionType, replace: dict[int, Any], depth: int) -> types.FunctionType:
    code = fn.__code__
    changed = False
    cells = []
    for cell in fn.__closure__ or ():
        try:
            content = cell.cell_contents
        except ValueError:
            cells.append(cell)
            continue
        new = rebind(content, replace, depth + 1)
        changed |= new is not content
        cells.append(types.CellType(new) if new is not content else cell)
    defaults = tuple(rebind(d, replace, depth + 1) for d in fn.__defaults__ or ())
    changed |= any(a is not b for a, b in zip(defaults, fn.__defaults__ or (), strict=False))
    kwdefaults = {k: rebind(d, replace, depth + 1) for k, d in (fn.__kwdefaults__ or {}).items()}
    changed |= any(kwdefaults[k] is not d for k, d in (fn.__kwdefaults__ or {}).items())
    if not changed:
        return fn
    new = types.FunctionType(code, fn.__globals__, fn.__name__, defaults or None, tuple(cells) or None)
    new.__kwdefaults__ = kwdefaults or None
    new.__qualname__, new.__module__, new.__doc__ = fn.__qualname__, fn.__module__, fn.__doc__
    new.__dict__.update(fn.__dict__)
    return new


def global_uses(obj: Any, depth: int = 0, seen: set[int] | None = None) -> list[tuple[dict[str, Any], str]]:
    """``(globals, name)`` of every tensor or module a function inside ``obj`` reads as a global.

    A global cannot be swapped by rebuilding the function: torch.compile (which eager
    ``flex_attention`` runs the mods through) reads the defining module's own globals, so the
    module sets them to its tensors for the duration of each call (:meth:`FlexAttention.own_tensors`).
    """
    torch = _torch()
    seen = set() if seen is None else seen
    if depth > _MAX_DEPTH or id(obj) in seen or isinstance(obj, (torch.Tensor, torch.nn.Module)):
        return []
    seen.add(id(obj))
    found: list[tuple[dict[str, Any], str]] = []
    if isinstance(obj, functools.partial):
        for part in (obj.func, *obj.args, *obj.keywords.values()):
            found += global_uses(part, depth + 1, seen)
    elif isinstance(obj, types.FunctionType):
        for name in obj.__code__.co_names:
            if isinstance(obj.__globals__.get(name), (torch.Tensor, torch.nn.Module)):
                found.append((obj.__globals__, name))
        for cell in obj.__closure__ or ():
            try:
                found += global_uses(cell.cell_contents, depth + 1, seen)
            except ValueError:
                continue
        for default in (*(obj.__defaults__ or ()), *(obj.__kwdefaults__ or {}).values()):
            found += global_uses(default, depth + 1, seen)
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            found += global_uses(item, depth + 1, seen)
    elif isinstance(obj, dict):
        for item in obj.values():
            found += global_uses(item, depth + 1, seen)
    return found


def is_trainable(tensor: Any) -> bool:
    """Whether a captured tensor is a parameter to train: an ``nn.Parameter`` or a leaf needing grad."""
    torch = _torch()
    return isinstance(tensor, torch.nn.Parameter) or (tensor.requires_grad and tensor.is_leaf)


def describe(tensor: Any) -> str:
    """``Tensor[4, 10] float32`` — a tensor by shape and dtype, never by contents."""
    return f"Tensor[{', '.join(map(str, tensor.shape))}] {str(tensor.dtype).removeprefix('torch.')}"


def owned_copy(value: Any) -> Any:
    """What the built module registers for a captured ``value``: a fresh parameter for a trainable
    tensor (each module trains its own), the tensor itself for a constant, a deep copy of a module."""
    import copy

    torch = _torch()
    if isinstance(value, torch.nn.Module):
        return copy.deepcopy(value)
    if is_trainable(value):
        return torch.nn.Parameter(value.detach().clone())
    return value.detach()


def label(fn: Callable[..., Any]) -> str:
    """A mod's name for messages: its qualified name, or its repr."""
    inner = fn.func if isinstance(fn, functools.partial) else fn
    return getattr(inner, "__qualname__", None) or getattr(inner, "__name__", None) or repr(inner)
