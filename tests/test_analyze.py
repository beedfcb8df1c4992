"""`rltx analyze` alignment kinds on real runs: stored results, JSON, pooling, errors."""
import io
import json

import h5py
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from rltx.analysis.results import read_result
from rltx.cli import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def runs(wide_runs):
    """run0, run1: the shared WIDE runs (conftest.py)."""
    return wide_runs


@pytest.fixture(scope="module")
def others(tmp_path_factory):
    """separated: one step on well-separated patch eigenvalues; narrow: 8 filters, fewer than the
    27 patch dimensions."""
    from tests_support import WIDE
    directory = tmp_path_factory.mktemp("analyze")
    separated = {**WIDE, "gaussian_spectrum": [3 * 0.7 ** i for i in range(27)], "total_steps": 1}
    (directory / "separated.yaml").write_text(yaml.safe_dump(separated))
    assert invoke("pretrain", directory / "separated.yaml", "--out", directory / "separated", "--quiet").exit_code == 0
    (directory / "narrow.yaml").write_text(yaml.safe_dump({**WIDE, "num_filters": 8}))
    assert invoke("pretrain", directory / "narrow.yaml", "--out", directory / "narrow", "--quiet").exit_code == 0
    return directory


def first_layer_filters(run_dir, step):
    with h5py.File(run_dir / "checkpoints" / f"step_{step:08d}.h5") as handle:
        kernel = handle["weights/conv_0/kernel"][()].astype(np.float64)
    return kernel.reshape(-1, kernel.shape[-1])


def test_misalignment_over_all_checkpoints_stored_and_json(runs, tmp_path):
    result = invoke("analyze", "misalignment", runs / "run0", "--all-steps", "-o", tmp_path / "m.h5", "--json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    stored = read_result(tmp_path / "m.h5")
    assert stored.kind == printed["kind"] == "misalignment"
    assert stored.inputs["steps"] == [0, 5, 10, 15, 20] and stored.inputs["layer"] == "conv_0"
    assert np.all(stored.arrays["misalignment_data"] >= 0) and np.all(stored.arrays["misalignment_random"] >= 0)
    filters = first_layer_filters(runs / "run0", 20)  # independent read of the raw checkpoint
    np.testing.assert_allclose(stored.arrays["sigma_w"][-1], np.cov(filters, bias=True), rtol=1e-6)  # Eq. (2): centred
    assert stored.arrays["sigma_x"].shape == (5, 27, 27)


def test_sigma_w_pooled_over_runs(runs, tmp_path):
    assert invoke("analyze", "misalignment", runs / "run0", runs / "run1", "-o", tmp_path / "p.h5").exit_code == 0
    pooled = np.concatenate([first_layer_filters(runs / f"run{s}", 20) for s in (0, 1)], axis=1)
    np.testing.assert_allclose(read_result(tmp_path / "p.h5").arrays["sigma_w"][0], np.cov(pooled, bias=True), rtol=1e-6)


def test_transfer_function_is_the_diagonal_of_sigma_w_in_the_data_basis(runs, tmp_path):
    assert invoke("analyze", "transfer-function", runs / "run0", "--all-steps", "-o", tmp_path / "f.h5").exit_code == 0
    assert invoke("analyze", "misalignment", runs / "run0", "--all-steps", "-o", tmp_path / "m.h5").exit_code == 0
    curve, cov = read_result(tmp_path / "f.h5").arrays, read_result(tmp_path / "m.h5").arrays
    values, vectors = np.linalg.eigh(cov["sigma_x"][-1])
    np.testing.assert_allclose(curve["sigma"][-1], np.sqrt(values[::-1]), rtol=1e-6)
    tau = np.sqrt(np.einsum("ij,jk,ki->i", vectors.T, cov["sigma_w"][-1], vectors))[::-1]
    np.testing.assert_allclose(curve["tau"][-1], tau, rtol=1e-6)


def test_eigenvectors_and_stability(runs, others, tmp_path):
    assert invoke("analyze", "eigenvectors", runs / "run0", "--top-k", "4", "-o", tmp_path / "e.h5").exit_code == 0
    found = read_result(tmp_path / "e.h5").arrays
    assert found["w_vectors"].shape == (4, 27) and list(found["patch_shape"]) == [3, 3, 3]
    result = invoke("analyze", "eigen-stability", others / "separated", "--json")
    overlap = np.array(json.loads(result.output)["arrays"]["overlap"])
    # |<e_i, e'_i>| of unit eigenvectors: <= 1 up to the norms' and the dot product's d eps each (d = 27)
    assert overlap.shape == (27,) and np.all((overlap >= 0) & (overlap <= 1 + 4 * 27 * np.finfo(np.float64).eps))
    # D.1: with well-separated eigenvalues (ratio 0.7) the top eigenvectors agree between halves.
    assert np.all(overlap[:3] > 0.95)


def test_fixable_errors_exit_2(runs, others):
    singular = invoke("analyze", "misalignment", others / "narrow")
    assert singular.exit_code == 2 and "rank 7 < 27" in singular.output  # 8 filters, centred
    missing = invoke("analyze", "transfer-function", runs / "run0", "--step", "3")
    assert missing.exit_code == 2 and "stored steps: 0, 5, 10, 15, 20" in missing.output
    one = invoke("analyze", "eigen-stability", runs / "run0", "--between", "runs")
    assert one.exit_code == 2 and "at least two runs" in one.output
    layer = invoke("analyze", "misalignment", runs / "run0", "--layer", "conv_9")
    assert layer.exit_code == 2 and "no layer 'conv_9'" in layer.output


def test_activations_from_the_cli(runs, tmp_path):
    result = invoke("analyze", "activations", runs / "run0", "--all-steps", "--num-examples", "50",
                    "-o", tmp_path / "a.h5")
    assert result.exit_code == 0, result.output
    stored = read_result(tmp_path / "a.h5")
    assert stored.inputs["steps"][0] == [0, 5, 10, 15, 20]
    histogram = stored.arrays["0/example_histogram"]
    assert histogram.shape[:2] == (5, 2) and np.all(histogram.sum(axis=-1) == 50)


def test_curves_and_weights_from_the_cli(runs, tmp_path):
    result = invoke("analyze", "curves", runs / "run0", runs / "run1", "--json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed["kind"] == "curves" and len(printed["arrays"]["train_auc"]) == 2
    result = invoke("analyze", "weights", runs / "run0", "--all-steps", "-o", tmp_path / "w.h5")
    assert result.exit_code == 0, result.output
    assert read_result(tmp_path / "w.h5").arrays["distance"].shape[0] == 5


def test_transfer_function_table_names_each_tau_column_by_its_step():
    from rltx.analysis.covariance import _tau_table
    steps = list(range(0, 110, 10))
    tau = np.arange(22.0).reshape(11, 2)
    rows = _tau_table(steps, np.array([3.0, 2.0]), tau)
    columns = [name for name in rows[0] if name.startswith("tau")]
    assert len(columns) == 8 and columns[0] == "tau step 0" and columns[-1] == "tau step 100"
    assert rows[1]["tau step 100"] == tau[-1, 1] and rows[0]["sigma"] == 3.0
    assert list(_tau_table([40], np.array([1.0]), np.array([[0.5]]))[0]) == ["i", "sigma", "tau step 40"]


def test_a_result_table_too_wide_for_the_terminal_is_printed_one_block_per_row():
    """rich cuts every cell of a too-wide table to a few characters ("transf…", "0.5296…"): on a narrow
    terminal each row is printed as `name: value` lines instead, every value whole."""
    from rich.console import Console

    from rltx.analysis.results import Result, print_table
    row = {"group": "transfer, from_step=[300], transfer_mode=covariance", "runs": 2, "train_auc": 0.529608,
           "train_auc std": 0.0025668, "final_train_accuracy": 0.692}
    result = Result("curves", {}, {}, [row, {**row, "group": "scratch, transfer_mode=weights"}])
    for width, blocks in ((80, True), (250, False)):
        console = Console(width=width, record=True, file=io.StringIO())
        print_table(result, console)
        text = console.export_text()
        assert ("  group: transfer, from_step=[300], transfer_mode=covariance" in text) == blocks, text
        assert "…" not in text and "0.529608" in text and "0.0025668" in text


def test_labelled_gaussian_runs_of_two_seeds_are_not_pooled_but_unlabelled_ones_are(tmp_path):
    """Unrotated Gaussian data is one law for every seed, unless it carries class means, which the data seed draws
    (`DataSpec.distribution`): from the CLI, two labelled runs of seeds 0 and 1 are refused in one line, the same
    pair without labels pools."""
    import subprocess
    import sys

    from tests_support import TINY
    base = {**TINY, "gaussian_rotate": False, "num_filters": 32, "total_steps": 2, "num_eval_points": 2,
            "checkpoint_every": 0}  # 2 x 32 filters: a full-rank Sigma_w over 27 dimensions
    for name, keys in (("labelled", {"gaussian_num_classes": 3, "num_classes_upstream": 3,
                                     "labels_upstream": "real"}), ("unlabelled", {})):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({**base, **keys}))
        for seed in (0, 1):
            made = CliRunner().invoke(main, ["pretrain", str(tmp_path / f"{name}.yaml"), "--set", f"seed={seed}",
                                             "--out", str(tmp_path / f"{name}{seed}"), "--quiet"])
            assert made.exit_code == 0, made.output
    runs = lambda name: [str(tmp_path / f"{name}{seed}") for seed in (0, 1)]  # noqa: E731
    refused = subprocess.run([sys.executable, "-m", "rltx", "analyze", "misalignment", *runs("labelled")],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert refused.stderr.startswith("Error: runs pooled into one Sigma_w need inputs of one distribution, but ")
    pooled = CliRunner().invoke(main, ["analyze", "misalignment", *runs("unlabelled")])
    assert pooled.exit_code == 0, pooled.output


def test_runs_of_another_data_law_are_not_pooled_into_one_sigma_w(paired_runs, tmp_path):
    """pre0 and pre1 ran on rotated Gaussian data of their own seeds: two covariances. Pooling their filters
    against the first run's Sigma_x would measure pre1 against data it never saw, so it is refused in one line
    (as a user meets it); runs of one law (the WIDE runs: one gaussian_seed) pool (test_sigma_w_pooled_over_runs)."""
    import subprocess
    import sys
    for command in ("misalignment", "transfer-function"):
        result = subprocess.run([sys.executable, "-m", "rltx", "analyze", command, str(paired_runs / "pre0"),
                                 str(paired_runs / "pre1"), "-o", str(tmp_path / f"{command}.h5")],
                                capture_output=True, text=True, timeout=300)
        lines = result.stderr.splitlines()  # rltx's line only: TensorFlow's native log lines are diverted
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert lines[0].startswith("Error: runs pooled into one Sigma_w need inputs of one distribution, but ")
        assert "gaussian_seed" in lines[0] and not (tmp_path / f"{command}.h5").exists()
    from rltx.config import DataSpec
    law = DataSpec.of("dead_leaves", seed=1).distribution()  # other images of one law: pooled
    assert law == DataSpec.of("dead_leaves", seed=2, natural_seed=5).distribution()
    assert DataSpec.of("gaussian", seed=1).distribution() == DataSpec.of("gaussian", seed=2).distribution()
    assert DataSpec.of("gaussian", seed=1, gaussian_rotate=True).distribution() != \
        DataSpec.of("gaussian", seed=2, gaussian_rotate=True).distribution()
    # the seed the data is drawn with counts, not how it is given; split sizes change the sample, not the law
    assert DataSpec.of("gaussian", seed=0, gaussian_rotate=True).distribution() == \
        DataSpec.of("gaussian", seed=1, gaussian_rotate=True, gaussian_seed=0).distribution()
    assert DataSpec.of("gaussian", seed=1, gaussian_num_test=64).distribution() == \
        DataSpec.of("gaussian", seed=2, gaussian_num_test=128).distribution()
    assert DataSpec.of("gaussian", seed=1, gaussian_num_classes=3).distribution() != \
        DataSpec.of("gaussian", seed=2, gaussian_num_classes=3).distribution()  # class means drawn from the seed
