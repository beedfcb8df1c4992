"""Transfer: rescaling (A.4), which weights move (A.9, A.10), covariance sampling (Sec. 2.4),
fresh downstream data (A.1), and the Figure 5 comparison end to end from the CLI."""
import json
import shlex
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from rltx import store
from rltx.cli import main
from rltx.config import make_recipe
from rltx.loop import weights_of
from rltx.models import HEAD, build_model, transferable_layers
from rltx.runs import Checkpoint
from rltx.tasks import build_recipe_model
from rltx.transfer import transferred_weights


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


def test_rescaling_keeps_predictions_and_scales_logits_by_the_product_of_factors():
    """A.4: a ReLU network without biases is positively homogeneous in each layer's weights, so
    rescaling multiplies the logits by the product of the factors and keeps every arg-max."""
    def model_of(seed, scale):
        return build_model("simple_cnn", (12, 12, 3), 5, init_scale=scale, seed=seed, num_conv_layers=2,
                           num_filters=6, num_units=16, pooling="max")
    initial, trained = weights_of(model_of(0, 1.0).weights), weights_of(model_of(1, 3.0).weights)
    for weights in (initial, trained):
        weights.update({name: np.zeros_like(v) for name, v in weights.items() if name.endswith("/bias")})
    source = Checkpoint(Path("."), None, 1, trained, initial, np.arange(0), "", "unknown", "ok")
    model = model_of(2, 1.0)
    layers = transferable_layers(model) + [HEAD]
    rescaled, factors = transferred_weights(trained, source, layers, "l2", zero_biases=False)
    images = np.random.default_rng(0).normal(size=(64, 12, 12, 3)).astype(np.float32)
    for variable in model.weights:
        variable.assign(trained[variable.path])
    before = model.predict(images, verbose=0).astype(np.float64)
    for variable in model.weights:
        variable.assign(rescaled[variable.path])
    after = model.predict(images, verbose=0).astype(np.float64)
    assert all(f < 1 for f in factors.values())  # 'trained' at sqrt(3)x the initial std
    np.testing.assert_allclose(after, before * np.prod(list(factors.values())), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(after.argmax(1), before.argmax(1))


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    from tests_support import tiny_recipe_dict
    directory = tmp_path_factory.mktemp("transfer")
    # the transfers here are checked at their step 0 (weights, records, samples): 2 steps downstream
    recipe = {**tiny_recipe_dict(), "labels_downstream": "random", "num_classes_downstream": 3, "total_steps": 20,
              "total_steps_downstream": 2}
    (directory / "r.yaml").write_text(yaml.safe_dump(recipe))
    assert invoke("pretrain", directory / "r.yaml", "--out", directory / "source", "--quiet").exit_code == 0
    return directory


@pytest.fixture(scope="module")
def first_transfer(source_run):
    """A transfer of conv_0 only, with its from-scratch baseline (source_run/first, first-scratch)."""
    result = invoke("transfer", source_run / "r.yaml", "--from", source_run / "source", "--out", source_run / "first",
                    "--with-baseline", "--set", "transfer_layers=1", "--quiet")
    assert result.exit_code == 0, result.output
    return source_run / "first"


def test_which_weights_move(source_run, first_transfer):
    recipe_path, source = source_run / "r.yaml", source_run / "source"
    transferred = store.read_checkpoint(source_run / "first", 0)
    baseline = store.read_checkpoint(source_run / "first-scratch", 0)
    pretrained = store.read_checkpoint(source, 20)
    record = store.read_run_record(source_run / "first")
    factor = record.transfer["factor/conv_0"]
    assert json.loads(record.transfer["layers"]) == ["conv_0"] and factor > 0
    np.testing.assert_allclose(transferred["conv_0/kernel"], pretrained["conv_0/kernel"] * factor, rtol=1e-6)
    np.testing.assert_allclose(transferred["conv_0/bias"], pretrained["conv_0/bias"] * factor, rtol=1e-6)
    # Oracle for "fresh": an independent build of the model with the seed the record names.
    fresh_seed = int(record.transfer["fresh_layers_seed"])
    fresh = weights_of(build_recipe_model(make_recipe(yaml.safe_load(recipe_path.read_text())), (6, 6, 3), 3,
                                          init_seed=fresh_seed).weights)
    for name in ("dense_0/kernel", "dense_0/bias", "head/kernel", "head/bias"):
        np.testing.assert_array_equal(transferred[name], fresh[name])
        np.testing.assert_array_equal(baseline[name], fresh[name])  # the pair shares its fresh layers
    assert not np.allclose(transferred["head/kernel"], pretrained["head/kernel"][:, :3])
    # The records link the pair and name the source with a content hash.
    assert json.loads(record.transfer["paired_with"]) == [str((source_run / "first-scratch").resolve())]
    assert json.loads(record.identity["sources"]) == [str(source.resolve())]
    assert len(json.loads(record.identity["source_digests"])[0]) == 64


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a.ravel() @ b.ravel() / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_fresh_layers_are_a_new_draw_not_the_sources_initialisation(source_run, first_transfer):
    """A.4 / A.9: the head is re-initialised after pre-training, and untransferred layers are fresh. The
    oracle is the source's own step-0 weights: a fresh layer must not repeat them. rltx once built the
    transfer with the source's seed, so every fresh layer of the source's shape was the source's initial
    draw; a head of as many classes as upstream then sat at cosine 0.95 to the trained head."""
    source_start = store.read_checkpoint(source_run / "source", 0)
    transferred = store.read_checkpoint(source_run / "first", 0)
    kernel = "dense_0/kernel"  # 512 entries: the cosine of two independent draws has s.d. 0.044
    assert abs(_cosine(transferred[kernel], source_start[kernel])) < 0.2
    np.testing.assert_allclose(transferred[kernel].std(), source_start[kernel].std(), rtol=0.15)  # A.3 still
    result = invoke("transfer", source_run / "r.yaml", "--from", source_run / "source", "--out", source_run / "same",
                    "--set", "num_classes_downstream=4", "--quiet")  # 4 classes, as upstream: the head's shape
    assert result.exit_code == 0, result.output
    head = store.read_checkpoint(source_run / "same", 0)[f"{HEAD}/kernel"]
    assert head.shape == source_start[f"{HEAD}/kernel"].shape
    assert abs(_cosine(head, source_start[f"{HEAD}/kernel"])) < 0.6  # 64 entries: s.d. 0.125; a repeat gives 1


def test_a_transfer_begun_before_fresh_layer_seeds_claims_none_when_resumed(source_run):
    """A run that began before fresh layers had a seed of their own resumes from its stored weights, so its
    record must not name a seed they were never drawn with."""
    run = source_run / "older"
    assert invoke("transfer", source_run / "r.yaml", "--from", source_run / "source", "--out", run,
                  "--quiet").exit_code == 0
    with h5py.File(run / store.RUN_FILE, "r+") as record:  # an interrupted run written by the former rltx
        record.attrs["status"] = "running"
        del record["transfer"].attrs["fresh_layers_seed"]
    assert invoke("transfer", source_run / "r.yaml", "--from", source_run / "source", "--out", run,
                  "--quiet").exit_code == 0
    resumed = store.read_run_record(run)
    assert resumed.status == "completed" and "fresh_layers_seed" not in resumed.transfer


def test_a_transfer_given_by_its_run_h5_without_out_is_that_run(source_run, first_transfer, monkeypatch):
    """`rltx transfer RUN/run.h5` continues RUN, as `rltx pretrain RUN/run.h5` does; it once trained a new run
    into runs/run-transfer beside the working directory."""
    monkeypatch.chdir(source_run)
    result = invoke("transfer", first_transfer / store.RUN_FILE, "--from", source_run / "source", "--with-baseline")
    assert result.exit_code == 0 and result.output.count("already completed") == 2, result.output
    scratch = source_run / "first-scratch"  # a pair's baseline alone is another run: the message names the pair's way
    alone = invoke("transfer", scratch / store.RUN_FILE, "--from", "scratch")
    assert alone.exit_code == 2 and f"it is the from-scratch pair of {first_transfer.resolve()}" in alone.output
    shown = shlex.split(json.loads(invoke("show", scratch, "--json").output)["resume_command"])
    assert invoke(*shown[1:]).output.count("already completed") == 2
    assert not (source_run / "runs").exists()
    # a pre-training run's run.h5 as the recipe of a transfer: a new run, named by that run's directory
    made = invoke("transfer", source_run / "source" / store.RUN_FILE, "--from", source_run / "source", "--quiet")
    assert made.exit_code == 0, made.output
    assert store.read_run_record(source_run / "runs" / "source-transfer").kind == "transfer"


def test_a_transfer_moved_with_its_source_resumes_there_and_another_source_is_refused(source_run):
    """Runs moved or copied together (a reproduction's folder from a cluster to a laptop): an interrupted
    transfer finishes from its source at the new path, since the source checkpoint is the same bytes (the
    recorded sha256); a source at the new path with other bytes is another run, refused."""
    run = source_run / "moving"
    assert invoke("transfer", source_run / "r.yaml", "--from", source_run / "source", "--out", run,
                  "--quiet").exit_code == 0
    with h5py.File(run / store.RUN_FILE, "r+") as record:  # interrupted before its last step
        record.attrs["status"] = "interrupted"
    for place in ("moved", "altered"):
        shutil.copytree(source_run / "source", source_run / place / "source")
        shutil.copytree(run, source_run / place / "run")
    shown = json.loads(invoke("show", source_run / "moved" / "run", "--json").output)
    moved_source = str((source_run / "moved" / "source").resolve())
    assert shown["sources"][0]["run"] == str((source_run / "source").resolve())  # as recorded
    assert shown["sources"][0]["now"] == moved_source  # found beside the run by its sha256
    assert "(moved: now " in invoke("show", source_run / "moved" / "run").output
    command = shlex.split(shown["resume_command"])  # the command `rltx show` prints names the copy
    assert command[command.index("--from") + 1] == moved_source
    resumed = invoke(*command[1:], "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert store.read_run_record(source_run / "moved" / "run").status == "completed"
    with h5py.File(store.checkpoint_path(source_run / "altered" / "source", 20), "r+") as checkpoint:
        checkpoint.attrs["edited"] = 1  # other bytes at the same step
    other = invoke("transfer", source_run / "r.yaml", "--from", source_run / "altered" / "source",
                   "--out", source_run / "altered" / "run", "--quiet")
    assert other.exit_code == 2 and "holds another run (sources: " in other.output, other.output
    assert store.read_run_record(source_run / "altered" / "run").status == "interrupted"


def test_a_transfer_pair_resumes_under_another_name_or_data_folder(source_run):
    """A renamed profile (the description) or the data prepared in another folder (data_dir, offline) leaves a
    transfer and its from-scratch pair the same runs (config.NOT_RUN_DEFINING), for the source's data too: an
    interrupted pair resumes with them and completes; another value of a defining key is another run."""
    out = source_run / "renaming"
    args = ("transfer", source_run / "r.yaml", "--from", source_run / "source", "--with-baseline", "--set",
            "transfer_layers=1", "--quiet")
    assert invoke(*args, "--out", out).exit_code == 0
    for run in (out, source_run / "renaming-scratch"):
        with h5py.File(run / store.RUN_FILE, "r+") as record:
            record.attrs["status"] = "interrupted"
    renamed = invoke(*args, "--out", out, "--set", "description=renamed [another profile]", "--set",
                     f"data_dir={source_run / 'elsewhere'}", "--set", "offline=true")
    assert renamed.exit_code == 0, renamed.output
    assert {store.read_run_record(run).status for run in (out, source_run / "renaming-scratch")} == {"completed"}
    other = invoke(*args, "--out", out, "--set", "learning_rate=0.5")
    assert other.exit_code == 2 and "holds another run (learning_rate: " in other.output, other.output


def test_pretrained_conv_without_bias(source_run):
    result = invoke("transfer", source_run / "r.yaml", "--from", source_run / "source", "--out", source_run / "nb",
                    "--set", "transfer_layers=conv", "--set", "zero_transferred_biases=true", "--quiet")
    assert result.exit_code == 0, result.output
    weights = store.read_checkpoint(source_run / "nb", 0)
    assert not weights["conv_0/bias"].any() and weights["conv_0/kernel"].any()
    assert json.loads(store.read_run_record(source_run / "nb").transfer["layers"]) == ["conv_0"]


def test_any_checkpoint_as_source_and_bad_steps(source_run):
    result = invoke("transfer", source_run / "r.yaml", "--from", source_run / "source", "--from-step", "10",
                    "--out", source_run / "early", "--quiet")
    assert result.exit_code == 0, result.output
    assert json.loads(store.read_run_record(source_run / "early").identity["from_step"]) == [10]
    missing = invoke("transfer", source_run / "r.yaml", "--from", source_run / "source", "--from-step", "7",
                     "--out", source_run / "never")
    assert missing.exit_code == 2 and "no checkpoint at step 7; stored steps: 0, 10, 20" in missing.output


def test_overlap_other_architecture_and_rerun_refused(source_run):
    recipe, source = source_run / "r.yaml", source_run / "source"
    too_many = invoke("transfer", recipe, "--from", source, "--set", "num_examples_downstream=200",
                      "--out", source_run / "overlap")
    assert too_many.exit_code == 2 and "would overlap the 384 upstream examples" in too_many.output
    other = invoke("transfer", recipe, "--from", source, "--set", "num_filters=4", "--out", source_run / "arch")
    assert other.exit_code == 2 and "another architecture (num_filters=8)" in other.output
    assert not (source_run / "overlap" / "run.h5").exists() and not (source_run / "arch" / "run.h5").exists()
    not_a_run = invoke("transfer", recipe, "--from", source_run / "missing", "--out", source_run / "x")
    assert not_a_run.exit_code == 2 and "does not exist" in not_a_run.output


def test_downstream_is_fresh_and_matches_what_pretraining_reserved(source_run, first_transfer):
    pre = store.read_run_record(source_run / "source").samples
    post = store.read_run_record(first_transfer).samples
    assert not np.intersect1d(post["downstream_indices"], pre["upstream_indices"]).size
    np.testing.assert_array_equal(post["downstream_indices"], pre["downstream_indices"])


@pytest.mark.slow
def test_figure5_comparison_end_to_end(tmp_path):
    """The six curves of Fig. 5 (A.9) for two seeds, on sklearn's digits (real images, offline)."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    np.savez(tmp_path / "digits.npz", x=np.round(digits.images / 16 * 255).astype(np.uint8)[..., None],
             y=digits.target)
    recipe = tmp_path / "fig5.yaml"
    recipe.write_text((Path(__file__).parent.parent / "recipes" / "fig5.yaml").read_text())
    small = ["--set", "dataset=npz", "--set", "data_path=" + str(tmp_path / "digits.npz"), "--set", "num_examples_test=200",
             "--set", "num_examples_upstream=600", "--set", "num_examples_downstream=600", "--set", "total_steps=30",
             "--set", "batch_size=100", "--set", "num_filters=8", "--set", "num_units=16", "--set", "learning_rate=0.05",
             "--set", "num_eval_points=4", "--set", "eval_batch_size=200"]
    variants = {"pretrained": [], "no_rescaling": ["--set", "rescaling=none"],
                "pretrained_conv": ["--set", "transfer_layers=conv"],
                "pretrained_conv_no_bias": ["--set", "transfer_layers=conv", "--set", "zero_transferred_biases=true"],
                "covariance": ["--set", "transfer_mode=covariance"]}
    for seed in (0, 1):
        seeded = small + ["--set", f"seed={seed}"]
        assert invoke("pretrain", recipe, *seeded, "--out", tmp_path / f"pre{seed}", "--quiet").exit_code == 0
        for name, extra in variants.items():
            result = invoke("transfer", recipe, "--from", tmp_path / f"pre{seed}", *seeded, *extra,
                            "--out", tmp_path / f"{name}{seed}", "--quiet")
            assert result.exit_code == 0, result.output
        assert invoke("transfer", recipe, "--from", "scratch", *seeded, "--out", tmp_path / f"scratch{seed}",
                      "--quiet").exit_code == 0
        scratch = store.read_run_record(tmp_path / f"scratch{seed}").samples["downstream_indices"]
        for name in variants:
            record = store.read_run_record(tmp_path / f"{name}{seed}")
            assert record.status == "completed"
            np.testing.assert_array_equal(record.samples["downstream_indices"], scratch)  # same data for all curves
            steps = [r["step"] for r in store.read_metrics(tmp_path / f"{name}{seed}")]
            assert len(steps) == 4 and steps[:2] == [0, 1] and steps[-1] == 30  # num_eval_points=4, denser early
        assert store.read_run_record(tmp_path / f"no_rescaling{seed}").transfer["factor/conv_0"] == 1.0
        assert store.read_run_record(tmp_path / f"covariance{seed}").transfer["mode"] == "covariance"


def test_covariance_transfer_of_a_large_first_layer_stores_its_sigma_w(tmp_path):
    """A 7x7x3 first layer (ResNet18's stem size, d = 147): Sigma_w is 173 KB, beyond HDF5's 64 KiB
    attributes, so it is stored as a dataset. Oracle: numpy's covariance of the source's filters (Eq. 2)."""
    from tests_support import tiny_recipe_dict
    recipe = {**tiny_recipe_dict(), "kernel_size": 7, "stride": 1, "padding": "same", "total_steps": 4,
              "checkpoint_every": 0, "num_eval_points": 2, "labels_downstream": "random", "num_classes_downstream": 3,
              "total_steps_downstream": 1, "transfer_mode": "covariance"}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    assert invoke("pretrain", tmp_path / "r.yaml", "--out", tmp_path / "source", "--quiet").exit_code == 0
    result = invoke("transfer", tmp_path / "r.yaml", "--from", tmp_path / "source", "--out", tmp_path / "t", "--quiet")
    assert result.exit_code == 0, result.output
    filters = store.read_checkpoint(tmp_path / "source", 4)["conv_0/kernel"].reshape(147, -1).astype(np.float64)
    sigma_w = store.read_run_record(tmp_path / "t").transfer["sigma_w"]
    np.testing.assert_allclose(sigma_w, np.cov(filters, bias=True), rtol=1e-6, atol=1e-12)
    shown = json.loads(invoke("show", tmp_path / "t", "--json").output)
    assert shown["transfer"]["sigma_w"] == "matrix (147, 147)"


def test_a_rotation_draw_has_the_sources_second_moment_exactly_where_a_gaussian_sample_is_off_by_its_noise():
    """`covariance_draw: rotation`: W_c Q. Oracles: numpy's covariance of the source filters (Eq. 2), which
    the rotated filters' second moment must equal to round-off, where a Gaussian sample's misses it by a
    Wishart error; the Frobenius norm an orthogonal Q keeps; and, for a Haar Q, each rotated filter's
    expected outer product over draws is Sigma_w (a fixed mixing fails it)."""
    from rltx.errors import UsageError
    from rltx.transfer import covariance_filters
    rng = np.random.default_rng(3)
    kernel = rng.normal(size=(3, 3, 3, 16)) * np.linspace(0.2, 2.0, 27).reshape(3, 3, 3, 1) + 0.5
    source = kernel.reshape(27, 16)
    sigma = np.cov(source, bias=True)
    centred = source - source.mean(axis=1, keepdims=True)
    rotated, sigma_w = covariance_filters([kernel], (3, 3, 3, 16), "rotation", rng)
    np.testing.assert_allclose(sigma_w, sigma, rtol=1e-12)
    columns = rotated.reshape(27, 16)
    np.testing.assert_allclose(columns @ columns.T / 16, sigma, rtol=1e-9, atol=1e-12)
    assert np.linalg.norm(columns) == pytest.approx(np.linalg.norm(centred), rel=1e-12)
    cosines = np.abs((columns / np.linalg.norm(columns, axis=0)).T @ (centred / np.linalg.norm(centred, axis=0)))
    assert cosines.max() < 0.99  # no source filter survives whole
    sampled, _ = covariance_filters([kernel], (3, 3, 3, 16), "gaussian", rng)
    noise = np.linalg.norm(sampled.reshape(27, 16) @ sampled.reshape(27, 16).T / 16 - sigma) / np.linalg.norm(sigma)
    assert noise > 0.2  # 16 samples in 27 dimensions
    small = rng.normal(size=(2, 1, 2, 6))
    draws = 4000
    outer = sum(np.outer(f, f) for f in (covariance_filters([small], (2, 1, 2, 6), "rotation", rng)[0]
                                         .reshape(4, 6)[:, 0] for _ in range(draws))) / draws
    small_sigma = np.cov(small.reshape(4, 6), bias=True)
    # measured: 0.015 of the largest variance with this seed; with Q the identity, 0.88
    assert np.abs(outer - small_sigma).max() < 0.1 * np.diag(small_sigma).max()
    # centred: the source's filters less their mean filter (numpy's mean the oracle), each kept whole
    kept, _ = covariance_filters([kernel], (3, 3, 3, 16), "centred", rng)
    np.testing.assert_allclose(kept.reshape(27, 16), source - source.mean(axis=1, keepdims=True), rtol=1e-12)
    for draw in ("centred", "rotation"):
        with pytest.raises(UsageError, match=f"covariance_draw {draw} takes the filters of one source run"):
            covariance_filters([kernel, kernel], (3, 3, 3, 16), draw, rng)
        with pytest.raises(UsageError, match="keeps the source's 16 filters of dimension 27"):
            covariance_filters([kernel], (3, 3, 3, 8), draw, rng)


def test_a_draw_with_the_mean_is_the_gaussian_draw_plus_the_sources_pooled_mean_filter():
    """`covariance_draw: gaussian_with_mean`, N(mu_w, Sigma_w). Oracles: numpy's mean of the two sources' filters
    pooled, which the draw minus A.9's draw of the same generator state must equal to round-off; and, as an
    estimator of the distribution it samples, 40,000 drawn filters whose mean is mu_w within 5 standard errors and
    whose covariance is numpy's Sigma_w within the sampling error (sqrt(27 / 40,000) = 0.026 relative)."""
    from rltx.transfer import covariance_filters
    rng = np.random.default_rng(5)
    kernels = [rng.normal(size=(3, 3, 3, 16)) * np.linspace(0.2, 2.0, 27).reshape(3, 3, 3, 1) + shift
               for shift in (0.5, -0.2)]
    pooled = np.concatenate([k.reshape(27, 16) for k in kernels], axis=1)
    mu_w, sigma = pooled.mean(axis=1), np.cov(pooled, bias=True)
    with_mean, sigma_w = covariance_filters(kernels, (3, 3, 3, 16), "gaussian_with_mean", np.random.default_rng(9))
    without, _ = covariance_filters(kernels, (3, 3, 3, 16), "gaussian", np.random.default_rng(9))
    np.testing.assert_allclose(sigma_w, sigma, rtol=1e-12)
    np.testing.assert_allclose((with_mean - without).reshape(27, 16), np.repeat(mu_w[:, None], 16, axis=1),
                               rtol=1e-12, atol=1e-12)
    many, _ = covariance_filters(kernels, (3, 3, 3, 40_000), "gaussian_with_mean", rng)
    columns = many.reshape(27, 40_000)
    standard_error = np.sqrt(np.diag(sigma) / 40_000)
    assert np.all(np.abs(columns.mean(axis=1) - mu_w) < 5 * standard_error)
    assert np.linalg.norm(np.cov(columns, bias=True) - sigma) / np.linalg.norm(sigma) < 0.06


def test_a_transfer_with_the_mean_takes_several_sources_as_a_gaussian_one_does(source_run, tmp_path):
    """`gaussian_with_mean` pools its sources like A.9's draw: two --from runs pass the one-source check of
    `centred` / `rotation` and meet the checks every pooled transfer meets (here: a copy is one run twice)."""
    shutil.copytree(source_run / "source", tmp_path / "copy")
    result = invoke("transfer", source_run / "r.yaml", "--from", source_run / "source", "--from", tmp_path / "copy",
                    "--out", tmp_path / "t", "--set", "transfer_mode=covariance",
                    "--set", "covariance_draw=gaussian_with_mean", "--quiet")
    assert result.exit_code == 2 and "holds the same checkpoint as" in result.output, result.output
    assert not (tmp_path / "t").exists()


def test_a_transfer_with_the_mean_records_both_parameters_of_its_draw(source_run):
    """End to end from the CLI: a `gaussian_with_mean` transfer's run.h5 holds mu_w, numpy's mean of the source's
    trained conv_0 filters, beside Sigma_w (np.cov of them), and `rltx show` gives both by their shapes."""
    result = invoke("transfer", source_run / "r.yaml", "--from", source_run / "source", "--out", source_run / "mean",
                    "--set", "transfer_mode=covariance", "--set", "covariance_draw=gaussian_with_mean", "--quiet")
    assert result.exit_code == 0, result.output
    trained = store.read_checkpoint(source_run / "source", 20)["conv_0/kernel"].astype(np.float64)
    filters = trained.reshape(-1, trained.shape[-1])
    record = store.read_run_record(source_run / "mean").transfer
    np.testing.assert_allclose(record["mu_w"], filters.mean(axis=1), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(record["sigma_w"], np.cov(filters, bias=True), rtol=1e-6, atol=1e-12)
    shown = json.loads(invoke("show", source_run / "mean", "--json").output)["transfer"]
    assert shown["mu_w"] == f"vector ({filters.shape[0]},)" and shown["covariance_draw"] == "gaussian_with_mean"


def test_a_rotation_transfer_starts_from_the_sources_sigma_w_at_its_initial_norm(source_run):
    """End to end from the CLI: the covariance transfer's conv_0 at step 0 has the source's Sigma_w (numpy's
    covariance of its trained filters) times the recorded factor squared as its second moment, exactly, the
    l2 norm of the source's conv_0 at initialisation (A.9's rescaling), a zero bias, and its record names the
    draw."""
    result = invoke("transfer", source_run / "r.yaml", "--from", source_run / "source", "--out", source_run / "rot",
                    "--set", "transfer_mode=covariance", "--set", "covariance_draw=rotation", "--quiet")
    assert result.exit_code == 0, result.output
    record = store.read_run_record(source_run / "rot")
    assert record.transfer["covariance_draw"] == "rotation"
    trained = store.read_checkpoint(source_run / "source", 20)["conv_0/kernel"].astype(np.float64)
    filters = trained.reshape(-1, trained.shape[-1])
    start = store.read_checkpoint(source_run / "rot", 0)
    kernel = start["conv_0/kernel"].astype(np.float64).reshape(filters.shape)
    factor = record.transfer["factor/conv_0"]
    np.testing.assert_allclose(kernel @ kernel.T / filters.shape[1], np.cov(filters, bias=True) * factor ** 2,
                               rtol=1e-5, atol=1e-9)
    initial = store.read_checkpoint(source_run / "source", 0)
    norm = np.sqrt(sum(np.sum(initial[f"conv_0/{n}"].astype(np.float64) ** 2) for n in ("kernel", "bias")))
    assert np.linalg.norm(kernel) == pytest.approx(norm, rel=1e-5)
    assert not np.any(start["conv_0/bias"])
