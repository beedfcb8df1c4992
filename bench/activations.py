"""Activation statistics (Sec. 3, A.11) of VGG16 on 5,000 random 32x32x3 inputs: the cost of one
checkpoint of `rltx.analysis.activations.analyze_activations` at the paper's 5k held-out examples.
Target: under 2 minutes on a 2-core CPU.

    TF_ENABLE_ONEDNN_OPTS=1 TF_CPP_MIN_LOG_LEVEL=2 python bench/activations.py [--examples 5000]
"""
import argparse
import time

import numpy as np

from rltx.analysis.activations import activation_statistics
from rltx.models import build_model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--conv-neurons", default="position", choices=("position", "channel"))
    args = parser.parse_args()
    model = build_model("vgg16", (32, 32, 3), 10)
    inputs = np.random.default_rng(0).uniform(-1, 1, (args.examples, 32, 32, 3)).astype(np.float32)
    started = time.perf_counter()
    statistics = activation_statistics(model, inputs, args.batch_size, conv_neurons=args.conv_neurons)
    seconds = time.perf_counter() - started
    for name, row in statistics.items():
        fraction = row["neuron_fraction"]
        print(f"{name:8s} neurons {fraction.size:6d}  mean active {fraction.mean():.3f}  dead {np.mean(fraction == 0):.3f}")
    print(f"vgg16, {args.examples} examples, batch {args.batch_size}, conv_neurons={args.conv_neurons}: "
          f"{seconds:.1f} s (target < 120 s)")


if __name__ == "__main__":
    main()
