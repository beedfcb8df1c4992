"""Which ReLUs fire, and how often: the specialisation analysis of Maennel et al. (2020), Sec. 3
("Specializing neurons", Fig. 7), Appendix A.11 (Figs. 10, 11) and Appendix F (Fig. 24).

A *neuron* is one output of a ReLU (Sec. 2: f_k(x) = g(<w_k, x> + b_k)); it is *active* for an
example when its output is > 0. For each ReLU layer and a set of held-out examples (A.11: "the 5k
input examples were taken from the holdout test split"):

- `neuron_fraction` [neurons]: for each neuron, the fraction of the examples that activate it
  (A.11, left columns: "distributions of neurons over the fraction of input examples that activate
  them"); a neuron with fraction 0 is *dead* (never active, Sec. 3 "inactive ReLU").
- `example_fraction` [examples]: for each example, the fraction of the layer's neurons it
  activates (A.11, right columns: "distribution of the input examples over the fraction of neurons
  that are activated by them").

Neuron convention for convolutions (`conv_neurons`):

- "position" (default): a neuron is one channel at one spatial position, so an H x W x C output
  holds H*W*C neurons, flattened in (row, column, channel) order. This is Sec. 2's convolutional
  neuron (a filter applied to one input patch) and App. F's "frequency of the output of a hidden
  activation function being non-zero" (every output value counts), and it keeps the histograms
  informative in early layers, where nearly every channel fires *somewhere* in nearly every image.
- "channel": a neuron is one channel, active for an example when it is > 0 at any position
  (C neurons per layer).

Dense layers have one neuron per unit under both conventions. Note that the mean of
`neuron_fraction` and the mean of `example_fraction` are the same number (both are the fraction of
active (neuron, example) pairs); the two distributions around it differ.

Statistics are accumulated in a stream over batches of examples: only the per-neuron and
per-example counts are kept (integers, so batching does not change them), never the activations.

Result of `analyze_activations` (kind "activations"): with r the index of a run in
`inputs["runs"]`, S its analysed checkpoints, L its ReLU layers (names in `inputs["layers"][r]`),
B bins:

    bin_edges                    [B+1]      fixed histogram bins over [0, 1], shared by all
    {r}/steps                    [S]        checkpoint steps (also `inputs["steps"][r]`)
    {r}/num_neurons              [L]        neurons per layer (under `inputs["conv_neurons"]`)
    {r}/num_examples             []         examples used for run r
    {r}/neuron_histogram         [S, L, B]  neurons per bin of neuron_fraction (sums to num_neurons[l])
    {r}/example_histogram        [S, L, B]  examples per bin of example_fraction (sums to num_examples)
    {r}/mean_neuron_fraction     [S, L]
    {r}/dead_fraction            [S, L]     fraction of neurons active for no example
    {r}/mean_example_fraction    [S, L]

Histogram bins are [e_i, e_{i+1}) with the last one closed ([e_{B-1}, 1]), as numpy.histogram.

Result of `analyze_trajectory` (kind "activation_trajectory"), Fig. 24: the pre-training run's
checkpoints up to the switch, then the transfer run's, on one x axis; L layers named in
`inputs["layers"]`:

    steps           [T]     common x axis, strictly increasing: pre-training step, or
                            switch_step + transfer step
    phase           [T]     0 = pre-training run, 1 = transfer run
    run_steps       [T]     the checkpoint step within its own run
    activation      [T, L]  mean fraction of active neurons (the "frequency of the output of a
                            hidden activation function being non-zero", App. F)
    dead_fraction   [T, L]  fraction of neurons active for no example
    switch_step     []      the pre-training step the transfer started from
    transfer_start  [L]     activation of the transfer run's step-0 checkpoint

The transfer run's step 0 (the source checkpoint at switch_step after A.4 rescaling, with any
freshly initialised layers) would share x = switch_step with the source checkpoint, so it is kept
apart in `transfer_start` and the axis holds transfer steps >= 1. Both runs are measured on the
same examples: the pre-training run's held-out set (or its training set with which="train").
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import keras
import numpy as np
import tensorflow as tf

from rltx.analysis.results import Result
from rltx.errors import UsageError
from rltx.models import HEAD
from rltx.runs import Run, check_source_unchanged, examples, model_at, open_run, select_steps, step_taken_from

CONV_NEURONS = ("position", "channel")
WHICH = ("test", "train")


def _is_relu(layer: keras.layers.Layer) -> bool:
    if isinstance(layer, keras.layers.ReLU):
        return float(layer.negative_slope) == 0.0  # a leaky ReLU has no inactive state
    return getattr(layer, "activation", None) is keras.activations.relu


def relu_outputs(model: keras.Model) -> list[str]:
    """Names of the layers whose output is post-ReLU, in the model's order: Conv/Dense layers with
    activation='relu' (the classifier `HEAD` excluded), ReLU layers and Activation('relu') layers."""
    return [layer.name for layer in model.layers if layer.name != HEAD and _is_relu(layer)]


def _check_choice(name: str, value, valid: tuple) -> None:
    if value not in valid:
        raise UsageError(f"{name} {value!r} is not one of {', '.join(valid)}; choose one of them")


def activation_statistics(model: keras.Model, inputs: np.ndarray, batch_size: int = 256, *,
                          conv_neurons: str = "position", layers: Iterable[str] | None = None
                          ) -> dict[str, dict[str, np.ndarray]]:
    """Per ReLU layer (default: `relu_outputs(model)`), `neuron_fraction` [neurons] and
    `example_fraction` [examples] over `inputs` (model inputs, already scaled); see the module
    docstring for the neuron convention. Streams over batches of `batch_size` examples."""
    _check_choice("conv_neurons", conv_neurons, CONV_NEURONS)
    names = relu_outputs(model) if layers is None else list(layers)
    if not names:
        raise UsageError(f"model {model.name} has no ReLU layer; activation statistics need ReLUs")
    unknown = [name for name in names if name not in {layer.name for layer in model.layers}]
    if unknown:
        raise UsageError(f"model {model.name} has no layer {', '.join(unknown)}; ReLU layers: "
                         f"{', '.join(relu_outputs(model)) or 'none'}")
    if len(inputs) == 0:
        raise UsageError("no examples to measure activations on; pass at least one example")
    if batch_size < 1:
        raise UsageError(f"batch_size {batch_size} must be at least 1")
    probe = keras.Model(model.inputs, [model.get_layer(name).output for name in names])
    dtype = model.inputs[0].dtype

    @tf.function(input_signature=[tf.TensorSpec([None, *inputs.shape[1:]], dtype)])
    def batch_counts(batch):
        outputs = probe(batch, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        counts = []
        for output in outputs:
            active = output > 0
            if conv_neurons == "channel" and len(output.shape) > 2:  # active anywhere in the map
                active = tf.reduce_any(active, axis=list(range(1, len(output.shape) - 1)))
            active = tf.cast(tf.reshape(active, [tf.shape(active)[0], -1]), tf.int32)
            counts.append((tf.reduce_sum(active, axis=0), tf.reduce_sum(active, axis=1)))
        return counts

    # One function (one trace) per model is intended: analyses build a model per checkpoint, so
    # TF's "frequent retracing" warning (keyed by the code, not the function object) is a false alarm.
    batch_counts._omit_frequent_tracing_warning = True
    per_neuron: list[np.ndarray | int] = [0] * len(names)
    per_example: list[list[np.ndarray]] = [[] for _ in names]
    for start in range(0, len(inputs), batch_size):
        batch = tf.convert_to_tensor(inputs[start:start + batch_size], dtype=dtype)
        for i, (neurons, examples_) in enumerate(batch_counts(batch)):
            per_neuron[i] = per_neuron[i] + neurons.numpy().astype(np.int64)
            per_example[i].append(examples_.numpy())
    statistics = {}
    for name, neurons, examples_ in zip(names, per_neuron, per_example):
        statistics[name] = {"neuron_fraction": neurons / len(inputs),
                            "example_fraction": np.concatenate(examples_) / len(neurons)}
    return statistics


def _histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.histogram(values, bins=edges)[0].astype(np.int64)


def _check_options(num_examples: int, which: str, bins: int | None = None) -> None:
    _check_choice("which", which, WHICH)
    if num_examples < 0:
        raise UsageError(f"num_examples {num_examples} is negative; pass 0 for all examples or a positive count")
    if bins is not None and bins < 1:
        raise UsageError(f"bins {bins} must be at least 1")


def _examples_of(run: Run, which: str, num_examples: int) -> np.ndarray:
    inputs = examples(run, which, num_examples)
    if len(inputs) == 0:
        raise UsageError(f"{run.run_dir} has no {which} examples; use which='train' or a run with a held-out set")
    return inputs


def analyze_activations(run_paths, *, step: int | None = None, all_steps: bool = False, num_examples: int = 5000,
                        which: str = "test", bins: int = 20, conv_neurons: str = "position",
                        batch_size: int = 256) -> Result:
    """Figs. 7, 10, 11 (Sec. 3, A.11): per run and checkpoint (the last, `step`, or all stored
    ones), histograms of neuron_fraction and example_fraction per ReLU layer over the first
    `num_examples` held-out examples (0: all), with mean fractions and dead neurons."""
    run_paths = [run_paths] if isinstance(run_paths, (str, Path)) else list(run_paths)
    if not run_paths:
        raise UsageError("no run to analyse; pass at least one run directory")
    _check_options(num_examples, which, bins)
    _check_choice("conv_neurons", conv_neurons, CONV_NEURONS)
    edges = np.linspace(0.0, 1.0, bins + 1)
    arrays: dict[str, np.ndarray] = {"bin_edges": edges}
    table: list[dict] = []
    inputs_record = {"runs": [], "kinds": [], "steps": [], "layers": [], "which": which,
                     "num_examples": num_examples, "bins": bins, "conv_neurons": conv_neurons}
    for r, path in enumerate(run_paths):
        run = open_run(path)
        steps = select_steps(run, step, all_steps)
        inputs = _examples_of(run, which, num_examples)
        layers: list[str] = []
        neuron_hist, example_hist, means, dead, example_means, sizes = [], [], [], [], [], []
        for s in steps:
            model = model_at(run, s, tuple(inputs.shape[1:]))
            statistics = activation_statistics(model, inputs, batch_size, conv_neurons=conv_neurons)
            layers = list(statistics)
            rows = [statistics[name] for name in layers]
            neuron_hist.append([_histogram(row["neuron_fraction"], edges) for row in rows])
            example_hist.append([_histogram(row["example_fraction"], edges) for row in rows])
            means.append([row["neuron_fraction"].mean() for row in rows])
            dead.append([np.mean(row["neuron_fraction"] == 0) for row in rows])
            example_means.append([row["example_fraction"].mean() for row in rows])
            sizes = [len(row["neuron_fraction"]) for row in rows]
            for name, mean, dead_share, example_mean in zip(layers, means[-1], dead[-1], example_means[-1]):
                table.append({"run": run.run_dir.name, "step": s, "layer": name, "mean neuron fraction": float(mean),
                              "dead neurons %": 100.0 * float(dead_share),
                              "mean example fraction": float(example_mean)})
        arrays.update({f"{r}/steps": np.asarray(steps, dtype=np.int64),
                       f"{r}/num_neurons": np.asarray(sizes, dtype=np.int64),
                       f"{r}/num_examples": np.asarray(len(inputs), dtype=np.int64),
                       f"{r}/neuron_histogram": np.asarray(neuron_hist, dtype=np.int64),
                       f"{r}/example_histogram": np.asarray(example_hist, dtype=np.int64),
                       f"{r}/mean_neuron_fraction": np.asarray(means, dtype=np.float64),
                       f"{r}/dead_fraction": np.asarray(dead, dtype=np.float64),
                       f"{r}/mean_example_fraction": np.asarray(example_means, dtype=np.float64)})
        inputs_record["runs"].append(str(run.run_dir))
        inputs_record["kinds"].append(run.kind)
        inputs_record["steps"].append([int(s) for s in steps])
        inputs_record["layers"].append(layers)
    return Result("activations", inputs_record, arrays, table)


def switch_step_of(pretrain: Run, transfer: Run) -> int:
    """The step of `pretrain` that `transfer` started from (`step_taken_from`: by path, or by the checkpoint
    sha256 its record holds)."""
    identity = transfer.record.identity
    if pretrain.kind != "pretrain":
        raise UsageError(f"{pretrain.run_dir} is a {pretrain.kind} run; give the pre-training run first "
                         "(PRETRAIN_RUN TRANSFER_RUN)")
    if transfer.kind != "transfer" or "sources" not in identity:
        raise UsageError(f"{transfer.run_dir} is a {transfer.kind} run, not a transfer; pass a run made by "
                         f"`rltx transfer --from {pretrain.run_dir}`")
    step = step_taken_from(transfer, pretrain.run_dir)
    if step is None:
        raise UsageError(f"{transfer.run_dir} was not transferred from {pretrain.run_dir} (its sources: "
                         f"{', '.join(transfer.record.sources)}); pass the pre-training run it came from")
    return step


def analyze_trajectory(pretrain_run, transfer_run, *, num_examples: int = 5000, which: str = "test",
                       conv_neurons: str = "position", batch_size: int = 256) -> Result:
    """Fig. 24 (App. F): the mean fraction of active neurons per ReLU layer at every stored
    checkpoint of the pre-training run up to the switch, then of the transfer run, on one x axis
    (transfer steps offset by the source step the transfer started from)."""
    _check_options(num_examples, which)
    _check_choice("conv_neurons", conv_neurons, CONV_NEURONS)
    pretrain, transfer = open_run(pretrain_run), open_run(transfer_run)
    switch = switch_step_of(pretrain, transfer)
    check_source_unchanged(transfer, pretrain.run_dir, switch)
    inputs = _examples_of(pretrain, which, num_examples)  # one example set for both phases
    points = [(0, s, s) for s in pretrain.steps if s <= switch] + \
             [(1, s, switch + s) for s in transfer.steps if s > 0]

    def measure(run: Run, step: int) -> tuple[list[str], list[float], list[float]]:
        statistics = activation_statistics(model_at(run, step, tuple(inputs.shape[1:])), inputs, batch_size,
                                           conv_neurons=conv_neurons)
        fractions = [row["neuron_fraction"] for row in statistics.values()]
        return list(statistics), [f.mean() for f in fractions], [np.mean(f == 0) for f in fractions]

    layers, activation, dead = [], [], []
    for phase, run_step, _ in points:
        layers, mean, dead_share = measure(pretrain if phase == 0 else transfer, run_step)
        activation.append(mean)
        dead.append(dead_share)
    start = [np.nan] * len(layers)
    if 0 in transfer.steps:
        start_layers, start, _ = measure(transfer, 0)
        if points and start_layers != layers:
            raise UsageError(f"{transfer.run_dir} has other ReLU layers than {pretrain.run_dir}; "
                             "pass runs of the same architecture")
        layers = start_layers
    arrays = {"steps": np.asarray([x for _, _, x in points], dtype=np.int64),
              "phase": np.asarray([p for p, _, _ in points], dtype=np.int64),
              "run_steps": np.asarray([s for _, s, _ in points], dtype=np.int64),
              "activation": np.asarray(activation, dtype=np.float64).reshape(len(points), len(layers)),
              "dead_fraction": np.asarray(dead, dtype=np.float64).reshape(len(points), len(layers)),
              "switch_step": np.asarray(switch, dtype=np.int64),
              "transfer_start": np.asarray(start, dtype=np.float64)}
    series = arrays["activation"]
    before = series[arrays["phase"] == 0]
    after = series[arrays["phase"] == 1]
    table = [{"layer": name,
              "pre-training start": float(before[0, i]) if len(before) else float("nan"),
              f"at switch ({switch})": float(before[-1, i]) if len(before) else float("nan"),
              "transfer start": float(arrays["transfer_start"][i]),
              "transfer end": float(after[-1, i]) if len(after) else float("nan")}
             for i, name in enumerate(layers)]
    inputs_record = {"pretrain_run": str(pretrain.run_dir), "transfer_run": str(transfer.run_dir), "layers": layers,
                     "which": which, "num_examples": num_examples, "conv_neurons": conv_neurons}
    return Result("activation_trajectory", inputs_record, arrays, table)
