"""Speed of the alignment analyses: misalignment and f(sigma) of 27-dimensional first-layer patches
over 50 checkpoints (target: under 10 s on a 2-core CPU).

    python bench/alignment.py

Trains a one-layer CNN on Gaussian-patch images with a checkpoint every step (the training is not
timed), then times `rltx analyze misalignment --all-steps` and `transfer-function --all-steps`
through the library API, including reading the run, the data and all checkpoints.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from rltx.analysis.covariance import analyze_misalignment, analyze_transfer_function  # noqa: E402
from rltx.recipe_file import load_recipe  # noqa: E402
from rltx.pretrain import pretrain  # noqa: E402

PATCH_RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "gaussian_patches.yaml"


def main() -> int:
    with tempfile.TemporaryDirectory() as directory:
        run = Path(directory) / "run"
        recipe = load_recipe(PATCH_RECIPE, ("total_steps=49", "epochs=null", "checkpoint_every=1", "num_filters=64"))
        pretrain(recipe, run)
        timings = {}
        for name, analysis in (("misalignment", analyze_misalignment), ("transfer-function", analyze_transfer_function)):
            started = time.perf_counter()
            result = analysis([run], all_steps=True)
            timings[name] = time.perf_counter() - started
            assert len(result.arrays["steps"]) == 50
    for name, seconds in timings.items():
        print(f"{name:18s} 50 checkpoints, 27-dim patches of {recipe.num_examples_upstream} images: {seconds:6.2f} s")
    total = sum(timings.values())
    print(f"total {total:.2f} s: {'PASS' if total < 10 else 'ABOVE'} target 10 s")
    return 0


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    sys.exit(main())
