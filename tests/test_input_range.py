"""Float images in [0, 1] are fed to the model as they are; rltx says so before training on them (A.3: [-1, 1])."""
import numpy as np
import pytest
import yaml
from tests_support import invoke_ok, tiny_recipe_dict

from rltx.data import ArraySource, input_range_warnings


def _source(x):
    y = np.zeros(len(x), np.int64)
    return ArraySource("npz:t.npz", x, y, x[:0], y[:0], 1)


@pytest.mark.parametrize("x, warns", [
    (np.random.default_rng(0).uniform(0, 1, (8, 6, 6, 3)).astype(np.float32), True),   # scikit-image's [0, 1]
    (np.random.default_rng(0).uniform(-1, 1, (8, 6, 6, 3)).astype(np.float32), False),  # A.3's range
    (np.random.default_rng(0).integers(0, 256, (8, 6, 6, 3)).astype(np.uint8), False),  # raw pixels, scaled by rltx
    (np.random.default_rng(0).uniform(0, 1, (8, 27)).astype(np.float32), False),        # vectors (E.1): any range
])
def test_only_float_images_within_unit_interval_are_named(x, warns):
    assert bool(input_range_warnings(_source(x))) == warns


def test_pretrain_and_transfer_warn_on_unit_interval_floats(tmp_path):
    pixels = np.random.default_rng(1).uniform(0, 1, (300, 6, 6, 3)).astype(np.float32)
    labels = np.random.default_rng(2).integers(0, 2, 300)
    np.savez(tmp_path / "unit.npz", x=pixels, y=labels)
    np.savez(tmp_path / "bytes.npz", x=np.round(pixels * 255).astype(np.uint8), y=labels)
    recipe = {key: value for key, value in tiny_recipe_dict().items() if not key.startswith("gaussian")}
    recipe.update(dataset="npz", data_path=str(tmp_path / "unit.npz"), num_examples_upstream=100,
                  num_examples_downstream=100, num_examples_test=50, total_steps=2,
                  num_classes_upstream=2, num_classes_downstream=2)
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    warning = f"warning: npz:{tmp_path / 'unit.npz'} holds float images in [0, 1]"
    assert warning in invoke_ok("pretrain", tmp_path / "r.yaml", "--out", tmp_path / "pre").output
    assert warning in invoke_ok("transfer", tmp_path / "r.yaml", "--from", tmp_path / "pre", "--out", tmp_path / "t").output
    as_bytes = invoke_ok("pretrain", tmp_path / "r.yaml", "--set", f"data_path={tmp_path / 'bytes.npz'}",
                         "--out", tmp_path / "pre_bytes")
    assert "warning" not in as_bytes.output
