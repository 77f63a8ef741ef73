"""The speech-commands task: its profiles and ``run(ctx)``, which trains and tests one keyword spotter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from attnbench.specs import Metric, RunContext
from attnbench.training import TrainConfig, batched_eval, seed_everything, shuffled_batches, train_steps

from . import data
from .model import Features, FrontEnd, KeywordTransformer, SpecAugment

#: Clip rules shared by every profile: 1 s clips; TensorFlow's 10 % unknown and 10 % silence
#: for a Speech Commands folder; SNR range of the noise mixed into the shipped clips.
_CLIPS = {"data_seed": 1, "max_seconds": 1.0, "snr_db": [0.0, 20.0], "unknown_percentage": 10.0,
          "silence_percentage": 10.0}
_OPTIM = {"weight_decay": 0.01, "clip_norm": 1.0}

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        **_CLIPS, **_OPTIM, "max_clips": [192, 48, 96],
        "n_mels": 40, "stride": 4, "dim": 32, "depth": 1, "heads": 2, "ff_dim": 64, "dropout": 0.0,
        "freq_mask": 5, "time_mask": 10, "masks": 1,
        "steps": 12, "batch_size": 32, "eval_batch_size": 128, "lr": 2e-3, "warmup_steps": 2,
    },
    "quick": {
        **_CLIPS, **_OPTIM, "max_clips": [3000, 500, 1000],
        "n_mels": 40, "stride": 4, "dim": 64, "depth": 2, "heads": 4, "ff_dim": 128, "dropout": 0.0,
        "freq_mask": 8, "time_mask": 10, "masks": 1,
        "steps": 500, "batch_size": 32, "eval_batch_size": 256, "lr": 2e-3, "warmup_steps": 30,
    },
    "standard": {
        **_CLIPS, **_OPTIM, "max_clips": [None, None, None], "weight_decay": 0.05,
        "n_mels": 40, "stride": 2, "dim": 128, "depth": 4, "heads": 4, "ff_dim": 512, "dropout": 0.1,
        "freq_mask": 8, "time_mask": 20, "masks": 2,
        "steps": 5000, "batch_size": 64, "eval_batch_size": 256, "lr": 1e-3, "warmup_steps": 300,
    },
    # The Keyword Transformer's scale (Berg et al. 2021, KWT-3): 40 bins, one token a 10 ms
    # frame, d = 192, 12 layers, 3 heads, AdamW at 1e-3 with decay 0.1, batch 512, about 140
    # epochs (10 of warm-up) of the ~37k-clip 12-class train split of Speech Commands v0.02.
    "full": {
        **_CLIPS, **_OPTIM, "max_clips": [None, None, None], "weight_decay": 0.1,
        "n_mels": 40, "stride": 1, "dim": 192, "depth": 12, "heads": 3, "ff_dim": 768, "dropout": 0.0,
        "freq_mask": 10, "time_mask": 25, "masks": 2,
        "steps": 10000, "batch_size": 512, "eval_batch_size": 512, "lr": 1e-3, "warmup_steps": 720,
    },
}

DESCRIPTION = (
    "Keyword spotting, the 12-class Speech Commands benchmark (Warden 2018): ten keywords "
    "(yes no up down left right on off stop go), _unknown_ (the other words) and _silence_, from "
    "log-mel spectrograms (torchaudio, SpecAugment in training) by a conv-stem Transformer; accuracy "
    "on the test split. Default data is SYNTHETIC speech shipped with the package: 1,325 one-word "
    "utterances (120 per keyword, 125 of the other 25 Speech Commands words) spoken by espeak-ng "
    "(formant synthesis; 8 English accents x 81 voice variants, varied rate and pitch) and flite "
    "(4 speakers), generated once by attnbench_plugins.tasks.speech_commands.synthesize; voice timbres "
    "are split between train (70 %), val and test (20 %), so test speakers are unheard. Loading "
    "time-shifts each utterance in a 0.8-1 s clip and mixes in synthesised noise (white, pink, brown, "
    "blue, mains hum) at 0-20 dB SNR; _silence_ is that noise alone. Clips train/val/test: "
    + "; ".join(
        f"{p} " + "/".join("all" if n is None else f"<={n}" for n in c["max_clips"]) for p, c in PROFILES.items()
    )
    + " (all = 1,012/144/289 shipped). --data-dir reads Google Speech Commands v0.02 (<word>/*.wav, "
    "validation_list.txt, testing_list.txt, _background_noise_/), 10 % unknown and 10 % silence as "
    "TensorFlow's input_data.py; clips at other rates are resampled to 16 kHz. Model per profile: "
    + "; ".join(f"{p} d={c['dim']} x{c['depth']} layers, {c['steps']} steps" for p, c in PROFILES.items())
    + " (full is KWT-3's scale)."
)


def accuracy(model: torch.nn.Module, split: Features, batch_size: int, device: torch.device) -> float:
    """Fraction of ``split`` classified correctly, in eval mode."""

    def correct(index: torch.Tensor) -> int:
        features, mask, labels = split.batch(index)
        return int((model(features.to(device), mask.to(device)).argmax(-1).cpu() == labels).sum())

    return sum(batched_eval(model, len(split), batch_size, correct)) / len(split)


class SpeechCommandsTask:
    """Keyword spotting on Speech Commands' 12 classes (see :data:`DESCRIPTION`)."""

    name = "speech-commands"
    domain = "speech"
    description = DESCRIPTION
    metric = Metric(name="accuracy", higher_is_better=True, unit="fraction", lower=0.0, upper=1.0, baseline="majority_baseline")
    requires = frozenset({"padding_mask"})
    profiles: Mapping[str, Mapping[str, Any]] = PROFILES

    def run(self, ctx: RunContext) -> dict[str, float]:
        """Train on the train split; report test accuracy (primary), validation accuracy, chance
        (1/12), the test split's majority-class share and the mean loss of the last 10 steps."""
        cfg = ctx.config
        seed_everything(ctx.seed)
        splits = data.load(cfg, ctx.data_dir)
        if not len(splits.train) or not len(splits.test):
            raise data.DataError(f"{ctx.data_dir}: the train or test split holds no clips; expected {data.LAYOUT}")
        front = FrontEnd(int(cfg["n_mels"]), int(float(cfg["max_seconds"]) * data.SAMPLE_RATE))
        train_set = front.fit(splits.train)
        val_set, test_set = front(splits.val), front(splits.test)
        model = KeywordTransformer(
            ctx.attention, n_mels=int(cfg["n_mels"]), num_classes=data.NUM_CLASSES, frames=front.frames,
            dim=int(cfg["dim"]), depth=int(cfg["depth"]), heads=int(cfg["heads"]), ff_dim=int(cfg["ff_dim"]),
            dropout=float(cfg["dropout"]), stride=int(cfg["stride"]),
        ).to(ctx.device)
        batch_size = min(int(cfg["batch_size"]), len(train_set))
        losses = train(model, train_set, ctx, batch_size)

        eval_size = int(cfg["eval_batch_size"])
        metrics = {
            "accuracy": accuracy(model, test_set, eval_size, ctx.device),
            "chance": 1.0 / data.NUM_CLASSES,
            "majority_baseline": test_set.majority_fraction(),
            "final_loss": sum(losses[-10:]) / len(losses[-10:]),
        }
        if len(val_set):
            metrics["val_accuracy"] = accuracy(model, val_set, eval_size, ctx.device)
        features, mask, _ = test_set.batch(torch.arange(min(batch_size, len(test_set))))
        ctx.meter.model(model, features.to(ctx.device), mask.to(ctx.device))
        return metrics


def train(model: torch.nn.Module, split: Features, ctx: RunContext, batch_size: int) -> list[float]:
    """The profile's AdamW steps on ``split`` with SpecAugment, through the harness's shared loop."""
    cfg = ctx.config
    augment = SpecAugment(int(cfg["freq_mask"]), int(cfg["time_mask"]), int(cfg["masks"]), seed=ctx.seed)

    def loss(index: torch.Tensor) -> tuple[torch.Tensor, int]:
        features, mask, labels = split.batch(index)
        logits = model(augment(features).to(ctx.device), mask.to(ctx.device))
        return F.cross_entropy(logits, labels.to(ctx.device)), len(index)

    batches = shuffled_batches(len(split), batch_size, torch.Generator().manual_seed(ctx.seed))
    return train_steps(model, ctx, TrainConfig.from_profile(cfg), batches, loss)


TASK = SpeechCommandsTask()
