"""Sources read from the user's own files: a .npz archive, or a folder of images per class."""
from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from rltx.data.base import Split, check_indices, empty_split, resize_exact, resize_images, take
from rltx.errors import UsageError, check_not_special

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


# ----------------------------------------------------------------------------------------- npz
@dataclass(frozen=True, eq=False)
class ArraySource:
    """In-memory arrays: x uint8 (raw pixels) or float32, y int64; test arrays may be empty."""

    name: str
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.x_train.shape[1:])

    @property
    def num_train(self) -> int:
        return len(self.x_train)

    @property
    def num_test(self) -> int:
        return len(self.x_test)

    @property
    def has_labels(self) -> bool:
        return self.num_classes > 0

    def train(self, indices) -> Split:
        return take(self.x_train, self.y_train, indices, f"{self.name} train", self.input_shape)

    def test(self, indices) -> Split:
        return take(self.x_test, self.y_test, indices, f"{self.name} test", self.input_shape)


def _npz_images(x: np.ndarray, key: str, path: str) -> np.ndarray:
    if x.ndim == 3:  # [N, H, W] grayscale -> [N, H, W, 1]
        x = x[..., None]
    if x.ndim < 2:
        raise UsageError(f"{path}: '{key}' has shape {x.shape}; save images as [N, H, W(, C)] or vectors as [N, d]")
    if x.dtype == np.uint8:
        return x
    if np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float32)
    raise UsageError(f"{path}: '{key}' has dtype {x.dtype}; save raw pixels as uint8 (x.astype(np.uint8)) "
                     "or inputs as float")


def _npz_labels(y, n: int, key: str, path: str) -> np.ndarray:
    if y is None:
        return np.zeros(n, np.int64)
    y = np.asarray(y).reshape(-1)
    if len(y) != n or not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
        raise UsageError(f"{path}: '{key}' must hold {n} non-negative integer labels, got {y.dtype} "
                         f"{y.shape}; save one int label per example")
    return y.astype(np.int64)


def _npz_arrays(path: str) -> dict[str, np.ndarray]:
    """Every array of the .npz, never unpickling: an object array is refused, not executed."""
    save = "save it with np.savez(path, x=..., y=...)"
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a .npy file: one bare array
            raise UsageError(f"{path} is a single .npy array, not an .npz archive of x and y; {save}")
        with loaded as archive:
            arrays = {k: archive[k] for k in archive.files}
    except ValueError as error:
        if "Object arrays" in str(error):
            raise UsageError(f"{path} holds object arrays (pickled Python objects), which rltx never loads; save "
                             "numeric arrays, e.g. np.savez(path, x=np.asarray(x, np.uint8), y=np.asarray(y))") from None
        raise UsageError(f"{path} is not a readable .npz file (not a zip of .npy arrays); {save}") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:  # zlib: a damaged compressed member
        raise UsageError(f"{path} is not a readable .npz file ({type(error).__name__}); {save}") from None
    foreign = [name for name, value in arrays.items() if not isinstance(value, np.ndarray)]
    if foreign:  # zip members without the .npy format come back as raw bytes
        raise UsageError(f"{path} holds members that are not .npy arrays ({', '.join(sorted(foreign)[:3])}); {save}")
    return arrays


def open_npz(path: str | None, image_size: int | None = None) -> ArraySource:
    """`path`: .npz with x [N,H,W,C] / [N,H,W] / [N,d], y [N] (optional: no labels), and optionally
    x_test, y_test. uint8 x is kept raw; float x is used as is (as float32, not rescaled). Images
    of another side than a given `image_size` are resized to it on opening, as image folders are."""
    if not path:
        raise UsageError("dataset npz needs data_path; set it to a .npz file holding x and y")
    check_not_special(path, "an .npz file (data_path)")
    if os.path.isdir(path):
        raise UsageError(f"npz file {path} is a folder; set data_path to the .npz file")
    if not os.path.isfile(path):
        raise UsageError(f"npz file {path} does not exist; fix data_path")
    arrays = _npz_arrays(path)
    if "x" not in arrays:
        raise UsageError(f"{path} has no array 'x' (found {sorted(arrays)}); save it with np.savez(path, x=..., y=...)")
    if "x_test" in arrays and "y" in arrays and "y_test" not in arrays:
        raise UsageError(f"{path} has x_test but no y_test; save y_test too")
    x = _npz_images(arrays["x"], "x", path)
    y = _npz_labels(arrays.get("y"), len(x), "y", path)
    empty = np.zeros((0, *x.shape[1:]), x.dtype)
    x_test = _npz_images(arrays["x_test"], "x_test", path) if "x_test" in arrays else empty
    y_test = _npz_labels(arrays.get("y_test"), len(x_test), "y_test", path)
    if x_test.shape[1:] != x.shape[1:] or x_test.dtype != x.dtype:
        raise UsageError(f"{path}: x_test {x_test.dtype} {x_test.shape[1:]} differs from x {x.dtype} "
                         f"{x.shape[1:]}; save both splits alike")
    if image_size and x.ndim == 4 and x.shape[1:3] != (image_size, image_size):
        x, x_test = resize_images(x, image_size), resize_images(x_test, image_size)
    num_classes = int(max(y.max(initial=-1), y_test.max(initial=-1)) + 1) if "y" in arrays else 0
    for a in (x, y, x_test, y_test):
        a.flags.writeable = False
    return ArraySource(f"npz:{path}", x, y, x_test, y_test, num_classes)


def input_range_warnings(source) -> list[str]:
    """What a user should hear about an npz source's inputs before training on them: float images all
    within [0, 1] (scikit-image's convention) are fed to the model as they are, where A.3 feeds [-1, 1],
    and the input mean changes results (docs/calibration.md, Fig. 5)."""
    x = source.x_train if isinstance(source, ArraySource) else None
    if x is None or x.ndim != 4 or not np.issubdtype(x.dtype, np.floating) or not x.size:
        return []
    if x.min() < 0 or x.max() > 1:
        return []
    return [f"{source.name} holds float images in [0, 1], fed to the model as they are (A.3 feeds pixels in "
            "[-1, 1]); save uint8 pixels (np.round(x * 255).astype(np.uint8)) or floats in [-1, 1]"]


def write_npz(source, path: str | os.PathLike, num_train: int | None = None, num_test: int | None = None) -> Path:
    """Write the first num_train / num_test examples (default: all) of any source's splits to a .npz
    that `open_npz` reads back unchanged (x, y, x_test, y_test; labels only when the source has them)."""
    num_train = source.num_train if num_train is None else num_train
    num_test = source.num_test if num_test is None else num_test
    train, test = source.train(np.arange(num_train)), source.test(np.arange(num_test))
    arrays = {"x": train.x, "x_test": test.x}
    if source.num_classes:
        arrays.update(y=train.y, y_test=test.y)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)  # np.savez adds .npz unless the name ends with it
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


# -------------------------------------------------------------------------------- image folder
def _image_files(class_dir: Path) -> list[Path]:
    return sorted(p for p in class_dir.rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _list_split(root: Path, class_names: list[str]) -> tuple[list[str], np.ndarray]:
    files, labels = [], []
    for class_dir in _class_dirs(root):
        if class_dir.name not in class_names:
            raise UsageError(f"{class_dir} is not a class of the training folder; "
                             "give test/ the same class sub-folders as train/")
        found = _image_files(class_dir)
        files += [str(p) for p in found]
        labels += [class_names.index(class_dir.name)] * len(found)
    return files, np.asarray(labels, np.int64)


@dataclass(frozen=True, eq=False)
class ImageFolderSource:
    """Images in class sub-folders (class index = position of the folder name in sorted order),
    decoded lazily per request with tf.io, as RGB (3 channels), resized to image_size x image_size
    (bilinear, antialiased; aspect ratio not kept), uint8. Order: by class, then by file path."""

    name: str
    image_size: int
    class_names: tuple[str, ...]
    train_files: tuple[str, ...] = field(repr=False)
    train_labels: np.ndarray = field(repr=False)
    test_files: tuple[str, ...] = field(repr=False)
    test_labels: np.ndarray = field(repr=False)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.image_size, self.image_size, 3)

    @property
    def num_train(self) -> int:
        return len(self.train_files)

    @property
    def num_test(self) -> int:
        return len(self.test_files)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def has_labels(self) -> bool:
        return True

    def _load(self, path: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return tf.ensure_shape(resize_exact(image, self.image_size), self.input_shape)

    def _take(self, files, labels, indices, split: str) -> Split:
        idx = check_indices(indices, len(files), f"{self.name} {split}")
        if idx.size == 0:
            return empty_split(self.input_shape, np.uint8)
        paths = tf.data.Dataset.from_tensor_slices([files[i] for i in idx])
        images = paths.map(self._load, num_parallel_calls=tf.data.AUTOTUNE).batch(256)
        return Split(np.concatenate(list(images.as_numpy_iterator())), labels[idx])

    def train(self, indices) -> Split:
        return self._take(self.train_files, self.train_labels, indices, "train")

    def test(self, indices) -> Split:
        return self._take(self.test_files, self.test_labels, indices, "test")


def open_image_folder(path: str | None, image_size: int | None) -> ImageFolderSource:
    """`path`/CLASS/*.png... or `path`/train/CLASS/... plus `path`/test/CLASS/..."""
    if not path:
        raise UsageError("dataset image_folder needs data_path; set it to a folder with one sub-folder per class")
    root = Path(path)
    if not root.is_dir():
        raise UsageError(f"image folder {path} does not exist; fix data_path")
    if not image_size:
        raise UsageError("dataset image_folder needs image_size; set it to the side in pixels, e.g. 32 or 224")
    split_layout = (root / "train").is_dir() and (root / "test").is_dir()
    lone = [name for name in ("train", "test") if (root / name).is_dir() and not split_layout]
    if lone:  # else the lone folder would be read as one class named after it
        other = "test" if lone[0] == "train" else "train"
        raise UsageError(f"image folder {path} has a {lone[0]}/ sub-folder but no {other}/; add {other}/CLASS/... beside "
                         f"it, or put the class sub-folders directly in {path}")
    train_root = root / "train" if split_layout else root
    class_names = [p.name for p in _class_dirs(train_root)]
    train_files, train_labels = _list_split(train_root, class_names)
    if not train_files:
        raise UsageError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in class sub-folders of {train_root}; "
                         "put each class's images in its own sub-folder")
    test_files, test_labels = _list_split(root / "test", class_names) if split_layout else ([], np.zeros(0, np.int64))
    return ImageFolderSource(f"image_folder:{path}", int(image_size), tuple(class_names),
                             tuple(train_files), train_labels, tuple(test_files), test_labels)
