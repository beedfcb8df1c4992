"""What every data source shares: the Split record, the Source protocol, index checks,
input scaling and the image resizing conventions."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import tensorflow as tf

from rltx.errors import UsageError

# A.3 (ImageNet): "resize the examples, take a 224 x 224 central crop". The paper does not say
# to which size; we use the usual convention crop = 0.875 * resized shorter side (224 <- 256).
CENTRAL_CROP_FRACTION = 0.875


@dataclass(frozen=True)
class Split:
    """Examples of one split: x [N, ...] (uint8 raw pixels, or float32), y [N] int64 labels."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@runtime_checkable
class Source(Protocol):
    """A dataset: index i of a split always means the same example (deterministic order)."""

    name: str
    input_shape: tuple[int, ...]
    num_train: int
    num_test: int  # 0: no separate test split
    num_classes: int  # 0: no real labels (y is all zeros)

    def train(self, indices: np.ndarray) -> Split: ...

    def test(self, indices: np.ndarray) -> Split: ...


def check_indices(indices, size: int, where: str) -> np.ndarray:
    """1-D int64 copy of `indices`, or UsageError when one is outside [0, size)."""
    idx = np.asarray(indices)
    if idx.size == 0:
        return np.zeros(0, np.int64)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"{where}: indices must be a 1-D integer array, got {idx.dtype} {idx.shape}")
    bad = idx[(idx < 0) | (idx >= size)]
    if bad.size:
        raise UsageError(f"{where}: example index {int(bad[0])} is out of range, the split has "
                         f"{size} examples; request at most {size} examples from it")
    return idx.astype(np.int64)


def empty_split(input_shape: tuple[int, ...], dtype) -> Split:
    return Split(np.zeros((0, *input_shape), dtype), np.zeros(0, np.int64))


def take(x: np.ndarray, y: np.ndarray, indices, where: str, input_shape: tuple[int, ...]) -> Split:
    """The examples `indices` of in-memory arrays (checked against their length; `where` names the
    split in the error), or an empty split of the source's input shape and dtype."""
    idx = check_indices(indices, len(x), where)
    if idx.size == 0:
        return empty_split(input_shape, x.dtype)
    return Split(x[idx], y[idx])


def to_model_input(x) -> tf.Tensor:
    """uint8 pixels -> float32 in [-1, 1] (A.3: "scale inputs to the [-1, 1] range": x/127.5 - 1);
    float inputs (gaussian, float npz) pass through as float32. Pure tf ops: usable in tf.data.map."""
    x = tf.convert_to_tensor(x)
    if x.dtype == tf.uint8:
        return tf.cast(x, tf.float32) / 127.5 - 1.0
    if x.dtype.is_floating:
        return tf.cast(x, tf.float32)
    raise TypeError(f"to_model_input expects uint8 pixels or floats, got {x.dtype.name}")


def _to_uint8(image: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def _bilinear(images: tf.Tensor, size: int) -> tf.Tensor:
    """[..., H, W, C] -> [..., size, size, C] float32, bilinear (antialiased), aspect ratio not kept."""
    return tf.image.resize(tf.cast(images, tf.float32), [size, size], antialias=True)


def resize_exact(image: tf.Tensor, size: int) -> tf.Tensor:
    """[H, W, C] uint8 -> [size, size, C] uint8, bilinear (antialiased), aspect ratio not kept."""
    return _to_uint8(_bilinear(image, size))


RESIZE_CHUNK_BYTES = 2 ** 26  # float32 working memory per chunk of resize_images


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """[N, H, W, C] -> [N, size, size, C] as `resize_exact` resizes each image, into one preallocated
    array, a chunk at a time; uint8 stays uint8 (rounded), float images become float32 (not rounded)."""
    is_pixels = images.dtype == np.uint8
    resized = np.empty((len(images), size, size, images.shape[-1]), np.uint8 if is_pixels else np.float32)
    per_image = 4 * max(size * size, images.shape[1] * images.shape[2]) * images.shape[-1]
    chunk = max(1, RESIZE_CHUNK_BYTES // per_image)
    for start in range(0, len(images), chunk):
        batch = _bilinear(images[start:start + chunk], size)
        resized[start:start + chunk] = (_to_uint8(batch) if is_pixels else batch).numpy()
    return resized


def resize_central_crop(image: tf.Tensor, size: int) -> tf.Tensor:
    """ImageNet-style (A.3): resize the shorter side to round(size / 0.875) (256 for 224),
    bilinear antialiased, keeping the aspect ratio, then take the central size x size crop; uint8."""
    short = int(round(size / CENTRAL_CROP_FRACTION))
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = short / tf.reduce_min(shape)
    new_hw = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), short)
    resized = tf.image.resize(tf.cast(image, tf.float32), new_hw, antialias=True)
    top = (new_hw[0] - size) // 2
    left = (new_hw[1] - size) // 2
    crop = resized[top:top + size, left:left + size, :]
    return tf.ensure_shape(_to_uint8(crop), [size, size, None])
