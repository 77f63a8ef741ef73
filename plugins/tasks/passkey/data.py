"""Passkey retrieval (Mohtashami & Jaggi, "Landmark Attention", NeurIPS 2023), as bytes, seeded.

Their prompt hides ``The pass key is 71432. Remember it. 71432 is the pass key.`` at a random
place in repeated filler (``The grass is green. The sky is blue. The sun is yellow. Here we
go. There and back again.``) and ends with ``What is the pass key? The pass key is``; the
model must continue with the number. Here the sequence is exactly ``length`` bytes: filler
sentences cycled (from a random one) and cut to fit, the key sentence inserted at a random
sentence boundary, then the question and the digits. The targets are the ``digits`` bytes of
the number, each predicted from the text before it (teacher forcing; every digit right under
teacher forcing is exactly greedy decoding reproducing the number). Their instruction
preamble, written for pretrained models, is left out: the models here learn from scratch.
At 2× and 4× only the filler grows.
"""

from __future__ import annotations

import torch

from attnbench.training.next_token import IGNORE, TokenSplit

FILLER = ("The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.", "There and back again.")
KEY = "The pass key is {key}. Remember it. {key} is the pass key. "
QUESTION = "What is the pass key? The pass key is "
#: Bytes are ASCII: ids 0-127.
VOCAB_SIZE = 128


def fixed_bytes(digits: int) -> int:
    """Bytes of a sequence that are not filler: the key sentence, the question and the answer."""
    return len(KEY.format(key="0" * digits)) + len(QUESTION) + digits


def passkey(n: int, length: int, digits: int, seed: int) -> TokenSplit:
    """``n`` prompts of exactly ``length`` bytes hiding a ``digits``-digit number (see the module docs)."""
    budget = length - fixed_bytes(digits)
    if budget < 0 or digits < 1:
        raise ValueError(f"passkey: length {length} cannot hold the key sentence, the question and a "
                         f"{digits}-digit key; use length >= {fixed_bytes(max(1, digits))}")
    g = torch.Generator().manual_seed(seed)
    keys = torch.randint(10, (n, digits), generator=g)
    starts = torch.randint(len(FILLER), (n,), generator=g).tolist()
    draws = torch.rand(n, generator=g).tolist()
    rows = []
    for key, start, draw in zip(keys.tolist(), starts, draws, strict=True):
        number = "".join(map(str, key))
        sentences, filler = [], 0
        while filler < budget:
            sentences.append(FILLER[(start + len(sentences)) % len(FILLER)] + " ")
            filler += len(sentences[-1])
        text = "".join(sentences)[:budget]
        boundaries = [0] + [i + 1 for i, ch in enumerate(text) if ch == " " and text[i - 1] == "."]
        cut = boundaries[int(draw * len(boundaries))]
        rows.append(text[:cut] + KEY.format(key=number) + text[cut:] + QUESTION + number)
    inputs = torch.tensor([list(row.encode("ascii")) for row in rows], dtype=torch.long)
    targets = torch.full_like(inputs, IGNORE)
    # Position t predicts byte t + 1: the digits are the last `digits` bytes.
    targets[:, length - digits - 1 : length - 1] = inputs[:, length - digits :]
    return TokenSplit(inputs, targets)
