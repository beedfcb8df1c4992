"""Short ResNet18 pre-trainings with rltx's malloc thresholds (rltx.native_memory) against the same runs with
TensorFlow's fixed 128 KiB mmap threshold left in place, side by side in one run.

Each run is `rltx pretrain recipes/fig6_resnet18.yaml --profile quick` on the profile's dead-leaves fallback for
--epochs epochs, in a process of its own (the thresholds are the process's, and TensorFlow sets its own once per
process), the two settings alternating so that a busy machine slows both. Per run it prints the wall time, the
user and system cpu time and the minor page faults of the process; then the mean ratios, and whether the two
settings trained bit for bit the same weights.

    python bench/malloc_reuse.py [--runs 2] [--epochs 10]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "fig6_resnet18.yaml"
CHILD = """
import sys
from rltx import native_memory
if sys.argv.pop(1) == "tensorflow":
    native_memory.reuse_freed_buffers = lambda: False  # leave TensorFlow's 128 KiB threshold in place
from rltx.cli import run
run()
"""
SETTINGS = ("rltx", "tensorflow")


def quick_overrides(epochs: int) -> list[str]:
    """`--set` arguments: the quick profile's offline_fallback keys, read from the recipe (so the runs take the
    dead-leaves images even where CIFAR10 is prepared), and the epochs."""
    from rltx.recipe_file import FALLBACK, read_recipe_file
    keys = {**read_recipe_file(RECIPE).profiles["quick"][FALLBACK], "epochs": epochs}
    return [arg for name, value in keys.items() for arg in ("--set", f"{name}={value}")]


def timed_run(setting: str, overrides: list[str], run_dir: Path) -> dict:
    """Wall seconds, user and system cpu seconds and minor page faults of one pre-training process."""
    command = [sys.executable, "-c", CHILD, setting, "pretrain", str(RECIPE), "--profile", "quick", *overrides,
               "--quiet", "--out", str(run_dir)]
    with tempfile.TemporaryFile() as stderr:  # a file, not a pipe: nobody reads a pipe while the run goes on
        tick = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - tick
        if os.waitstatus_to_exitcode(status) != 0:
            stderr.seek(0)
            sys.exit(f"Error: the {setting} run failed: {stderr.read().decode()[-2000:]}")
    return {"wall": wall, "user": usage.ru_utime, "system": usage.ru_stime, "faults": usage.ru_minflt}


def final_weights(run_dir: Path) -> dict:
    from rltx import store
    return store.read_checkpoint(run_dir, store.checkpoint_steps_stored(run_dir)[-1])


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=positive, default=2, help="runs per setting")
    parser.add_argument("--epochs", type=positive, default=10, help="pre-training epochs per run (the profile: 60)")
    args = parser.parse_args()
    overrides, results, weights = quick_overrides(args.epochs), {s: [] for s in SETTINGS}, {}
    with tempfile.TemporaryDirectory() as directory:
        for index in range(args.runs):
            for setting in SETTINGS:
                run_dir = Path(directory) / f"{setting}-{index}"
                row = timed_run(setting, overrides, run_dir)
                results[setting].append(row)
                if setting not in weights:
                    weights[setting] = final_weights(run_dir)
                print(f"run {index} {setting:10s} wall {row['wall']:6.2f} s, user {row['user']:6.2f} s, "
                      f"system {row['system']:6.2f} s, {row['faults']:9d} minor page faults", flush=True)
    same = all(np.array_equal(weights["rltx"][name], weights["tensorflow"][name]) for name in weights["rltx"])
    mean = {s: {k: statistics.mean(r[k] for r in results[s]) for k in results[s][0]} for s in SETTINGS}
    ratios = ", ".join(f"{k} {mean['tensorflow'][k] / mean['rltx'][k]:.2f}x" for k in ("wall", "system", "faults"))
    print(f"TensorFlow's threshold / rltx's: {ratios}; the same final weights: {same}")


if __name__ == "__main__":
    main()
