"""The LRA Pathfinder task: its profiles and ``run(ctx)``, which trains and tests one pixel classifier."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attnbench_plugins.tasks.lra_image.pixels import POSITIONS, run_classifier, side_of

from attnbench.nn.classifier import POOLINGS
from attnbench.specs import Metric, RunContext

from . import data, generator

NAME = "lra-pathfinder"

_TRAIN = {"weight_decay": 0.0, "clip_norm": 1.0, "eval_batch_size": 250, "pooling": "mean", "positions": "learned"}
#: LRA's Pathfinder-32 generator settings per level (contour length 6 / 9 / 14 paddles).
_LRA32 = {
    level: {"level": level, "seed_distance": 7, "marker_radius": 1.5, "contour_length": p.contour_length,
            "distractor_length": p.distractor_length, "num_distractor_snakes": p.num_distractor_snakes}
    for level, p in ((lv, generator.Params.lra32(lv)) for lv in generator.LEVELS)
}
#: A 16×16 Pathfinder: LRA's paddles and margins, shorter snakes, seeds closer together, fewer distractors.
_SMALL16 = {"level": "curv_baseline", "seed_distance": 3, "marker_radius": 1.5, "contour_length": 4,
            "distractor_length": 2, "num_distractor_snakes": 2}

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        **_TRAIN, **_SMALL16, "length": 256, "data_seed": 1, "n_train": 96, "n_val": 32, "n_test": 32,
        "dim": 16, "depth": 1, "heads": 2, "ff_dim": 32, "dropout": 0.0,
        "steps": 10, "batch_size": 32, "lr": 1e-3, "warmup_steps": 2,
    },
    "quick": {
        **_TRAIN, **_SMALL16, "length": 256, "data_seed": 1, "n_train": 2000, "n_val": 200, "n_test": 400,
        "dim": 32, "depth": 2, "heads": 2, "ff_dim": 64, "dropout": 0.0,
        "steps": 150, "batch_size": 32, "lr": 2e-3, "warmup_steps": 15,
    },
    "standard": {
        **_TRAIN, **_LRA32["curv_baseline"], "length": 1024, "data_seed": 1,
        "n_train": 20000, "n_val": 2000, "n_test": 2000,
        "dim": 32, "depth": 4, "heads": 4, "ff_dim": 32, "dropout": 0.1,
        "steps": 5000, "batch_size": 64, "lr": 1e-3, "warmup_steps": 300,
    },
    # LRA's pathfinder32 Transformer (lra_benchmarks/image/configs/pathfinder32/transformer_base.py) on the hard
    # level: 4 layers, 4 heads, width 32, MLP 32, dropout 0.2, mean pooling, batch 512, lr 1e-3, no weight decay
    # or clipping, 200 epochs of 160,000 images (62,400 steps) with one epoch of warm-up.
    "full": {
        **_TRAIN, **_LRA32["curv_contour_length_14"], "clip_norm": None, "length": 1024, "data_seed": 1,
        "n_train": 160000, "n_val": 20000, "n_test": 20000,
        "dim": 32, "depth": 4, "heads": 4, "ff_dim": 32, "dropout": 0.2,
        "steps": 62400, "batch_size": 512, "lr": 1e-3, "warmup_steps": 312, "eval_batch_size": 512,
    },
}

DESCRIPTION = (
    "LRA Pathfinder (Linsley et al. 2018; Tay et al. 2021): are the two circles joined by one dashed contour? "
    "Binary classification of a grayscale image read as a sequence of pixels, one token a pixel (intensity "
    "0-255, learned positions, or fixed 2-D sinusoids with positions=sincos2d). Default data: drawn by a "
    "seeded reimplementation of the Pathfinder generator "
    "(drewlinsley/pathfinder snakes2.py with LRA's Pathfinder-32 settings: paddle length 2, thickness 0.5, "
    "margin 1, continuity 1.0, antialias 2, contrasts 2 and 0.75). full = LRA's task: 32×32 = 1024 tokens, "
    "level curv_contour_length_14 (contour 14 paddles, 5 distractors of 4, seeds 7 px apart), 160k/20k/20k "
    "images, LRA's Transformer sizes (4 layers, 4 heads, width 32, MLP 32, dropout 0.2, mean pooling; one width "
    "for queries and keys where LRA used 16, learned rather than sinusoidal positions), batch 512, 62,400 steps; "
    "generating its 200k images takes hours on one core, so write them once with python -m "
    "attnbench_plugins.tasks.lra_pathfinder and pass --data-dir. standard: 32×32, level curv_baseline (contour "
    "6, 10 distractors of 2), 20k training images. quick and smoke: a smaller Pathfinder, 16×16 = 256 tokens "
    "with contours of 4 paddles, seeds 3 px apart and 2 distractors of 2 (LRA's paddles and markers); quick "
    "trains 150 steps on 2,000 images. Generated images are drawn once per setting and kept in the cache folder "
    "($ATTNBENCH_CACHE_DIR, else ~/.cache/attnbench/lra-pathfinder; drawing quick's 2,600 images costs ~20 s of "
    "one core, paid by the first pairing only). Pathfinder is learned late (LRA's Transformer: 71.4 % after 62k "
    "steps; several models stayed at 50 %), and quick does NOT learn it: sdpa stays at chance (measured 50.5 %, "
    "the test majority), so quick rows show cost, not quality; use standard or full to compare quality. Easier "
    "settings did not learn within a CPU minute either (sdpa, measured: up to 1,200 steps, lr 1e-3 to 1e-2, "
    "batch 8 or 16, fixed 2-D sinusoidal positions (positions=sincos2d), CLS or mean pooling, contours of 2 or "
    "3 paddles without distractors, 12×12 images, 20,000 training images: training loss stayed at 0.69, "
    "validation accuracy on 200 images wandered between 38 % and 59 %). Nor does a convolutional control "
    "(benchmarks/pathfinder_cnn_check.py: six 3×3 convolutions, 1,500 steps): it also stays at chance on quick's "
    "images and on 24×24 ones with contours of 5 paddles, so at this budget the plateau is the task's, not "
    "attention's. --data-dir "
    "reads LRA's released layout (<level>/metadata/<n>.npy text lines naming imgs/<n>/sample_<k>.png, the label in the 4th "
    "field) for the profile's level; images must be side × side for the profile's length."
)


class LraPathfinderTask:
    """LRA Pathfinder: are two markers on one contour (see :data:`DESCRIPTION`)."""

    name = NAME
    domain = "long-range"
    description = DESCRIPTION
    metric = Metric(name="accuracy", higher_is_better=True, unit="fraction", lower=0.0, upper=1.0, baseline="majority_baseline")
    requires: frozenset[str] = frozenset()
    profiles: Mapping[str, Mapping[str, Any]] = PROFILES
    #: ``--set`` takes only these values of an enumerated setting (anything else is refused before any work).
    setting_choices: Mapping[str, tuple[str, ...]] = {"pooling": POOLINGS, "positions": POSITIONS}

    def run(self, ctx: RunContext) -> dict[str, float]:
        """Train on the train split, report test accuracy (primary), validation accuracy, chance (0.5),
        the test set's majority-class share and the mean loss of the last 10 steps."""
        cfg = ctx.config
        side = side_of(cfg, NAME)
        if ctx.data_dir is not None:
            splits = data.load_dir(ctx.data_dir, str(cfg["level"]), side, int(cfg["data_seed"]))
        else:
            splits = data.generated(cfg, side)
        return run_classifier(ctx, splits, data.NUM_CLASSES)


TASK = LraPathfinderTask()
