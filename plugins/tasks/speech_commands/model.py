"""The front end (log-mel spectrograms, SpecAugment) and the keyword-spotting Transformer.

* :class:`FrontEnd` — ``torchaudio.transforms.MelSpectrogram`` with 30 ms windows every
  10 ms, ``log(mel + 1e-6)``, normalised per mel bin with the training split's statistics.
  Every clip is padded to the profile's longest clip, so every batch has one length and
  variants that fix their length at build time see the length they were built for; the
  frames past a clip's end are masked.
* :class:`SpecAugment` — ``FrequencyMasking`` and ``TimeMasking`` (Park et al. 2019) on
  training batches, drawn from their own seeded generator.
* :class:`KeywordTransformer` — a convolutional stem that subsamples frames in time, learned
  positions, the shared pre-norm :class:`attnbench.nn.Encoder` with the variant under test
  (padding as a key-padding mask), masked mean pooling and a linear head.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchaudio
from torch import nn

from attnbench.nn import Encoder
from attnbench.specs import AttentionSpec

from .data import SAMPLE_RATE, Clips

WINDOW = 480  # 30 ms
HOP = 160  # 10 ms


def frame_count(samples: int) -> int:
    """Spectrogram frames of a clip of ``samples`` (centred windows, as torchaudio computes them)."""
    return 1 + samples // HOP


@dataclass(frozen=True)
class Features:
    """One split as log-mel features (N, n_mels, T), a frame mask (N, T; True = inside the clip) and labels (N,)."""

    features: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Examples ``index`` (on the CPU): features, mask, labels."""
        return self.features[index], self.mask[index], self.labels[index]

    def majority_fraction(self) -> float:
        """The share of the most common label: the accuracy of always guessing it."""
        return float(torch.bincount(self.labels).max()) / max(len(self), 1)


class FrontEnd:
    """Waveforms to normalised log-mel features; fit the normalisation on the training split first."""

    def __init__(self, n_mels: int, max_samples: int) -> None:
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=WINDOW, win_length=WINDOW, hop_length=HOP, n_mels=n_mels
        )
        self.max_samples = max_samples
        self.frames = frame_count(max_samples)
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    def log_mel(self, clips: Clips, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """Un-normalised log-mel features (N, n_mels, T) and the frame mask (N, T)."""
        lengths = torch.tensor([min(len(a), self.max_samples) for a in clips.audio])
        wave = torch.zeros(len(clips), self.max_samples)
        for i, audio in enumerate(clips.audio):
            wave[i, : lengths[i]] = torch.from_numpy(np.asarray(audio[: self.max_samples]))
        with torch.no_grad():
            feats = torch.cat([torch.log(self.mel(part) + 1e-6) for part in wave.split(chunk)])
        mask = torch.arange(self.frames) < (1 + lengths // HOP).unsqueeze(1)
        return feats, mask

    def fit(self, clips: Clips) -> Features:
        """Features of the training split, setting the per-bin mean and deviation from its clips' frames."""
        feats, mask = self.log_mel(clips)
        inside = feats.transpose(1, 2)[mask]  # (frames, n_mels)
        self.mean, self.std = inside.mean(0)[:, None], inside.std(0)[:, None].clamp_min(1e-3)
        return self._normalised(feats, mask, clips)

    def __call__(self, clips: Clips) -> Features:
        """Features of another split, normalised with the training split's statistics."""
        if self.mean is None:
            raise RuntimeError("FrontEnd.fit(train) must come first")
        return self._normalised(*self.log_mel(clips), clips)

    def _normalised(self, feats: torch.Tensor, mask: torch.Tensor, clips: Clips) -> Features:
        feats = (feats - self.mean) / self.std * mask[:, None, :]
        return Features(feats.contiguous(), mask, torch.from_numpy(clips.labels))


class SpecAugment:
    """``masks`` frequency and time masks per training example, from a generator seeded once.

    torchaudio's masking draws from torch's global generator; each call runs inside
    ``torch.random.fork_rng`` seeded from this object's own generator, so the masks
    depend on the seed alone and leave the model's random stream (dropout) untouched.
    Apply it to CPU batches, before they move to the device.
    """

    def __init__(self, freq_mask: int, time_mask: int, masks: int, seed: int) -> None:
        self.freq = torchaudio.transforms.FrequencyMasking(freq_mask, iid_masks=True)
        self.time = torchaudio.transforms.TimeMasking(time_mask, iid_masks=True)
        self.masks = masks
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        """``features`` (B, n_mels, T) with masked bands and stretches set to 0 (the normalised mean)."""
        if self.masks == 0:
            return features
        seed = int(torch.randint(2**62, (1,), generator=self.generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            x = features.unsqueeze(1)
            for _ in range(self.masks):
                x = self.time(self.freq(x))
        return x.squeeze(1)


class KeywordTransformer(nn.Module):
    """Conv stem (stride ``stride`` in time) → learned positions → Encoder → masked mean → logits.

    ``forward(features, mask)``: features (B, n_mels, T) and mask (B, T), True inside the
    clip; returns logits (B, num_classes).
    """

    def __init__(
        self,
        attention: AttentionSpec,
        *,
        n_mels: int,
        num_classes: int,
        frames: int,
        dim: int,
        depth: int,
        heads: int,
        ff_dim: int,
        dropout: float = 0.0,
        stride: int = 2,
    ) -> None:
        super().__init__()
        self.stride = stride
        self.positions = -(-frames // stride)
        self.stem = nn.Sequential(
            nn.Conv1d(n_mels, dim, kernel_size=3, stride=stride, padding=1), nn.GELU(),
            nn.Conv1d(dim, dim, kernel_size=3, padding=1), nn.GELU(),
        )
        self.position = nn.Parameter(torch.zeros(1, self.positions, dim))
        self.encoder = Encoder(depth, dim, heads, attention, ff_dim=ff_dim, dropout=dropout, max_len=self.positions)
        self.head = nn.Linear(dim, num_classes)
        nn.init.normal_(self.position, std=0.02)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) of ``features`` (B, n_mels, T) with frame ``mask`` (B, T)."""
        x = self.stem(features).transpose(1, 2)
        mask = mask[:, :: self.stride]  # a subsampled frame is inside the clip if its centre frame is
        x = self.encoder(x + self.position[:, : x.shape[1]], key_padding_mask=mask)
        weights = mask.unsqueeze(-1).to(x.dtype)
        return self.head((x * weights).sum(1) / weights.sum(1).clamp_min(1.0))
