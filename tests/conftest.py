import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

TINY = {
    "description": "tiny test run",
    "dataset": "gaussian", "gaussian_spectrum": "linspace(0.1, 3.0, 27)", "gaussian_patch_size": 3,
    "gaussian_image_size": 6, "gaussian_rotate": True, "gaussian_num_train": 512, "gaussian_num_test": 128,
    "num_examples_upstream": 384, "num_examples_downstream": 64, "num_classes_upstream": 4,
    "architecture": "simple_cnn", "num_conv_layers": 1, "num_filters": 8, "num_units": 16,
    "stride": 3, "padding": "valid", "learning_rate": 0.05, "batch_size": 64, "total_steps": 40,
    "num_eval_points": 8, "eval_batch_size": 128, "checkpoint_every": 10, "seed": 3,
}


@pytest.fixture
def tiny_dict():
    """A recipe that trains in a few seconds: 6x6 Gaussian-patch images, one conv layer."""
    return dict(TINY)


@pytest.fixture
def tiny_recipe():
    from rltx.config import make_recipe
    return make_recipe(dict(TINY))


@pytest.fixture
def tiny_yaml(tmp_path):
    import yaml
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path
