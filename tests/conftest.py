import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
from tests_support import TINY  # noqa: E402


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
