"""Activation statistics (Sec. 3, A.11, App. F) against hand-computed values and an explicit float64
numpy forward pass (the oracles); the run-level analyses on tiny runs made with the CLI."""
import json
import shutil

import h5py
import keras
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from rltx import store
from rltx.analysis.activations import activation_statistics, analyze_activations, analyze_trajectory, relu_outputs
from rltx.analysis.results import read_result, to_json, write_result
from rltx.cli import main
from rltx.errors import UsageError
from rltx.models import build_model


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


# --- hand-set weights -----------------------------------------------------------------------

def dense_model():
    """hidden: u0 = x0, u1 = x1 - 0.5, u2 = 0.5 - x0 - x1, u3 = -1 (dead); then a linear head."""
    inputs = keras.Input((2,))
    hidden = keras.layers.Dense(4, activation="relu", name="hidden")
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(hidden(inputs)))
    hidden.set_weights([np.array([[1, 0, -1, 0], [0, 1, -1, 0]], np.float32), np.array([0, -0.5, 0.5, -1], np.float32)])
    return model


def test_dense_fractions_by_hand():
    x = np.array([[1, 1], [-1, 0], [0.25, 0], [-1, 2], [2, 2]], np.float32)
    # active units per example: {0,1}, {2}, {0,2}, {1}, {0,1}
    statistics = activation_statistics(dense_model(), x, batch_size=2)
    assert list(statistics) == ["hidden"]  # the head is not a ReLU layer
    np.testing.assert_array_equal(statistics["hidden"]["neuron_fraction"], [3 / 5, 3 / 5, 2 / 5, 0])
    np.testing.assert_array_equal(statistics["hidden"]["example_fraction"], [2 / 4, 1 / 4, 2 / 4, 1 / 4, 2 / 4])


def test_conv_neuron_conventions_by_hand():
    """A 1x1 conv with weight 1: a neuron per pixel ("position") or per channel ("channel")."""
    inputs = keras.Input((2, 2, 1))
    conv = keras.layers.Conv2D(1, 1, activation="relu", name="conv")
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(keras.layers.Flatten()(conv(inputs))))
    conv.set_weights([np.ones((1, 1, 1, 1), np.float32), np.zeros(1, np.float32)])
    images = np.array([[[1, -1], [-1, -1]], -np.ones((2, 2)), np.ones((2, 2))], np.float32)[..., None]
    position = activation_statistics(model, images)["conv"]
    np.testing.assert_array_equal(position["neuron_fraction"], [2 / 3, 1 / 3, 1 / 3, 1 / 3])
    np.testing.assert_array_equal(position["example_fraction"], [1 / 4, 0, 1])
    channel = activation_statistics(model, images, conv_neurons="channel")["conv"]
    np.testing.assert_array_equal(channel["neuron_fraction"], [2 / 3])
    np.testing.assert_array_equal(channel["example_fraction"], [1, 0, 1])
    with pytest.raises(UsageError, match="conv_neurons 'pixel'"):
        activation_statistics(model, images, conv_neurons="pixel")
    with pytest.raises(UsageError, match="no layer conv_9; ReLU layers: conv"):
        activation_statistics(model, images, layers=["conv_9"])


# --- numpy forward pass -------------------------------------------------------------------------

def numpy_conv(x, kernel, bias, stride, padding):
    size = kernel.shape[0]
    if padding == "same":
        x = np.pad(x, ((0, 0), (size // 2, size // 2), (size // 2, size // 2), (0, 0)))
    out = (x.shape[1] - size) // stride + 1
    result = np.zeros((len(x), out, out, kernel.shape[-1]))
    for i in range(out):
        for j in range(out):
            window = x[:, i * stride:i * stride + size, j * stride:j * stride + size, :].reshape(len(x), -1)
            result[:, i, j, :] = window @ kernel.reshape(-1, kernel.shape[-1]) + bias
    return result


def exact_model():
    """Conv(relu) -> Conv -> ReLU layer -> Dense -> Activation('relu') -> head, with integer kernels
    and inputs and biases off the grid of the pre-activations (half-integers, then quarters, then
    eighths): every pre-activation is exact in float32 and at least 1/8 away from 0, so no
    summation order can flip a unit."""
    rng = np.random.default_rng(0)
    inputs = keras.Input((5, 5, 2))
    x = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.Conv2D(4, 2, strides=2, padding="valid", name="c2")(x)
    x = keras.layers.ReLU(name="r2")(x)
    x = keras.layers.Dense(5, name="d")(keras.layers.Flatten()(x))
    x = keras.layers.Activation("relu", name="a")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    weights = {"c1": (rng.integers(-2, 3, (3, 3, 2, 3)), rng.integers(-3, 3, 3) + 0.5),
               "c2": (rng.integers(-2, 3, (2, 2, 3, 4)), rng.integers(-3, 3, 4) + 0.25),
               "d": (rng.integers(-2, 3, (16, 5)), rng.integers(-3, 3, 5) + 0.125)}
    for name, (kernel, bias) in weights.items():
        model.get_layer(name).set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    images = rng.integers(-3, 4, (23, 5, 5, 2)).astype(np.float32)
    return model, weights, images


def numpy_activations(weights, images):
    """The post-ReLU outputs of c1, r2 and a, by plain numpy in float64."""
    c1 = np.maximum(numpy_conv(images.astype(np.float64), *weights["c1"], 1, "same"), 0)
    r2 = np.maximum(numpy_conv(c1, *weights["c2"], 2, "valid"), 0)
    a = np.maximum(r2.reshape(len(images), -1) @ weights["d"][0] + weights["d"][1], 0)
    return {"c1": c1, "r2": r2, "a": a}


@pytest.mark.parametrize("conv_neurons", ["position", "channel"])
def test_fractions_equal_a_numpy_forward_pass(conv_neurons):
    model, weights, images = exact_model()
    assert relu_outputs(model) == ["c1", "r2", "a"]
    statistics = activation_statistics(model, images, batch_size=5, conv_neurons=conv_neurons)
    assert list(statistics) == ["c1", "r2", "a"]
    mixed = []
    for name, output in numpy_activations(weights, images).items():
        active = output > 0
        if conv_neurons == "channel" and active.ndim == 4:
            active = active.any(axis=(1, 2))
        active = active.reshape(len(images), -1)
        # integer counts are exact in float64; one correctly rounded division each side: bit-equal
        np.testing.assert_array_equal(statistics[name]["neuron_fraction"], active.mean(axis=0))
        np.testing.assert_array_equal(statistics[name]["example_fraction"], active.mean(axis=1))
        mixed.append(0 < active.mean() < 1)
    # the oracle can tell: layers are neither all-off nor (except c1 per channel) all-on
    assert mixed == ([True, True, True] if conv_neurons == "position" else [False, True, True])


def test_streaming_over_batches_equals_one_batch():
    model, _, images = exact_model()
    whole = activation_statistics(model, images, batch_size=len(images))
    for batch_size in (1, 4, 7):
        parts = activation_statistics(model, images, batch_size=batch_size)
        for name in whole:
            for key in ("neuron_fraction", "example_fraction"):
                np.testing.assert_array_equal(parts[name][key], whole[name][key])


def test_relu_layers_of_the_model_zoo():
    assert relu_outputs(build_model("simple_cnn", (8, 8, 3), 4, num_conv_layers=2, num_filters=2, num_units=3)) == \
        ["conv_0", "conv_1", "dense_0"]
    assert relu_outputs(build_model("vgg16", (32, 32, 3), 10)) == [f"conv_{i}" for i in range(13)]
    assert relu_outputs(build_model("mlp", (6,), 3, hidden_units=[4, 5])) == ["dense_0", "dense_1"]
    resnet = relu_outputs(build_model("resnet18", (32, 32, 3), 10, resnet_stem="cifar", group_norm_groups=2))
    assert len(resnet) == 17 and resnet[-1] == "final_relu" and all("relu" in name for name in resnet)


# --- runs ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny pre-training run (checkpoints 0, 10, 20), a transfer from its step 10 (0, 10, 20),
    and an unrelated pre-training run (another seed, one step)."""
    from tests_support import tiny_recipe_dict
    directory = tmp_path_factory.mktemp("activations")
    recipe = {**tiny_recipe_dict(), "labels_downstream": "random", "num_classes_downstream": 3, "total_steps": 20,
              "num_eval_points": 2}
    (directory / "r.yaml").write_text(yaml.safe_dump(recipe))
    for name, sets in (("pre", ["seed=3"]), ("other", ["seed=4", "total_steps=1"])):  # other: only refused
        sets = [arg for value in sets for arg in ("--set", value)]
        result = invoke("pretrain", directory / "r.yaml", *sets, "--out", directory / name, "--quiet")
        assert result.exit_code == 0, result.output
    result = invoke("transfer", directory / "r.yaml", "--from", directory / "pre", "--from-step", "10",
                    "--out", directory / "post", "--quiet")
    assert result.exit_code == 0, result.output
    return directory


def test_histograms_count_every_neuron_and_example(runs, tmp_path):
    result = analyze_activations([runs / "pre", runs / "post"], all_steps=True, num_examples=50, bins=7)
    np.testing.assert_allclose(result.arrays["bin_edges"], np.linspace(0, 1, 8))
    # conv_0: 6x6 input, 3x3 kernel, stride 3, valid -> 2x2x8 neurons; dense_0: 16 units (TINY recipe)
    expected_neurons = [2 * 2 * 8, 16]
    for r in (0, 1):
        steps = result.arrays[f"{r}/steps"]
        assert steps.tolist() == store.checkpoint_steps_stored(runs / ["pre", "post"][r]) == [0, 10, 20]
        assert result.inputs["layers"][r] == ["conv_0", "dense_0"]
        assert result.arrays[f"{r}/num_neurons"].tolist() == expected_neurons
        assert result.arrays[f"{r}/neuron_histogram"].shape == (3, 2, 7)
        np.testing.assert_array_equal(result.arrays[f"{r}/neuron_histogram"].sum(axis=2), [expected_neurons] * 3)
        np.testing.assert_array_equal(result.arrays[f"{r}/example_histogram"].sum(axis=2), np.full((3, 2), 50))
        # the same count / (neurons x examples) by two routes: m rounded divisions summed, m <= 50
        # terms (Higham Sec. 4.2); one example miscounted is off by >= 1 / (64 x 50)
        np.testing.assert_allclose(result.arrays[f"{r}/mean_neuron_fraction"],
                                   result.arrays[f"{r}/mean_example_fraction"], rtol=2 * (50 + 2) * np.finfo(float).eps)
        dead = result.arrays[f"{r}/dead_fraction"]
        assert np.all((dead >= 0) & (dead <= 1))
        # dead neurons sit in the first bin
        assert np.all(result.arrays[f"{r}/neuron_histogram"][..., 0] >= np.round(dead * expected_neurons))
    assert [(row["run"], row["step"], row["layer"]) for row in result.table][:3] == \
        [("pre", 0, "conv_0"), ("pre", 0, "dense_0"), ("pre", 10, "conv_0")]
    assert len(result.table) == 2 * 3 * 2
    # stored and read back; JSON has no bytes
    write_result(result, tmp_path / "a.h5")
    back = read_result(tmp_path / "a.h5")
    np.testing.assert_array_equal(back.arrays["1/neuron_histogram"], result.arrays["1/neuron_histogram"])
    assert back.inputs["layers"] == result.inputs["layers"]
    assert json.loads(to_json(result))["inputs"]["steps"] == [[0, 10, 20], [0, 10, 20]]


def test_default_step_is_the_last_and_bad_options_are_usage_errors(runs):
    last = analyze_activations(runs / "pre", num_examples=0, bins=4, which="train")
    assert last.arrays["0/steps"].tolist() == [20]
    assert int(last.arrays["0/num_examples"]) == 384  # every upstream example of the TINY recipe
    assert analyze_activations([runs / "pre"], step=10, num_examples=8).arrays["0/steps"].tolist() == [10]
    with pytest.raises(UsageError, match="no checkpoint at step 7"):
        analyze_activations([runs / "pre"], step=7)
    with pytest.raises(UsageError, match="which 'valid'"):
        analyze_activations([runs / "pre"], which="valid")


def test_trajectory_across_the_switch(runs):
    # both runs hold out the same examples, so the per-run analyses below measure what the trajectory does
    np.testing.assert_array_equal(store.read_run_record(runs / "pre").samples["test_indices"],
                                  store.read_run_record(runs / "post").samples["test_indices"])
    result = analyze_trajectory(runs / "pre", runs / "post", num_examples=40)
    arrays = result.arrays
    assert int(arrays["switch_step"]) == 10  # the transfer started from the source's step 10
    assert arrays["steps"].tolist() == [0, 10, 20, 30]  # pre 0, 10; transfer 10, 20 offset by 10
    assert np.all(np.diff(arrays["steps"]) > 0)
    assert arrays["phase"].tolist() == [0, 0, 1, 1] and arrays["run_steps"].tolist() == [0, 10, 10, 20]
    assert arrays["activation"].shape == (4, 2) and arrays["transfer_start"].shape == (2,)
    assert result.inputs["layers"] == ["conv_0", "dense_0"]
    # the pre-training points are the per-step means of the per-run analysis on the same examples
    # (same function, examples and batches: integer counts, then the same float64 mean: bit-equal)
    per_run = analyze_activations(runs / "pre", all_steps=True, num_examples=40)
    np.testing.assert_array_equal(arrays["activation"][:2], per_run.arrays["0/mean_neuron_fraction"][:2])
    transfer = analyze_activations(runs / "post", all_steps=True, num_examples=40)
    np.testing.assert_array_equal(arrays["transfer_start"], transfer.arrays["0/mean_neuron_fraction"][0])
    np.testing.assert_array_equal(arrays["activation"][2:], transfer.arrays["0/mean_neuron_fraction"][1:])


def test_trajectory_needs_the_transfers_own_source(runs, tmp_path):
    with pytest.raises(UsageError, match="was not transferred from"):
        analyze_trajectory(runs / "other", runs / "post", num_examples=8)
    # moved together, the source is known by its step-10 checkpoint's recorded sha256, not by its path
    for name in ("pre", "post"):
        shutil.copytree(runs / name, tmp_path / "moved" / name)
    moved = analyze_trajectory(tmp_path / "moved" / "pre", tmp_path / "moved" / "post", num_examples=8)
    original = analyze_trajectory(runs / "pre", runs / "post", num_examples=8)
    assert int(moved.arrays["switch_step"]) == 10
    np.testing.assert_array_equal(moved.arrays["activation"], original.arrays["activation"])
    with h5py.File(store.checkpoint_path(tmp_path / "moved" / "pre", 10), "r+") as checkpoint:
        checkpoint.attrs["edited"] = 1  # other bytes: no longer the source
    with pytest.raises(UsageError, match="was not transferred from"):
        analyze_trajectory(tmp_path / "moved" / "pre", tmp_path / "moved" / "post", num_examples=8)
    with pytest.raises(UsageError, match="not a transfer"):
        analyze_trajectory(runs / "pre", runs / "other", num_examples=8)
