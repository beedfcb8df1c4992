"""`rltx sweep --executor ray`: a 4-run sweep on a local Ray, then the same command on a running
Ray cluster skips it all; without Ray installed, a one-line usage error."""
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
import yaml
from click.testing import CliRunner

from rltx.cli import main
from rltx.sweep import read_plan
from rltx.sweep.execute import run_status

SWEEP = {
    "description": "4-run Ray sweep",
    "dataset": "gaussian", "gaussian_spectrum": "linspace(0.1, 3.0, 27)", "gaussian_patch_size": 3,
    "gaussian_image_size": 6, "gaussian_num_classes": 4, "gaussian_seed": 0,
    "gaussian_num_train": 256, "gaussian_num_test": 64,
    "num_examples_upstream": 128, "num_examples_downstream": 64,
    "num_classes_upstream": 4, "num_classes_downstream": 4,
    "architecture": "simple_cnn", "num_conv_layers": 1, "num_filters": 4, "num_units": 8,
    "learning_rate": 0.05, "batch_size": 32, "total_steps": 4, "total_steps_downstream": 4,
    "num_eval_points": 2, "seed": 0,
    "sweep": {"architectures": ["simple_cnn"], "groups": 2, "seeds": 1, "transfer_layers": ["all"],
              "labels_downstream": ["real"]},
}

# A Ray cluster held by its own process (ray.init in pytest would leave Ray's signal handlers and
# environment behind): prints its address, and once stdin closes shows the sweep left it running.
HOLD_RAY = """
import logging, sys
import ray
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()
print(ray.get(ray.remote(lambda: "still running").remote()), flush=True)
ray.shutdown()
"""


def _recipe(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(SWEEP))
    return path


def _sweep(*args):
    """`rltx sweep ... --executor ray` as its own process (Ray starts workers and services from it)."""
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1",
           "RAY_AUTH_MODE": "token"}  # joining by address: Ray >= 2.5x clusters require their token
    env.pop("RAY_ADDRESS", None)
    result = subprocess.run([sys.executable, "-m", "rltx", "sweep", *map(str, args), "--executor", "ray"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _stamps(run_dirs):
    return {d: [os.stat(os.path.join(d, f)).st_mtime_ns for f in ("run.h5", "metrics.h5")] for d in run_dirs}


@pytest.fixture
def short_ray_tmpdir(monkeypatch):
    """Ray's session files under a short path: its sockets live there, and AF_UNIX paths stop at 107 bytes, which
    Ray's session path under pytest's temporary files (conftest's TMPDIR) passes when pytest-xdist adds a
    worker folder (popen-gw0/)."""
    directory = tempfile.mkdtemp(prefix="rltx-ray-", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", directory)
    yield
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.slow
def test_ray_sweep_runs_then_skips(tmp_path, short_ray_tmpdir):
    recipe, out = _recipe(tmp_path), tmp_path / "sweep"
    first = _sweep(recipe, "--out", out)  # no --address: a local Ray, started and stopped by the sweep
    plan = read_plan(out / "plan.json")
    run_dirs = [d for run in plan.runs for d in run.run_dirs]
    assert len(plan.runs) == 4 and "4 completed" in first
    assert all(run_status(d) == "completed" for d in run_dirs)
    assert (out / "curves.h5").exists() and len(list((out / "logs").iterdir())) == 4
    stamps = _stamps(run_dirs)

    holder = subprocess.Popen([sys.executable, "-c", HOLD_RAY], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        address = holder.stdout.readline().strip()
        assert address, "the Ray cluster did not start"
        second = _sweep(recipe, "--out", out, "--address", address)
        left, _ = holder.communicate("", timeout=120)
    finally:
        if holder.poll() is None:  # the test failed: stop the cluster (Ray stops its services with it)
            holder.terminate()
            holder.wait(timeout=60)
    assert "0 completed" in second and "4 skipped" in second
    assert _stamps(run_dirs) == stamps  # nothing retrained
    assert left.strip() == "still running"  # the sweep disconnected from a cluster it did not start


def test_ray_missing_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    result = CliRunner().invoke(main, ["sweep", str(_recipe(tmp_path)), "--out", str(tmp_path / "sweep"),
                                       "--executor", "ray"])
    assert result.exit_code == 2
    error = result.stderr.strip().splitlines()
    assert len(error) == 1 and "pip install 'rltx[ray]'" in error[0], result.output
