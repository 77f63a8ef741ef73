"""A CT slice simulator: random anatomical phantoms, with or without a small lesion, scanned
and reconstructed by filtered back projection, so the images carry real CT artefacts.

Each slice is drawn from its own seed ``(seed, split, index)``, so a split's images do not
depend on the other splits' sizes. One slice:

1. **Phantom** (attenuation map, Shepp–Logan style: a sum of uniform ellipses in the unit
   square, rasterised at twice the image size and area-averaged): a body outline of
   random shape and orientation with a thin denser wall, 2–3 organs of random size,
   position, orientation and density (±5–18 % of soft tissue), and a bright vertebra at
   the back.
2. **Lesion** (label 1, half of the slices): a near-round mass (radius 2.5–4.5 pixels at
   32×32, i.e. 8–14 % of the field of view) inside an organ (70 %) or elsewhere in the
   body, hypo- or hyper-dense with a random contrast of 20–40 % of soft tissue.
3. **Scan**: parallel-beam line integrals over ``angles`` views in 180° by
   ``skimage.transform.radon``, scaled to a peak attenuation of about 4, with Poisson
   photon noise at a random dose (``photons`` per detector bin, varied ±2× per slice)
   plus Gaussian electronic noise.
4. **Reconstruction**: filtered back projection (``skimage.transform.iradon``, ramp
   filter). Few views and photon noise leave streaks and grain, as in low-dose CT.
5. **Windowing** to uint8 (a fixed soft-tissue window), as MedMNIST stores slices.

The result is held in MedMNIST's ``.npz`` layout: ``{split}_images`` uint8 (N, H, W) and
``{split}_labels`` uint8 (N, 1), label 1 = lesion present. It is simulated data, not
patient data.
"""

from __future__ import annotations

import functools
import math

import numpy as np

SPLITS: tuple[str, ...] = ("train", "val", "test")
#: Display window (attenuation units of the phantom) mapped to 0..255.
WINDOW = (-0.25, 1.65)
#: Line integrals are scaled so the densest path through a slice is about this many mean free paths.
PEAK_ATTENUATION = 4.0


def _ellipse(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, a: float, b: float, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    u = (xx - cx) * c + (yy - cy) * s
    v = -(xx - cx) * s + (yy - cy) * c
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


#: Default lesion radius range in pixels and contrast range (fraction of soft tissue).
LESION_RADIUS = (2.5, 4.5)
LESION_CONTRAST = (0.2, 0.4)


def phantom(rng: np.random.Generator, size: int, lesion: bool, *, radius: tuple[float, float] = LESION_RADIUS,
            contrast: tuple[float, float] = LESION_CONTRAST) -> np.ndarray:
    """One attenuation map (size, size), float64, zero outside the scanner's circle.

    A lesion has a radius drawn from ``radius`` (pixels) and a contrast from ``contrast``.
    """
    fine = 2 * size
    axis = (np.arange(fine) + 0.5) / fine * 2 - 1
    xx, yy = np.meshgrid(axis, axis)
    image = np.zeros((fine, fine))
    # Body: an ellipse of random shape, a denser wall just inside its outline.
    bx, by = rng.uniform(-0.04, 0.04, 2)
    ba, bb = rng.uniform(0.72, 0.88), rng.uniform(0.52, 0.72)
    tilt = rng.uniform(-0.25, 0.25)
    image[_ellipse(xx, yy, bx, by, ba, bb, tilt)] += 1.15
    image[_ellipse(xx, yy, bx, by, ba * 0.9, bb * 0.88, tilt)] -= 0.15
    c, s = math.cos(tilt), math.sin(tilt)

    def inside(r: float) -> tuple[float, float]:
        """A random point within ``r`` of the body's semi-axes, in image coordinates."""
        t, rho = rng.uniform(0, 2 * math.pi), r * math.sqrt(rng.uniform(0, 1))
        u, v = rho * ba * math.cos(t), rho * bb * math.sin(t)
        return bx + u * c - v * s, by + u * s + v * c

    organs = []
    for _ in range(rng.integers(2, 4)):
        ox, oy = inside(0.5)
        oa, ob = rng.uniform(0.2, 0.38), rng.uniform(0.16, 0.3)
        organs.append((ox, oy, oa, ob))
        image[_ellipse(xx, yy, ox, oy, oa, ob, rng.uniform(0, math.pi))] += rng.choice([-1, 1]) * rng.uniform(0.05, 0.18)
    # Vertebra: small and bright, at the back of the body.
    vx, vy = bx - 0.62 * bb * s, by + 0.62 * bb * c
    image[_ellipse(xx, yy, vx, vy, rng.uniform(0.13, 0.17), rng.uniform(0.1, 0.13), tilt)] += 0.9
    if lesion:
        if rng.uniform() < 0.7:  # most lesions sit in an organ
            ox, oy, oa, ob = organs[rng.integers(len(organs))]
            t, rho = rng.uniform(0, 2 * math.pi), 0.6 * math.sqrt(rng.uniform(0, 1))
            lx, ly = ox + rho * oa * math.cos(t), oy + rho * ob * math.sin(t)
        else:
            lx, ly = inside(0.6)
        r = rng.uniform(*radius) * 2 / size
        ratio = rng.uniform(0.75, 1.0)
        delta = rng.choice([-1, 1]) * rng.uniform(*contrast)
        image[_ellipse(xx, yy, lx, ly, r, r * ratio, rng.uniform(0, math.pi))] += delta
    image = image.reshape(size, 2, size, 2).mean(axis=(1, 3))
    # The scanner's field of view, as skimage's radon(circle=True) defines it.
    rows, cols = np.mgrid[:size, :size]
    image[(rows - size // 2) ** 2 + (cols - size // 2) ** 2 > (size // 2) ** 2] = 0.0
    return image


def scan(rng: np.random.Generator, image: np.ndarray, angles: int, photons: float) -> np.ndarray:
    """Low-dose CT of ``image``: radon transform, Poisson and electronic noise, FBP reconstruction."""
    from skimage.transform import iradon, radon

    theta = np.linspace(0.0, 180.0, angles, endpoint=False)
    sinogram = radon(image, theta=theta, circle=True)
    scale = PEAK_ATTENUATION / (1.15 * image.shape[0])  # attenuation units per pixel path → mean free paths
    dose = photons * 2 ** rng.uniform(-1, 1)
    counts = rng.poisson(dose * np.exp(-sinogram * scale)) + rng.normal(0.0, 2.0, sinogram.shape)
    noisy = -np.log(np.clip(counts, 1.0, None) / dose) / scale
    return iradon(noisy, theta=theta, filter_name="ramp", circle=True, output_size=image.shape[0])


def window(image: np.ndarray) -> np.ndarray:
    """Attenuation to uint8 through the soft-tissue :data:`WINDOW`."""
    lo, hi = WINDOW
    return np.clip(np.round((image - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)


def slice_(seed: int, split: int, index: int, size: int, angles: int, photons: float, *,
           radius: tuple[float, float] = LESION_RADIUS,
           contrast: tuple[float, float] = LESION_CONTRAST) -> tuple[np.ndarray, int]:
    """Slice ``index`` of split number ``split``: (uint8 image (size, size), label)."""
    rng = np.random.default_rng([seed, split, index])
    label = int(rng.uniform() < 0.5)
    image = phantom(rng, size, bool(label), radius=radius, contrast=contrast)
    return window(scan(rng, image, angles, photons)), label


@functools.lru_cache(maxsize=4)
def simulate(seed: int, sizes: tuple[int, int, int], size: int = 32, angles: int = 40, photons: float = 1e4,
             radius: tuple[float, float] = LESION_RADIUS,
             contrast: tuple[float, float] = LESION_CONTRAST) -> dict[str, np.ndarray]:
    """A simulated data set in MedMNIST's ``.npz`` layout: ``{split}_images``/``{split}_labels``.

    ``sizes`` are the train, val and test counts; ``radius`` (pixels) and ``contrast``
    bound the lesions. Cached in memory (the arrays are read-only).
    """
    arrays: dict[str, np.ndarray] = {}
    for number, (split, count) in enumerate(zip(SPLITS, sizes, strict=True)):
        images = np.zeros((count, size, size), dtype=np.uint8)
        labels = np.zeros((count, 1), dtype=np.uint8)
        for i in range(count):
            images[i], labels[i, 0] = slice_(seed, number, i, size, angles, photons, radius=radius, contrast=contrast)
        images.setflags(write=False)
        labels.setflags(write=False)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    return arrays
