"""bench/vgg_plateau.py: the two readings of A.3's init_scale it compares, and its A.4 transfer.

Oracles: the He standard deviation each reading names, written out by hand (std factor init_scale, or
sqrt(init_scale)); A.4's rule that a transferred layer keeps its direction and gets its norm at initialisation.
"""
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from rltx.models import HEAD, build_model

SPEC = importlib.util.spec_from_file_location(
    "vgg_plateau", Path(__file__).resolve().parent.parent / "bench" / "vgg_plateau.py")
vgg_plateau = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(vgg_plateau)


@pytest.mark.parametrize("reading, std_factor", [("std", 0.526), ("variance", math.sqrt(0.526))])
def test_each_reading_gives_the_he_std_it_names(reading, std_factor):
    model = build_model("vgg16", (8, 8, 3), 5, init_scale=vgg_plateau.READINGS[reading](0.526), seed=0)
    kernel = model.get_layer("conv_5").kernel.numpy()  # 3x3x256 -> 256: 589,824 draws
    he_std = math.sqrt(2.0 / (3 * 3 * 256))
    assert abs(kernel.std() / (std_factor * he_std) - 1) < 0.01


def test_transfer_rescales_every_layer_but_the_head_to_its_initial_norm():
    source = build_model("vgg16", (8, 8, 3), 5, init_scale=0.5, seed=0)
    initial = source.get_weights()
    rng = np.random.default_rng(0)
    source.set_weights([3.0 * w + 0.1 * rng.standard_normal(w.shape).astype(w.dtype) for w in initial])
    target = build_model("vgg16", (8, 8, 3), 10, init_scale=0.5, seed=1)
    head_before = target.get_layer(HEAD).get_weights()
    vgg_plateau.transfer_rescaled(source, initial, target, HEAD)
    start = 0
    for layer, moved in zip(target.layers, source.layers):
        count = len(layer.weights)
        if count and layer.name != HEAD:
            got = np.concatenate([w.ravel() for w in layer.get_weights()]).astype(np.float64)
            trained = np.concatenate([w.ravel() for w in moved.get_weights()]).astype(np.float64)
            init = np.concatenate([w.ravel() for w in initial[start:start + count]]).astype(np.float64)
            assert np.linalg.norm(got) == pytest.approx(np.linalg.norm(init), rel=1e-5)
            np.testing.assert_allclose(got / np.linalg.norm(got), trained / np.linalg.norm(trained), atol=1e-6)
        start += count
    for before, after in zip(head_before, target.get_layer(HEAD).get_weights()):
        np.testing.assert_array_equal(before, after)
