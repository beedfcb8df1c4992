"""open_source: one entry point that picks the source kind from the `dataset` name."""
from __future__ import annotations

from rltx.config import NATURAL_SIZE, DataSpec
from rltx.data.base import Source
from rltx.data.files import open_image_folder, open_npz
from rltx.data.gaussian import GaussianSource
from rltx.data.natural import NaturalSource
from rltx.data.tfds_source import open_tfds
from rltx.errors import UsageError


def open_source(spec: DataSpec) -> Source:
    """dataset: 'gaussian' (synthetic, from gaussian_seed and the gaussian_* keys), 'dead_leaves' or 'photos'
    (natural-image statistics without download, from natural_seed and the natural_* keys), 'npz' or 'image_folder'
    (read from data_path), or any tensorflow-datasets image classification name (data_dir,
    manual_dir, offline). image_size 0 means native size (imagenet2012: 224, A.3). A null
    gaussian_seed or natural_seed is the run's seed. Keys that do not apply to the chosen kind are ignored."""
    kind, image_size = spec.dataset.strip(), spec.image_size or None
    if kind.lower() == "gaussian":
        if spec.gaussian_spectrum is None:
            raise UsageError("dataset gaussian needs gaussian_spectrum; set it, e.g. 'linspace(0.1, 3.0, 30)'")
        return GaussianSource(spec.gaussian_spectrum, seed=spec.data_seed(),
                              patch_size=spec.gaussian_patch_size, image_size=spec.gaussian_image_size,
                              rotate=spec.gaussian_rotate, num_train=spec.gaussian_num_train,
                              num_test=spec.gaussian_num_test, num_classes=spec.gaussian_num_classes,
                              class_separation=spec.gaussian_class_separation)
    if kind.lower() in ("dead_leaves", "photos"):
        return NaturalSource(kind.lower(), seed=spec.data_seed(), image_size=image_size or NATURAL_SIZE,
                             num_train=spec.natural_num_train, num_test=spec.natural_num_test,
                             num_classes=spec.natural_num_classes, labels=spec.natural_labels)
    if kind.lower() == "npz":
        return open_npz(spec.data_path, image_size)
    if kind.lower() == "image_folder":
        return open_image_folder(spec.data_path, image_size)
    return open_tfds(kind, data_dir=spec.data_dir, manual_dir=spec.manual_dir, offline=spec.offline,
                     image_size=image_size)
