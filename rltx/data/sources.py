"""open_source: one entry point that picks the source kind from the `dataset` name."""
from __future__ import annotations

from rltx.data.base import Source
from rltx.data.files import open_image_folder, open_npz
from rltx.data.gaussian import GaussianSource
from rltx.data.natural import NaturalSource
from rltx.data.tfds_source import open_tfds
from rltx.errors import UsageError


def open_source(dataset: str, *, data_dir: str | None = None, manual_dir: str | None = None,
                offline: bool = False, data_path: str | None = None, image_size: int | None = None,
                seed: int = 0, gaussian_spectrum=None, gaussian_patch_size: int = 0,
                gaussian_image_size: int = 0, gaussian_rotate: bool = False,
                gaussian_num_train: int = 10000, gaussian_num_test: int = 2000, gaussian_num_classes: int = 0,
                gaussian_class_separation: float = 1.0, natural_seed: int = 0, natural_num_train: int = 10000,
                natural_num_test: int = 2000, natural_num_classes: int = 10) -> Source:
    """dataset: 'gaussian' (synthetic, from seed and the gaussian_* keys), 'dead_leaves' or 'photos'
    (natural-image statistics without download, from natural_seed and the natural_* keys), 'npz' or 'image_folder'
    (read from data_path), or any tensorflow-datasets image classification name (data_dir,
    manual_dir, offline). image_size 0 or None means native size (imagenet2012: 224, A.3).
    Keys that do not apply to the chosen kind are ignored (seed is used by gaussian only)."""
    kind = dataset.strip()
    if kind.lower() == "gaussian":
        if gaussian_spectrum is None:
            raise UsageError("dataset gaussian needs gaussian_spectrum; set it, e.g. 'linspace(0.1, 3.0, 30)'")
        return GaussianSource(gaussian_spectrum, seed=seed, patch_size=gaussian_patch_size,
                              image_size=gaussian_image_size, rotate=gaussian_rotate,
                              num_train=gaussian_num_train, num_test=gaussian_num_test,
                              num_classes=gaussian_num_classes, class_separation=gaussian_class_separation)
    if kind.lower() in ("dead_leaves", "photos"):
        return NaturalSource(kind.lower(), seed=natural_seed, image_size=image_size or 32, num_train=natural_num_train,
                             num_test=natural_num_test, num_classes=natural_num_classes)
    if kind.lower() == "npz":
        return open_npz(data_path, image_size)
    if kind.lower() == "image_folder":
        return open_image_folder(data_path, image_size)
    return open_tfds(kind, data_dir=data_dir, manual_dir=manual_dir, offline=offline,
                     image_size=image_size or None)
