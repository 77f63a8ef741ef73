"""Training and scoring a causal model on next-token targets: what the probes and the LM task share.

A :class:`TokenSplit` holds input ids (N, L) and targets (N, L): ``targets[n, t]`` is the
token the model must produce after reading ``inputs[n, :t + 1]``, or :data:`IGNORE` where
nothing is asked (an MQAR probe asks only at its queries; a language model everywhere). The
model maps ids (B, L) to logits (B, L, vocab), e.g. :class:`attnbench.nn.causal_lm.CausalLM`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from attnbench.specs import RunContext
from attnbench.training.batches import shuffled_batches
from attnbench.training.evaluate import batched_eval
from attnbench.training.loop import TrainConfig, train_steps

#: The target of a position where nothing is asked (``F.cross_entropy``'s ``ignore_index``).
IGNORE = -100


@dataclass(frozen=True)
class TokenSplit:
    """Input ids (N, L) and targets (N, L), integer tensors, :data:`IGNORE` where nothing is scored.

    ``documents`` (N, L), when given, numbers the document each input position belongs to
    (for packed language-model windows), so a model can keep documents apart if it wants.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    documents: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.inputs.shape != self.targets.shape or self.inputs.dim() != 2:
            raise ValueError(f"inputs {tuple(self.inputs.shape)} and targets {tuple(self.targets.shape)} "
                             "must both be (N, L)")

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def length(self) -> int:
        """Positions per sequence."""
        return int(self.inputs.shape[1])

    def batch(self, index: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of rows ``index``, on ``device``, as int64 (a split may store them smaller)."""
        return self.inputs[index].to(device).long(), self.targets[index].to(device).long()

    def scored(self) -> int:
        """How many positions carry a target."""
        return int((self.targets != IGNORE).sum())


def train_next_token(model: nn.Module, split: TokenSplit, ctx: RunContext, batch_size: int) -> list[float]:
    """The profile's AdamW steps of cross-entropy on the scored positions of ``split``, through the
    shared loop (meter, progress, loss curve); returns every step's loss."""

    def loss(index: torch.Tensor) -> tuple[torch.Tensor, int]:
        inputs, targets = split.batch(index, ctx.device)
        logits = model(inputs)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE), len(index)

    batches = shuffled_batches(len(split), min(batch_size, len(split)), torch.Generator().manual_seed(ctx.seed))
    return train_steps(model, ctx, TrainConfig.from_profile(ctx.config), batches, loss)


def _per_row(model: nn.Module, split: TokenSplit, batch_size: int, device: torch.device
             ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """For each batch: (correct (B, L) bool, scored (B, L) bool, summed cross-entropy in nats)."""

    def run(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        inputs, targets = split.batch(index, device)
        logits = model(inputs).float()
        scored = targets != IGNORE
        nats = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction="sum")
        return (logits.argmax(-1) == targets) & scored, scored, nats

    return list(batched_eval(model, len(split), batch_size, run))


def target_accuracy(model: nn.Module, split: TokenSplit, batch_size: int, device: torch.device) -> float:
    """The share of scored positions whose most likely token is the target."""
    parts = _per_row(model, split, batch_size, device)
    return sum(int(c.sum()) for c, _, _ in parts) / max(1, sum(int(s.sum()) for _, s, _ in parts))


def sequence_accuracy(model: nn.Module, split: TokenSplit, batch_size: int, device: torch.device) -> float:
    """The share of sequences whose every scored position is right (under teacher forcing this is
    exactly whether greedy decoding reproduces the whole answer)."""
    parts = _per_row(model, split, batch_size, device)
    right = sum(int(((c == s) | ~s).all(-1).sum()) for c, s, _ in parts)
    return right / max(1, len(split))


def bits_per_target(model: nn.Module, split: TokenSplit, batch_size: int, device: torch.device) -> float:
    """Mean cross-entropy of the scored positions in bits (bits per byte for a byte-level model)."""
    parts = _per_row(model, split, batch_size, device)
    nats = sum(float(n) for _, _, n in parts)
    return nats / max(1, sum(int(s.sum()) for _, s, _ in parts)) / math.log(2)
