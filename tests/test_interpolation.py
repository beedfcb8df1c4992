"""`rltx analyze barrier`, `criticality`, `transferability-curve` (Neyshabur et al. App. B.4-B.9;
Liu et al. Sec. 5.2) on tiny runs, against stored metrics and hand-assembled models."""
import json

import keras
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from rltx import store
from rltx.analysis.interpolation import barrier_height, interpolate, recompute_batchnorm, run_labels
from rltx.analysis.results import read_result
from rltx.cli import main
from rltx.models import transferable_layers
from rltx.runs import examples, load_model, model_at, open_run


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from tests_support import tiny_recipe_dict
    directory = tmp_path_factory.mktemp("interp")
    recipe = {**tiny_recipe_dict(), "total_steps": 20, "checkpoint_every": 10, "num_eval_points": 3}
    (directory / "r.yaml").write_text(yaml.safe_dump(recipe))
    # same seed, so same data and labels; different learning rates, so different solutions
    for name, rate in (("a", 0.05), ("b", 0.1)):
        result = invoke("pretrain", directory / "r.yaml", "--set", f"learning_rate={rate}", "--out", directory / name,
                        "--quiet")
        assert result.exit_code == 0, result.output
    down = {**recipe, "labels_downstream": "random", "num_classes_downstream": 3, "total_steps": 4,
            "num_eval_points": 3}
    (directory / "down.yaml").write_text(yaml.safe_dump(down))
    return directory


def metrics_at(run_dir, step):
    return next(row for row in store.read_metrics(run_dir) if row["step"] == step)


def test_load_model_holds_the_checkpoint_and_reproduces_its_stored_accuracy(runs):
    run = open_run(runs / "a")
    for step, model in ((run.steps[-1], load_model(runs / "a")), (10, load_model(runs / "a" / "run.h5", step=10))):
        stored = store.read_checkpoint(run.run_dir, step)
        for variable in model.weights:
            np.testing.assert_array_equal(np.asarray(variable), stored[variable.path])
        x = examples(run, "test")
        accuracy = np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == run.samples["test_labels"])
        assert accuracy == pytest.approx(metrics_at(run.run_dir, step)["test_accuracy"], abs=1.0 / len(x))


def test_interpolation_arithmetic_is_exact_at_the_ends():
    a, b = np.float32([1.5, -2.0, 3e-8]), np.float32([0.25, 7.0, -1.0])
    assert interpolate(a, b, 0.0) is a and interpolate(a, b, 1.0) is b
    np.testing.assert_allclose(interpolate(a, b, 0.3), 0.7 * a.astype(float) + 0.3 * b, rtol=1e-6)
    np.testing.assert_array_equal(interpolate(a, a, 1.7), a)
    alphas = np.array([-1, 0, 0.5, 1, 2.0])
    assert barrier_height(alphas, [9, 1, 4, 3, 9]) == (2.0, 0.5)  # 4 - (1 + 3) / 2
    assert barrier_height(alphas, [9, 1, 1.5, 3, 9])[0] == 0.0    # below the line: no barrier


def test_barrier_endpoints_are_the_stored_metrics(runs, tmp_path):
    result = invoke("analyze", "barrier", runs / "a", runs / "b", "--points", "7", "-o", tmp_path / "b.h5")
    assert result.exit_code == 0, result.output
    stored = read_result(tmp_path / "b.h5").arrays
    alphas = stored["alphas"]
    assert alphas[0] == -1 and alphas[-1] == 2 and 0 in alphas and 1 in alphas
    for alpha, run in ((0, "a"), (1, "b")):
        row = metrics_at(runs / run, 20)
        i = int(np.flatnonzero(alphas == alpha)[0])
        for name in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
            np.testing.assert_allclose(stored[name][i], row[name], rtol=1e-5, atol=1e-7)
    assert all(stored[f"barrier/{k}"] >= 0 for k in ("train_loss", "train_error", "test_loss", "test_error"))


def test_barrier_single_run_is_init_to_last_and_with_itself_flat(runs, tmp_path):
    printed = json.loads(invoke("analyze", "barrier", runs / "a", "--points", "4", "--json").output)
    assert printed["inputs"]["steps"] == [0, 20] and printed["inputs"]["single_run"]
    alphas = np.array(printed["arrays"]["alphas"])
    for alpha, step in ((0, 0), (1, 20)):
        i = int(np.flatnonzero(alphas == alpha)[0])
        np.testing.assert_allclose(printed["arrays"]["train_accuracy"][i], metrics_at(runs / "a", step)["train_accuracy"],
                                   rtol=1e-6)
    flat = json.loads(invoke("analyze", "barrier", runs / "a", "--step-a", "20", "--points", "5", "--json").output)
    for name in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
        values = np.array(flat["arrays"][name])
        assert np.all(values == values[0])
    assert all(flat["arrays"][f"barrier/{k}"] == 0 for k in ("train_loss", "train_error", "test_loss", "test_error"))


def test_batchnorm_statistics_are_the_mean_of_batch_statistics():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.9)(inputs))
    x = np.random.default_rng(0).normal(2.0, 3.0, (40, 3)).astype(np.float32)
    assert recompute_batchnorm(model, x, batch_size=10)
    layer = model.layers[-1]
    batches = x.reshape(4, 10, 3)
    np.testing.assert_allclose(layer.moving_mean.numpy(), batches.mean(axis=1).mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.numpy(), batches.var(axis=1).mean(axis=0), rtol=1e-4)
    assert layer.momentum == 0.9


def numpy_metrics(model, x, y):
    logits = np.asarray(model(x, training=False), dtype=np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(y)), y].mean(), np.mean(logits.argmax(axis=1) == y)


def test_criticality_against_final_metrics_and_a_hand_rewound_model(runs, tmp_path):
    result = invoke("analyze", "criticality", runs / "a", "--alphas", "0,1", "--sigmas", "0,0.05", "--samples", "2",
                    "-o", tmp_path / "c.h5")
    assert result.exit_code == 0, result.output
    found = read_result(tmp_path / "c.h5").arrays
    modules = [m.decode() if isinstance(m, bytes) else m for m in found["modules"]]
    final = metrics_at(runs / "a", 20)
    np.testing.assert_allclose(found["train_accuracy"][:, 1, 0], final["train_accuracy"], rtol=1e-6)
    np.testing.assert_allclose(found["train_loss"][:, 1, 0], final["train_loss"], rtol=1e-5)
    run = open_run(runs / "a")
    x, y = examples(run, "train"), run_labels(run, "train")
    model = model_at(run, 20, x.shape[1:])
    assert modules == transferable_layers(model) + ["head"]
    initial = store.read_checkpoint(run.run_dir, 0)
    for variable in model.get_layer(modules[0]).weights:  # the first module by hand back to its init
        variable.assign(initial[variable.path])
    loss, accuracy = numpy_metrics(model, x, y)
    np.testing.assert_allclose(found["train_loss"][0, 0, 0], loss, rtol=1e-5)
    np.testing.assert_allclose(found["train_accuracy"][0, 0, 0], accuracy, rtol=1e-6)
    # a rewound module at a = 1 and sigma = 0 is feasible, so min_alpha <= 1; mu >= 0
    assert np.all(found["min_alpha"] <= 1) and np.all(found["criticality"] >= 0)
    assert found["train_accuracy_samples"].shape == (len(modules), 2, 2, 2)


def test_transferability_curve_end_to_end_and_reused(runs, tmp_path):
    out = tmp_path / "curve"
    result = invoke("analyze", "transferability-curve", runs / "a", runs / "down.yaml", "--out", out,
                    "--set", "learning_rate=0.02", "-o", tmp_path / "t.h5")
    assert result.exit_code == 0, result.output
    found = read_result(tmp_path / "t.h5").arrays
    assert list(found["pretrain_steps"]) == [0, 10, 20]
    for i, step in enumerate((0, 10, 20)):
        metrics = store.read_metrics(out / f"step_{step}")
        assert found["train_accuracy"][i] == metrics[-1]["train_accuracy"]
        assert found["test_accuracy"][i] == metrics[-1]["test_accuracy"]
        record = store.read_run_record(out / f"step_{step}")
        assert json.loads(record.identity["from_step"]) == [step]
    np.testing.assert_allclose(found["pretrain_test_accuracy"][[0, 2]],
                               [metrics_at(runs / "a", s)["test_accuracy"] for s in (0, 20)])
    def files():  # run.lock is only taken and released; everything else must be untouched
        return {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.name != "run.lock"}
    before = files()
    again = invoke("analyze", "transferability-curve", runs / "a", runs / "down.yaml", "--out", out,
                   "--set", "learning_rate=0.02", "--steps", "10,20", "--json")
    assert again.exit_code == 0, again.output
    assert files() == before
    np.testing.assert_array_equal(json.loads(again.output)["arrays"]["test_auc"], found["test_auc"][1:])
    bad = invoke("analyze", "transferability-curve", runs / "a", runs / "down.yaml", "--out", out, "--steps", "7")
    assert bad.exit_code != 0 and "no checkpoint at step" in bad.output
