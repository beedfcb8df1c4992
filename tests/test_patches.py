"""Streaming layer-input moments against explicit extraction of every patch (the oracle)."""
import numpy as np
import pytest

from rltx.analysis.patches import MomentAccumulator, input_moments
from rltx.models import build_model


def explicit_patches(images, size, stride, padding):
    """Every size x size window, flattened (row, column, channel), by plain loops."""
    if padding == "same":
        out = -(-images.shape[1] // stride)
        total = max((out - 1) * stride + size - images.shape[1], 0)
        before = total // 2
        images = np.pad(images, ((0, 0), (before, total - before), (before, total - before), (0, 0)))
    else:
        out = (images.shape[1] - size) // stride + 1
    return np.array([image[r * stride:r * stride + size, c * stride:c * stride + size, :].reshape(-1)
                     for image in images for r in range(out) for c in range(out)])


EPS = np.finfo(np.float64).eps  # float64 unit round-off is EPS / 2 (Higham, Sec. 2.1)


def moment_floor(x) -> np.ndarray:
    """Entrywise round-off of a second moment E[x x^T] - mu mu^T of n float64 rows summed in any
    order: n eps (E|x||x|^T + |mu||mu|^T) (Higham Sec. 3.1, 4.2), doubled for the oracle's own."""
    n, magnitude = len(x), np.abs(x)
    mean = magnitude.mean(0)
    return 2 * n * EPS * (magnitude.T @ magnitude / n + np.outer(mean, mean))


@pytest.mark.parametrize("stride, padding", [(1, "valid"), (1, "same"), (2, "same"), (3, "valid")])
def test_first_and_second_layer_moments_equal_explicit_patches(stride, padding):
    model = build_model("simple_cnn", (9, 9, 2), 3, seed=1, num_conv_layers=2, num_filters=4, num_units=5,
                        stride=stride, padding=padding)
    images = np.random.default_rng(0).normal(size=(13, 9, 9, 2)).astype(np.float32)
    first = input_moments(model, "conv_0", images, batch_size=5)
    patches = explicit_patches(images.astype(np.float64), 3, stride, padding)
    assert first.count == len(patches)
    # the same float64 patches (from float32 inputs) summed in other orders: within moment_floor
    assert np.all(np.abs(first.covariance() - np.cov(patches.T, bias=True)) <= moment_floor(patches))
    uncentered = patches.T @ patches / len(patches)
    assert np.all(np.abs(first.covariance(centered=False) - uncentered) <= moment_floor(patches))
    hidden = model.get_layer("conv_0")(images).numpy().astype(np.float64)  # ReLU output of conv_0
    second = input_moments(model, "conv_1", images, batch_size=4)
    # conv_0 runs in float32 (batches of 4 vs all 13): each activation is off by <= k eps32 |W||x|,
    # k = 3*3*2 taps (Higham Sec. 3.1), so a moment by <= 2 k eps32 max|h|^2; a wrong patch is O(1e-1)
    explicit = explicit_patches(hidden, 3, stride, padding)
    np.testing.assert_allclose(second.covariance(), np.cov(explicit.T, bias=True), rtol=0,
                               atol=4 * 18 * np.finfo(np.float32).eps * np.abs(hidden).max() ** 2)


def test_dense_layer_input_is_the_flattened_vector():
    model = build_model("mlp", (6,), 3, seed=0, hidden_units=[4, 5])
    vectors = np.random.default_rng(1).normal(size=(40, 6)).astype(np.float32)
    moments = input_moments(model, "dense_0", vectors, batch_size=7)
    # a sum of n = 40 float64 rows in blocks vs pairwise: n eps mean|x| (Higham Sec. 4.2)
    floor = 2 * len(vectors) * EPS * np.abs(vectors).mean(0)
    assert np.all(np.abs(moments.mean - vectors.astype(np.float64).mean(0)) <= floor)


def test_accumulator_blocks_add_up():
    data = np.random.default_rng(2).normal(size=(100, 3))
    whole, parts = MomentAccumulator(3), MomentAccumulator(3)
    whole.add(data)
    for block in np.array_split(data, 7):
        parts.add(block)
    assert np.all(np.abs(parts.covariance() - whole.covariance()) <= moment_floor(data))
