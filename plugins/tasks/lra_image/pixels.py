"""What LRA's two image tasks share: one token a pixel, a classifier without padding, the run.

LRA's Image and Pathfinder tasks flatten a grayscale ``side × side`` image row by row
into ``side²`` tokens whose ids are the pixel intensities 0-255 (no padding: every
sequence has the same length). :func:`run_classifier` trains an
:class:`attnbench.nn.SequenceClassifier` on such splits with the shared training loop
and returns test accuracy with its baselines.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from attnbench.errors import AttnbenchError
from attnbench.nn import SequenceClassifier
from attnbench.specs import RunContext
from attnbench.training import TrainConfig, batched_eval, seed_everything, shuffled_batches, train_steps

#: Token ids are pixel intensities.
VOCAB_SIZE = 256


class ProfileError(AttnbenchError, ValueError):
    """A profile value the task cannot use (e.g. a ``length`` that is not a square)."""


def side_of(config: Mapping[str, Any], task: str) -> int:
    """The image side for the profile's ``length`` (tokens = pixels), which must be a perfect square."""
    try:
        length = int(config["length"])
    except (KeyError, TypeError, ValueError):
        raise ProfileError(
            f"{task}: profile key 'length' must be an integer number of pixels, got {config.get('length')!r}"
        ) from None
    side = math.isqrt(max(length, 0))
    if length < 4 or side * side != length:
        near = ", ".join(str(s * s) for s in (max(side, 2), side + 1))
        raise ProfileError(
            f"{task}: length={length} is not a perfect square ≥ 4; the task reads a side × side image as one "
            f"token a pixel, so length must be side² (e.g. {near}, 1024 = 32²)"
        )
    return side


@dataclass(frozen=True)
class Split:
    """Images as token rows: ``tokens`` (N, side²) uint8 pixel intensities, ``labels`` (N,) int64."""

    tokens: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def from_images(cls, images: np.ndarray, labels: np.ndarray) -> Split:
        """A split from uint8 images (N, side, side) and integer labels (N,)."""
        images = np.ascontiguousarray(images, dtype=np.uint8)
        tokens = torch.from_numpy(images.reshape(len(images), -1).copy())
        return cls(tokens, torch.as_tensor(np.asarray(labels), dtype=torch.long))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, index: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Examples ``index`` on ``device``: tokens (B, L) long, labels (B,)."""
        return self.tokens[index].to(device=device, dtype=torch.long), self.labels[index].to(device)

    def majority_fraction(self, num_classes: int) -> float:
        """The share of the most common label: the accuracy of always guessing it."""
        return float(torch.bincount(self.labels, minlength=num_classes).max()) / max(len(self), 1)


@dataclass(frozen=True)
class Splits:
    """Train, validation and test splits of one data set."""

    train: Split
    val: Split
    test: Split


#: The position encodings a profile may pick with its ``positions`` key (default ``learned``).
POSITIONS = ("learned", "sincos2d")


def sincos_2d(side: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sinusoidal positions (side², dim) for a row-major side × side grid (as MAE's ViT).

    The first half of the channels encodes the row, the second half the column, each with
    the sine/cosine pairs of Vaswani et al. at frequencies ``10000^(-2i/(dim/2))``; ``dim``
    must be a multiple of 4.
    """
    if dim % 4:
        raise ProfileError(f"positions='sincos2d' needs a width (dim) divisible by 4, got dim={dim}; use dim={dim + 4 - dim % 4}")
    quarter = dim // 4
    freqs = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    coords = torch.arange(side, dtype=torch.float32)
    rows, cols = coords.repeat_interleave(side), coords.repeat(side)

    def encode(values: torch.Tensor) -> torch.Tensor:
        angles = values[:, None] * freqs[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(rows), encode(cols)], dim=1)


class PixelClassifier(SequenceClassifier):
    """A :class:`SequenceClassifier` over pixel tokens that never passes a padding mask.

    Every row is full length, so attention needs no mask and variants without the
    ``padding_mask`` capability can run; pooling averages all tokens or reads the CLS
    token. Token id 0 is a black pixel, not padding, so it keeps a trainable embedding.
    ``positions="learned"`` (the default) adds a trained embedding per position;
    ``"sincos2d"`` adds fixed 2-D sinusoids of the pixel's row and column (:func:`sincos_2d`;
    the CLS token, if any, gets none), so attention knows which pixels are neighbours
    before any training.
    """

    def __init__(self, attention, *, positions: str = "learned", **kwargs: Any) -> None:
        if positions not in POSITIONS:
            raise ProfileError(f"positions must be one of {', '.join(map(repr, POSITIONS))}, got {positions!r}; "
                               "set the profile key 'positions' (e.g. --set positions=sincos2d)")
        super().__init__(attention, padding_idx=None, **kwargs)
        self.positions = positions
        if positions == "sincos2d":
            max_len, dim = self.position_embedding.weight.shape
            side = math.isqrt(max_len)
            pixels = side * side if max_len - side * side in (0, 1) else 0
            if not pixels:
                raise ProfileError(f"positions='sincos2d' needs side² (+1 with CLS) positions, got max_len={max_len}")
            del self.position_embedding
            fixed = torch.cat([torch.zeros(max_len - pixels, dim), sincos_2d(side, dim)])
            self.register_buffer("fixed_positions", fixed, persistent=False)

    def encode(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The pooled representation (B, dim) of pixel tokens (B, L)."""
        x = self.token_embedding(tokens)
        if self.cls is not None:
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        if self.positions == "sincos2d":
            x = x + self.fixed_positions[: x.shape[1]]
        else:
            x = x + self.position_embedding(torch.arange(x.shape[1], device=x.device))
        x = self.encoder(x)
        return x[:, 0] if self.cls is not None else x.mean(1)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, num_classes) for pixel tokens (B, L)."""
        return self.head(self.encode(tokens))


def accuracy(model: torch.nn.Module, split: Split, batch_size: int, device: torch.device) -> float:
    """Fraction of ``split`` classified correctly, in eval mode."""

    def correct(index: torch.Tensor) -> int:
        tokens, labels = split.batch(index, device)
        return int((model(tokens).argmax(-1) == labels).sum())

    return sum(batched_eval(model, len(split), batch_size, correct)) / len(split)


def run_classifier(ctx: RunContext, splits: Splits, num_classes: int) -> dict[str, float]:
    """Train a pixel classifier on ``splits.train`` with the profile's sizes; test it.

    Returns ``accuracy`` (test, primary), ``val_accuracy``, ``chance`` (1 / classes),
    ``majority_baseline`` (the test set's most common class) and ``final_loss`` (mean of
    the last 10 steps), and hands the model and one test batch to the harness's meter.
    """
    cfg = ctx.config
    seed_everything(ctx.seed)
    length = splits.train.tokens.shape[1]
    pooling = str(cfg.get("pooling", "mean"))
    model = PixelClassifier(
        ctx.attention, vocab_size=VOCAB_SIZE, num_classes=num_classes, max_len=length + (pooling == "cls"),
        dim=int(cfg["dim"]), depth=int(cfg["depth"]), heads=int(cfg["heads"]), ff_dim=int(cfg["ff_dim"]),
        dropout=float(cfg["dropout"]), pooling=pooling, positions=str(cfg.get("positions", "learned")),
    ).to(ctx.device)
    batch_size = min(int(cfg["batch_size"]), len(splits.train))

    def loss(index: torch.Tensor) -> tuple[torch.Tensor, int]:
        tokens, labels = splits.train.batch(index, ctx.device)
        return F.cross_entropy(model(tokens), labels), len(index)

    batches = shuffled_batches(len(splits.train), batch_size, torch.Generator().manual_seed(ctx.seed))
    losses = train_steps(model, ctx, TrainConfig.from_profile(cfg), batches, loss)

    eval_size = int(cfg["eval_batch_size"])
    metrics = {
        "accuracy": accuracy(model, splits.test, eval_size, ctx.device),
        "val_accuracy": accuracy(model, splits.val, eval_size, ctx.device),
        "chance": 1.0 / num_classes,
        "majority_baseline": splits.test.majority_fraction(num_classes),
        "final_loss": sum(losses[-10:]) / len(losses[-10:]),
    }
    tokens, _ = splits.test.batch(torch.arange(min(batch_size, len(splits.test))), ctx.device)
    ctx.meter.model(model, tokens)
    return metrics
