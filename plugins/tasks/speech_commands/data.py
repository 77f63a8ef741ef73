"""Keyword clips as waveforms: the shipped synthetic clips, or a Speech Commands v0.02 folder.

Both paths give three :class:`Clips` splits of 16 kHz mono float32 waveforms, each at
most ``max_seconds`` long, labelled with :data:`LABELS` as the 12-class Speech Commands
benchmark defines them (Warden 2018; TensorFlow's ``speech_commands/input_data.py``):
the ten keywords, ``_unknown_`` for every other word, ``_silence_`` for background noise
only.

**Shipped default** (``data/``, written by :mod:`.synthesize`): synthetic speech. Each
utterance is put at a random offset (time shift) inside a clip of 0.8-1.0 s, scaled by a
random gain of 0.3-1.0 and mixed with a random stretch of synthesised noise (white, pink,
brown, blue or mains hum: no recorded noise ships) at an SNR of ``snr_db`` (low, high).
``_silence_`` clips are noise alone, one for every ten keyword clips of a split. The
mixing is drawn from the profile's ``data_seed``, so a profile always sees the same clips;
splits follow the manifest, whose voices are disjoint between splits.

**Speech Commands folder** (``--data-dir``): ``<word>/*.wav``, ``validation_list.txt`` and
``testing_list.txt`` (paths relative to the folder, one a line), ``_background_noise_/*.wav``.
Train is every clip named in neither list. As in TensorFlow's ``input_data.py``, the
``_unknown_`` and ``_silence_`` classes each get ``unknown_percentage`` /
``silence_percentage`` % as many clips as the keywords of that split; silence is a random
1 s cut of a background-noise file at a random volume (0-1). A clip at another sample
rate is resampled to 16 kHz with ``torchaudio.functional.resample``; stereo is averaged
to mono; a clip longer than ``max_seconds`` is cut. A file that cannot be decoded, a
truncated WAV (its header promises more audio than the file holds), a list line naming
a missing clip: each is one :class:`DataError` line before training starts.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from attnbench.datafiles import line_error, numbered, read_lines, require_dir
from attnbench.errors import DataError

from .synthesize import KEYWORDS, SAMPLE_RATE, SPLITS, UNKNOWN

SILENCE = "_silence_"
#: Class order of TensorFlow's Speech Commands code: silence, unknown, then the keywords.
LABELS: tuple[str, ...] = (SILENCE, UNKNOWN, *KEYWORDS)
LABEL_IDS: dict[str, int] = {label: i for i, label in enumerate(LABELS)}
NUM_CLASSES = len(LABELS)
SHIPPED = Path(__file__).parent / "data"
MANIFEST_HEADER = ("file", "offset", "frames", "label", "word", "voice", "rate", "pitch", "split")
NOISE = "_background_noise_"
LIST_FILES = {"val": "validation_list.txt", "test": "testing_list.txt"}
LAYOUT = (
    "the Speech Commands v0.02 layout: <word>/*.wav clips, validation_list.txt, testing_list.txt "
    f"and {NOISE}/*.wav"
)


@dataclass(frozen=True)
class Clips:
    """One split: waveforms (16 kHz float32, each at most the profile's length) and label ids."""

    audio: list[np.ndarray]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.audio)


@dataclass(frozen=True)
class Splits:
    """The train, validation and test splits."""

    train: Clips
    val: Clips
    test: Clips


# --- synthesised noise -------------------------------------------------------------------------


def coloured_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectrum ∝ f^exponent (0 white, -1 pink, -2 brown, 1 blue), unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1]
    noise = np.fft.irfft(spectrum * freqs ** (exponent / 2), n)
    return (noise / noise.std()).astype(np.float32)


def mains_hum(rng: np.random.Generator, n: int) -> np.ndarray:
    """A 50 or 60 Hz buzz with decaying harmonics over faint white noise, unit RMS."""
    t = np.arange(n) / SAMPLE_RATE
    base = rng.choice([50.0, 60.0])
    hum = sum(np.sin(2 * np.pi * base * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 8))
    hum = hum + 0.3 * rng.standard_normal(n)
    return (hum / hum.std()).astype(np.float32)


def noise_bank(rng: np.random.Generator, seconds: float = 10.0) -> list[np.ndarray]:
    """Five synthesised background noises: white, pink, brown, blue, mains hum."""
    n = int(seconds * SAMPLE_RATE)
    return [*(coloured_noise(rng, n, e) for e in (0.0, -1.0, -2.0, 1.0)), mains_hum(rng, n)]


def cut(rng: np.random.Generator, noise: np.ndarray, n: int) -> np.ndarray:
    """A random stretch of ``n`` samples of ``noise``."""
    start = int(rng.integers(0, len(noise) - n + 1))
    return noise[start:start + n]


# --- the shipped default -----------------------------------------------------------------------


@dataclass(frozen=True)
class Utterance:
    """One row of the shipped manifest."""

    audio: np.ndarray
    label: str
    voice: str
    split: str


@functools.lru_cache(maxsize=1)
def shipped_utterances() -> tuple[Utterance, ...]:
    """Every utterance in ``data/manifest.tsv``, decoded from its FLAC file."""
    manifest = SHIPPED / "manifest.tsv"
    rows = [line for line in read_lines(manifest, "the shipped keyword manifest") if not line.startswith("#")]
    if not rows or tuple(rows[0].split("\t")) != MANIFEST_HEADER:
        raise DataError(f"{manifest}: expected the header {' '.join(MANIFEST_HEADER)}; reinstall attnbench")
    files: dict[str, np.ndarray] = {}
    utterances = []
    for row in rows[1:]:
        name, offset, frames, label, _word, voice, _rate, _pitch, split = row.split("\t")
        if name not in files:
            files[name] = read_audio(SHIPPED / name)
        utterances.append(Utterance(files[name][int(offset):int(offset) + int(frames)], label, voice, split))
    return tuple(utterances)


def shipped(config: Mapping[str, Any]) -> Splits:
    """The embedded default: the shipped utterances time-shifted and mixed with noise (see module docs)."""
    return _shipped(int(config["data_seed"]), float(config["max_seconds"]), tuple(config["snr_db"]),
                    tuple(config["max_clips"]))


@functools.lru_cache(maxsize=4)
def _shipped(seed: int, max_seconds: float, snr_db: tuple[float, float], max_clips: tuple[int | None, ...]) -> Splits:
    rng = np.random.default_rng(seed)
    noises = noise_bank(rng)
    longest = int(max_seconds * SAMPLE_RATE)
    parts = []
    for split, limit in zip(SPLITS, max_clips, strict=True):
        audio, labels = [], []
        for u in (u for u in shipped_utterances() if u.split == split):
            speech = u.audio[:longest] * rng.uniform(0.3, 1.0)
            n = min(longest, max(len(speech), int(rng.uniform(0.8, 1.0) * longest)))
            clip = np.zeros(n, dtype=np.float32)
            start = int(rng.integers(0, n - len(speech) + 1))
            clip[start:start + len(speech)] = speech
            snr = rng.uniform(*snr_db)
            level = np.sqrt(np.mean(speech ** 2)) / 10 ** (snr / 20)
            audio.append(clip + level * cut(rng, noises[rng.integers(len(noises))], n))
            labels.append(LABEL_IDS[u.label])
        for _ in range(sum(label >= LABEL_IDS[KEYWORDS[0]] for label in labels) // 10):
            n = int(rng.uniform(0.8, 1.0) * longest)
            audio.append(10 ** rng.uniform(-2.5, -1) * cut(rng, noises[rng.integers(len(noises))], n))
            labels.append(LABEL_IDS[SILENCE])
        parts.append(subset(rng, audio, labels, limit))
    return Splits(*parts)


def subset(rng: np.random.Generator, audio: list[np.ndarray], labels: list[int], limit: int | None) -> Clips:
    """At most ``limit`` clips drawn at random without replacement (all of them when ``limit`` is None)."""
    order = np.arange(len(audio)) if limit is None or limit >= len(audio) else np.sort(rng.permutation(len(audio))[:limit])
    return Clips([audio[i].astype(np.float32) for i in order], np.asarray([labels[i] for i in order], dtype=np.int64))


# --- reading audio files -----------------------------------------------------------------------


def check_wav_complete(path: Path) -> None:
    """DataError when a RIFF WAV's ``data`` chunk promises more bytes than the file holds.

    libsndfile reads such a file without complaint, silently returning fewer samples, so a
    clip cut short in a copy would pass unnoticed. Non-RIFF files are left to libsndfile.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return
            size = path.stat().st_size
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    raise DataError(f"{path} is truncated: no 'data' chunk before the end of the file; "
                                    "expected a complete WAV clip")
                name, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if name == b"data":
                    held = size - f.tell()
                    if length not in (0, 0xFFFFFFFF) and length > held:
                        raise DataError(f"{path} is truncated: its header declares {length} bytes of audio, "
                                        f"the file holds {held}; expected a complete WAV clip")
                    return
                f.seek(length + (length & 1), 1)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}; expected a WAV clip") from None


def read_audio(path: Path, max_samples: int | None = None) -> np.ndarray:
    """A mono float32 waveform at 16 kHz (resampled if needed), cut to ``max_samples``; DataError names the file."""
    check_wav_complete(path)
    try:
        samples, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        reason = getattr(exc, "error_string", None) or str(exc)  # libsndfile's own text repeats the path
        raise DataError(f"{path} is not readable audio ({reason}); expected a 16 kHz mono WAV clip") from None
    if samples.shape[0] == 0:
        raise DataError(f"{path} holds no audio samples; expected a 16 kHz mono WAV clip")
    audio = samples.mean(axis=1)
    if rate != SAMPLE_RATE:
        audio = AF.resample(torch.from_numpy(audio), rate, SAMPLE_RATE).numpy()
    return np.ascontiguousarray(audio[:max_samples], dtype=np.float32)


# --- a Speech Commands folder ------------------------------------------------------------------


def read_list(data_dir: Path, split: str) -> list[str]:
    """The clip paths of ``validation_list.txt`` or ``testing_list.txt``, each checked to exist."""
    path = data_dir / LIST_FILES[split]
    if not path.is_file():
        raise DataError(f"{data_dir} lacks {LIST_FILES[split]}; expected {LAYOUT}")
    clips = []
    for number, line in numbered(read_lines(path, "clip paths, one a line, such as right/0a7c2a8d_nohash_0.wav")):
        name = line.strip()
        if not name:
            continue
        if not (data_dir / name).is_file():
            raise line_error(path, number, f"names the missing clip {data_dir / name}",
                             f"paths of clips under {data_dir}, such as right/0a7c2a8d_nohash_0.wav")
        clips.append(name)
    return clips


def load_dir(data_dir: Path, config: Mapping[str, Any]) -> Splits:
    """The splits of a Speech Commands v0.02 folder (see the module docs for the rules)."""
    data_dir = require_dir(data_dir, LAYOUT)
    seed, max_samples = int(config["data_seed"]), int(float(config["max_seconds"]) * SAMPLE_RATE)
    words = sorted(p.name for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("_"))
    clips = {w: sorted(f"{w}/{p.name}" for p in (data_dir / w).glob("*.wav")) for w in words}
    if not any(clips.get(k) for k in KEYWORDS):
        raise DataError(f"{data_dir} holds no keyword clips (yes/*.wav ... go/*.wav); expected {LAYOUT}")
    held_out = {split: read_list(data_dir, split) for split in LIST_FILES}
    listed = {name for names in held_out.values() for name in names}
    by_split = {"train": [n for w in words for n in clips[w] if n not in listed], **held_out}
    noise_files = sorted((data_dir / NOISE).glob("*.wav")) if (data_dir / NOISE).is_dir() else []
    if float(config["silence_percentage"]) > 0 and not noise_files:
        raise DataError(f"{data_dir} lacks {NOISE}/*.wav, the background noise the {SILENCE} class is cut from; "
                        f"expected {LAYOUT}")
    rng = np.random.default_rng(seed)
    noises = [read_audio(p) for p in noise_files]
    parts = []
    for split, limit in zip(SPLITS, config["max_clips"], strict=True):
        names = by_split[split]
        keyword = [n for n in names if n.split("/")[0] in KEYWORDS]
        other = [n for n in names if n.split("/")[0] not in KEYWORDS]
        n_unknown = min(len(other), math.ceil(len(keyword) * float(config["unknown_percentage"]) / 100))
        n_silence = math.ceil(len(keyword) * float(config["silence_percentage"]) / 100)
        chosen = keyword + [other[i] for i in sorted(rng.permutation(len(other))[:n_unknown])]
        labels = [LABEL_IDS[n.split("/")[0]] if n.split("/")[0] in KEYWORDS else LABEL_IDS[UNKNOWN] for n in chosen]
        labels += [LABEL_IDS[SILENCE]] * n_silence
        # Pick the subset before reading so a capped profile reads only the files it uses.
        order = _pick(rng, len(labels), limit)
        audio = []
        for i in order:
            if i < len(chosen):
                audio.append(read_audio(data_dir / chosen[i], max_samples))
            else:
                audio.append(_silence(rng, noises, max_samples))
        parts.append(Clips(audio, np.asarray([labels[i] for i in order], dtype=np.int64)))
    return Splits(*parts)


def _pick(rng: np.random.Generator, n: int, limit: int | None) -> Sequence[int]:
    return range(n) if limit is None or limit >= n else np.sort(rng.permutation(n)[:limit]).tolist()


def _silence(rng: np.random.Generator, noises: list[np.ndarray], n: int) -> np.ndarray:
    noise = noises[int(rng.integers(len(noises)))]
    if len(noise) < n:
        noise = np.tile(noise, -(-n // len(noise)))
    return (rng.uniform(0, 1) * cut(rng, noise, n)).astype(np.float32)


def load(config: Mapping[str, Any], data_dir: Path | None) -> Splits:
    """The splits for a run: ``data_dir`` in the Speech Commands layout, or the shipped default."""
    return shipped(config) if data_dir is None else load_dir(Path(data_dir), config)
