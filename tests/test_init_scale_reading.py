"""rltx before 0.2.0 put A.3's init_scale on He's std; a transfer from such a run says how to match it.

Oracle: the std factor each reading gives, written out (0.1.0: init_scale; now: sqrt(init_scale)).
"""
import shutil

import pytest
import yaml
from tests_support import invoke_ok

from rltx import store
from rltx.models import init_scale_mismatch


@pytest.mark.parametrize("version, source_scale, scale, warns", [
    ("0.1.0", 0.5, 0.5, True),      # fresh layers at sqrt(0.5) = 0.71 of He's std, the source's at 0.5
    ("0.1.0", 0.5, 0.25, False),    # sqrt(0.25) = 0.5: the source's std
    ("0.1.0", 1.0, 1.0, False),     # both readings agree at 1
    ("0.2.0", 0.5, 0.5, False),     # the source read it as this rltx does
    ("not installed", 0.5, 0.5, False),
])
def test_mismatch_is_named_only_when_the_std_differs(version, source_scale, scale, warns):
    message = init_scale_mismatch(version, source_scale, scale)
    assert bool(message) == warns
    if warns:
        assert "set init_scale=0.25 to match" in message and "0.707 of He's std" in message


def _as_made_by_rltx_010(run_dir, init_scale):
    record = store.read_run_record(run_dir)
    config = yaml.safe_load(record.config_yaml)
    config["init_scale"] = init_scale
    record.config_yaml = yaml.safe_dump(config)
    record.environment["version/rltx"] = "0.1.0"
    store.write_run_record(run_dir, record)


def test_transfer_from_a_010_run_warns_and_names_the_matching_init_scale(paired_runs, tmp_path):
    source = tmp_path / "pre0"
    shutil.copytree(paired_runs / "pre0", source)
    _as_made_by_rltx_010(source, 0.5)
    recipe = paired_runs / "r.yaml"
    same_data = ("--set", "seed=0")  # pre0's seed draws its gaussian data
    warned = invoke_ok("transfer", recipe, "--from", source, *same_data, "--set", "init_scale=0.5",
                       "--out", tmp_path / "t")
    assert f"warning: source {source.resolve()} was made by rltx 0.1.0" in warned.output
    assert "set init_scale=0.25 to match" in warned.output
    matched = invoke_ok("transfer", recipe, "--from", source, *same_data, "--set", "init_scale=0.25",
                        "--out", tmp_path / "m")
    assert "warning" not in matched.output


def test_run_records_the_running_codes_version_not_stale_installed_metadata(monkeypatch):
    """An editable install keeps the metadata of its first install; the run must record the code's own version."""
    import tensorflow as tf

    import rltx
    from rltx import environment
    monkeypatch.setattr(environment.metadata, "version", lambda package: "0.1.0")
    recorded = environment.describe_environment(tf.distribute.get_strategy())
    assert recorded["version/rltx"] == rltx.__version__ != "0.1.0"
    assert recorded["version/tensorflow"] == "0.1.0"  # the other packages still come from the metadata


def test_construct_init_from_a_010_run_warns_and_names_the_matching_init_scale(paired_runs, tmp_path):
    """--covariance-from keeps the source's initial norm for the sampled layer: a mismatched reading is named."""
    source = tmp_path / "pre0"
    shutil.copytree(paired_runs / "pre0", source)
    _as_made_by_rltx_010(source, 0.5)
    recipe = paired_runs / "r.yaml"
    warned = invoke_ok("construct-init", recipe, "--layers", "1", "--covariance-from", source,
                       "--set", "init_scale=0.5", "-o", tmp_path / "w.h5")
    assert f"warning: run {source.resolve()} was made by rltx 0.1.0" in warned.output
    assert "set init_scale=0.25 to match" in warned.output and (tmp_path / "w.h5").exists()
    matched = invoke_ok("construct-init", recipe, "--layers", "1", "--covariance-from", source,
                        "--set", "init_scale=0.25", "-o", tmp_path / "m.h5")
    assert "warning" not in matched.output
