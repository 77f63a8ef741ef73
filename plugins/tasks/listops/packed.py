"""ListOps with several expressions packed into each sequence (setting ``pack`` > 1).

Packing, as language-model pretraining packs documents, puts ``pack`` expressions end to end in
one row of ``pack × max_length`` positions (padding only at the row's end); each expression's
value is predicted from the mean of its own positions, and accuracy is over expressions. Each
row's ``document_ids`` (B, pack × max_length) go to the attention variants through
``attnbench.flex.batch_context``: a document-mask variant keeps every expression to itself,
while any other variant also attends across expressions — the cost of packing is what the
setting measures. Positions restart at each expression.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import attnbench
from attnbench.nn import SequenceClassifier
from attnbench.specs import RunContext
from attnbench.training.batches import shuffled_batches
from attnbench.training.evaluate import batched_eval
from attnbench.training.loop import TrainConfig, train_steps

from . import data


class PackedSplit:
    """A :class:`data.Split` regrouped ``pack`` examples to a row (the last incomplete group dropped)."""

    def __init__(self, split: data.Split, pack: int) -> None:
        rows = len(split) // pack
        if rows < 1:
            raise ValueError(f"listops: pack={pack} needs at least {pack} examples per split, got {len(split)}")
        length = split.tokens.shape[1] * pack
        self.tokens = torch.full((rows, length), data.PAD, dtype=torch.uint8)
        self.document_ids = torch.zeros(rows, length, dtype=torch.long)
        self.labels = split.labels[: rows * pack].view(rows, pack)
        for row in range(rows):
            start = 0
            for doc in range(pack):
                n = int(split.lengths[row * pack + doc])
                self.tokens[row, start:start + n] = split.tokens[row * pack + doc, :n]
                self.document_ids[row, start:] = doc  # padding continues the last document's id
                start += n

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, index: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, ...]:
        """Rows ``index``: tokens (B, L), mask (B, L), document ids (B, L), labels (B, pack)."""
        tokens = self.tokens[index].to(device=device, dtype=torch.long)
        return tokens, tokens != data.PAD, self.document_ids[index].to(device), self.labels[index].to(device)


class PackedClassifier(SequenceClassifier):
    """:class:`SequenceClassifier` over packed rows: per-expression positions, the document ids in
    the flex batch context, one mean-pooled prediction per expression."""

    def __init__(self, attention, *, pack: int, **kwargs) -> None:
        super().__init__(attention, **kwargs)
        self.pack = pack

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, document_ids: torch.Tensor) -> torch.Tensor:
        """Logits (B, pack, num_classes) for tokens, mask and document ids, each (B, L)."""
        length = tokens.shape[1]
        positions = torch.arange(length, device=tokens.device).expand_as(tokens)
        first = torch.ones_like(mask)
        first[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
        starts = torch.cummax(torch.where(first, positions, torch.zeros_like(positions)), dim=1).values
        x = self.token_embedding(tokens) + self.position_embedding(positions - starts)
        with attnbench.flex.batch_context(document_ids=document_ids):
            x = self.encoder(x, key_padding_mask=mask)
        members = F.one_hot(document_ids, self.pack).to(x.dtype) * mask.unsqueeze(-1).to(x.dtype)  # (B, L, pack)
        pooled = members.transpose(1, 2) @ x / members.sum(1).unsqueeze(-1).clamp_min(1.0)
        return self.head(pooled)


def run(ctx: RunContext, splits: data.Splits) -> dict[str, float]:
    """Train and test the packed model; metrics as the unpacked task reports them, over expressions."""
    cfg = ctx.config
    pack, max_length = int(cfg.get("pack", 1)), int(cfg["max_length"])
    train, val, test = (PackedSplit(s, pack) for s in (splits.train, splits.val, splits.test))
    model = PackedClassifier(
        ctx.attention, pack=pack, vocab_size=len(data.VOCAB), num_classes=data.NUM_CLASSES, max_len=pack * max_length,
        dim=int(cfg["dim"]), depth=int(cfg["depth"]), heads=int(cfg["heads"]),
        ff_dim=int(cfg["ff_dim"]), dropout=float(cfg["dropout"]),
    ).to(ctx.device)
    batch_size = min(max(1, int(cfg["batch_size"]) // pack), len(train))

    def loss(index: torch.Tensor) -> tuple[torch.Tensor, int]:
        tokens, mask, ids, labels = train.batch(index, ctx.device)
        return F.cross_entropy(model(tokens, mask, ids).flatten(0, 1), labels.flatten()), len(index) * pack

    batches = shuffled_batches(len(train), batch_size, torch.Generator().manual_seed(ctx.seed))
    losses = train_steps(model, ctx, TrainConfig.from_profile(cfg), batches, loss)

    def accuracy(split: PackedSplit) -> float:
        def correct(index: torch.Tensor) -> int:
            tokens, mask, ids, labels = split.batch(index, ctx.device)
            return int((model(tokens, mask, ids).argmax(-1) == labels).sum())

        eval_rows = max(1, int(cfg["eval_batch_size"]) // pack)
        return sum(batched_eval(model, len(split), eval_rows, correct)) / split.labels.numel()

    counts = torch.bincount(test.labels.flatten(), minlength=data.NUM_CLASSES)
    metrics = {
        "accuracy": accuracy(test), "val_accuracy": accuracy(val),
        "majority_baseline": float(counts.max()) / test.labels.numel(),
        "final_loss": sum(losses[-10:]) / len(losses[-10:]),
    }
    ctx.meter.model(model, *test.batch(torch.arange(min(batch_size, len(test))), ctx.device)[:3])
    return metrics
