"""Per-batch context for FlexAttention mods: tensors a task hands to the mods of one forward pass.

attention-gym builds its data-dependent mods per batch — a document mask from the batch's
document ids, Flamingo's mask from its image intervals, a grid from the image size. In
attnbench the model is built once and the task feeds it batches, so the task (or the model's
forward) wraps the call in :func:`batch_context`::

    with attnbench.flex.batch_context(document_ids=ids):   # ids: (B, L) int
        logits = model(tokens, mask)

and every flex variant in the model whose spec declares ``context={"document_ids": ...}`` reads
the batch's ids in its mods (``def mask(b, h, q_idx, kv_idx, *, document_ids): ...``). A
variant that does not ask for a name ignores it, so a task can always provide its context.

Names attnbench's own tasks provide (a variant may read others that third-party tasks provide):

* ``document_ids`` — (B, L) int64, the document each position belongs to when several
  documents are packed into one sequence (0, 0, 0, 1, 1, 2, …); padding continues the last id.

Per-call values every mod may read without a task's help (keyword-only parameters with these
names): ``batch_size``, ``q_len``, ``kv_len`` — the real sizes of this call, which differ between
training and evaluation batches and across tasks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

#: Per-call sizes a mod may take as keyword-only parameters.
CALL_FIELDS: tuple[str, ...] = ("batch_size", "q_len", "kv_len")
#: Context names attnbench's built-in tasks provide (documented above).
STANDARD_CONTEXT: tuple[str, ...] = ("document_ids",)

_CURRENT: ContextVar[Mapping[str, Any] | None] = ContextVar("attnbench_flex_batch_context", default=None)


@contextmanager
def batch_context(**tensors: Any) -> Iterator[None]:
    """Hand ``tensors`` to the flex mods of every forward pass run inside the block.

    Nested blocks merge, the inner value winning for a repeated name. The values are read at
    each forward, so one model serves batches of any size.
    """
    token = _CURRENT.set({**(_CURRENT.get() or {}), **tensors})
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current_context() -> Mapping[str, Any]:
    """The per-batch values set by the enclosing :func:`batch_context` blocks (empty outside any)."""
    return _CURRENT.get() or {}
