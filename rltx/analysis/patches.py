"""Second moments of the inputs a layer sees, accumulated in a stream (never all patches at once).

For a convolution the inputs are its kernel-size windows (with its stride and padding) of the
previous layer's output, flattened in (row, column, channel) order, i.e. the order of the layer's
kernel reshaped to [kh*kw*C, filters]; for a dense layer, the flattened input vector.
Sums are kept in float64.
"""
from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from rltx.errors import UsageError


@dataclass
class MomentAccumulator:
    """Streaming sums for the mean and (un)centred covariance of d-dimensional vectors."""
    dimension: int
    count: int = 0

    def __post_init__(self):
        self.total = np.zeros(self.dimension)
        self.outer = np.zeros((self.dimension, self.dimension))

    def add(self, vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float64).reshape(-1, self.dimension)
        self.add_sums(len(vectors), vectors.sum(axis=0), vectors.T @ vectors)

    def add_sums(self, count: int, total: np.ndarray, outer: np.ndarray) -> None:
        """Add the count, sum and sum of outer products of a block computed elsewhere."""
        self.count += int(count)
        self.total += total
        self.outer += outer

    @property
    def mean(self) -> np.ndarray:
        return self.total / self.count

    def covariance(self, centered: bool = True) -> np.ndarray:
        """E[(x - mu)(x - mu)^T] (centred) or E[x x^T]; normalised by the count (maximum likelihood)."""
        second = self.outer / self.count
        return second - np.outer(self.mean, self.mean) if centered else second


def layer_input_model(model: keras.Model, layer: str) -> keras.Model:
    """A model from the network input to the input of `layer`."""
    try:
        target = model.get_layer(layer)
    except ValueError:
        names = [l.name for l in model.layers if l.weights]
        raise UsageError(f"the model has no layer {layer!r}; layers with weights: {', '.join(names)}") from None
    return keras.Model(model.inputs, target.input)


def patch_extractor(layer: keras.layers.Layer):
    """A function from a batch of the layer's inputs to its input vectors [n, d]."""
    if isinstance(layer, keras.layers.Conv2D):
        height, width = layer.kernel_size
        stride_h, stride_w = layer.strides
        if layer.dilation_rate != (1, 1):
            raise UsageError(f"layer {layer.name} is dilated; patch covariances need dilation 1")

        def extract(batch):
            patches = tf.image.extract_patches(batch, sizes=[1, height, width, 1], strides=[1, stride_h, stride_w, 1],
                                               rates=[1, 1, 1, 1], padding=layer.padding.upper())
            return tf.reshape(patches, [-1, patches.shape[-1]])
        return extract
    if isinstance(layer, keras.layers.Dense):
        return lambda batch: tf.reshape(batch, [tf.shape(batch)[0], -1])
    raise UsageError(f"layer {layer.name} is a {type(layer).__name__}; choose a Conv2D or Dense layer")


def input_moments(model: keras.Model, layer: str, inputs: np.ndarray, batch_size: int = 256) -> MomentAccumulator:
    """Streaming moments of the input vectors of `layer` over `inputs` (model inputs, already scaled)."""
    to_input, extract = layer_input_model(model, layer), patch_extractor(model.get_layer(layer))

    @tf.function
    def block_sums(batch):
        vectors = tf.cast(extract(to_input(batch, training=False)), tf.float64)
        return tf.shape(vectors)[0], tf.reduce_sum(vectors, 0), tf.matmul(vectors, vectors, transpose_a=True)

    accumulator = None
    for start in range(0, len(inputs), batch_size):
        count, total, outer = (t.numpy() for t in block_sums(tf.constant(inputs[start:start + batch_size])))
        accumulator = accumulator or MomentAccumulator(len(total))
        accumulator.add_sums(count, total, outer)
    return accumulator
