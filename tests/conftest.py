import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
from tests_support import tiny_recipe_dict  # noqa: E402


@pytest.fixture
def tiny_recipe():
    from rltx.config import make_recipe
    return make_recipe(tiny_recipe_dict())


@pytest.fixture
def tiny_yaml(tmp_path):
    import yaml
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe_dict()))
    return path
