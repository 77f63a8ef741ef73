"""The Pathfinder generator (Linsley et al. 2018; Kim*, Linsley* et al. 2020) as LRA used it, reimplemented.

An image holds two long *target* snakes and a few short *distractor* snakes, each a
chain of short line segments ("paddles"). Two circular markers sit on snake ends: one on
the first paddle of one target snake, the other on the last paddle of the same snake
(label 1, *connected*) or of the other target snake (label 0). The label is drawn
uniformly per image.

The process follows ``drewlinsley/pathfinder`` (``snakes.py``, ``snakes2.py``) step by
step, drawing from a seeded :class:`numpy.random.Generator` instead of the global NumPy
state:

* the first target paddle starts at a free pixel at least ``2 × seed_distance`` from
  the border; the second starts ``seed_distance`` away from it at a uniform angle;
* each next paddle starts ``paddle_length + 2 × margin`` ahead of the last pivot and turns
  by an angle drawn with weight ``cos(min(continuity × Δθ, π/2))²`` among the free pixels
  on a circle of radius ``paddle_length + margin`` (a collision is retried
  ``max_paddle_retrial`` times, then the snake is abandoned and redrawn);
* a paddle is rasterised at ``antialias_scale`` × resolution with PIL and reduced with
  Lanczos (as ``scipy.misc.imresize`` did: bytescale to 8 bits, then resize); its
  exclusion mask is the line dilated by a disk of radius ``margin``;
* distractor snakes (``num_distractor_snakes`` of ``distractor_length`` paddles, kept
  short) are added with the same rules; no single-paddle clutter
  (``use_single_paddles=False`` in ``snakes2_wrapper.py``);
* the image is bytescaled to 0-255, as ``scipy.misc.imsave`` wrote LRA's PNGs.

The only departures are the random stream (a seed gives other images than the original
script) and speed: paddle stamps are cached per orientation, so a 32×32 image takes a
few milliseconds. LRA's Pathfinder-32 parameters (``lra_benchmarks/data/pathfinder.py``):
window 32, padding 1, paddle length 2, thickness 0.5, margin 1, marker radius 1.5,
antialias 2, seed distance 7, continuity 1.0, snake contrast 2, paddle contrast 0.75,
distractor length ``contour_length // 3`` and ``20 // distractor_length`` distractors.
Its three levels differ in contour length: ``curv_baseline`` 6, ``curv_contour_length_9``
9 and ``curv_contour_length_14`` 14 (LRA's task is the last).

``python -m attnbench_plugins.tasks.lra_pathfinder --output-dir DIR`` writes images and
metadata in the original layout (``DIR/<level>/imgs/<batch>/sample_<k>.png`` and
``DIR/<level>/metadata/<batch>.npy``, space-separated text).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

#: LRA's difficulty levels and their target contour lengths (in paddles).
LEVELS: dict[str, int] = {"curv_baseline": 6, "curv_contour_length_9": 9, "curv_contour_length_14": 14}


@dataclass(frozen=True, kw_only=True)
class Params:
    """The generator's arguments (``snakes2_wrapper.Args``); defaults are LRA's Pathfinder-32 ``hard`` level."""

    window: int = 32
    padding: int = 1
    antialias_scale: int = 2
    seed_distance: int = 7
    marker_radius: float = 1.5
    contour_length: int = 14
    distractor_length: int = 4
    num_distractor_snakes: int = 5
    snake_contrast: float = 2.0
    paddle_contrast: float = 0.75
    continuity: float = 1.0
    paddle_length: int = 2
    paddle_thickness: float = 0.5
    paddle_margin: int = 1
    max_target_contour_retrial: int = 4
    max_distractor_contour_retrial: int = 4
    max_paddle_retrial: int = 2

    def __post_init__(self) -> None:
        if round(self.paddle_thickness * self.antialias_scale) != self.paddle_thickness * self.antialias_scale:
            raise ValueError("paddle_thickness × antialias_scale must be a whole number of pixels")
        if self.window <= 4 * self.seed_distance:
            raise ValueError(f"window {self.window} leaves no room for seeds {self.seed_distance} px from its border (× 2)")

    @classmethod
    def lra32(cls, level: str = "curv_contour_length_14", **changes: int | float) -> Params:
        """LRA's Pathfinder-32 at ``level`` (distractors scaled with the contour, as LRA's formula)."""
        if level not in LEVELS:
            raise ValueError(f"unknown Pathfinder level {level!r}; expected one of {', '.join(LEVELS)}")
        contour = LEVELS[level]
        distractor = contour // 3
        return dataclasses.replace(
            cls(contour_length=contour, distractor_length=distractor, num_distractor_snakes=20 // distractor), **changes
        )


# --- drawing primitives (snakes.py) -------------------------------------------------------------


def _bytescale(a: np.ndarray) -> np.ndarray:
    """``scipy.misc.bytescale``: map min..max linearly to 0..255 (uint8 passes unchanged)."""
    if a.dtype == np.uint8:
        return a
    lo, hi = float(a.min()), float(a.max())
    scale = 255.0 / ((hi - lo) or 1.0)
    return (((a - lo) * scale).clip(0, 255) + 0.5).astype(np.uint8)


def _imresize(a: np.ndarray, side: int) -> np.ndarray:
    """``scipy.misc.imresize(a, (side, side), interp='lanczos')``: bytescale, then PIL Lanczos; uint8."""
    return np.asarray(Image.fromarray(_bytescale(np.asarray(a))).resize((side, side), Image.Resampling.LANCZOS))


def _pad(a: np.ndarray, ry: int, rx: int) -> np.ndarray:
    padded = np.zeros((a.shape[0] + 2 * ry, a.shape[1] + 2 * rx), a.dtype)
    padded[ry : ry + a.shape[0], rx : rx + a.shape[1]] = a
    return padded


def _dilate(a: np.ndarray, struct: np.ndarray) -> np.ndarray:
    """``cv2.dilate`` with a centred anchor: the maximum over the struct's nonzero offsets (outside counts as 0)."""
    ry, rx = struct.shape[0] // 2, struct.shape[1] // 2
    padded = _pad(a, ry, rx)
    out = np.zeros_like(a)
    h, w = a.shape
    for dy, dx in zip(*np.nonzero(struct.astype(np.uint8)), strict=True):
        np.maximum(out, padded[dy : dy + h, dx : dx + w], out=out)
    return out


def _dilated_at(a: np.ndarray, struct: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """``_dilate(a, struct)[coords[:, 0], coords[:, 1]]`` without dilating the whole image."""
    ry, rx = struct.shape[0] // 2, struct.shape[1] // 2
    dy, dx = np.nonzero(struct.astype(np.uint8))
    return _pad(a, ry, rx)[coords[:, :1] + dy, coords[:, 1:] + dx].max(axis=1)


@functools.lru_cache(maxsize=16)
def disk(radius: int) -> np.ndarray:
    """``generate_dilation_struct``: a (2r+1)² disk of ones."""
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return (x**2 + y**2 <= radius**2).astype(np.float64)


def translate(coord: Sequence[float], orientation: float, dist: float) -> list[int]:
    """``translate_coord``: move ``dist`` along ``orientation`` (radians), rounding up."""
    return [int(math.ceil(coord[0] + dist * math.sin(orientation))), int(math.ceil(coord[1] + dist * math.cos(orientation)))]


def flip(orientation: float) -> float:
    """``flip_by_pi``."""
    return orientation + math.pi if orientation < 0 else orientation - math.pi


@functools.lru_cache(maxsize=8192)
def _paddle(orientation: float, length: int, thickness: float, margin: int, aa: int) -> tuple[np.ndarray, np.ndarray]:
    """One paddle and its exclusion mask as patches centred on its start (``draw_line_n_mask``)."""
    reach = length + int(math.ceil(thickness)) + margin
    blown_side, centre = reach * 2 * aa + 1, reach * aa
    head = translate([centre, centre], orientation, length * aa)
    blown = Image.new("F", (blown_side, blown_side), "black")
    ImageDraw.Draw(blown).line([(centre, centre), (head[1], head[0])], fill="white", width=int(round(thickness * aa)))
    blown_line = np.asarray(blown)
    side = reach * 2 + 1
    line = _imresize(blown_line, side).astype(np.float32) / 255.0
    blown_mask = _dilate(blown_line, disk(margin * aa)).astype(np.uint8)
    mask = _imresize(blown_mask, side).astype(np.float32) / 255.0
    line.setflags(write=False)
    mask.setflags(write=False)
    return line, mask


def draw_paddle(size: tuple[int, int], start: Sequence[int], orientation: float, params: Params,
                length: int | None = None, contrast: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A paddle from ``start`` along ``orientation`` on a blank ``size`` canvas: (line image, mask)."""
    length = params.paddle_length if length is None else length
    line, mask = _paddle(float(orientation), length, params.paddle_thickness, params.paddle_margin, params.antialias_scale)
    reach = line.shape[0] // 2
    image, canvas_mask = np.zeros(size, np.float32), np.zeros(size, np.float32)
    y0, x0 = start[0] - reach, start[1] - reach
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(start[0] + reach, size[0] - 1) + 1, min(start[1] + reach, size[1] - 1) + 1
    if ys < ye and xs < xe:
        image[ys:ye, xs:xe] = line[ys - y0 : ye - y0, xs - x0 : xe - x0] * contrast
        canvas_mask[ys:ye, xs:xe] = mask[ys - y0 : ye - y0, xs - x0 : xe - x0]
    return image, canvas_mask


def _free(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``find_available_coordinates(np.ceil(mask - 0.3))``: pixels whose mask is below 0.3."""
    return np.nonzero(np.ceil(mask - 0.3) == 0)


def _in_window(coord: Sequence[int], size: tuple[int, int]) -> bool:
    return 0 <= coord[0] < size[0] and 0 <= coord[1] < size[1]


@functools.lru_cache(maxsize=16)
def _circle(step: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct pixel offsets on a circle of radius ``step`` (one sample per pixel of arc), sorted, and their angles.

    ``get_coords_cmf`` truncates ``pivot + offset`` to integers; for the in-window pixels
    that it keeps this is ``pivot + floor(offset)``, so the offsets can be computed once.
    """
    angles = np.arange(0, 360, 360.0 / (2 * step * np.pi)) * np.pi / 180
    offsets = np.unique(np.floor(np.stack([step * np.sin(angles), step * np.cos(angles)], axis=1)).astype(int), axis=0)
    return offsets, np.arctan2(offsets[:, 0], offsets[:, 1])


def _next_paddle(pivot: Sequence[int], orientation: float, mask: np.ndarray, params: Params):
    """``get_coords_cmf``: candidate heads on the circle of radius length+margin and their CMF."""
    offsets, angles = _circle(params.paddle_length + params.paddle_margin)
    coords = offsets + np.asarray(pivot)
    inside = (coords[:, 0] >= 0) & (coords[:, 0] < mask.shape[0]) & (coords[:, 1] >= 0) & (coords[:, 1] < mask.shape[1])
    if not inside.any():
        return None
    coords, orientations = coords[inside], angles[inside]
    delta = np.minimum(np.abs(orientations - orientation), 2 * np.pi - np.abs(orientations - orientation))
    weights = np.maximum(np.cos(np.minimum(delta * params.continuity, 0.5 * np.pi)), 0) ** 2
    # the occupancy mask dilated by a disk of radius margin, read at the candidates only
    pmf = (1 - _dilated_at(mask, disk(params.paddle_margin), coords)) * weights
    total = pmf.sum()
    if total < 1e-4:
        return None
    return coords, orientations, np.cumsum(pmf / total)


def _padding_mask(p: Params) -> np.ndarray:
    """The occupancy mask before any snake: ones on a ``padding``-wide border."""
    mask = np.zeros((p.window, p.window), np.float32)
    mask[: p.padding, :] = mask[-p.padding :, :] = 1
    mask[:, : p.padding] = mask[:, -p.padding :] = 1
    return mask


@functools.lru_cache(maxsize=2048)
def _first_seed_spots(p: Params, orientation: float) -> tuple[np.ndarray, np.ndarray]:
    """Where the first target paddle may start at ``orientation``: at least ``2 × seed_distance`` from the border,
    with room for the paddle (the border dilated by the paddle's mask). It depends on nothing else, so it is cached."""
    reach, far, w = p.paddle_length + p.paddle_margin, 2 * p.seed_distance, p.window
    _, struct = draw_paddle((2 * reach + 1, 2 * reach + 1), [reach + 1, reach + 1], orientation, p)
    lined = _padding_mask(p)
    lined[:far, :] = lined[w - far :, :] = 1
    lined[:, :far] = lined[:, w - far :] = 1
    return _free(_dilate(lined, struct))


# --- snakes ---------------------------------------------------------------------------------------


class _Canvas:
    """One image being drawn: the pixels, the occupancy mask, the generator's parameters and stream."""

    def __init__(self, params: Params, rng: np.random.Generator) -> None:
        self.p = params
        self.rng = rng
        self.size = (params.window, params.window)

    def extend(self, pivot, orientation, segment_mask, image, mask, contrast):
        """``extend_snake``: the next paddle, or None when it cannot be placed."""
        p = self.p
        new_pivot = translate(pivot, orientation, p.paddle_length + 2 * p.paddle_margin)
        found = _next_paddle(new_pivot, orientation, mask, p)
        if found is None:
            return None
        coords, orientations, cmf = found
        for _ in range(p.max_paddle_retrial + 1):
            index = int(np.argmax(cmf - self.rng.random() > 0))
            new_orientation = float(orientations[index])
            head = coords[index]
            line, new_mask = draw_paddle(self.size, head, flip(new_orientation), p, contrast=contrast)
            if np.max(mask + new_mask) < 1.8:
                return np.maximum(image, line), np.maximum(mask, segment_mask), new_mask, new_pivot, new_orientation, head
        return None

    def seed(self, image, mask, contrast):
        """``seed_snake``: a first paddle at a free spot, or None (``stop_with_availability=0.01``)."""
        p = self.p
        reach = p.paddle_length + p.paddle_margin
        shape, head = (2 * reach + 1, 2 * reach + 1), [reach + 1, reach + 1]
        for _ in range(p.max_paddle_retrial + 1):
            orientation = self.rng.integers(-180, 180) * np.pi / 180
            reverse = orientation + np.pi if orientation + np.pi < np.pi else orientation - np.pi
            _, struct = draw_paddle(shape, head, orientation, p)
            lined = mask.copy()
            lined[0, :] = lined[-1, :] = 1
            lined[:, 0] = lined[:, -1] = 1
            raw_free = _free(mask)[0].shape[0]
            free = _free(_dilate(lined, struct))
            if raw_free / mask.size < 0.01 or free[0].shape[0] == 0:
                return None
            pick = self.rng.integers(0, free[0].shape[0])
            tail = [int(free[0][pick]), int(free[1][pick])]
            head_at = translate(tail, orientation, p.paddle_length)
            pivot = translate(head_at, reverse, p.paddle_length + p.paddle_margin)
            if _in_window(head_at, self.size) and _in_window(pivot, self.size):
                line, new_mask = draw_paddle(self.size, tail, orientation, p, contrast=contrast)
                return np.maximum(image, line), mask, new_mask, pivot, orientation
        return None

    def snake(self, image, mask, segments, contrast):
        """``make_snake``: a whole distractor snake, or None."""
        seeded = self.seed(image, mask, contrast)
        if seeded is None:
            return None
        current_image, current_mask, segment_mask, pivot, orientation = seeded
        for _ in range(segments - 1):
            step = self.extend(pivot, orientation, segment_mask, current_image, current_mask, contrast)
            if step is None:
                return None
            current_image, current_mask, segment_mask, pivot, orientation, _ = step
        return current_image, np.maximum(current_mask, segment_mask)

    def many_snakes(self, image, mask, count, segments, retrials):
        """``make_many_snakes(allow_incomplete=True)``: up to ``count`` snakes, each retried ``retrials`` times."""
        for _ in range(count):
            for _ in range(retrials + 1):
                made = self.snake(image, mask, segments, self.p.snake_contrast)
                if made is not None:
                    image, mask = made
                    break
        return image, mask

    def two_seeds(self, contrasts):
        """``initialize_two_seeds``: the first paddles of both target snakes, or None."""
        p, size = self.p, self.size
        mask = _padding_mask(p)
        tails, pivots, orientations, lines, masks = [], [], [], [], []
        for n in range(2):
            for _ in range(p.max_paddle_retrial + 1):
                orientation = self.rng.integers(-180, 180) * np.pi / 180
                reverse = orientation + np.pi if orientation + np.pi < np.pi else orientation - np.pi
                if n == 0:
                    free = _first_seed_spots(p, orientation)
                    if free[0].shape[0] == 0:
                        return None
                    pick = self.rng.integers(0, free[0].shape[0])
                    tail = [int(free[0][pick]), int(free[1][pick])]
                else:
                    angle = self.rng.integers(0, 360) * np.pi / 180
                    tail = [int(np.round(tails[0][0] + p.seed_distance * np.sin(angle))),
                            int(np.round(tails[0][1] + p.seed_distance * np.cos(angle)))]
                head_at = translate(tail, orientation, p.paddle_length)
                pivot = translate(head_at, reverse, p.paddle_length + p.paddle_margin)
                if _in_window(head_at, size) and _in_window(pivot, size):
                    break
            else:
                return None
            line, new_mask = draw_paddle(size, tail, orientation, p, contrast=p.paddle_contrast * contrasts[n])
            tails.append(tail)
            pivots.append(pivot)
            orientations.append(orientation)
            lines.append(line)
            masks.append(new_mask)
        return lines, mask, masks, pivots, orientations, tails

    def two_snakes(self):
        """``two_snakes``: both target snakes grown paddle by paddle in turn, or None."""
        p = self.p
        contrasts = [p.snake_contrast, p.snake_contrast]  # the shuffled two-copy contrast list
        seeded = self.two_seeds(contrasts)
        if seeded is None:
            return None
        images, mask, segment_masks, pivots, orientations, origins = seeded
        terminals = [[0, 0], [0, 0]]
        for _ in range(p.contour_length - 1):
            for n in range(2):
                step = self.extend(pivots[n], orientations[n], segment_masks[n], images[n], mask,
                                   p.paddle_contrast * contrasts[n])
                if step is None:
                    return None
                images[n], mask, segment_masks[n], pivots[n], orientations[n], terminals[n] = step
        return images, np.maximum(mask, segment_masks[-1]), origins, terminals

    def marker(self, coord) -> np.ndarray:
        """``draw_circle``: a disk of ``marker_radius`` drawn at ``antialias_scale`` ×, Lanczos-reduced; uint8."""
        p, aa, w = self.p, self.p.antialias_scale, self.p.window
        y, x = np.ogrid[-coord[0] * aa : (w - coord[0]) * aa, -coord[1] * aa : (w - coord[1]) * aa]
        return _imresize((x**2 + y**2 <= (p.marker_radius * aa) ** 2).astype(np.float64), w)


def draw_sample(params: Params, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """One image (uint8, window × window) and its label: 1 when the markers are on one snake."""
    canvas = _Canvas(params, rng)
    label = int(rng.integers(0, 2))
    while (snakes := canvas.two_snakes()) is None:
        pass
    images, mask, origins, terminals = snakes
    image = np.maximum(images[0], images[1])
    image, mask = canvas.many_snakes(image, mask, params.num_distractor_snakes, params.distractor_length,
                                     params.max_distractor_contour_retrial)
    origin = int(rng.integers(0, 2))
    terminal = origin if label == 1 else 1 - origin
    markers = np.maximum(canvas.marker(origins[origin]), canvas.marker(terminals[terminal])).astype(np.float32) / 255.0
    return _bytescale(np.maximum(image, markers).astype(np.float64)), label


def generate(count: int, params: Params, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` images (uint8, N × window × window) and labels (int64), reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    images = np.zeros((count, params.window, params.window), np.uint8)
    labels = np.zeros(count, np.int64)
    for n in range(count):
        images[n], labels[n] = draw_sample(params, rng)
    return images, labels


# --- LRA's on-disk layout -------------------------------------------------------------------------


def metadata_line(batch: int, index: int, label: int, params: Params) -> str:
    """One metadata line as ``snakes2.accumulate_meta`` writes it (columns 0/1 the image path, 3 the label)."""
    fields = [f"imgs/{batch}", f"sample_{index}.png", index, label, params.continuity, params.contour_length,
              params.distractor_length, params.paddle_length, params.paddle_thickness, params.paddle_margin, 1]
    return " ".join(str(f) for f in fields)


def write_level(root: Path, level: str, images: np.ndarray, labels: np.ndarray, params: Params, per_batch: int) -> None:
    """Write ``images`` under ``root/level`` in LRA's layout, ``per_batch`` images a metadata file."""
    for start in range(0, len(images), per_batch):
        batch = start // per_batch
        folder = root / level / "imgs" / str(batch)
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for index in range(start, min(start + per_batch, len(images))):
            Image.fromarray(images[index]).save(folder / f"sample_{index - start}.png")
            lines.append(metadata_line(batch, index - start, int(labels[index]), params))
        (root / level / "metadata").mkdir(parents=True, exist_ok=True)
        (root / level / "metadata" / f"{batch}.npy").write_text("\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    """Write Pathfinder-32 levels in LRA's layout under ``--output-dir``."""
    parser = argparse.ArgumentParser(prog="python -m attnbench_plugins.tasks.lra_pathfinder",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--levels", nargs="+", default=list(LEVELS), choices=list(LEVELS))
    parser.add_argument("--num-images", type=int, default=1000, help="images per level")
    parser.add_argument("--per-batch", type=int, default=1000, help="images per imgs/<batch> folder and metadata file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for offset, level in enumerate(args.levels):
        params = Params.lra32(level)
        images, labels = generate(args.num_images, params, seed=args.seed + offset)
        write_level(args.output_dir, level, images, labels, params, args.per_batch)
