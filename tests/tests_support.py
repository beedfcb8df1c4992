"""Shared test data and helpers that fixtures of any scope can use."""
import time

from rltx import store

TINY = {
    "description": "tiny test run",
    "dataset": "gaussian", "gaussian_spectrum": "linspace(0.1, 3.0, 27)", "gaussian_patch_size": 3,
    "gaussian_image_size": 6, "gaussian_rotate": True, "gaussian_num_train": 512, "gaussian_num_test": 128,
    "num_examples_upstream": 384, "num_examples_downstream": 64, "num_classes_upstream": 4,
    "architecture": "simple_cnn", "num_conv_layers": 1, "num_filters": 8, "num_units": 16,
    "stride": 3, "padding": "valid", "learning_rate": 0.05, "batch_size": 64, "total_steps": 40,
    "num_eval_points": 8, "eval_batch_size": 128, "checkpoint_every": 10, "seed": 3,
}


# The recipe of the session's shared runs (conftest.py `paired_runs`): TINY on half the data,
# 6 steps with checkpoints 0, 3, 6, and random downstream labels over 3 classes.
PAIRED = {**TINY, "labels_downstream": "random", "num_classes_downstream": 3, "total_steps": 6,
          "num_eval_points": 5, "checkpoint_every": 3, "gaussian_num_train": 256, "gaussian_num_test": 64,
          "num_examples_upstream": 128, "num_examples_downstream": 64, "batch_size": 32, "eval_batch_size": 64}
PAIRED_SEEDS = (0, 1)
# The recipe of the session's shared runs for the alignment analyses (conftest.py `wide_runs`):
# 32 first-layer filters (more than the 27 patch dimensions), checkpoints and metrics at 0, 5, 10, 15, 20; one
# rotated covariance for every seed (gaussian_seed), so the runs' filters may be pooled against it.
WIDE = {**TINY, "num_filters": 32, "total_steps": 20, "checkpoint_every": 5, "num_eval_points": 2, "gaussian_seed": 3}


def tiny_recipe_dict() -> dict:
    """A recipe that trains in a few seconds: 6x6 Gaussian-patch images, one conv layer."""
    return dict(TINY)


def file_digests(directory) -> dict:
    """Every file under `directory` by relative path, with its SHA-256."""
    import hashlib
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def wait_for_rows(run_dir, count, process, timeout=120):
    """Wait until a run started in `process` has stored `count` metric rows (it must stay alive)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (run_dir / store.METRICS_FILE).exists() and len(store.read_metrics(run_dir)) >= count:
            return
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.05)
    raise AssertionError("run made no progress")


def invoke_ok(*args):
    """Run the rltx CLI in-process and require success."""
    from click.testing import CliRunner

    from rltx.cli import main
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def invoke_plot(*args):
    """`rltx plot ...` in-process, whatever its exit code."""
    from click.testing import CliRunner

    from rltx.cli import main
    return CliRunner().invoke(main, ["plot"] + [str(a) for a in args])


def stored(path, name):
    """One dataset of an HDF5 file, read independently of rltx."""
    import h5py
    with h5py.File(path) as handle:
        return handle[name][()]


def text(values):
    """Strings stored by h5py (bytes or str) as str."""
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def pretrain_seeds(directory, recipe: dict, seeds=(0, 1)):
    """Write `recipe` to directory/r.yaml and pre-train it once per seed into directory/run<seed>."""
    import yaml
    (directory / "r.yaml").write_text(yaml.safe_dump(recipe))
    for seed in seeds:
        invoke_ok("pretrain", directory / "r.yaml", "--set", f"seed={seed}", "--out", directory / f"run{seed}",
                  "--quiet")
