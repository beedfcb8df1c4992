"""Synthetic centred Gaussian inputs: the idealised setting of Prop. 1 / App. C and App. E.1."""
from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field

import numpy as np

from rltx.data.base import Split, take
from rltx.errors import UsageError
from rltx.spectrum import gaussian_input_shape, parse_spectrum


def random_orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    """Haar-distributed orthogonal d x d matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


@dataclass(frozen=True, eq=False)
class GaussianSource:
    """Centred Gaussian data, generated once per split from `seed` (numpy PCG64; independent streams
    for the rotation, the training split and the test split). Inputs are NOT scaled: they are
    N(0, Sigma) by construction, Sigma = O diag(spectrum) O^T (O = identity unless rotate).

    patch_size == 0: vectors x ~ N(0, Sigma) in R^d, d = len(spectrum) (App. E.1).
    patch_size == k > 0: images [S, S, C] whose non-overlapping k x k patches are i.i.d. N(0, Sigma)
    (Prop. 1 / App. C), C = d / k^2. Patch ordering: the d-vector of the patch at patch-row a,
    patch-col b is image[a*k:(a+1)*k, b*k:(b+1)*k, :].reshape(-1), i.e. (row, col, channel)
    order with channel fastest, the same order as `patch.reshape(-1)` of a [k, k, C] patch (and
    of a Conv2D kernel [k, k, C, filters].reshape(d, filters)).

    num_classes == 0: no real labels, y is all zeros. num_classes = K >= 2: a labelled task for
    offline transfer experiments. K class means m_1..m_K are images whose patches are drawn from
    N(0, O diag(L^2 / mean(L)) O^T) (L: the spectrum) and scaled by class_separation s; an example
    of class y (uniform) is m_y plus an N(0, Sigma)-patch draw. Over the draw of the means the
    patches keep Sigma's eigenvectors (those Prop. 1 aligns to), and along eigenvector i the class
    signal-to-noise ratio is s^2 L_i / mean(L): the class information is concentrated where the data
    varies most, as in natural images, whose class information sits in the low frequencies."""

    spectrum: np.ndarray
    _: KW_ONLY
    num_train: int  # split sizes: the recipe's gaussian_num_train / gaussian_num_test (defaults in rltx.config)
    num_test: int
    seed: int = 0
    patch_size: int = 0
    image_size: int = 0
    rotate: bool = False
    name: str = "gaussian"
    num_classes: int = 0
    class_separation: float = 1.0
    rotation: np.ndarray = field(init=False, repr=False)
    class_means: np.ndarray | None = field(init=False, repr=False)  # [K, *input_shape], or None
    _splits: dict = field(init=False, repr=False)

    def __post_init__(self):
        spectrum = parse_spectrum(self.spectrum)
        spectrum.flags.writeable = False
        object.__setattr__(self, "spectrum", spectrum)
        d = spectrum.size
        gaussian_input_shape(d, self.patch_size, self.image_size)  # checks the geometry
        rotation = random_orthogonal(d, np.random.default_rng([self.seed, 0])) if self.rotate else np.eye(d)
        rotation.flags.writeable = False
        object.__setattr__(self, "rotation", rotation)
        if self.num_classes == 1:
            raise UsageError("gaussian_num_classes must be 0 (no labels) or at least 2")
        # class means: patches ~ N(0, O diag(L^2 / mean(L)) O^T), so a direction's signal-to-noise
        # ratio grows with its eigenvalue (see the class docstring)
        mean_spectrum = self.spectrum**2 / self.spectrum.mean()
        means = self.class_separation * self._draw(self.num_classes, 5, mean_spectrum) if self.num_classes else None
        object.__setattr__(self, "class_means", means)
        splits = {"train": self._labelled(self.num_train, 1, 3, means), "test": self._labelled(self.num_test, 2, 4, means)}
        object.__setattr__(self, "_splits", splits)

    def _labelled(self, n: int, stream: int, label_stream: int, means) -> tuple[np.ndarray, np.ndarray]:
        x = self._draw(n, stream)
        if means is None:
            return x, np.zeros(n, np.int64)
        y = np.random.default_rng([self.seed, label_stream]).integers(0, self.num_classes, n)
        x = x + means[y]
        x.flags.writeable = False
        return x, y

    @property
    def dim(self) -> int:
        return int(self.spectrum.size)

    @property
    def channels(self) -> int:
        return self.dim // (self.patch_size ** 2) if self.patch_size else 0

    @property
    def input_shape(self) -> tuple[int, ...]:
        return gaussian_input_shape(self.dim, self.patch_size, self.image_size)

    @property
    def covariance(self) -> np.ndarray:
        """Sigma = O diag(spectrum) O^T, the covariance of every input vector / patch vector."""
        return (self.rotation * self.spectrum) @ self.rotation.T

    @property
    def has_labels(self) -> bool:
        return self.num_classes > 0

    def _draw(self, n: int, stream: int, spectrum: np.ndarray | None = None) -> np.ndarray:
        rng = np.random.default_rng([self.seed, stream])
        per_example = (self.image_size // self.patch_size) ** 2 if self.patch_size else 1
        z = rng.standard_normal((n * per_example, self.dim))
        spectrum = self.spectrum if spectrum is None else spectrum
        vectors = (z * np.sqrt(spectrum)) @ self.rotation.T  # rows ~ N(0, O L O^T)
        x = self._assemble(vectors.astype(np.float32), n)
        x.flags.writeable = False
        return x

    def _assemble(self, vectors: np.ndarray, n: int) -> np.ndarray:
        if not self.patch_size:
            return vectors
        k, c, grid = self.patch_size, self.channels, self.image_size // self.patch_size
        patches = vectors.reshape(n, grid, grid, k, k, c)  # [n, patch-row, patch-col, k, k, C]
        return patches.transpose(0, 1, 3, 2, 4, 5).reshape(n, self.image_size, self.image_size, c)

    def _take(self, split: str, indices) -> Split:
        x, y = self._splits[split]
        return take(x, y, indices, f"gaussian {split}", self.input_shape)

    def train(self, indices) -> Split:
        return self._take("train", indices)

    def test(self, indices) -> Split:
        return self._take("test", indices)
