"""Training throughput of `rltx pretrain` against a bare Keras `model.fit`, side by side in one run.

Both train the same model (same init) on the same synthetic uint8 32x32x3 data with batch 256 and
SGD + momentum 0.9. Both rates count only the time inside the compiled training calls (which
include fetching the batches): rltx's `train_chunk` calls as its metrics rows report them, and
fit's `train_function` calls (batch begin to batch end). The first interval of each side (which
includes tf.function tracing) is left out. rltx's eval points are reported as overhead (wall time
of the `pretrain` call minus its training time: setup, eval points, checkpoint and metric writes);
fit's time between batches (mostly its per-epoch iterator set-up) is shown in the per-run line.

    TF_ENABLE_ONEDNN_OPTS=1 TF_CPP_MIN_LOG_LEVEL=2 python bench/throughput.py [--models simple_cnn,vgg16]
"""
import argparse
import math
import os
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from rltx import store
from rltx.config import make_recipe
from rltx.data import to_model_input
from rltx.tasks import build_recipe_model
from rltx.pretrain import pretrain

TARGET = 0.9
BATCH = 256
MODELS = {"simple_cnn": ({"num_conv_layers": 3, "num_filters": 16, "num_units": 1024}, 64),  # A.10
          "vgg16": ({}, 8)}  # (architecture keys, total steps at --steps-scale 1)


def make_data(directory: Path, num_train: int, num_test: int) -> Path:
    rng = np.random.default_rng(0)
    path = directory / "data.npz"
    np.savez(path, x=rng.integers(0, 256, (num_train, 32, 32, 3), dtype=np.uint8),
             y=rng.integers(0, 10, num_train), x_test=rng.integers(0, 256, (num_test, 32, 32, 3), dtype=np.uint8),
             y_test=rng.integers(0, 10, num_test))
    return path


def make_model_recipe(model: str, data_path: Path, num_train: int, steps: int):
    return make_recipe({"dataset": "npz", "data_path": str(data_path), "num_examples_upstream": num_train,
                        "num_classes_upstream": 10, "architecture": model, **MODELS[model][0],
                        "learning_rate": 0.01, "momentum": 0.9, "batch_size": BATCH, "total_steps": steps,
                        "num_eval_points": 5, "seed": 0})


def time_rltx(recipe, directory: Path) -> tuple[float, float, float]:
    """(training images/s after the first eval interval, overhead seconds, wall seconds)."""
    run_dir = Path(tempfile.mkdtemp(dir=directory))
    tick = time.perf_counter()
    pretrain(recipe, run_dir, resume=False)
    wall = time.perf_counter() - tick
    rows = store.read_metrics(run_dir)
    intervals = [((b["step"] - a["step"]) * BATCH, b["images_per_second"]) for a, b in zip(rows, rows[1:])]
    seconds = [images / rate for images, rate in intervals]
    rate = sum(images for images, _ in intervals[1:]) / sum(seconds[1:])
    return rate, wall - sum(seconds), wall


class BatchClock(keras.callbacks.Callback):
    """Begin and end time of each training batch (the loss is fetched, so the step has finished)."""

    def on_train_begin(self, logs=None):
        self.begins, self.ends = [], []

    def on_train_batch_begin(self, batch, logs=None):
        self.begins.append(time.perf_counter())

    def on_train_batch_end(self, batch, logs=None):
        float(logs["loss"])
        self.ends.append(time.perf_counter())


def time_bare(recipe, x: np.ndarray, y: np.ndarray, steps: int) -> tuple[float, float]:
    """(images/s inside fit's training steps after the first one, images/s from the end of the
    first step to the end of the last one, epoch boundaries included)."""
    keras.utils.set_random_seed(recipe.seed)
    model = build_recipe_model(recipe, x.shape[1:], 10)
    model.compile(optimizer=keras.optimizers.SGD(recipe.learning_rate, momentum=recipe.momentum),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    clock = BatchClock()
    model.fit(x, y, batch_size=BATCH, epochs=math.ceil(steps * BATCH / len(x)), callbacks=[clock], verbose=0)
    images = (len(clock.ends) - 1) * BATCH
    in_steps = sum(end - begin for begin, end in zip(clock.begins[1:], clock.ends[1:]))
    return images / in_steps, images / (clock.ends[-1] - clock.ends[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="simple_cnn,vgg16", help="comma-separated: simple_cnn, vgg16")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiply the steps per model (64, 8)")
    parser.add_argument("--repeats", type=int, default=1, help="bare/rltx pairs per model, run alternately")
    parser.add_argument("--num-train", type=int, default=2048)
    parser.add_argument("--num-test", type=int, default=256)
    args = parser.parse_args()
    # pretrain turns op determinism on for the whole process (and nothing turns it off): turn it
    # on from the start, so that every bare fit runs under the same setting as rltx.
    tf.config.experimental.enable_op_determinism()
    results, load_before = {}, os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        data_path = make_data(directory, args.num_train, args.num_test)
        with np.load(data_path) as arrays:
            x, y = to_model_input(arrays["x"]).numpy(), arrays["y"]
        for model in args.models.split(","):
            steps = max(2, round(MODELS[model][1] * args.steps_scale))
            recipe = make_model_recipe(model, data_path, args.num_train, steps)
            bare, rltx = [], []
            for repeat in range(args.repeats):
                bare.append(time_bare(recipe, x, y, steps))
                rltx.append(time_rltx(recipe, directory))
                print(f"{model} #{repeat + 1}, {steps} steps: bare fit {bare[-1][0]:.1f} img/s "
                      f"({bare[-1][1]:.1f} counting the time between batches), rltx {rltx[-1][0]:.1f} img/s "
                      f"(overhead {rltx[-1][1]:.1f} s of {rltx[-1][2]:.1f} s)", flush=True)
            results[model] = (np.mean([r[0] for r in rltx]), np.mean([b[0] for b in bare]),
                              np.mean([r[1] for r in rltx]), np.mean([r[1] / r[2] for r in rltx]))
    print(f"\n{'model':<12}{'rltx img/s':>12}{'bare img/s':>12}{'ratio':>8}  rltx eval overhead")
    for model, (rltx_rate, bare_rate, overhead, share) in results.items():
        print(f"{model:<12}{rltx_rate:>12.1f}{bare_rate:>12.1f}{rltx_rate / bare_rate:>7.2f}x"
              f"  {overhead:.1f} s ({100 * share:.0f}% of wall)")
    for model, (rltx_rate, bare_rate, _, _) in results.items():
        ratio = rltx_rate / bare_rate
        print(f"{model}: {'PASS' if ratio >= TARGET else 'BELOW'} target {TARGET}x ({ratio:.2f}x)")
    print(f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs "
          "(other processes slow the two sides unevenly: use --repeats 2 on a busy machine)")


if __name__ == "__main__":
    main()
