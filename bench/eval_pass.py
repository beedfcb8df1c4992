"""One evaluation pass (A.3: metrics on a whole set) as rltx runs it, reading global batches by index straight from
the host arrays (rltx.distribute.WholeSet), against the same pass fed by a tf.data pipeline whose iterator is created
anew for every pass (rltx's evaluation until 2026-12-05), side by side in one run on the same model and examples.

The model is Fig. 5's quick profile's (A.9's simple CNN, 64 filters and 256 units, 12x12 inputs; an eval point of
that profile passes over 1k training and 500 test examples), or with --architecture resnet18 Fig. 6's (ResNet18-GN
with the ImageNet stem, 12x12). The two passes compute the same sums, which it checks.

    TF_ENABLE_ONEDNN_OPTS=1 TF_CPP_MIN_LOG_LEVEL=2 python bench/eval_pass.py [--examples 1000 --passes 40]
        [--architecture simple_cnn]
"""
import argparse
import time

import keras
import numpy as np
import tensorflow as tf

from rltx import distribute, loop
from rltx.models import build_model

# The quick profiles' models: Fig. 5's (A.9) and Fig. 6 RIGHT's (A.10)
MODELS = {"simple_cnn": dict(num_conv_layers=1, num_filters=64, num_units=256), "resnet18": dict(resnet_stem="imagenet")}


def iterator_pass(steps: loop.Steps):
    """The pass with a tf.data iterator made for each call, as `Steps.evaluate` once took a distributed dataset."""
    @tf.function
    def evaluate(dataset):
        totals = tf.zeros(3 + steps.model.output_shape[-1], tf.float64)
        for images, labels, weights in dataset:
            per_replica = steps.strategy.run(steps.eval_batch, args=(images, labels, weights))
            totals += tf.cast(steps.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None), tf.float64)
        return totals
    return evaluate


def dataset_of(whole: distribute.WholeSet, strategy):
    def gather(rows, weights):
        return distribute.to_model_input(tf.gather(whole.images, rows)), tf.gather(whole.labels, rows), weights
    def dataset_fn(_context):  # one replica: the whole global batch
        rows = tf.data.Dataset.from_tensor_slices((whole.rows.numpy(), whole.weights.numpy()))
        return rows.map(gather).prefetch(distribute.PREFETCH_BATCHES).with_options(distribute._without_autotune())
    options = tf.distribute.InputOptions(experimental_fetch_to_device=True)
    return strategy.distribute_datasets_from_function(dataset_fn, options)


def seconds_per_pass(evaluate, passes: int) -> tuple[float, np.ndarray]:
    totals = evaluate().numpy()  # traced and warmed up outside the timing
    tick = time.perf_counter()
    for _ in range(passes):
        evaluate().numpy()
    return (time.perf_counter() - tick) / passes, totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=1000, help="examples in the evaluated set")
    parser.add_argument("--passes", type=int, default=40, help="timed passes of each kind")
    parser.add_argument("--architecture", choices=sorted(MODELS), default="simple_cnn")
    args = parser.parse_args()
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")  # rltx's strategy on a machine without GPU
    with strategy.scope():
        model = build_model(args.architecture, (12, 12, 3), 10, **MODELS[args.architecture])
        optimizer = keras.optimizers.SGD(0.03)
    steps = loop.Steps(model, optimizer, strategy, 256)
    rng = np.random.default_rng(0)
    whole = distribute.whole_set(distribute.host_tensor(rng.integers(0, 256, (args.examples, 12, 12, 3), np.uint8)),
                                 distribute.host_tensor(rng.integers(0, 10, args.examples)), 1024)
    by_iterator, dataset = iterator_pass(steps), dataset_of(whole, strategy)
    for _ in range(2):  # alternating, so that a busy machine slows both
        direct, direct_totals = seconds_per_pass(lambda: steps.evaluate(whole), args.passes)
        fed, fed_totals = seconds_per_pass(lambda: by_iterator(dataset), args.passes)
        np.testing.assert_allclose(direct_totals, fed_totals, rtol=1e-6)
        print(f"{args.examples} examples: by index {direct * 1e3:.1f} ms, tf.data iterator {fed * 1e3:.1f} ms "
              f"per pass; iterator / by index {fed / direct:.2f}", flush=True)


if __name__ == "__main__":
    main()
