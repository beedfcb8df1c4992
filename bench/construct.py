"""Speed of construct-init on CIFAR-sized inputs (synthetic, so it runs offline):

- the 3x3 patch covariance of 50,000 32x32x3 images (target: under 20 s on a 2-core CPU);
- the whole three-layer construction of E.3's network on 20,000 images (target: under 2 minutes).

    python bench/construct.py
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from rltx.analysis.patches import input_moments  # noqa: E402
from rltx.recipe_file import load_recipe  # noqa: E402
from rltx.construct import construct_init  # noqa: E402
from rltx.data import to_model_input  # noqa: E402
from rltx.tasks import build_recipe_model  # noqa: E402

TABLE1 = Path(__file__).resolve().parent.parent / "recipes" / "table1.yaml"


def main() -> int:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50000, 32, 32, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as directory:
        data = Path(directory) / "images.npz"
        np.savez(data, x=images, y=rng.integers(0, 10, 50000))
        recipe = load_recipe(TABLE1, ("dataset=npz", f"data_path={data}", "num_examples_upstream=20000",
                                      "num_examples_test=0", "labels_upstream=random"))
        model = build_recipe_model(recipe, (32, 32, 3), 10)
        inputs = np.asarray(to_model_input(images))
        started = time.perf_counter()
        moments = input_moments(model, "conv_0", inputs)
        covariance_seconds = time.perf_counter() - started
        started = time.perf_counter()
        construct_init(recipe, [1, 2, 3])
        construction_seconds = time.perf_counter() - started
    print(f"3x3 patch covariance of 50,000 images ({moments.count:,} patches): {covariance_seconds:6.1f} s "
          f"({'PASS' if covariance_seconds < 20 else 'ABOVE'} target 20 s)")
    print(f"three-layer construction on 20,000 images (incl. loading): {construction_seconds:6.1f} s "
          f"({'PASS' if construction_seconds < 120 else 'ABOVE'} target 120 s)")
    return 0


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    sys.exit(main())
