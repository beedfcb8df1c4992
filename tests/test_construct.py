"""construct-init: filters from the data's patch covariances (Sec. 2.5, E.3)."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from scipy.linalg import subspace_angles

from rltx import store
from rltx.analysis.alignment import fix_signs
from rltx.cli import main
from rltx.config import make_recipe
from rltx.construct import construct_init, filters_from_eigenvectors, select_eigenvectors, tau_values
from rltx.errors import UsageError
from rltx.hyperrule import TAU_CURVES
from rltx.tasks import open_recipe_source
from tests_support import file_digests, tiny_recipe_dict


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def gapped_recipe(**changes):
    # Sigma with a clear gap after the 8th eigenvalue, randomly rotated: its top-8 eigenspace is the
    # oracle the constructed filters must span.
    return make_recipe({**tiny_recipe_dict(), "gaussian_spectrum": [10.0] * 8 + [1.0] * 19, "gaussian_num_train": 4096,
                        "num_examples_upstream": 4000, "num_examples_downstream": 0, "num_filters": 8,
                        "construct_tau": "f2", **changes})


def test_first_layer_spans_the_top_eigenspace_of_sigma():
    recipe = gapped_recipe()
    weights, records, indices = construct_init(recipe, [1])
    kernel = weights["conv_0/kernel"].reshape(27, 8).astype(np.float64)
    truth = np.linalg.eigh(open_recipe_source(recipe).covariance)[1][:, -8:]
    assert np.max(subspace_angles(kernel, truth)) < 0.02  # radians
    np.testing.assert_allclose(np.linalg.norm(kernel, axis=0), 1.0, rtol=1e-5)  # f2: tau = 1
    assert not weights["conv_0/bias"].any()
    assert len(indices) == 4000 and records["conv_0"].numbers["patches"] == 4000 * 4
    # Table 5's choice, the smallest eigenvectors: orthogonal to the top eigenspace.
    bottom, _, _ = construct_init(gapped_recipe(construct_eigenvectors="bottom"), [1])
    assert np.min(subspace_angles(bottom["conv_0/kernel"].reshape(27, 8).astype(np.float64), truth)) > 1.5


def test_sampled_filters_have_the_requested_covariance():
    rng = np.random.default_rng(0)
    vectors = np.linalg.qr(rng.normal(size=(27, 27)))[0][:, :16]
    tau = np.asarray(TAU_CURVES["f1"])
    requested = (vectors * tau ** 2) @ vectors.T
    samples = np.concatenate([filters_from_eigenvectors(vectors, tau, (3, 3, 3, 64), "sample", rng).reshape(27, 64)
                              for _ in range(300)], axis=1)
    estimate, n = samples @ samples.T / samples.shape[1], samples.shape[1]
    # 5 sigma of the Wishart entries, plus the product's round-off n eps |S||S|^T / n (Higham Sec. 3.5)
    roundoff = np.finfo(np.float64).eps * np.abs(samples) @ np.abs(samples).T
    tolerance = 5 * np.sqrt((np.outer(np.diag(requested), np.diag(requested)) + requested ** 2) / n) + roundoff
    assert np.all(np.abs(estimate - requested) <= tolerance)


def test_eigenvector_choices_and_tau_curves(tmp_path):
    assert list(select_eigenvectors("top", 27, 16)) == list(range(16))
    assert list(select_eigenvectors("bottom", 27, 16)) == list(range(11, 27))
    assert list(select_eigenvectors("e4..e19", 27, 16)) == list(range(3, 19))  # Table 6, 1-based
    with pytest.raises(UsageError, match="do not fit"):
        select_eigenvectors("e20..e30", 27, 16)
    chosen = np.arange(16)
    assert list(tau_values("f2", chosen, 27)) == [1.0] * 16
    assert tau_values("f1", chosen, 27)[0] < tau_values("f3", chosen, 27)[0] < tau_values("f1", chosen, 27)[-1]
    with pytest.raises(UsageError, match="gives 3 values"):
        tau_values([1, 2, 3], chosen, 27)


def test_cli_layers_init_file_and_training_from_it(tmp_path):
    recipe = {**tiny_recipe_dict(), "num_conv_layers": 2, "stride": 1, "padding": "same", "num_filters": 9,
              "construct_tau": "f3", "total_steps": 5, "num_eval_points": 2}  # metrics at 0 and 5 only
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    result = invoke("construct-init", tmp_path / "r.yaml", "--layers", "1,2", "--set", "construct_eigenvectors=[top, e2..e10]",
                    "-o", tmp_path / "init.h5")
    assert result.exit_code == 0, result.output
    import h5py
    with h5py.File(tmp_path / "init.h5") as handle:
        assert list(handle["construction"]) == ["conv_0", "conv_1"]
        assert list(handle["construction/conv_1/chosen"][()]) == list(range(1, 10))
        assert handle["construction/conv_1/eigenvalues"].shape == (81,)  # 3x3 patches of 9 channels
        assert len(handle["sample_indices"][()]) == 384
    init = store.read_init_weights(tmp_path / "init.h5")
    assert invoke("pretrain", tmp_path / "r.yaml", "--init", tmp_path / "init.h5", "--out", tmp_path / "run",
                  "--quiet").exit_code == 0
    start = store.read_checkpoint(tmp_path / "run", 0)
    for name in ("conv_0/kernel", "conv_1/kernel", "conv_1/bias", "dense_0/kernel"):
        np.testing.assert_array_equal(start[name], init[name])
    # The head is never taken from an init file; pretrain and a later transfer both accept --init.
    recipe_downstream = ["--set", "labels_downstream=random", "--set", "num_classes_downstream=3"]
    assert invoke("transfer", tmp_path / "r.yaml", "--from", "scratch", "--init", tmp_path / "init.h5",
                  *recipe_downstream, "--out", tmp_path / "t", "--quiet").exit_code == 0
    np.testing.assert_array_equal(store.read_checkpoint(tmp_path / "t", 0)["conv_1/kernel"], init["conv_1/kernel"])


def test_cli_errors_exit_2(tmp_path):
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(tiny_recipe_dict()))
    bad_layers = invoke("construct-init", tmp_path / "r.yaml", "--layers", "2", "-o", tmp_path / "i.h5")
    assert bad_layers.exit_code == 2 and "among 1..1" in bad_layers.output
    assert invoke("construct-init", tmp_path / "r.yaml", "--layers", "x", "-o", tmp_path / "i.h5").exit_code == 2
    too_many = invoke("construct-init", tmp_path / "r.yaml", "--layers", "1", "--set", "num_filters=30",
                      "-o", tmp_path / "i.h5")
    assert too_many.exit_code == 2 and "do not fit" in too_many.output
    assert invoke("construct-init", tmp_path / "r.yaml", "--layers", "1", "-o", tmp_path / "i.h5").exit_code == 0
    again = invoke("construct-init", tmp_path / "r.yaml", "--layers", "1", "-o", tmp_path / "i.h5")
    assert again.exit_code == 2 and "exists" in again.output
    quiet = invoke("construct-init", tmp_path / "r.yaml", "--layers", "1", "-o", tmp_path / "q.h5", "--quiet")
    assert quiet.exit_code == 0 and quiet.output == f"wrote {tmp_path / 'q.h5'}\n"  # no per-layer line
    both = invoke("construct-init", tmp_path / "r.yaml", "--layers", "1", "-o", tmp_path / "b.h5", "--table",
                  tmp_path / "table")
    assert both.exit_code == 2 and "drop --layers, -o" in both.output
    assert not (tmp_path / "table").exists() and not (tmp_path / "b.h5").exists()
    other = invoke("pretrain", tmp_path / "r.yaml", "--init", tmp_path / "i.h5", "--set", "num_filters=4",
                   "--out", tmp_path / "run")
    assert other.exit_code == 2 and "does not fit this model" in other.output


def test_table_schedule_shorter_than_its_iterations_is_one_line(tmp_path):
    """As a user meets it: `rltx` in a subprocess, one line on stderr, exit 2, no table directory."""
    import subprocess
    import sys
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(tiny_recipe_dict()))
    result = subprocess.run([sys.executable, "-m", "rltx", "construct-init", str(tmp_path / "r.yaml"), "--table",
                             str(tmp_path / "table"), "--set", "schedule_steps=50", "--set", "table_iterations=[5, 60]"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "Error: schedule_steps 50 is shorter than the table's 60 iterations; give at least 60, or null"]
    assert not (tmp_path / "table").exists()


@pytest.mark.slow
def test_table_from_the_cli_on_real_images(tmp_path):
    """Table 1's procedure end to end on scikit-learn's digit images (offline): one row per layer
    set and iteration count, equal to the metrics of the runs it trained."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    np.savez(tmp_path / "digits.npz", x=np.round(digits.images / 16 * 255).astype(np.uint8)[..., None], y=digits.target)
    recipe = yaml.safe_load((Path(__file__).parent.parent / "recipes" / "table1.yaml").read_text())
    recipe.update(dataset="npz", data_path=str(tmp_path / "digits.npz"), num_examples_upstream=1000,
                  num_examples_test=300, num_units=32, num_filters=8, batch_size=100, learning_rate=0.05,
                  pool_size=2, table_iterations=[5, 20], total_steps=20, construct_tau=[1.0, 2.0] + [4.0] * 6)
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(recipe))
    result = invoke("construct-init", tmp_path / "t.yaml", "--table", tmp_path / "table")
    assert result.exit_code == 0, result.output
    assert result.output.count("step 20/20") == 4  # training progress of each layer set is shown
    from rltx.analysis.results import read_result
    table = read_result(tmp_path / "table" / "table.h5")
    assert table.arrays["accuracy"].shape == (4, 2, 2)
    assert [s.decode() if isinstance(s, bytes) else s for s in table.arrays["layer_sets"]] == ["{}", "{1}", "{1,2}", "{1,2,3}"]
    metrics = {row["step"]: row for row in store.read_metrics(tmp_path / "table" / "layers_1_2")}
    assert table.arrays["accuracy"][2, 1, 1] == metrics[20]["test_accuracy"]
    assert (tmp_path / "table" / "layers_1_2_3.h5").exists() and not (tmp_path / "table" / "layers_none.h5").exists()
    # moved elsewhere, the table is read again from its runs, which know their init files by their sha256
    import shutil
    shutil.move(tmp_path / "table", tmp_path / "moved")
    before = file_digests(tmp_path / "moved")
    again = invoke("construct-init", tmp_path / "t.yaml", "--table", tmp_path / "moved")
    assert again.exit_code == 0, again.output
    assert read_result(tmp_path / "moved" / "table.h5").arrays["accuracy"].tolist() == table.arrays["accuracy"].tolist()
    assert {k: v for k, v in file_digests(tmp_path / "moved").items() if k != "table.h5"} == \
        {k: v for k, v in before.items() if k != "table.h5"}  # nothing trained again


def test_every_recipe_loads():
    from rltx.recipe_file import load_recipe
    for path in sorted((Path(__file__).parent.parent / "recipes").glob("*.yaml")):
        assert load_recipe(path).description, path


def test_measured_tau_curve_and_learned_covariance(tmp_path):
    """A tau curve measured by `analyze transfer-function`, and layer 1 sampled from the Sigma_w
    of trained runs (Sec. 2.4): both recorded in the init file."""
    # one rotated covariance for every seed (gaussian_seed: TINY's seed), so the runs of two seeds below may pool
    recipe = {**tiny_recipe_dict(), "num_filters": 27, "total_steps": 5, "num_eval_points": 2, "gaussian_seed": 3}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    assert invoke("pretrain", tmp_path / "r.yaml", "--out", tmp_path / "run", "--quiet").exit_code == 0
    assert invoke("analyze", "transfer-function", tmp_path / "run", "-o", tmp_path / "f.h5").exit_code == 0
    result = invoke("construct-init", tmp_path / "r.yaml", "--layers", "1", "--set", f"construct_tau={tmp_path / 'f.h5'}",
                    "-o", tmp_path / "measured.h5")
    assert result.exit_code == 0, result.output
    import h5py
    from rltx.analysis.results import read_result
    measured = read_result(tmp_path / "f.h5").arrays["tau"][-1]
    with h5py.File(tmp_path / "measured.h5") as handle:
        np.testing.assert_allclose(handle["construction/conv_0/tau"][()], measured)  # all 27 of them, in order
    result = invoke("construct-init", tmp_path / "r.yaml", "--layers", "1", "--covariance-from", tmp_path / "run",
                    "-o", tmp_path / "learned.h5")
    assert result.exit_code == 0, result.output
    kernel = store.read_checkpoint(tmp_path / "run", 5)["conv_0/kernel"].reshape(27, 27).astype(np.float64)
    with h5py.File(tmp_path / "learned.h5") as handle:
        assert handle["construction/conv_0"].attrs["method"] == "learned_covariance"
        np.testing.assert_allclose(handle["construction/conv_0/sigma_w"][()], np.cov(kernel, bias=True), rtol=1e-6)
        learned = handle["weights/conv_0/kernel"][()]
    # rescaled like a transferred layer (Sec. 2.4, A.9): the l2 norm of the run's layer at initialisation
    initial = store.read_checkpoint(tmp_path / "run", 0)
    start = np.sqrt(np.sum(initial["conv_0/kernel"].astype(np.float64) ** 2) + np.sum(initial["conv_0/bias"] ** 2.0))
    assert np.linalg.norm(learned) == pytest.approx(start, rel=1e-5)

    def drawn(draw):
        """construct-init's first layer with `covariance_draw: draw`, checked to be recorded as that draw."""
        result = invoke("construct-init", tmp_path / "r.yaml", "--layers", "1", "--covariance-from", tmp_path / "run",
                        "--set", f"covariance_draw={draw}", "-o", tmp_path / f"{draw}.h5")
        assert result.exit_code == 0, result.output
        with h5py.File(tmp_path / f"{draw}.h5") as handle:
            assert handle["construction/conv_0"].attrs["method"] == f"learned_covariance_{draw}"
            return (handle["construction/conv_0"].attrs["rescale_factor"],
                    handle["weights/conv_0/kernel"][()].astype(np.float64).reshape(27, 27))
    # covariance_draw rotation: the run's centred filters rotated, so the second moment is Sigma_w exactly
    factor, rotated = drawn("rotation")
    np.testing.assert_allclose(rotated @ rotated.T / 27, np.cov(kernel, bias=True) * factor ** 2, rtol=1e-5, atol=1e-9)
    assert np.linalg.norm(rotated) == pytest.approx(start, rel=1e-5)
    # covariance_draw centred: the run's filters less their mean filter, rescaled
    factor, centred = drawn("centred")
    np.testing.assert_allclose(centred, (kernel - kernel.mean(axis=1, keepdims=True)) * factor, rtol=1e-5, atol=1e-7)
    # covariance_draw gaussian_with_mean: the gaussian layer above (the same seed's draw) plus the run's mean
    # filter (numpy's mean of its trained filters), each before its own rescale factor
    with h5py.File(tmp_path / "learned.h5") as handle:
        gaussian_factor = handle["construction/conv_0"].attrs["rescale_factor"]
    factor, with_mean = drawn("gaussian_with_mean")
    np.testing.assert_allclose(with_mean / factor - learned.astype(np.float64).reshape(27, 27) / gaussian_factor,
                               np.repeat(kernel.mean(axis=1, keepdims=True), 27, axis=1), rtol=1e-4, atol=1e-6)
    assert np.linalg.norm(with_mean) == pytest.approx(start, rel=1e-5)
    # with two runs both draws pool their filters (54): the difference is numpy's mean of all 54, not one run's
    recipe["seed"] = 1
    (tmp_path / "r1.yaml").write_text(yaml.safe_dump(recipe))
    assert invoke("pretrain", tmp_path / "r1.yaml", "--out", tmp_path / "run1", "--quiet").exit_code == 0
    # a run on another rotation (its own seed's) has another covariance: its filters are not pooled with these
    (tmp_path / "r2.yaml").write_text(yaml.safe_dump({**recipe, "seed": 2, "gaussian_seed": None}))
    assert invoke("pretrain", tmp_path / "r2.yaml", "--out", tmp_path / "run2", "--quiet").exit_code == 0
    other = invoke("construct-init", tmp_path / "r.yaml", "--layers", "1", "--covariance-from", tmp_path / "run",
                   "--covariance-from", tmp_path / "run2", "-o", tmp_path / "mixed.h5")
    assert other.exit_code == 2 and "--covariance-from runs need inputs of one distribution" in other.output
    assert not (tmp_path / "mixed.h5").exists()
    pooled = np.concatenate([kernel, store.read_checkpoint(tmp_path / "run1", 5)["conv_0/kernel"].reshape(27, 27)],
                            axis=1).astype(np.float64)
    layers = {}
    for draw in ("gaussian", "gaussian_with_mean"):
        result = invoke("construct-init", tmp_path / "r.yaml", "--layers", "1", "--covariance-from", tmp_path / "run",
                        "--covariance-from", tmp_path / "run1", "--set", f"covariance_draw={draw}",
                        "-o", tmp_path / f"two_{draw}.h5")
        assert result.exit_code == 0, result.output
        with h5py.File(tmp_path / f"two_{draw}.h5") as handle:
            assert handle["construction/conv_0"].attrs["source_filters"] == 54
            layers[draw] = (handle["weights/conv_0/kernel"][()].astype(np.float64).reshape(27, 27)
                            / handle["construction/conv_0"].attrs["rescale_factor"])
    np.testing.assert_allclose(layers["gaussian_with_mean"] - layers["gaussian"],
                               np.repeat(pooled.mean(axis=1, keepdims=True), 27, axis=1), rtol=1e-4, atol=1e-6)


def test_constructed_filters_do_not_depend_on_the_eigensolvers_signs(monkeypatch):
    """E.3 fixes no sign for e_i, and tau_i e_i and -tau_i e_i differ after the ReLU: an eigensolver that
    returns every eigenvector negated (another LAPACK build may) must give the same two constructed layers,
    each filter with its largest entry positive."""
    recipe = gapped_recipe(num_conv_layers=2, padding="same", stride=1)
    reference, _, _ = construct_init(recipe, [1, 2])
    solve = np.linalg.eigh
    monkeypatch.setattr(np.linalg, "eigh", lambda matrix: (solve(matrix)[0], -solve(matrix)[1]))
    flipped, _, _ = construct_init(recipe, [1, 2])
    for layer in ("conv_0", "conv_1"):
        np.testing.assert_array_equal(reference[f"{layer}/kernel"], flipped[f"{layer}/kernel"])
    filters = reference["conv_0/kernel"].reshape(27, 8)
    assert np.all(filters[np.argmax(np.abs(filters), axis=0), np.arange(8)] > 0)


def test_rotated_filters_have_exactly_the_requested_second_moment_and_a_haar_rotation():
    """`rotate`: K = sqrt(f) E diag(tau) Q, Q orthogonal, so K K^T / f = E diag(tau^2) E^T for every
    draw (closed form), the moment a sample from N(0, E diag(tau^2) E^T) has on average; and
    Q = diag(1/tau) E^T K / sqrt(f) is Haar: each entry's square has mean 1/n (a column of a Haar
    matrix is uniform on the sphere) and each entry is positive in half the draws (sign symmetry),
    estimated over 2000 draws."""
    rng = np.random.default_rng(0)
    vectors = np.linalg.qr(rng.normal(size=(27, 27)))[0][:, :16]
    tau = np.asarray(TAU_CURVES["f1"])
    requested = (vectors * tau ** 2) @ vectors.T
    rotations = []
    for _ in range(2000):
        kernel = filters_from_eigenvectors(vectors, tau, (3, 3, 3, 16), "rotate", rng).reshape(27, 16)
        np.testing.assert_allclose(kernel @ kernel.T / 16, requested, atol=1e-12)
        rotation = (vectors.T @ kernel) / tau[:, None] / 4
        np.testing.assert_allclose(rotation.T @ rotation, np.eye(16), atol=1e-12)
        rotations.append(rotation)
    rotations = np.array(rotations)
    mean = np.mean(rotations ** 2, axis=0)  # each entry: mean of 2000 Beta(1/2, 15/2) draws, sd 0.081 / sqrt(2000)
    assert np.all(np.abs(mean - 1 / 16) < 5 * np.sqrt(2 * 15 / (16 ** 2 * 18)) / np.sqrt(2000))
    assert np.all(np.abs(np.mean(rotations > 0, axis=0) - 0.5) < 5 * np.sqrt(0.25 / 2000))
    samples = np.array([filters_from_eigenvectors(vectors, tau, (3, 3, 3, 16), "sample", rng).reshape(27, 16)
                        for _ in range(2000)])  # the same scale as a sample's filters: mean squared norm sum tau^2
    assert np.mean(np.sum(samples ** 2, axis=1)) == pytest.approx(np.sum(tau ** 2), rel=0.02)
    assert np.sum(kernel ** 2, axis=0).mean() == pytest.approx(np.sum(tau ** 2))
    with pytest.raises(UsageError, match="rotate construction uses one eigenvector per filter"):
        filters_from_eigenvectors(vectors, tau, (3, 3, 3, 8), "rotate", rng)


def test_random_signs_flip_whole_eigenvectors_by_a_fair_coin():
    """`construct_signs: random` multiplies each chosen eigenvector by +-1: magnitudes unchanged, one
    sign per column, and each column flipped in half the draws (binomial, 4000 draws, 5 sigma)."""
    from rltx.construct import oriented
    rng = np.random.default_rng(1)
    vectors = fix_signs(np.linalg.qr(rng.normal(size=(27, 27)))[0][:, :16].T).T
    assert oriented(vectors, "largest_positive", rng) is vectors
    flips = []
    for _ in range(4000):
        signed = oriented(vectors, "random", rng)
        ratio = signed / vectors
        np.testing.assert_allclose(np.abs(ratio), 1.0)
        assert np.all(ratio == ratio[0])  # one sign per eigenvector
        flips.append(ratio[0] < 0)
    assert np.all(np.abs(np.mean(flips, axis=0) - 0.5) < 5 * np.sqrt(0.25 / 4000))


def test_constructed_layers_follow_construct_signs_and_rotate_through_the_recipe():
    """Through construct_init: random signs flip whole filters of the direct construction (magnitudes
    equal); rotate spans the same top eigenspace as direct, its filters mixing the eigenvectors."""
    direct = construct_init(gapped_recipe(), [1])[0]["conv_0/kernel"].reshape(27, 8)
    flipped = construct_init(gapped_recipe(construct_signs="random"), [1])[0]["conv_0/kernel"].reshape(27, 8)
    np.testing.assert_allclose(np.abs(flipped), np.abs(direct))
    ratio = np.sign(flipped * direct)
    assert np.all(ratio == ratio[0]) and -1 in ratio[0]  # the tiny recipe's seed flips at least one
    rotated = construct_init(gapped_recipe(construct_method="rotate"), [1])[0]["conv_0/kernel"].reshape(27, 8)
    assert np.max(subspace_angles(rotated.astype(np.float64), direct.astype(np.float64))) < 1e-3
    np.testing.assert_allclose(rotated @ rotated.T / 8, direct @ direct.T, atol=1e-5)
    with pytest.raises(UsageError, match="construct_signs random flips the direct filters"):
        gapped_recipe(construct_method="sample", construct_signs="random")
    assert np.max(np.abs(direct.T @ rotated)) / np.sqrt(8) < 0.99  # no filter is one of the eigenvectors


def test_a_run_moved_without_its_init_file_names_the_file_to_give_and_accepts_it_rebuilt(tmp_path):
    """A run with training left that was moved without its init file (the recorded path gone) is refused in one
    line naming the file's sha256, and nothing is written; `rltx show` says the file was not found. The construction
    is deterministic: the file rebuilt by `construct-init` from the same recipe has the recorded sha256, and the run
    resumes from it. A completed run needs no file: rerunning it reports it."""
    import shutil
    import subprocess
    import sys

    recipe = {**tiny_recipe_dict(), "total_steps": 4, "num_eval_points": 2, "checkpoint_every": 0}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    (tmp_path / "first").mkdir()
    assert invoke("construct-init", tmp_path / "r.yaml", "--layers", "1", "-o", tmp_path / "first/init.h5"
                  ).exit_code == 0
    assert invoke("pretrain", tmp_path / "r.yaml", "--init", tmp_path / "first/init.h5", "--out",
                  tmp_path / "first/run", "--quiet").exit_code == 0
    digest = store.read_run_record(tmp_path / "first/run").init_digest
    run = tmp_path / "moved/run"
    shutil.copytree(tmp_path / "first/run", run)
    shutil.rmtree(tmp_path / "first")
    assert invoke("pretrain", run / "run.h5", "--quiet").exit_code == 0  # completed: reported, no file needed
    assert f"sha256 {digest}  (not found)" in invoke("show", run).output
    record = store.read_run_record(run)
    store.write_run_record(run, dataclasses.replace(record, status="interrupted"))
    before = file_digests(run)
    refused = subprocess.run([sys.executable, "-m", "rltx", "pretrain", str(run / "run.h5"), "--quiet"],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr == (f"Error: init_file {tmp_path / 'first/init.h5'} does not exist; {run} began from the "
                              f"init file of sha256 {digest}: give that file with --init FILE, or choose another "
                              "--out\n")
    assert file_digests(run) == before
    assert invoke("construct-init", tmp_path / "r.yaml", "--layers", "1", "-o", tmp_path / "rebuilt.h5"
                  ).exit_code == 0
    assert store.file_sha256(tmp_path / "rebuilt.h5") == digest
    resumed = invoke("pretrain", run / "run.h5", "--init", tmp_path / "rebuilt.h5", "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert store.read_run_record(run).status == "completed"


def test_init_files_group_runs_by_what_they_hold_not_by_their_path(tmp_path):
    """`analyze curves` / `plot curves` group runs by their recipe keys but the seed. Each seed of a construction has
    an init file of its own: files built from the same keys with other seeds give one group value, files with other
    constructed layers or other keys another; a file that cannot be read counts by its path."""
    from rltx.analysis.curves import init_group_value
    values = {}
    for name, seed, layers, tau in (("a", 0, [1], "f2"), ("b", 1, [1], "f2"), ("c", 0, [], "f2"), ("d", 0, [1], "f1")):
        store.write_init(tmp_path / f"{name}.h5", gapped_recipe(seed=seed, construct_tau=tau).to_yaml(),
                         *construct_init(gapped_recipe(seed=seed, construct_tau=tau), layers))
        values[name] = init_group_value(str(tmp_path / f"{name}.h5"))
    assert values["a"] == values["b"] and values["a"].startswith("conv_0 constructed [")
    assert len({values["a"], values["c"], values["d"]}) == 3 and values["c"].startswith("none constructed [")
    assert init_group_value(str(tmp_path / "gone.h5")) == str(tmp_path / "gone.h5")
    # a layer drawn from trained runs' covariance (--covariance-from): the file does not record the runs, so its path
    weights, _, indices = construct_init(gapped_recipe(), [])
    store.write_init(tmp_path / "learned.h5", gapped_recipe().to_yaml(), weights,
                     {"conv_0": store.LayerRecord("learned_covariance")}, indices)
    assert init_group_value(str(tmp_path / "learned.h5")) == str(tmp_path / "learned.h5")


def test_a_run_moved_with_its_init_file_knows_the_file_by_its_sha256(tmp_path):
    """A run records its init file's sha256: moved or copied together (a reproduction's folder from a cluster to
    a laptop), the run is known at the new path and resumes; a file changed in place, or another file, is refused;
    a record without the digest (older rltx) is known by its path alone."""
    import shlex
    import shutil
    import subprocess
    import sys

    from rltx.runs import open_run
    recipe = {**tiny_recipe_dict(), "total_steps": 4, "num_eval_points": 2, "checkpoint_every": 0}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    first = tmp_path / "first"
    first.mkdir()
    assert invoke("construct-init", tmp_path / "r.yaml", "--layers", "1", "-o", first / "init.h5").exit_code == 0
    assert invoke("pretrain", tmp_path / "r.yaml", "--init", first / "init.h5", "--out", first / "run",
                  "--quiet").exit_code == 0
    assert store.read_run_record(first / "run").init_digest == store.file_sha256(first / "init.h5")
    moved = tmp_path / "moved"
    shutil.copytree(first, moved)
    shutil.rmtree(first)  # the recorded path is gone
    assert open_run(moved / "run").init_file == str((moved / "init.h5").resolve())
    again = invoke("pretrain", tmp_path / "r.yaml", "--init", moved / "init.h5", "--out", moved / "run", "--resume",
                   "--quiet")
    assert again.exit_code == 0, again.output
    shown = invoke("show", moved / "run").output  # the file as recorded, where it is now, and a resume command with it
    digest = store.read_run_record(moved / "run").init_digest
    assert f"init file:   {first / 'init.h5'}  sha256 {digest}  (moved: now {(moved / 'init.h5').resolve()})" in shown
    resume = next(line for line in shown.splitlines() if line.startswith("resume:")).split(None, 1)[1]
    assert resume.endswith(f"--init {(moved / 'init.h5').resolve()}")
    assert invoke(*shlex.split(resume)[1:], "--quiet").exit_code == 0
    # another file, or the file rebuilt in place with other keys, is refused in one line
    other = make_recipe({**recipe, "construct_tau": "f3"})
    store.write_init(tmp_path / "other.h5", other.to_yaml(), *construct_init(other, [1]))
    refused = invoke("pretrain", tmp_path / "r.yaml", "--init", tmp_path / "other.h5", "--out", moved / "run",
                     "--resume", "--quiet")
    assert refused.exit_code == 2 and f"init_file {tmp_path / 'other.h5'} is not the file" in refused.output
    before = file_digests(moved / "run")
    shutil.copy(tmp_path / "other.h5", moved / "init.h5")
    changed = subprocess.run([sys.executable, "-m", "rltx", "pretrain", str(tmp_path / "r.yaml"), "--init",
                              str(moved / "init.h5"), "--out", str(moved / "run"), "--resume", "--quiet"],
                             capture_output=True, text=True, timeout=300)
    assert changed.returncode == 2 and changed.stderr.count("\n") == 1, changed.stderr
    assert changed.stderr == (f"Error: init_file {moved / 'init.h5'} is not the file {moved / 'run'} began from (its "
                              "sha256 differs from the recorded one); give that file, or choose another --out\n")
    assert file_digests(moved / "run") == before  # nothing written
    # a record of older rltx, without the digest: the path decides
    record = store.read_run_record(moved / "run")
    store.write_run_record(moved / "run", dataclasses.replace(record, identity={}))
    assert invoke("pretrain", tmp_path / "r.yaml", "--init", moved / "init.h5", "--out", moved / "run", "--resume",
                  "--quiet").exit_code == 2
    assert open_run(moved / "run").init_file == str(first / "init.h5")
