"""The sequential-recommendation task: its profiles and ``run(ctx)``, which trains SASRec and ranks held-out items."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from attnbench.specs import Metric, RunContext
from attnbench.training import TrainConfig, batched_eval, seed_everything, shuffled_batches, train_steps

from . import data
from .model import SASRec

#: Cut-off of the ranking metrics.
K = 10

_PREPROCESS = {"min_count": 5, "data_seed": 1}

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        **_PREPROCESS, "max_len": 20, "dim": 16, "depth": 1, "heads": 1, "ff_dim": 16, "dropout": 0.0,
        "steps": 12, "batch_size": 64, "eval_batch_size": 512,
        "lr": 5e-3, "weight_decay": 0.0, "warmup_steps": 0, "clip_norm": 1.0,
    },
    # About 40 epochs of ML-100K's 943 users; dropout as SASRec's (it costs a third of a CPU step).
    "quick": {
        **_PREPROCESS, "max_len": 50, "dim": 64, "depth": 2, "heads": 2, "ff_dim": 64, "dropout": 0.2,
        "steps": 300, "batch_size": 128, "eval_batch_size": 512,
        "lr": 5e-3, "weight_decay": 0.0, "warmup_steps": 20, "clip_norm": 1.0,
    },
    "standard": {
        **_PREPROCESS, "max_len": 200, "dim": 64, "depth": 2, "heads": 2, "ff_dim": 64, "dropout": 0.2,
        "steps": 2000, "batch_size": 128, "eval_batch_size": 512,
        "lr": 1e-3, "weight_decay": 0.0, "warmup_steps": 100, "clip_norm": 1.0,
    },
    # SASRec's ML-1M setting: 2 blocks, 1 head, d = 50, L = 200, dropout 0.2, Adam at 1e-3,
    # batch 128, ~200 epochs (6,040 users / 128 = 47 steps an epoch).
    "full": {
        **_PREPROCESS, "max_len": 200, "dim": 50, "depth": 2, "heads": 1, "ff_dim": 50, "dropout": 0.2,
        "steps": 9400, "batch_size": 128, "eval_batch_size": 256,
        "lr": 1e-3, "weight_decay": 0.0, "warmup_steps": 0, "clip_norm": None,
    },
}

DESCRIPTION = (
    "SASRec-style sequential recommendation (Kang & McAuley 2018): predict each user's next item "
    "from the items before it with causal self-attention. Default data: MovieLens-100K (real: "
    "100,000 ratings, 943 users, 1,682 movies; SASRec's preprocessing keeps items and users with "
    ">= 5 ratings: 943 users, 1,349 movies, 99,287 ratings), read from the recbole wheel's RecBole "
    "atomic copy; nothing is synthetic. "
    "Leave-one-out: last item test, second last validation. Metric: NDCG@10 among the test item and "
    "100 sampled unrated items (SASRec's protocol), with HR@10, full-ranking NDCG@10/HR@10 (against every "
    "item outside the user's input history), and the most-popular-item baseline in the same protocol. "
    "Training: BCE with one sampled negative a position. Sizes (history window L, width d, blocks x "
    "heads, steps x users a batch): "
    + "; ".join(f"{p} L={c['max_len']} d={c['dim']} {c['depth']}x{c['heads']} {c['steps']}x{c['batch_size']}"
                for p, c in PROFILES.items())
    + " (full = SASRec's ML-1M setting; point --data-dir at ml-1m's ratings.dat). --data-dir reads "
    "MovieLens u.data, ratings.dat, ratings.csv or a RecBole *.inter file."
)


def _discounts(k: int) -> torch.Tensor:
    return 1.0 / torch.log2(torch.arange(k, dtype=torch.float64) + 2)


def ndcg_hit(target: torch.Tensor, others: torch.Tensor, k: int = K) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row NDCG@k and HR@k of a target scored ``target`` (B,) among ``others`` (B, C).

    Ties are broken at random in expectation: the target's rank is uniform over the places
    its equals share. A model that scores everything alike therefore gets chance, not a
    perfect score (a constant model would rank first under "count the strictly greater").
    """
    target = target.to(torch.float64)[:, None]
    others = others.to(torch.float64)
    greater = (others > target).sum(1, keepdim=True)
    equal = (others == target).sum(1, keepdim=True)
    places = torch.arange(k, dtype=torch.long, device=others.device)
    share = ((places >= greater) & (places <= greater + equal)).to(torch.float64) / (equal + 1)
    return (share * _discounts(k).to(others.device)).sum(1), share.sum(1)


def rank_batch(users: torch.Tensor, scores: torch.Tensor, split: data.EvalSplit, splits: data.LeaveOneOut) -> torch.Tensor:
    """Summed sampled and full-ranking NDCG@10 and HR@10 of consecutive ``users`` given ``scores``
    (B, n_items + 1) of every item, as a tensor (4,).

    The sampled candidates (target + 100 negatives) are read from the same matrix. The full
    ranking drops the padding id, the user's input history and the target itself from the
    competitors (``scores`` is modified in place).
    """
    device = scores.device
    rows = torch.arange(len(users), device=device)
    targets = split.targets[users].to(device)
    target_scores = scores[rows, targets]
    sampled = ndcg_hit(target_scores, scores.gather(1, split.negatives[users].to(device)))
    row, item = splits.history(int(users[0]), int(users[-1]) + 1, split.held)
    scores[row.to(device), item.to(device)] = -math.inf
    scores[:, 0] = -math.inf
    scores[rows, targets] = -math.inf
    full = ndcg_hit(target_scores, scores)
    return torch.stack([sampled[0].sum(), sampled[1].sum(), full[0].sum(), full[1].sum()]).cpu()


def _means(totals: torch.Tensor, n: int) -> dict[str, float]:
    names = ("ndcg10", "hr10", "ndcg10_full", "hr10_full")
    return {name: float(value) / max(n, 1) for name, value in zip(names, totals, strict=True)}


def evaluate(model: SASRec, split: data.EvalSplit, splits: data.LeaveOneOut, batch_size: int,
             device: torch.device) -> dict[str, float]:
    """The model's NDCG@10 and HR@10 on ``split``: per batch of users one forward pass over their
    input windows and one matmul of the last states with the item table."""

    def batch(users: torch.Tensor) -> torch.Tensor:
        inputs = split.inputs[users].to(device)
        mask = inputs != 0
        hidden = model(inputs, mask)
        last = hidden[torch.arange(len(users), device=device), mask.sum(1) - 1]
        return rank_batch(users, (last @ model.item_embedding.weight.T).to(torch.float64), split, splits)

    return _means(sum(batched_eval(model, len(split), batch_size, batch)), len(split))


def popularity_baseline(split: data.EvalSplit, splits: data.LeaveOneOut, batch_size: int) -> dict[str, float]:
    """The same metrics for scoring every item by its number of training interactions."""
    popularity = splits.popularity.to(torch.float64)
    totals = sum(
        rank_batch(users, popularity.expand(len(users), -1).clone(), split, splits)
        for users in torch.arange(len(split)).split(batch_size)
    )
    return _means(totals, len(split))


class SequentialRecommendationTask:
    """SASRec-style next-item prediction on MovieLens (see :data:`DESCRIPTION`)."""

    name = "sequential-recommendation"
    domain = "recsys"
    description = DESCRIPTION
    metric = Metric(name="ndcg10", higher_is_better=True, unit="fraction", lower=0.0, upper=1.0, baseline="popularity_ndcg10")
    requires = frozenset({"causal", "padding_mask"})
    profiles: Mapping[str, Mapping[str, Any]] = PROFILES

    def run(self, ctx: RunContext) -> dict[str, float]:
        """Train on the training items, report test NDCG@10 (primary) and HR@10 (sampled 100 and full
        ranking), validation NDCG@10, the popularity baseline's, and the mean loss of the last 10 steps."""
        cfg = ctx.config
        seed_everything(ctx.seed)
        min_count = int(cfg["min_count"])
        if ctx.data_dir is not None:
            sequences = data.to_sequences(data.read_dir(ctx.data_dir), min_count)
        else:
            sequences = data.default_sequences(min_count)
        splits = data.leave_one_out(sequences, int(cfg["max_len"]), int(cfg["data_seed"]))
        model = SASRec(
            ctx.attention, n_items=splits.n_items, max_len=splits.max_len, dim=int(cfg["dim"]),
            depth=int(cfg["depth"]), heads=int(cfg["heads"]), ff_dim=int(cfg["ff_dim"]), dropout=float(cfg["dropout"]),
        ).to(ctx.device)
        losses = train(model, splits, ctx)

        eval_size = int(cfg["eval_batch_size"])
        test = evaluate(model, splits.test, splits, eval_size, ctx.device)
        val = evaluate(model, splits.val, splits, eval_size, ctx.device)
        baseline = popularity_baseline(splits.test, splits, eval_size)
        metrics = {
            **test,
            "val_ndcg10": val["ndcg10"],
            "popularity_ndcg10": baseline["ndcg10"], "popularity_hr10": baseline["hr10"],
            "popularity_ndcg10_full": baseline["ndcg10_full"],
            "final_loss": sum(losses[-10:]) / len(losses[-10:]),
        }
        # The harness times inference on this batch: one training batch's worth of test histories.
        inputs = splits.test.inputs[: min(int(cfg["batch_size"]), len(splits.test))].to(ctx.device)
        ctx.meter.model(model, inputs, inputs != 0)
        return metrics


def train(model: SASRec, splits: data.LeaveOneOut, ctx: RunContext) -> list[float]:
    """SASRec's objective through the shared loop: at every position, BCE of the next item against
    one item drawn from those the user has not rated in training (seeded by ``ctx.seed``)."""
    batch_size = min(int(ctx.config["batch_size"]), len(splits.train_users))
    generator = torch.Generator().manual_seed(ctx.seed)
    negatives_generator = torch.Generator().manual_seed(ctx.seed + 1)

    def loss(index: torch.Tensor) -> tuple[torch.Tensor, int]:
        inputs = splits.train_inputs[index]
        targets = splits.train_targets[index]
        negatives = splits.train_seen.sample(splits.train_users[index], inputs.shape[1], splits.n_items,
                                             negatives_generator)
        inputs, targets, negatives = (t.to(ctx.device) for t in (inputs, targets, negatives))
        mask = inputs != 0
        hidden = model(inputs, mask)
        positive = (hidden * model.item_embedding(targets)).sum(-1)
        negative = (hidden * model.item_embedding(negatives)).sum(-1)
        per_position = F.softplus(-positive) + F.softplus(negative)
        return per_position[mask].mean(), len(index)

    batches = shuffled_batches(len(splits.train_users), batch_size, generator)
    return train_steps(model, ctx, TrainConfig.from_profile(ctx.config), batches, loss)


TASK = SequentialRecommendationTask()
