"""Wall time of short training runs with rltx's input pipeline (fixed prefetch, no tf.data autotuning)
against the same pipeline with tf.data autotuning (prefetch AUTOTUNE), side by side in one run.

Each run is Fig. 5's quick pre-training (A.9's simple CNN, 64 filters and 256 units, on 500 dead-leaves images,
300 steps, 10 eval points) at 16x16, the profile's size when the README's times of this bench were measured (it
reads 12x12 since), the runs of the two settings alternating so that a busy machine slows
both. Per run it prints the wall time of the `pretrain` call and the part of it after the last eval point was
measured (the time to leave the loop and drop the data iterator). The two settings train bit for bit the same
weights, which it checks.

    TF_ENABLE_ONEDNN_OPTS=1 TF_CPP_MIN_LOG_LEVEL=2 python bench/input_pipeline.py [--runs 3]
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from rltx import distribute, store
from rltx.pretrain import pretrain
from rltx.recipe_file import load_recipe

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "fig5.yaml"
IMAGE_SIZE = "image_size=16"  # the size of every time of this bench in the README and docs/calibration.md


# rltx's own settings, kept to restore them between the autotuned runs
RLTX_PREFETCH, RLTX_OPTIONS = distribute.PREFETCH_BATCHES, distribute._without_autotune


def set_autotune(enabled: bool) -> None:
    """rltx's pipeline (enabled False) or the tf.data default of autotuned prefetching (True)."""
    distribute.PREFETCH_BATCHES = tf.data.AUTOTUNE if enabled else RLTX_PREFETCH
    distribute._without_autotune = tf.data.Options if enabled else RLTX_OPTIONS


def timed_run(recipe, directory: Path) -> tuple[float, float, dict]:
    """(wall seconds of the call, seconds after the last eval point's timestamp, final weights)."""
    run_dir = Path(tempfile.mkdtemp(dir=directory))
    tick = time.perf_counter()
    pretrain(recipe, run_dir, resume=False)
    wall = time.perf_counter() - tick
    after_last_eval = wall - store.read_metrics(run_dir)[-1]["wall_time"]
    return wall, after_last_eval, store.read_checkpoint(run_dir, recipe.steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per setting")
    args = parser.parse_args()
    recipe = load_recipe(RECIPE, (IMAGE_SIZE,), profile="quick")
    results = {False: [], True: []}
    with tempfile.TemporaryDirectory() as directory:
        timed_run(recipe, Path(directory))  # warm-up: oneDNN kernels, first traces
        for index in range(args.runs):
            for enabled in (False, True):
                set_autotune(enabled)
                results[enabled].append(timed_run(recipe, Path(directory)))
                wall, after, _ = results[enabled][-1]
                print(f"run {index} autotune={'on ' if enabled else 'off'} wall {wall:6.2f} s, "
                      f"after the last eval point {after:6.2f} s", flush=True)
    same = all(np.array_equal(a[2][name], b[2][name]) for a, b in zip(results[False], results[True]) for name in a[2])
    off, on = (statistics.mean(r[0] for r in results[k]) for k in (False, True))
    print(f"mean wall per run: rltx (no autotuning) {off:.2f} s, tf.data autotuning {on:.2f} s, "
          f"ratio {on / off:.2f}x; the same final weights: {same}")


if __name__ == "__main__":
    main()
