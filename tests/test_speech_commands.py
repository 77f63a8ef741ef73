"""The speech-commands task: the shipped synthetic clips, the Speech Commands layout, errors, a smoke run."""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from attnbench_plugins.tasks.speech_commands import TASK, data, model, synthesize

import attnbench
from attnbench import plugins
from attnbench.errors import DataError
from attnbench.runner.pairing import Pairing, execute

SMOKE = TASK.profiles["smoke"]
ALL = {**SMOKE, "max_clips": [None, None, None]}


def tone(seconds: float, freq: float, rate: int = 16_000, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).standard_normal(len(t))
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * noise).astype(np.float32)


def write_speech_commands(root: Path) -> Path:
    """A tiny Speech Commands v0.02 folder: 3 keywords and 2 other words, lists, background noise.

    Each word has 4 clips: 0 and 1 train, 2 validation, 3 test. yes/clip_1 is recorded at
    8 kHz and no/clip_0 lasts half a second.
    """
    for w, word in enumerate(("yes", "no", "left", "cat", "bed")):
        (root / word).mkdir(parents=True)
        for k in range(4):
            rate = 8_000 if (word, k) == ("yes", 1) else 16_000
            seconds = 0.5 if (word, k) == ("no", 0) else 1.0
            sf.write(root / word / f"spk{k}_nohash_0.wav", tone(seconds, 300 + 200 * w, rate, k), rate, subtype="PCM_16")
    (root / "validation_list.txt").write_text("".join(f"{w}/spk2_nohash_0.wav\n" for w in ("yes", "no", "left", "cat", "bed")))
    (root / "testing_list.txt").write_text("".join(f"{w}/spk3_nohash_0.wav\n" for w in ("yes", "no", "left", "cat", "bed")))
    (root / "_background_noise_").mkdir()
    sf.write(root / "_background_noise_" / "white_noise.wav", tone(1.5, 50, seed=9), 16_000, subtype="PCM_16")
    (root / "_background_noise_" / "README.md").write_text("not audio\n")
    return root


# --- the shipped synthetic clips ------------------------------------------------------------------


def test_shipped_clips_are_16k_mono_flac_with_the_claimed_sizes():
    files = sorted(data.SHIPPED.glob("*.flac"))
    assert {f.stem for f in files} == {*synthesize.KEYWORDS, "_unknown_"}
    assert sum(f.stat().st_size for f in data.SHIPPED.iterdir()) < 5_000_000
    for f in files:
        info = sf.info(f)
        assert (info.samplerate, info.channels, info.format) == (16_000, 1, "FLAC")
    utterances = data.shipped_utterances()
    labels = [u.label for u in utterances]
    assert len(utterances) == 1325
    assert all(labels.count(k) == synthesize.KEYWORD_CLIPS for k in synthesize.KEYWORDS)
    assert labels.count("_unknown_") == synthesize.UNKNOWN_CLIPS
    lengths = [len(u.audio) / 16_000 for u in utterances]
    assert 0.1 < min(lengths) and max(lengths) < 1.1
    assert all(0.5 < np.abs(u.audio).max() <= 1.0 for u in utterances)  # real speech, peak-normalised


def test_shipped_voices_never_cross_splits():
    timbre = {}
    for u in data.shipped_utterances():
        engine, voice = u.voice.split(":")
        name = voice.split("+")[-1] if engine == "espeak-ng" else voice.removesuffix("16")
        timbre.setdefault(f"{engine}:{name}", set()).add(u.split)
    assert all(len(splits) == 1 for splits in timbre.values()), timbre
    assert sum(1 for s in timbre.values() if s == {"test"}) >= 10


def test_synthesis_plan_is_seeded_and_matches_the_manifest():
    plan = synthesize.plan(0)
    assert plan == synthesize.plan(0) and plan != synthesize.plan(1)
    assert [(u.label, u.voice, u.split) for u in plan if u.label == "yes"] == [
        (u.label, u.voice, u.split) for u in data.shipped_utterances() if u.label == "yes"
    ]
    timbres = synthesize.split_timbres(random.Random(0))
    assert sorted(sum(timbres.values(), [])) == sorted(synthesize.VARIANTS)


def test_default_splits_mix_noise_shift_and_silence_deterministically():
    splits = data.shipped(ALL)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1012, 144, 289)
    counts = np.bincount(splits.test.labels, minlength=data.NUM_CLASSES)
    assert counts[data.LABEL_IDS["_silence_"]] == 24 and counts[data.LABEL_IDS["_unknown_"]] == 25
    assert all(12_800 <= len(a) <= 16_000 for a in splits.train.audio)
    again = data.shipped({**ALL})
    assert all(np.array_equal(a, b) for a, b in zip(splits.test.audio, again.test.audio, strict=True))
    other = data.shipped({**ALL, "data_seed": 2})
    assert not np.array_equal(splits.test.audio[0], other.test.audio[0])
    silence = [a for a, y in zip(splits.test.audio, splits.test.labels, strict=True) if y == data.LABEL_IDS["_silence_"]]
    speech = [a for a, y in zip(splits.test.audio, splits.test.labels, strict=True) if y != data.LABEL_IDS["_silence_"]]
    assert np.median([np.abs(a).max() for a in silence]) < np.median([np.abs(a).max() for a in speech]) / 3


def test_noise_colours_have_their_spectral_slopes():
    rng = np.random.default_rng(0)
    white, pink, brown, blue, hum = data.noise_bank(rng, seconds=2.0)
    def low_share(x):
        power = np.abs(np.fft.rfft(x)) ** 2
        return power[: len(power) // 8].sum() / power.sum()
    assert low_share(blue) < low_share(white) < low_share(pink) < low_share(brown)
    assert abs(low_share(white) - 0.125) < 0.02 and low_share(hum) > 0.5


# --- a Speech Commands folder ---------------------------------------------------------------------


def test_speech_commands_layout_is_read_with_unknown_silence_and_resampling(tmp_path):
    root = write_speech_commands(tmp_path / "sc")
    splits = data.load_dir(root, {**ALL, "unknown_percentage": 50.0, "silence_percentage": 100.0})
    ids = data.LABEL_IDS
    # train: 2 clips x 3 keywords; unknown 50 % of 6 = 3 of the 4 cat/bed clips; silence 100 % = 6
    assert sorted(splits.train.labels.tolist()) == sorted([ids["yes"]] * 2 + [ids["no"]] * 2 + [ids["left"]] * 2
                                                          + [ids["_unknown_"]] * 3 + [ids["_silence_"]] * 6)
    # val/test: one clip a keyword, unknown ceil(1.5) = 2, silence 3
    assert np.bincount(splits.test.labels, minlength=data.NUM_CLASSES)[[0, 1]].tolist() == [3, 2]
    lengths = sorted(len(a) for a in splits.train.audio)
    assert lengths[0] == 8_000 and set(lengths[1:]) == {16_000}  # no/spk0 is 0.5 s; yes/spk1 resampled from 8 kHz
    resampled = data.read_audio(root / "yes" / "spk1_nohash_0.wav")
    assert len(resampled) == 16_000
    spectrum = np.abs(np.fft.rfft(resampled))
    assert abs(np.argmax(spectrum) - 300) <= 1  # the 300 Hz tone survives resampling at 1 Hz resolution
    noise_peak = np.abs(data.read_audio(root / "_background_noise_" / "white_noise.wav")).max()
    silence = [a for a, y in zip(splits.train.audio, splits.train.labels, strict=True) if y == ids["_silence_"]]
    assert all(len(a) == 16_000 and np.abs(a).max() <= noise_peak for a in silence)  # 1 s cuts at volume 0-1


def test_capped_profile_reads_a_seeded_subset(tmp_path):
    root = write_speech_commands(tmp_path / "sc")
    config = {**ALL, "max_clips": [5, 2, 2]}
    first, second = data.load_dir(root, config), data.load_dir(root, config)
    assert (len(first.train), len(first.val), len(first.test)) == (5, 2, 2)
    assert first.train.labels.tolist() == second.train.labels.tolist()


def test_truncated_wav_is_named(tmp_path):
    root = write_speech_commands(tmp_path / "sc")
    clip = root / "left" / "spk0_nohash_0.wav"
    clip.write_bytes(clip.read_bytes()[:20_000])
    with pytest.raises(DataError, match=r"left/spk0_nohash_0\.wav is truncated: its header declares 32000 bytes") as info:
        data.load_dir(root, ALL)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("clip", "body"), [
    ("no/spk1_nohash_0.wav", b"RIFF\x00\x00\x00\x00not a wave at all" * 4),
    ("yes/spk0_nohash_0.wav", b"\x00\x01garbage" * 50),
])
def test_corrupt_wav_is_named(tmp_path, clip, body):
    root = write_speech_commands(tmp_path / "sc")
    (root / clip).write_bytes(body)
    with pytest.raises(DataError) as info:
        data.load_dir(root, ALL)
    assert re.fullmatch(rf"{re.escape(str(root / clip))} is not readable audio \(.+\); expected a 16 kHz mono WAV clip",
                        str(info.value))


def test_list_naming_a_missing_clip_is_named_with_its_line(tmp_path):
    root = write_speech_commands(tmp_path / "sc")
    (root / "testing_list.txt").write_text("yes/spk3_nohash_0.wav\nno/gone_nohash_0.wav\n")
    with pytest.raises(DataError) as info:
        data.load_dir(root, ALL)
    message = str(info.value)
    assert f"{root / 'testing_list.txt'}, line 2: names the missing clip {root / 'no' / 'gone_nohash_0.wav'}" in message
    assert "\n" not in message


@pytest.mark.parametrize(("damage", "message"), [
    (["validation_list.txt"], "lacks validation_list.txt; expected the Speech Commands"),
    (["_background_noise_/white_noise.wav"], "lacks _background_noise_/\\*.wav, the background noise"),
    ([f"{w}/spk{k}_nohash_0.wav" for w in ("yes", "no", "left") for k in range(4)], "holds no keyword clips"),
])
def test_missing_parts_of_the_layout_are_named(tmp_path, damage, message):
    root = write_speech_commands(tmp_path / "sc")
    (root / "validation_list.txt").write_text("cat/spk2_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("cat/spk3_nohash_0.wav\n")
    for name in damage:
        (root / name).unlink()
    with pytest.raises(DataError, match=message) as info:
        data.load_dir(root, ALL)
    assert str(root) in str(info.value)


# --- front end and model --------------------------------------------------------------------------


def test_front_end_masks_frames_past_a_clips_end():
    clips = data.Clips([tone(1.0, 400), tone(0.5, 400)], np.array([2, 3]))
    front = model.FrontEnd(n_mels=40, max_samples=16_000)
    features = front.fit(clips)
    assert features.features.shape == (2, 40, 101)
    assert features.mask.sum(1).tolist() == [101, 51]
    assert torch.all(features.features[1, :, 51:] == 0) and torch.all(features.features[1, :, :51] != 0)


def test_spec_augment_is_seeded_and_leaves_the_global_generator_alone():
    x = torch.randn(4, 40, 101)
    torch.manual_seed(5)
    first = model.SpecAugment(8, 10, 2, seed=3)(x)
    after = torch.rand(1)
    torch.manual_seed(5)
    assert torch.equal(model.SpecAugment(8, 10, 2, seed=3)(x), first) and torch.equal(torch.rand(1), after)
    assert not torch.equal(model.SpecAugment(8, 10, 2, seed=4)(x), first)
    assert (first == 0).any() and not torch.equal(first, x)


def test_padded_frames_do_not_reach_the_logits():
    torch.manual_seed(0)
    net = model.KeywordTransformer(plugins.get_attention("sdpa"), n_mels=8, num_classes=12, frames=101, dim=16,
                                   depth=2, heads=2, ff_dim=32, stride=2).eval()
    features, mask = torch.randn(1, 8, 101), torch.arange(101) < 40
    changed = features.clone()
    changed[..., 46:] = 100.0  # beyond the stem's reach from the last frame inside the clip
    with torch.no_grad():
        logits = net(features, mask[None])
        assert torch.allclose(net(changed, mask[None]), logits, atol=1e-5)
        assert not torch.allclose(net(changed, torch.ones(1, 101, dtype=torch.bool)), logits, atol=1e-3)


# --- the task ------------------------------------------------------------------------------------


def test_task_is_registered_and_profiles_are_json():
    assert plugins.get_task("speech-commands") is TASK
    assert isinstance(TASK, attnbench.Task)
    assert set(TASK.profiles) == set(attnbench.PROFILES)
    for profile in TASK.profiles.values():
        assert json.loads(json.dumps(profile)) == profile
    assert TASK.metric.name == "accuracy" and TASK.requires == frozenset({"padding_mask"})
    assert "SYNTHETIC speech" in TASK.description and "espeak-ng" in TASK.description


def test_smoke_pairing_is_ok_and_deterministic():
    rows = [execute(Pairing(task="speech-commands", variant="sdpa", profile="smoke", seed=0), torch.device("cpu"))
            for _ in range(2)]
    assert rows[0].status == "ok", rows[0].error
    metrics = rows[0].metrics
    assert set(metrics) == {"accuracy", "val_accuracy", "chance", "majority_baseline", "final_loss"}
    assert metrics == rows[1].metrics
    assert metrics["chance"] == pytest.approx(1 / 12) and TASK.metric.in_range(metrics["accuracy"])
    assert math.isfinite(metrics["final_loss"]) and rows[0].efficiency["flops_per_example"] > 0


def test_smoke_pairing_reads_a_speech_commands_folder(tmp_path):
    root = write_speech_commands(tmp_path / "sc")
    row = execute(Pairing(task="speech-commands", variant="sdpa", profile="smoke", seed=0, data_dir=str(root)),
                  torch.device("cpu"))
    assert row.status == "ok", row.error
    assert row.metrics["majority_baseline"] == pytest.approx(1 / 5)  # test: 3 keywords, 1 unknown, 1 silence


def test_bad_data_dir_stops_the_pairing_before_training(tmp_path):
    class Progress:
        started = False

        def start(self, total, description=""):
            self.started = True

        def advance(self, steps=1, **info):
            pass

    root = write_speech_commands(tmp_path / "sc")
    (root / "validation_list.txt").write_text("yes/spk2_nohash_0.wav\nyes/nope.wav\n")
    progress = Progress()
    with pytest.raises(DataError, match=r"validation_list\.txt, line 2: names the missing clip .*yes/nope\.wav"):
        execute(Pairing(task="speech-commands", variant="sdpa", profile="smoke", seed=0, data_dir=str(root)),
                torch.device("cpu"), progress=progress)
    assert not progress.started
