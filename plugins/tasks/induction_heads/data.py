"""The induction-head probe of H3 (Fu, Dao et al., ICLR 2023), reimplemented in torch and seeded.

Olsson et al. ("In-context Learning and Induction Heads", 2022) name the circuit that, seeing
``… A B … A``, predicts ``B``. H3's synthetic (``safari``'s ``induction_head``) tests it in its
plainest form: a sequence of tokens uniform over V − 1 ordinary tokens; a special trigger token
(id V − 1) placed once at a random position p ∈ [0, L − 3], so the token after it, ``x[p+1]``,
is the answer; the last position holds the trigger again, and the target there is ``x[p+1]``.
Only that position is scored. At 2× and 4× the sequence is longer, with one trigger as before.
"""

from __future__ import annotations

import torch

from attnbench.training.next_token import IGNORE, TokenSplit


def induction_head(n: int, length: int, vocab_size: int, seed: int) -> TokenSplit:
    """``n`` sequences of ``length`` tokens over ``vocab_size`` ids (the last is the trigger)."""
    if length < 4:
        raise ValueError(f"induction-heads: length must be >= 4 (trigger, answer, trigger), got {length}")
    if vocab_size < 3:
        raise ValueError(f"induction-heads: vocab_size must be >= 3 (two tokens and the trigger), got {vocab_size}")
    g = torch.Generator().manual_seed(seed)
    trigger = vocab_size - 1
    inputs = torch.randint(trigger, (n, length), generator=g)
    position = torch.randint(length - 2, (n,), generator=g)  # p in [0, L - 3]: the answer sits before the end
    rows = torch.arange(n)
    inputs[rows, position] = trigger
    inputs[:, -1] = trigger
    targets = torch.full((n, length), IGNORE, dtype=torch.long)
    targets[:, -1] = inputs[rows, position + 1]
    return TokenSplit(inputs, targets)


def most_frequent_accuracy(split: TokenSplit, vocab_size: int) -> float:
    """Accuracy of guessing the commonest ordinary token of each sequence (a heuristic baseline)."""
    counts = torch.zeros(len(split), vocab_size, dtype=torch.long)
    counts.scatter_add_(1, split.inputs, torch.ones_like(split.inputs))
    counts[:, vocab_size - 1] = -1  # never the trigger
    guess = counts.argmax(-1)
    return float((guess == split.targets[:, -1]).float().mean())
