"""Natural-image statistics with real labels and no download: a dead-leaves generator (numpy only)
and crops of the colour photographs that ship inside scikit-image (optional extra `photos`).

Both give uint8 RGB images [N, S, S, 3], S = image_size (32 when 0), like every image source, so the
A.3 scaling x / 127.5 - 1 applies unchanged.
"""
from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field

import numpy as np

from rltx.config import NATURAL_LABELS as LABEL_DESIGNS
from rltx.config import NATURAL_SIZE
from rltx.data.base import Split, take
from rltx.errors import UsageError


# ------------------------------------------------------------------------------ dead leaves
# The occlusion ("dead leaves") model of natural images (Matheron 1968; Lee, Mumford & Huang 2001):
# opaque shapes with radius density ~ r^-3 between R_MIN and R_MAX fall one after the other, later ones
# hide earlier ones. The r^-3 law makes the image scale invariant, with sharp edges and a power-law
# spectrum. The constants below were chosen so that the 3x3x3 patch covariance spectrum, normalised by
# its trace, lies within a factor of 2 of crops of scikit-image's photographs (tests/test_natural_data.py,
# bench/natural_spectrum.py).
R_MIN, R_MAX = 6.0, 64.0       # pixels
BLUR_SIGMA = 0.6               # pixels: Gaussian point-spread function of the "camera"
NOISE_SIGMA = 1.0              # grey levels: sensor noise added before the uint8 rounding
# Per-image illumination factor, uniform; above 1 a leaf's highlights clip at 255, as in an overexposed
# photograph. The range sets the first moments to the photographs': pixel mean -0.21 in A.3's units
# (photographs -0.18 to -0.23, CIFAR10 about -0.05), sd 0.57 (0.50-0.55), sd of an image's mean 0.41-0.45
# (0.40-0.45). Under (0.1, 1.0) the mean was -0.48, and that mean alone turned Fig. 5's covariance curve
# negative (docs/calibration.md).
EXPOSURE_RANGE = (0.2, 1.5)
LUMA_RANGE = (0.05, 0.9)       # a leaf's grey level (before the colour cast), uniform
# Leaf colours in an opponent basis (Ruderman et al. 1998): grey (1,1,1), warm-cool (red-blue) and
# magenta-green. In photographs the warm-cool axis carries most of the colour variance, magenta-green
# little (measured on the skimage photographs: pixel variances 0.18, 0.03, 0.002 in [0, 1] units).
WARM, MAGENTA = np.array([1.0, 0.0, -1.0]) / np.sqrt(2), np.array([1.0, -2.0, 1.0]) / np.sqrt(6)
WARM_CAST = 0.26               # the class casts lie evenly on [-WARM_CAST, WARM_CAST] (warm axis)
WARM_SPREAD = 0.156            # sd of a leaf's warm-cool coordinate around its class cast
MAGENTA_SPREAD = 0.08          # sd of a leaf's magenta-green coordinate
COVERED = 1e-2                 # leaves per image: the expected uncovered fraction (the background leaf)
# Three label designs (recipe key natural_labels):
# - shape_colour: label c = the shape of all leaves of the image (discs for even c, squares for odd c) and
#   their colour cast (index c // 2 of ceil(C / 2) casts, cool to warm). Its labels are noisy: a small CNN
#   reaches 0.27 test accuracy out of 10 classes after 1000 steps and 0.24 after 100
#   (docs/calibration.md), so nothing that speeds training up early can show on it.
# - orientation: every leaf of the image is a rectangle ORIENTED_ASPECT times longer than wide, of the
#   area of a disc of the drawn radius, with its long axis at c * 180 / C degrees from the image rows;
#   the colour cast is drawn at random (it carries no label). Telling orientations apart needs oriented
#   edge filters in the first layers, as real objects do; a small CNN reaches 0.62 test accuracy after
#   1000 steps (0.38 after 300, 0.13 after 100), still rising.
# - orientation_colour: the leaves of orientation, with the colour cast tied to the label (index
#   c mod ceil(C / 2)): for even C, classes c and c + C/2 share a cast and lie 90 degrees apart.
#   Natural classes differ in colour statistics as well as in shape; the colour is learnt within the
#   first iterations (as under shape_colour) but tells a class only up to its pair; the orientation
#   has to be learnt on top. E.3's Simple CNN reaches 0.26 test accuracy of 10 classes after 100
#   iterations at E.3's rate (E.3's CIFAR10: 0.31), where under orientation it is at chance (0.11), so a
#   slower initialisation (Tables 5-6) has room to show. A class's images are drawn as under
#   orientation, and the casts are uniform over the classes, so the image statistics are the same.
ORIENTED_ASPECT = 3.0
ORIENTED_BLUR_SIGMA = 0.7      # straight edges carry more fine detail than discs: with 0.6 the 14th patch
                               # eigenvalue was 2.4x the photographs' (at most 1.8x with 0.7, at 12, 16 and 32 pixels)
DISC, SQUARE, RECTANGLE = 0, 1, 2
# How far a leaf of radius r reaches from its centre, over r: an area-matched rectangle's half diagonal.
REACH = {DISC: 1.0, SQUARE: 1.0, RECTANGLE: float(np.sqrt(np.pi / 4 * (ORIENTED_ASPECT + 1 / ORIENTED_ASPECT)))}


def _radii(u: np.ndarray, size: int) -> np.ndarray:
    """Radii of leaves that meet a size x size image: density ~ r^-3 (size + 2r)^2 on [R_MIN, R_MAX]
    (the r^-3 law times the area of centres whose leaf meets the image), by inverting the CDF."""
    grid = np.geomspace(R_MIN, R_MAX, 4096)
    cdf = (size**2 / 2 * (R_MIN**-2 - grid**-2) + 4 * size * (1 / R_MIN - 1 / grid)
           + 4 * np.log(grid / R_MIN))
    return np.interp(u * cdf[-1], cdf, grid)


def _leaves_per_image(size: int) -> int:
    """Enough leaves that a pixel stays uncovered with probability < COVERED (Poisson coverage)."""
    r = _radii(np.linspace(0, 1, 4097)[1:-1], size)
    mean_area = np.mean(np.pi * r**2 / (size + 2 * r) ** 2)  # chance that one leaf covers a given pixel
    return int(np.ceil(np.log(1 / COVERED) / mean_area))


def _topmost_leaf(rng: np.random.Generator, shape: np.ndarray, angle: np.ndarray, size: int,
                  leaves: int) -> np.ndarray:
    """[N, size, size] index (1..leaves) of the last leaf covering each pixel centre, 0 where none.
    shape: [N] DISC, SQUARE or RECTANGLE, the shape of every leaf of the image; angle: [N] radians,
    a RECTANGLE's long axis. Vectorised over all images: leaves are rendered in radius bands, each band
    in boxes of one side."""
    n = len(shape)
    r = _radii(rng.uniform(size=n * leaves), size)
    cx = rng.uniform(size=r.size) * (size + 2 * r) - r
    cy = rng.uniform(size=r.size) * (size + 2 * r) - r
    image, order = np.repeat(np.arange(n, dtype=np.int32), leaves), np.tile(np.arange(1, leaves + 1, dtype=np.int32), n)
    leaf_shape, leaf_angle = np.repeat(shape, leaves), np.repeat(angle, leaves)
    top = np.zeros(n * size * size, np.int32)
    low, high = 0.0, int(np.ceil(R_MIN))
    while low < R_MAX:
        for kind in (DISC, SQUARE, RECTANGLE):
            reach = int(np.ceil(high * REACH[kind]))
            box = min(2 * reach + 2, size)
            band = np.flatnonzero((r > low) & (r <= high) & (leaf_shape == kind))
            for part in np.array_split(band, max(1, band.size * box * box // 1_000_000)):
                _paint(top, part, (cx, cy, r, leaf_angle), image, order, kind, size, box, reach)
        low, high = high, int(np.ceil(high * 1.5))
    return top.reshape(n, size, size)


def _paint(top, part, leaf, image, order, kind: int, size: int, box: int, reach: int) -> None:
    """top[pixel] = max(top[pixel], leaf order) over the pixels covered by the leaves `part`, each
    tested in the box x box window around its centre (moved inside the image). leaf: (cx, cy, r, angle)."""
    cx, cy, r, angle = leaf
    offsets = np.arange(box, dtype=np.int32)
    x0 = np.clip(np.floor(cx[part]).astype(np.int32) - reach, 0, size - box)
    y0 = np.clip(np.floor(cy[part]).astype(np.int32) - reach, 0, size - box)
    px, py = x0[:, None] + offsets, y0[:, None] + offsets  # [leaves, box]
    dx = (px + 0.5 - cx[part, None]).astype(np.float32)[:, None, :]  # [leaves, 1, columns]
    dy = (py + 0.5 - cy[part, None]).astype(np.float32)[:, :, None]  # [leaves, rows, 1]
    radius = r[part, None, None].astype(np.float32)
    if kind == SQUARE:
        inside = (np.abs(dy) <= radius) & (np.abs(dx) <= radius)
    elif kind == DISC:
        inside = dy * dy + dx * dx <= radius * radius
    else:
        cos, sin = (f(angle[part, None, None]).astype(np.float32) for f in (np.cos, np.sin))
        half_length = radius * np.float32(np.sqrt(np.pi * ORIENTED_ASPECT / 4))  # area pi r^2
        inside = ((np.abs(dx * cos + dy * sin) <= half_length)
                  & (np.abs(dy * cos - dx * sin) * ORIENTED_ASPECT <= half_length))
    leaf_index, row, col = np.nonzero(inside)
    flat = (image[part[leaf_index]] * size + py[leaf_index, row]) * size + px[leaf_index, col]
    np.maximum.at(top, flat, order[part[leaf_index]])


def _leaf_colours(rng: np.random.Generator, cast: np.ndarray, num_casts: int, leaves: int) -> np.ndarray:
    """[N, leaves + 1, 3] RGB in [0, 1]; entry 0 is the background leaf."""
    n = len(cast)
    grey = rng.uniform(*LUMA_RANGE, (n, leaves + 1))
    centre = np.linspace(-WARM_CAST, WARM_CAST, num_casts)[cast] if num_casts > 1 else np.zeros(n)
    warm = centre[:, None] + WARM_SPREAD * rng.standard_normal((n, leaves + 1))
    magenta = MAGENTA_SPREAD * rng.standard_normal((n, leaves + 1))
    return np.clip(grey[..., None] + warm[..., None] * WARM + magenta[..., None] * MAGENTA, 0.0, 1.0)


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of [N, H, W, C] (taps to 3 sigma, edges replicated)."""
    half = int(np.ceil(3 * sigma))
    taps = np.exp(-np.arange(-half, half + 1) ** 2 / (2 * sigma**2)).astype(np.float32)
    taps /= taps.sum()
    h, w = x.shape[1:3]
    padded = np.pad(x, ((0, 0), (half, half), (0, 0), (0, 0)), mode="edge")
    x = sum(t * padded[:, i:i + h] for i, t in enumerate(taps))
    padded = np.pad(x, ((0, 0), (0, 0), (half, half), (0, 0)), mode="edge")
    return sum(t * padded[:, :, i:i + w] for i, t in enumerate(taps))


def dead_leaves_images(n: int, labels: np.ndarray, num_classes: int, size: int,
                       rng: np.random.Generator, design: str = "shape_colour") -> np.ndarray:
    """n dead-leaves images [n, size, size, 3] uint8 of the given classes under the label design (above)."""
    leaves, casts = _leaves_per_image(size), (num_classes + 1) // 2
    if design in ("orientation", "orientation_colour"):
        shape, angle, blur = np.full(n, RECTANGLE), labels * np.pi / num_classes, ORIENTED_BLUR_SIGMA
        cast = labels % casts if design == "orientation_colour" else rng.integers(0, casts, n)
    else:
        shape, angle, cast, blur = np.where(labels % 2 == 1, SQUARE, DISC), np.zeros(n), labels // 2, BLUR_SIGMA
    top = _topmost_leaf(rng, shape, angle, size, leaves)
    colours = _leaf_colours(rng, cast, casts, leaves).astype(np.float32)
    x = np.take_along_axis(colours, top.reshape(n, -1, 1), axis=1).reshape(n, size, size, 3)
    exposure = rng.uniform(*EXPOSURE_RANGE, (n, 1, 1, 1)).astype(np.float32)
    x = 255 * exposure * _blur(x, blur) + NOISE_SIGMA * rng.standard_normal(x.shape, np.float32)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


# -------------------------------------------------------------------------------- photographs
# The colour photographs inside scikit-image's wheel (skimage.data, read from disk, never fetched);
# label = the photograph a crop came from, in this order.
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "retina",
          "hubble_deep_field", "motorcycle")
TEST_FRACTION = 0.25  # the right-most quarter of each photograph's columns holds the test crops


def load_photos() -> list[np.ndarray]:
    """The PHOTOS as uint8 RGB arrays, or a UsageError naming the extra to install."""
    try:
        from skimage import data
    except ImportError:
        raise UsageError("dataset photos needs scikit-image; install it with pip install 'rltx[photos]'") from None
    loaders = {name: getattr(data, name) for name in PHOTOS if name != "motorcycle"}
    loaders["motorcycle"] = lambda: data.stereo_motorcycle()[0]  # the left view
    return [np.ascontiguousarray(loaders[name]()[..., :3], dtype=np.uint8) for name in PHOTOS]


def photo_crops(photos: list[np.ndarray], labels: np.ndarray, size: int, test: bool,
                rng: np.random.Generator) -> np.ndarray:
    """One size x size crop per label, at a uniform position inside the photograph's train region
    (columns left of the last TEST_FRACTION) or test region (those columns): never overlapping."""
    out = np.empty((len(labels), size, size, 3), np.uint8)
    u, v = rng.uniform(size=len(labels)), rng.uniform(size=len(labels))
    for label, photo in enumerate(photos):
        rows = np.flatnonzero(labels == label)
        height, width = photo.shape[:2]
        split = width - max(size, int(round(width * TEST_FRACTION)))
        first, last = (split, width - size) if test else (0, split - size)
        top = (u[rows] * (height - size + 1)).astype(np.int64)
        left = first + (v[rows] * (last - first + 1)).astype(np.int64)
        for row, y, x in zip(rows, top, left):
            out[row] = photo[y:y + size, x:x + size]
    return out


# ------------------------------------------------------------------------------------ source
@dataclass(frozen=True, eq=False)
class NaturalSource:
    """`dead_leaves` or `photos`, generated once per split from `seed` (numpy PCG64, independent
    streams for the training and the test split); labels uniform over the classes.

    dead_leaves: num_classes classes under the label design `labels` (LABEL_DESIGNS, described above).
    photos: one class per photograph of PHOTOS (num_classes is ignored); train and test crops come
    from disjoint column ranges of each photograph."""

    name: str
    _: KW_ONLY
    num_train: int  # split sizes: the recipe's natural_num_train / natural_num_test (defaults in rltx.config)
    num_test: int
    seed: int = 0
    image_size: int = NATURAL_SIZE
    num_classes: int = 10
    labels: str = "shape_colour"
    _splits: dict = field(init=False, repr=False)

    def __post_init__(self):
        if self.name not in ("dead_leaves", "photos"):
            raise ValueError(f"unknown natural source {self.name}")
        photos = load_photos() if self.name == "photos" else None
        if photos is not None:
            object.__setattr__(self, "num_classes", len(photos))
            smallest = min(min(p.shape[:2]) for p in photos)
            if self.image_size > smallest * TEST_FRACTION:
                raise UsageError(f"image_size {self.image_size} is too large for the photos' test regions; "
                                 f"use at most {int(smallest * TEST_FRACTION)}")
        elif self.num_classes < 2:
            raise UsageError("dead_leaves needs natural_num_classes >= 2")
        elif self.labels not in LABEL_DESIGNS:
            raise UsageError(f"natural_labels {self.labels!r} is not one of {', '.join(LABEL_DESIGNS)}")
        splits = {"train": self._make(self.num_train, 1, photos), "test": self._make(self.num_test, 2, photos)}
        object.__setattr__(self, "_splits", splits)

    def _make(self, n: int, stream: int, photos) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, stream])
        y = rng.integers(0, self.num_classes, n)
        if photos is None:
            x = dead_leaves_images(n, y, self.num_classes, self.image_size, rng, self.labels)
        else:
            x = photo_crops(photos, y, self.image_size, stream == 2, rng)
        x.flags.writeable = False
        y.flags.writeable = False
        return x, y

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.image_size, self.image_size, 3)

    @property
    def has_labels(self) -> bool:
        return True

    def _take(self, split: str, indices) -> Split:
        x, y = self._splits[split]
        return take(x, y, indices, f"{self.name} {split}", self.input_shape)

    def train(self, indices) -> Split:
        return self._take("train", indices)

    def test(self, indices) -> Split:
        return self._take("test", indices)
