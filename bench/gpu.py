"""Training and evaluation throughput of rltx's own compiled steps on one device, side by side.

For each model x precision (float32, mixed_bfloat16) x XLA (off, on) one row:
- train: images/s of `Steps.train_chunk`, fed by rltx's input pipeline from host memory (as a run);
- ceiling: images/s of the same compiled SGD step on one batch already on the device; train far
  below ceiling means the configuration is data-bound;
- eval: images/s of `Steps.evaluate` over a whole set (the eval points of A.3).
Then the packing gain for Simple CNN: the total images/s of K concurrent processes on one device,
each started with the environment `rltx sweep --runs-per-gpu K` gives its workers (same GPU, memory
cap, XLA auto), all timed over the same window.

The default is a reduced form that finishes in a minute or two on an idle CPU (tiny widths, 8x8
images, batch 8, K = 1, 2; what the tests run; its rates mean nothing). `--full` gives the real
table on a GPU: the paper's models at 32x32, batch 256 (A.3), eval batch 1024, K = 1, 2, 4, 8.
`--save FILE` writes it as JSON with the device's name and the date (rltx/measurements/ holds the
files the sweep's time estimates read).

    TF_CPP_MIN_LOG_LEVEL=2 python bench/gpu.py --full --save rltx/measurements/gpu-NAME.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = ("simple_cnn", "vgg16", "resnet18", "wrn28")
# The architectures' keys: the paper's (A.2 Simple CNN of A.10, A.7's WRN-28-4), or tiny ones.
FULL_KEYS = {"simple_cnn": {"num_conv_layers": 3, "num_filters": 16, "num_units": 1024}, "vgg16": {},
             "resnet18": {}, "wrn28": {"width_factor": 4}}
REDUCED_KEYS = {"simple_cnn": {"num_conv_layers": 2, "num_filters": 8, "num_units": 64}, "vgg16": {},
                "resnet18": {}, "wrn28": {"width_factor": 1}}
PRECISIONS = ("float32", "mixed_bfloat16")
COLUMNS = ("model", "precision", "xla", "train img/s", "ceiling img/s", "train/ceiling", "eval img/s")


def settings(full: bool) -> dict:
    if full:
        return dict(batch=256, eval_batch=1024, num_train=50_000, num_eval=10_000, steps=50, packing=(1, 2, 4, 8),
                    window=20.0, keys=FULL_KEYS, image=32)
    return dict(batch=8, eval_batch=32, num_train=64, num_eval=64, steps=4, packing=(1, 2), window=2.0,
                keys=REDUCED_KEYS, image=8)


def setup(model: str, precision: str, jit: bool, config: dict, strategy):
    """rltx's Steps for one configuration, and its training and evaluation data on the host."""
    import numpy as np

    from rltx import loop
    from rltx.config import make_recipe
    from rltx.distribute import host_tensor
    from rltx.tasks import build_recipe_model
    recipe = make_recipe({"dataset": "cifar10", "num_examples_upstream": config["num_train"], "architecture": model,
                          **config["keys"][model], "learning_rate": 0.01, "batch_size": config["batch"],
                          "total_steps": 10 ** 6, "mixed_precision": "none" if precision == "float32" else precision,
                          "jit_compile": jit})
    plan = loop.TrainPlan.from_recipe(recipe, downstream=False)
    rng = np.random.default_rng(0)
    side = config["image"]
    images = host_tensor(rng.integers(0, 256, (config["num_train"], side, side, 3), dtype=np.uint8))
    labels = host_tensor(rng.integers(0, 10, config["num_train"]))
    with strategy.scope():
        net = build_recipe_model(recipe, (side, side, 3), 10, dtype_policy=plan.dtype_policy)
        optimizer = loop.make_optimizer(plan)
        optimizer.build(net.trainable_variables)
    return loop.Steps(net, optimizer, strategy, plan.batch_size, jit), images, labels


def train_rate(steps, images, labels, config: dict) -> float:
    """Images/s of train_chunk over `steps` steps after one untimed chunk (tracing, compiling)."""
    import tensorflow as tf

    from rltx import hyperrule
    from rltx.distribute import distributed_batches
    count, batch = config["steps"], config["batch"]
    order = hyperrule.batch_order(config["num_train"], batch, 0, 0, 2 * count)
    iterator = iter(distributed_batches(steps.strategy, images, labels, order))
    steps.train_chunk(iterator, tf.constant(count)).numpy()
    tick = time.perf_counter()
    steps.train_chunk(iterator, tf.constant(count)).numpy()
    return count * batch / (time.perf_counter() - tick)


def ceiling_rate(steps, images, labels, config: dict) -> float:
    """Images/s of the same compiled SGD step on one batch already on the device: no input pipeline."""
    import tensorflow as tf

    from rltx.data import to_model_input
    count, batch = config["steps"], config["batch"]
    with tf.device(steps.strategy.extended.worker_devices[0]):
        x, y = tf.identity(to_model_input(images[:batch])), tf.identity(labels[:batch])

    @tf.function
    def repeat(n):
        total = tf.zeros(2)
        for _ in tf.range(n):
            total += steps.strategy.run(steps.sgd_step, args=(x, y))
        return total

    repeat(tf.constant(count)).numpy()
    tick = time.perf_counter()
    repeat(tf.constant(count)).numpy()
    return count * batch / (time.perf_counter() - tick)


def eval_rate(steps, images, labels, config: dict) -> float:
    """Images/s of one pass of Steps.evaluate over num_eval examples, after an untimed pass."""
    from rltx.distribute import host_tensor, whole_set
    count = config["num_eval"]  # the first num_eval of the training examples
    whole = whole_set(host_tensor(images.numpy()[:count]), host_tensor(labels.numpy()[:count]), config["eval_batch"])
    for _ in range(2):
        tick = time.perf_counter()
        steps.evaluate(whole).numpy()
    return count / (time.perf_counter() - tick)


def one_device_strategy():
    import tensorflow as tf
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.OneDeviceStrategy(devices[0].name)


def table(models: list[str], config: dict) -> list[dict]:
    strategy = one_device_strategy()
    rows = []
    for model in models:
        for precision in PRECISIONS:
            for jit in (False, True):
                steps, images, labels = setup(model, precision, jit, config, strategy)
                train, ceiling = train_rate(steps, images, labels, config), ceiling_rate(steps, images, labels, config)
                rows.append({"model": model, "precision": precision, "xla": "on" if jit else "off",
                             "train img/s": train, "ceiling img/s": ceiling, "train/ceiling": train / ceiling,
                             "eval img/s": eval_rate(steps, images, labels, config)})
                print("  " + format_row(rows[-1]), flush=True)
    return rows


def format_row(row: dict) -> str:
    cells = [f"{row[c]:.2f}" if c == "train/ceiling" else f"{row[c]:.0f}" if isinstance(row[c], float)
             else str(row[c]) for c in COLUMNS]
    return "".join(f"{cell:>15}" if i >= 3 else f"{cell:<15}" for i, cell in enumerate(cells))


def packing(config: dict, full: bool) -> list[dict]:
    """Total Simple CNN images/s of K concurrent worker processes, started as `rltx sweep
    --runs-per-gpu K` starts its workers on the first visible GPU (or on the CPU without one)."""
    from rltx.sweep.execute import gpu_memory_mb, visible_gpus, worker_env
    gpus = visible_gpus()[:1]
    total_mb = gpu_memory_mb() if gpus else None
    results = []
    for k in config["packing"]:
        with tempfile.TemporaryDirectory() as barrier:
            workers = [subprocess.Popen([sys.executable, __file__, "--worker", barrier, str(k)]
                                        + (["--full"] if full else []), stdout=subprocess.PIPE, text=True,
                                        env={**os.environ, **worker_env(slot, gpus, k, total_mb)})
                       for slot in range(k)]
            rates = [json.loads(w.communicate()[0].strip().splitlines()[-1])["images_per_second"] for w in workers]
        if any(w.returncode for w in workers):
            raise SystemExit(f"a packing worker failed (K={k})")
        results.append({"K": k, "total img/s": sum(rates), "per run img/s": sum(rates) / k})
        results[-1]["gain"] = results[-1]["total img/s"] / results[0]["total img/s"]
        print(f"  K={k}: {results[-1]['total img/s']:.0f} img/s in total", flush=True)
    return results


def worker(barrier: str, k: int, config: dict) -> None:
    """One packed run: set up its device as a run does, compile, wait for the other K-1, then train
    for the window and print its images/s."""
    import tensorflow as tf

    from rltx import hyperrule
    from rltx.distribute import choose_strategy, distributed_batches, use_xla
    strategy = choose_strategy()  # GPU memory growth or the cap of RLTX_GPU_MEMORY_MB, as in a run
    steps, images, labels = setup("simple_cnn", "float32", use_xla("auto", strategy), config, strategy)
    order = hyperrule.batch_order(config["num_train"], config["batch"], 0, 0, 10 ** 5)
    iterator = iter(distributed_batches(strategy, images, labels, order))
    steps.train_chunk(iterator, tf.constant(config["steps"])).numpy()
    Path(barrier, f"ready-{os.getpid()}").touch()
    while len(list(Path(barrier).iterdir())) < k:
        time.sleep(0.01)
    done, tick = 0, time.perf_counter()
    while time.perf_counter() - tick < config["window"]:
        steps.train_chunk(iterator, tf.constant(config["steps"])).numpy()
        done += config["steps"]
    print(json.dumps({"images_per_second": done * config["batch"] / (time.perf_counter() - tick)}))


def device_name() -> str:
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return f"{len(gpus)} x " + tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "CPU"
    return f"CPU: {os.cpu_count()} cores of {model}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="the real table (for a GPU): batch 256, K up to 8")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated, of " + ", ".join(MODELS))
    parser.add_argument("--save", type=Path, help="write the results as JSON (device, date, rows, packing)")
    parser.add_argument("--worker", nargs=2, metavar=("BARRIER", "K"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    config = settings(args.full)
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")  # each configuration traces its own steps: no retracing warnings
    if args.worker:
        return worker(args.worker[0], int(args.worker[1]), config)
    models = args.models.split(",")
    if set(models) - set(MODELS):
        parser.error(f"--models: unknown {', '.join(sorted(set(models) - set(MODELS)))}; choose of {', '.join(MODELS)}")
    print(f"packing (Simple CNN, float32, batch {config['batch']}, {config['window']:.0f} s window):", flush=True)
    packed = packing(config, args.full)  # first: the workers must not share the device with this process
    from rltx.distribute import configure_gpus
    configure_gpus()
    side = config["image"]
    print(f"models (batch {config['batch']}, eval batch {config['eval_batch']}, {side}x{side}x3):", flush=True)
    rows = table(models, config)
    device = device_name()
    print(f"\n{device}, {datetime.date.today()}, {'full' if args.full else 'reduced'} form")
    print("".join(f"{c:>15}" if i >= 3 else f"{c:<15}" for i, c in enumerate(COLUMNS)))
    for row in rows:
        print(format_row(row))
    print(f"\n{'K':<6}{'total img/s':>15}{'per run img/s':>15}{'gain':>8}")
    for row in packed:
        print(f"{row['K']:<6}{row['total img/s']:>15.0f}{row['per run img/s']:>15.0f}{row['gain']:>7.2f}x")
    if args.save:
        # the rates rltx's defaults train at here: float32, XLA as jit_compile auto chooses it
        xla = "on" if tf.config.list_physical_devices("GPU") else "off"
        rates = {r["model"]: r["train img/s"] for r in rows if r["precision"] == "float32" and r["xla"] == xla}
        result = {"device": device, "date": str(datetime.date.today()), "full": args.full,
                  "source": f"python bench/gpu.py{' --full' if args.full else ''}", "batch_size": config["batch"],
                  "image_size": side, "train_images_per_second": rates, "rows": rows, "packing": packed}
        args.save.write_text(json.dumps(result, indent=1) + "\n")
        print(f"saved {args.save}")


if __name__ == "__main__":
    main()
