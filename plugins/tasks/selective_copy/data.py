"""Mamba's selective-copying probe (Gu & Dao 2023, §3.1 and appendix E.1), reimplemented in torch and seeded.

A context of ``L − M`` positions holds ``M`` data tokens at random, sorted positions; every
other context position is the noise token. Then ``M`` marker tokens follow, and while reading
them the model must emit the data tokens in order: the target at marker ``i`` is data token
``i``. Only the marker positions are scored (inputs there are markers, not the answers, so
there is no teacher forcing to copy from). Unlike the plain copying task, the spacing varies,
so a fixed time-invariant shift cannot solve it: the model must select by content.

Ids: 0 = noise, 1 = marker, 2 … 2 + K − 1 = the K data tokens. At 2× and 4× both the context
and the number of tokens to copy scale with the length.
"""

from __future__ import annotations

import torch

from attnbench.training.next_token import IGNORE, TokenSplit

NOISE = 0
MARKER = 1
#: Ids below this are the noise and marker tokens; data tokens follow.
FIRST_DATA = 2


def selective_copy(n: int, length: int, num_tokens: int, data_vocab: int, seed: int) -> TokenSplit:
    """``n`` sequences of ``length`` ids copying ``num_tokens`` of ``data_vocab`` data tokens."""
    context = length - num_tokens
    if num_tokens < 1 or context < num_tokens:
        raise ValueError(f"selective-copy: length {length} cannot hold {num_tokens} tokens to copy in a context "
                         f"and {num_tokens} markers; use length >= {2 * max(1, num_tokens)}")
    if data_vocab < 2:
        raise ValueError(f"selective-copy: data_vocab must be >= 2, got {data_vocab}")
    g = torch.Generator().manual_seed(seed)
    data = torch.randint(data_vocab, (n, num_tokens), generator=g) + FIRST_DATA
    slots = torch.rand(n, context, generator=g).argsort(-1)[:, :num_tokens].sort(-1).values
    inputs = torch.full((n, length), NOISE, dtype=torch.long)
    inputs.scatter_(1, slots, data)
    inputs[:, context:] = MARKER
    targets = torch.full((n, length), IGNORE, dtype=torch.long)
    targets[:, context:] = data
    return TokenSplit(inputs, targets)


def most_frequent_accuracy(split: TokenSplit) -> float:
    """Accuracy of answering every marker with the commonest data token of the context (a heuristic)."""
    vocab = int(split.inputs.max()) + 1
    counts = torch.zeros(len(split), vocab, dtype=torch.long)
    counts.scatter_add_(1, split.inputs, torch.ones_like(split.inputs))
    counts[:, :FIRST_DATA] = -1
    guess = counts.argmax(-1, keepdim=True)
    scored = split.targets != IGNORE
    return float(((split.targets == guess) & scored).sum() / scored.sum())
