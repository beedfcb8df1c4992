import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
from tests_support import (PAIRED, PAIRED_SEEDS, WIDE, file_digests, invoke_ok, pretrain_seeds,  # noqa: E402
                           tiny_recipe_dict)


@pytest.fixture(scope="session", autouse=True)
def session_temporary_files(tmp_path_factory):
    """Send the session's temporary files, this process's and its subprocesses', under pytest's base
    temp (pytest keeps the last three) instead of the system's: tensorflow-datasets leaves an empty
    tmp...tfds directory behind for every builder of a dataset that is not prepared (its
    DatasetInfo.initialize_from_bucket), about 170 per run of the suite."""
    import tempfile
    directory = str(tmp_path_factory.mktemp("tempfiles"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", directory)
        patch.setattr(tempfile, "tempdir", directory)
        yield


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


@pytest.fixture(scope="session")
def paired_runs(tmp_path_factory):
    """Runs of the PAIRED recipe (r.yaml), shared by every module that only reads runs: for each
    seed s in PAIRED_SEEDS, pre<s> (pre-training) and, under sweep/, t<s> (its transfer) with
    t<s>-scratch (the paired baseline). Read-only, checked at the end of the session: a test that
    writes into a run copies it first."""
    import yaml
    directory = tmp_path_factory.mktemp("paired_runs")
    (directory / "r.yaml").write_text(yaml.safe_dump(PAIRED))
    for seed in PAIRED_SEEDS:
        invoke_ok("pretrain", directory / "r.yaml", "--set", f"seed={seed}", "--out", directory / f"pre{seed}",
                  "--quiet")
        invoke_ok("transfer", directory / "r.yaml", "--from", directory / f"pre{seed}", "--set", f"seed={seed}",
                  "--with-baseline", "--out", directory / "sweep" / f"t{seed}", "--quiet")
    yield from _unchanged(directory)


@pytest.fixture(scope="session")
def wide_runs(tmp_path_factory):
    """Runs of the WIDE recipe (r.yaml) with seeds 0 and 1: run0, run1. Read-only, like paired_runs."""
    directory = tmp_path_factory.mktemp("wide_runs")
    pretrain_seeds(directory, WIDE)
    yield from _unchanged(directory)


def _unchanged(directory):
    """Yield the shared `directory`; at the end of the session, fail if any test changed a file in it."""
    before = file_digests(directory)
    yield directory
    after = file_digests(directory)
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    assert not changed, f"tests changed the shared runs: {changed[:5]}"
