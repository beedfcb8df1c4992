"""tensorflow-datasets image classification datasets (cifar10, cifar100, imagenet2012, mnist, ...).

Offline policy. The data must already be prepared in `data_dir` (tfds layout NAME/VERSION/), or be
preparable from archives in `manual_dir`; a download is attempted only when offline is False, the
dataset has no manual-download step, and a 3-second TCP connection to its download host succeeds.
Otherwise we raise UsageError at once (well under 10 s) instead of letting tfds retry for minutes.
Preparing from manual_dir never contacts the network (try_download_gcs=False), and every archive
tfds would fetch must be present there, so a missing file is reported instead of downloaded.

Order: splits are read with shuffle_files=False and one shard at a time (interleave_cycle_length=1),
so index i is the i-th stored example, independent of tfds's interleaving defaults.
"""
from __future__ import annotations

import collections
import contextlib
import os
import socket
import tempfile
import threading
import urllib.parse
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from rltx.data.base import Split, check_indices, empty_split, resize_central_crop
from rltx.errors import UsageError, shorten

IMAGENET_IMAGE_SIZE = 224  # A.3: "take a 224 x 224 central crop"
_CACHE_ENTRIES = 4  # most recent (split, indices) reads kept, each at most _CACHE_MAX_BYTES
_CACHE_MAX_BYTES = 512 * 2**20
_CONNECT_TIMEOUT_S = 3.0


def base_name(dataset: str) -> str:
    """'imagenet2012/config:5.1.0' -> 'imagenet2012'."""
    return dataset.split("/")[0].split(":")[0]


def is_prepared(builder: tfds.core.DatasetBuilder) -> bool:
    """True when the prepared files of `builder` exist locally (file-system check only)."""
    return builder.is_prepared()


def network_reachable(urls, timeout: float = _CONNECT_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the first URL's host opens within `timeout` seconds
    (DNS included: the attempt runs in a daemon thread that we stop waiting for)."""
    urls = list(urls)
    if not urls:
        return False
    parsed = urllib.parse.urlparse(urls[0])
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    result = []

    def attempt():
        try:
            socket.create_connection((parsed.hostname, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result)


def _download_urls(builder) -> dict[str, str]:
    """{url: archive file name} that preparing `builder` downloads (from its checksums file)."""
    infos = builder.url_infos or {}
    return {url: (info.filename or os.path.basename(urllib.parse.urlparse(url).path))
            for url, info in infos.items()}


def _not_prepared_message(builder, problem: str) -> str:
    name = builder.name
    archives = ", ".join(sorted(set(_download_urls(builder).values()))) or "its archives"
    manual = f"e.g. {archives}" if name != "imagenet2012" else "ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar"
    return (f"dataset {name} is not prepared in {builder.data_dir} ({problem}); either set data_dir to a "
            f"prepared tfds folder (copy ~/tensorflow_datasets/{name} from a machine with internet, or run "
            f"`tfds build {name}` there), or set manual_dir to a folder with the original archives ({manual}); "
            "to try a recipe without the data, run its quick profile (`--profile quick`, `rltx reproduce NAME "
            "--quick`), which falls back to offline data")


def _prepare_from_manual_dir(builder, manual_dir: str) -> None:
    if not os.path.isdir(manual_dir) or not os.listdir(manual_dir):
        raise UsageError(_not_prepared_message(builder, f"manual_dir {manual_dir} is missing or empty"))
    missing = [f for f in sorted(set(_download_urls(builder).values()))
               if not os.path.exists(os.path.join(manual_dir, f))]
    if missing:
        raise UsageError(_not_prepared_message(builder, f"manual_dir {manual_dir} lacks {', '.join(missing)}"))
    config = tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
    builder.download_and_prepare(download_config=config)


def ensure_prepared(builder, *, manual_dir: str | None, offline: bool) -> None:
    """Return when `builder` can be read; prepare it when that needs no network or the network is up;
    else raise UsageError naming data_dir and manual_dir."""
    if is_prepared(builder):
        return
    if manual_dir:
        _prepare_from_manual_dir(builder, manual_dir)
        return
    if offline:
        raise UsageError(_not_prepared_message(builder, "offline is set, so nothing is downloaded"))
    if builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
        raise UsageError(_not_prepared_message(builder, "it cannot be downloaded automatically"))
    if not network_reachable(_download_urls(builder)):
        raise UsageError(_not_prepared_message(builder, "its download host is unreachable"))
    builder.download_and_prepare()


def _split_size(builder, split: str) -> int:
    if split in builder.info.splits:
        return int(builder.info.splits[split].num_examples)
    cardinality = int(builder.as_dataset(split=split, shuffle_files=False).cardinality())
    if cardinality < 0:
        raise UsageError(f"cannot tell the size of split {split} of {builder.name}; prepare it with `tfds build`")
    return cardinality


def _test_split(builder, name: str) -> str | None:
    """A.1: imagenet2012 is evaluated on `validation` (its `test` split has no labels)."""
    if name == "imagenet2012":
        return "validation"
    splits = builder.info.splits
    if not splits or "test" in splits:  # unknown split names (mocked metadata): assume 'test'
        return "test"
    return "validation" if "validation" in splits else None


@dataclass(frozen=True, eq=False)
class TfdsSource:
    """A prepared tfds dataset; images come back uint8. image_size None: native size (needs fixed-size
    images); else ImageNet-style resize of the shorter side to round(image_size / 0.875), central crop.
    train()/test() materialise the requested examples in memory (N * H * W * C bytes); small results
    are cached read-only per (split, indices)."""

    name: str
    builder: tfds.core.DatasetBuilder = field(repr=False)
    image_key: str
    label_key: str
    input_shape: tuple[int, ...]
    image_size: int | None
    num_train: int
    num_test: int
    num_classes: int
    test_split: str | None
    _cache: collections.OrderedDict = field(default_factory=collections.OrderedDict, repr=False)

    @property
    def has_labels(self) -> bool:
        return True

    def _preprocess(self, encoded: tf.Tensor) -> tf.Tensor:
        image = self.builder.info.features[self.image_key].decode_example(encoded)
        if self.image_size:
            return resize_central_crop(image, self.image_size)
        return tf.ensure_shape(image, self.input_shape)

    def _read(self, split: str, wanted: np.ndarray) -> Split:
        """Iterate the split once (up to its largest wanted index), decoding only wanted examples."""
        mask = np.zeros(int(wanted[-1]) + 1, bool)
        mask[wanted] = True
        mask_t = tf.constant(mask)
        ds = self.builder.as_dataset(
            split=split, shuffle_files=False,
            decoders={self.image_key: tfds.decode.SkipDecoding()},
            read_config=tfds.ReadConfig(interleave_cycle_length=1))
        ds = ds.take(len(mask)).enumerate().filter(lambda i, example: tf.gather(mask_t, i))
        ds = ds.map(lambda i, example: (self._preprocess(example[self.image_key]),
                                        tf.cast(example[self.label_key], tf.int64)),
                    num_parallel_calls=tf.data.AUTOTUNE).batch(256)
        xs, ys = zip(*ds.as_numpy_iterator())
        return Split(np.concatenate(xs), np.concatenate(ys))

    def _take(self, split: str | None, size: int, indices) -> Split:
        idx = check_indices(indices, size, f"{self.name} {split or 'test'}")
        if idx.size == 0:
            return empty_split(self.input_shape, np.uint8)
        key = (split, idx.tobytes())
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        wanted = np.unique(idx)
        read = self._read(split, wanted)
        pos = np.searchsorted(wanted, idx)
        result = Split(read.x[pos], read.y[pos])
        if result.x.nbytes <= _CACHE_MAX_BYTES:  # shared with later callers: read-only
            result.x.flags.writeable = result.y.flags.writeable = False
            self._cache[key] = result
            while len(self._cache) > _CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return result

    def train(self, indices) -> Split:
        return self._take("train", self.num_train, indices)

    def test(self, indices) -> Split:
        return self._take(self.test_split, self.num_test, indices)


@contextlib.contextmanager
def _removed_temporary_files():
    """Point `tempfile` at a directory removed on exit: tfds.builder (4.9, DatasetInfo.initialize_from_bucket)
    makes a tempfile.mkdtemp directory it never removes, one left in /tmp per dataset opened."""
    previous = tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix="rltx-tfds-") as scratch:
        tempfile.tempdir = scratch
        try:
            yield
        finally:
            tempfile.tempdir = previous


def _builder(dataset: str, data_dir: str | None):
    try:
        with _removed_temporary_files():
            return tfds.builder(dataset, data_dir=data_dir)
    except (tfds.core.registered.DatasetNotFoundError, ValueError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UsageError(f"unknown dataset {shorten(dataset)} ({first[:150]}); use gaussian, dead_leaves, photos, npz, "
                         "image_folder or a tensorflow-datasets name such as cifar10, cifar100, imagenet2012") from None


def _image_label_keys(builder, dataset: str) -> tuple[str, str]:
    """The (image, label) feature names: the supervised keys, else features named image and label."""
    features = builder.info.features
    keys = builder.info.supervised_keys
    if not (isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(k, str) for k in keys)):
        keys = ("image", "label")
    if not (keys[0] in features and keys[1] in features and isinstance(features[keys[0]], tfds.features.Image)
            and isinstance(features[keys[1]], tfds.features.ClassLabel)):
        raise UsageError(f"{dataset} is not an image classification dataset; use a tfds dataset with "
                         "(image, label) pairs, or npz / image_folder")
    return keys


def open_tfds(dataset: str, *, data_dir: str | None = None, manual_dir: str | None = None,
              offline: bool = False, image_size: int | None = None) -> TfdsSource:
    """Open a tfds image classification dataset, preparing it only as the offline policy allows."""
    builder = _builder(dataset, data_dir)
    name = base_name(dataset)
    keys = _image_label_keys(builder, dataset)
    ensure_prepared(builder, manual_dir=manual_dir, offline=offline)
    image_size = image_size or (IMAGENET_IMAGE_SIZE if name == "imagenet2012" else None)
    native = tuple(builder.info.features[keys[0]].shape)
    if image_size:
        input_shape = (image_size, image_size, native[-1] or 3)
    elif None in native:
        raise UsageError(f"{dataset} images have no fixed size {native}; set image_size, e.g. 224")
    else:
        input_shape = native
    test_split = _test_split(builder, name)
    return TfdsSource(
        name=dataset, builder=builder, image_key=keys[0], label_key=keys[1],
        input_shape=tuple(int(s) for s in input_shape), image_size=image_size,
        num_train=_split_size(builder, "train"),
        num_test=_split_size(builder, test_split) if test_split else 0,
        num_classes=int(builder.info.features[keys[1]].num_classes), test_split=test_split)
