"""Zoology's multi-query associative recall (MQAR) generator, reimplemented in torch and seeded.

Arora et al., "Zoology: Measuring and Improving Recall in Efficient Language Models", ICLR 2024;
``zoology/data/associative_recall.py`` (``multiquery_ar``). For each example:

* ``num_kv`` keys drawn without replacement from [1, V/2), values without replacement from
  [V/2, V); the key–value pairs first: ``k1 v1 k2 v2 …`` (2·kv tokens);
* the rest of the sequence is ``(L − 2·kv) / 2`` slots of two tokens; each key is queried once,
  in the first token of a slot, the slots drawn without replacement with probability ∝ i^(a−1)
  (a power law: with a = 0.01 most queries come soon after the pairs);
* every other token is uniform over the whole vocabulary (Zoology's ``random_non_queries``);
* the target at a query is its key's value; nothing else is scored.

Sampling slots without replacement with probabilities p is done with the Gumbel-top-k trick
(the same distribution over sets as numpy's sequential ``choice(replace=False, p=p)``).
Unlike Zoology, the vocabulary may be smaller than the length (the 4× test of V = 256 at
L = 64 runs at L = 256): nothing in the task needs it larger.
"""

from __future__ import annotations

import torch

from attnbench.training.next_token import IGNORE, TokenSplit


def check(length: int, num_kv: int, vocab_size: int) -> None:
    """ValueError naming the setting when a sequence cannot hold the pairs and their queries."""
    if length % 2:
        raise ValueError(f"mqar: length must be even (pairs of tokens), got {length}")
    if 4 * num_kv > length:
        raise ValueError(f"mqar: length {length} cannot hold {num_kv} key-value pairs and their queries; "
                         f"use length >= {4 * num_kv} or fewer num_kv_pairs")
    if num_kv > vocab_size // 2 - 1 or num_kv < 1:
        raise ValueError(f"mqar: vocab_size {vocab_size} has {vocab_size // 2 - 1} keys, not enough for "
                         f"{num_kv} distinct keys per example; raise vocab_size")


def multiquery_ar(n: int, length: int, num_kv: int, vocab_size: int, power_a: float, seed: int) -> TokenSplit:
    """``n`` MQAR examples of ``length`` tokens with ``num_kv`` pairs (see the module docs)."""
    check(length, num_kv, vocab_size)
    g = torch.Generator().manual_seed(seed)
    context = 2 * num_kv
    key_vocab = vocab_size // 2
    keys = torch.rand(n, key_vocab - 1, generator=g).argsort(-1)[:, :num_kv] + 1
    values = torch.rand(n, vocab_size - key_vocab, generator=g).argsort(-1)[:, :num_kv] + key_vocab
    kvs = torch.stack([keys, values], dim=-1).flatten(1)  # k1 v1 k2 v2 ...

    space = (length - context) // 2
    ranks = torch.arange(1, space + 1, dtype=torch.float64)
    log_p = torch.log(power_a * ranks ** (power_a - 1))
    gumbel = -torch.log(-torch.log(torch.rand(n, space, generator=g, dtype=torch.float64).clamp_min(1e-300)))
    gaps = (log_p + gumbel).topk(num_kv, dim=-1).indices  # distinct slots, one per key

    # As Zoology: queries of length L - 2kv + 1, labels of length L + 1, then shift by one.
    queries = torch.zeros(n, length - context + 1, dtype=torch.long)
    queries.scatter_(1, gaps * 2, keys)
    examples = torch.cat([kvs, queries], dim=1)
    labels = torch.full((n, length + 1), IGNORE, dtype=torch.long)
    labels.scatter_(1, gaps * 2 + context + 1, values)
    inputs, targets = examples[:, :-1].clone(), labels[:, 1:].clone()
    noise = torch.randint(vocab_size, inputs.shape, generator=g)
    inputs = torch.where(inputs == 0, noise, inputs)
    return TokenSplit(inputs, targets)
