"""Synthesise the shipped keyword clips with espeak-ng and flite (run once; the result is package data).

``python -m attnbench_plugins.tasks.speech_commands.synthesize [--output-dir DIR] [--seed 0]``

Needs Debian's ``espeak-ng`` (1.51) and ``flite`` (2.2) on the PATH; nothing else in the
suite does. Each utterance is one word of Speech Commands v0.02 spoken by one voice:

* espeak-ng (formant synthesis): one of :data:`ACCENTS` with one of :data:`VARIANTS`
  (the ``+variant`` timbres espeak-ng ships), at a rate of 130-200 words a minute and a
  pitch of 20-80 (espeak-ng's 0-99 scale);
* flite (diphone/clustergen synthesis): one of :data:`FLITE_VOICES`, with its duration
  stretched 0.8-1.25x and its mean F0 drawn from a range suited to the voice.

Speakers are split before anything is drawn: a voice *timbre* (an espeak-ng variant, or a
flite voice) belongs to exactly one of train, val and test, whatever the accent, so test
clips come from timbres the model never heard. The keywords get :data:`KEYWORD_CLIPS`
utterances each (70/10/20 % train/val/test); the other 25 Speech Commands words give the
``_unknown_`` class (:data:`UNKNOWN_CLIPS` utterances in all).

Each utterance is resampled to 16 kHz with ``torchaudio.functional.resample``, trimmed to
the speech (1 % of peak, 10 ms margins), peak-normalised to 0.9 and stored as 8-bit FLAC
(the synthesiser's output is noise-free; quantisation noise at -48 dB is far below the
background noise the loader mixes in). Utterances of one label are concatenated into one
``<label>.flac``; ``manifest.tsv`` gives every utterance's file, offset, length, label,
word, voice, rate, pitch and split. Background noise, time shift and the ``_silence_``
class are made by the loader (:mod:`.data`) from a seed, not stored.
"""

from __future__ import annotations

import argparse
import io
import random
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

SAMPLE_RATE = 16_000
#: The ten keywords of the standard 12-class Speech Commands benchmark.
KEYWORDS: tuple[str, ...] = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
#: The other 25 words of Speech Commands v0.02: the ``_unknown_`` class.
UNKNOWN_WORDS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
    "backward", "forward", "follow", "learn", "visual",
)
UNKNOWN = "_unknown_"
SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_SHARES = (0.7, 0.1, 0.2)
KEYWORD_CLIPS = 120
UNKNOWN_CLIPS = 125

#: espeak-ng's English accents.
ACCENTS: tuple[str, ...] = (
    "en-us", "en-us-nyc", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
)
#: espeak-ng's voice variants (timbres), less the robotic, whispered and distorted ones.
VARIANTS: tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6",
    "Alex", "Alicia", "Andrea", "Andy", "Annie", "Denis", "Diogo", "Gene", "Gene2", "Henrique", "Hugo",
    "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike", "Nguyen", "Storm", "Tweaky", "adam", "anika",
    "announcer", "antonio", "aunty", "belinda", "benjamin", "boris", "caleb", "david", "ed", "edward",
    "edward2", "grandma", "grandpa", "gustave", "iven", "iven2", "iven3", "iven4", "john", "kaukovalta",
    "linda", "marcelo", "max", "michel", "miguel", "norbert", "pablo", "paul", "pedro", "quincy", "rob",
    "robert", "sandro", "shelby", "steph", "steph2", "steph3", "travis", "victor", "zac",
)
#: flite's voices with a mean-F0 range (Hz) each; kal and kal16 are one speaker, kept in one split.
FLITE_VOICES: dict[str, tuple[int, int]] = {
    "slt": (150, 220), "rms": (80, 130), "awb": (85, 135), "kal": (85, 130), "kal16": (85, 130),
}
FLITE_SPLIT = {"slt": "train", "rms": "train", "awb": "val", "kal": "test", "kal16": "test"}
FLITE_SHARE = 0.15


@dataclass(frozen=True)
class Utterance:
    """One synthesised word: what was said, by which voice, how, and for which split."""

    label: str
    word: str
    voice: str
    rate: float
    pitch: float
    split: str


def split_timbres(rng: random.Random) -> dict[str, list[str]]:
    """espeak-ng variants shuffled into train/val/test by :data:`SPLIT_SHARES` (a timbre in one split only)."""
    variants = list(VARIANTS)
    rng.shuffle(variants)
    n_val, n_test = round(len(variants) * SPLIT_SHARES[1]), round(len(variants) * SPLIT_SHARES[2])
    return {"val": variants[:n_val], "test": variants[n_val:n_val + n_test], "train": variants[n_val + n_test:]}


def quotas(total: int) -> list[str]:
    """``total`` split names in :data:`SPLIT_SHARES` proportions."""
    val, test = round(total * SPLIT_SHARES[1]), round(total * SPLIT_SHARES[2])
    return ["train"] * (total - val - test) + ["val"] * val + ["test"] * test


def plan(seed: int) -> list[Utterance]:
    """Every utterance to synthesise, drawn from ``seed``: words, splits, voices, rates, pitches."""
    rng = random.Random(seed)
    timbres = split_timbres(rng)
    items: list[tuple[str, str, str]] = []
    for word in KEYWORDS:
        items += [(word, word, split) for split in quotas(KEYWORD_CLIPS)]
    unknown_splits = quotas(UNKNOWN_CLIPS)
    rng.shuffle(unknown_splits)
    items += [(UNKNOWN, UNKNOWN_WORDS[i % len(UNKNOWN_WORDS)], split) for i, split in enumerate(unknown_splits)]
    plan = []
    for label, word, split in items:
        flite = [v for v, s in FLITE_SPLIT.items() if s == split]
        if flite and rng.random() < FLITE_SHARE:
            voice = rng.choice(flite)
            low, high = FLITE_VOICES[voice]
            plan.append(Utterance(label, word, f"flite:{voice}", round(rng.uniform(0.8, 1.25), 3),
                                  round(rng.uniform(low, high)), split))
        else:
            voice = f"espeak-ng:{rng.choice(ACCENTS)}+{rng.choice(timbres[split])}"
            plan.append(Utterance(label, word, voice, rng.randint(130, 200), rng.randint(20, 80), split))
    return plan


def speak(utterance: Utterance) -> np.ndarray:
    """The utterance as float32 samples at 16 kHz, trimmed to the speech and peak-normalised to 0.9."""
    engine, voice = utterance.voice.split(":", 1)
    if engine == "espeak-ng":
        command = ["espeak-ng", "-v", voice, "-s", str(int(utterance.rate)), "-p", str(int(utterance.pitch)),
                   "--stdout", utterance.word]
    else:
        command = ["flite", "-voice", voice, "--setf", f"duration_stretch={utterance.rate}",
                   "--setf", f"int_f0_target_mean={utterance.pitch}", "-t", utterance.word, "-o", "/dev/stdout"]
    wav = subprocess.run(command, capture_output=True, check=True).stdout
    samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    audio = AF.resample(torch.from_numpy(samples), rate, SAMPLE_RATE).numpy()
    loud = np.flatnonzero(np.abs(audio) > 0.01 * np.abs(audio).max())
    margin = SAMPLE_RATE // 100
    audio = audio[max(0, loud[0] - margin): loud[-1] + margin]
    return (0.9 * audio / np.abs(audio).max()).astype(np.float32)


def write(plan: Sequence[Utterance], output_dir: Path, seed: int) -> None:
    """Synthesise ``plan`` into one 8-bit FLAC per label and ``manifest.tsv``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for label in (*KEYWORDS, UNKNOWN):
        pieces, offset = [], 0
        for utterance in (u for u in plan if u.label == label):
            audio = speak(utterance)
            pieces.append(audio)
            rows.append((f"{label}.flac", offset, len(audio), utterance))
            offset += len(audio)
        sf.write(output_dir / f"{label}.flac", np.concatenate(pieces), SAMPLE_RATE, format="FLAC", subtype="PCM_S8")
    versions = [subprocess.run([tool, "--version"], capture_output=True, text=True).stdout for tool in ("espeak-ng", "flite")]
    espeak_version = versions[0].split("Data at")[0].strip()
    flite_version = versions[1].strip().splitlines()[-1].strip()
    with open(output_dir / "manifest.tsv", "w", encoding="utf-8") as f:
        f.write(f"# synthesised by attnbench_plugins.tasks.speech_commands.synthesize --seed {seed}\n")
        f.write(f"# {espeak_version}; flite {flite_version}\n")
        f.write("file\toffset\tframes\tlabel\tword\tvoice\trate\tpitch\tsplit\n")
        for file, offset, frames, u in rows:
            f.write(f"{file}\t{offset}\t{frames}\t{u.label}\t{u.word}\t{u.voice}\t{u.rate}\t{u.pitch}\t{u.split}\n")


def main(argv: Sequence[str] | None = None) -> None:
    """Write the clips and manifest (by default into this package's ``data/``)."""
    parser = argparse.ArgumentParser(
        prog="python -m attnbench_plugins.tasks.speech_commands.synthesize", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).parent / "data")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    missing = [tool for tool in ("espeak-ng", "flite") if shutil.which(tool) is None]
    if missing:
        parser.error(f"{' and '.join(missing)} not found; install with: apt-get install espeak-ng flite")
    write(plan(args.seed), args.output_dir, args.seed)


if __name__ == "__main__":
    main()
