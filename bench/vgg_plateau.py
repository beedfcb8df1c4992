"""Does VGG16 leave its initial plateau on A.5 / A.11's own schedule, under each reading of init_scale?

A.3 initialises kernels with the "He normal algorithm with init_scale scaling". One reading puts
init_scale on the standard deviation (rltx's until 2026-12-04), the other on the variance, i.e. a
factor sqrt(init_scale) on the standard deviation (`rltx.models.kernel_initializer` since). The two
differ little for a 4-layer Simple CNN and by two orders of magnitude at VGG16's logits (14 kernel
layers: 0.526^14 = 1.2e-4 against 0.725^14 = 1.1e-2). This trains rltx's own VGG16 builder on A.5's
pre-training set-ups (batch 256, SGD momentum 0.9, A.3's schedule) under each reading and prints,
per epoch block, the mean training loss and accuracy: the reading under which A.11's pre-training
fits its random labels is the one the paper's Fig. 1, 6, 7 can have used (docs/calibration.md).

`--transfer FILE` then plays Fig. 1 on the pre-trained model (A.4: every layer but the head
transferred, each rescaled to its norm at initialisation, a fresh head, the same rate and schedule):
fine-tuning on FILE's images with their real labels and with 10 random labels, against a model
trained from scratch, each for `--epochs-downstream`; it prints the train-accuracy AUC (the mean
accuracy on the entire fine-tuning set at every `--report-every` epochs, step 0 included) per run.

It runs on any Keras 3 backend (the GPU machines lent to this project have JAX, not TensorFlow):

    python bench/vgg_plateau.py write up.npz                           # dead-leaves 32x32 (needs rltx's data)
    python bench/vgg_plateau.py write down.npz --count 8000 --seed 1    # fresh images, real labels
    KERAS_BACKEND=jax python bench/vgg_plateau.py run up.npz --max-seconds 120
    KERAS_BACKEND=jax python bench/vgg_plateau.py run up.npz --readings variance --transfer down.npz
    python bench/vgg_plateau.py run up.npz --examples 512 --epochs 2   # a CPU smoke run
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# name: (init_scale, learning_rate, num_classes_upstream, epochs_upstream) of A.5.
SETUPS = {
    "exp12": (0.526, 0.01, 5, 120),   # A.5 Experiments 1-2 = A.11 (Fig. 11), positive transfer
    "exp34": (0.612, 0.009, 50, 80),  # A.5 Experiments 3-4 (A.11 / Fig. 10 gives lr 0.01), negative
}
# The init_scale to give rltx (which reads it as a factor on the variance) for each reading of the paper's value.
READINGS = {"std": lambda s: s * s, "variance": lambda s: s}


def write_images(path: str, count: int, seed: int) -> None:
    import numpy as np

    from rltx.data.natural import dead_leaves_images
    labels = np.arange(count) % 10  # the default design: leaf shape x colour cast
    x = dead_leaves_images(count, labels, 10, 32, np.random.default_rng(seed))
    np.savez_compressed(path, x=x, y=labels)
    print(f"wrote {count} dead-leaves images 32x32 with their labels to {path}")


def train(x, setup: str, reading: str, epochs: int, max_seconds: float, report_every: int):
    """Pre-train rltx's VGG16 on random labels; returns (model, its weights at initialisation)."""
    import numpy as np

    from rltx.hyperrule import random_labels, total_steps_for_epochs
    from rltx.models import build_model
    init_scale, learning_rate, classes, paper_epochs = SETUPS[setup]
    epochs = epochs or paper_epochs
    scale = READINGS[reading](init_scale)
    y = random_labels(len(x), classes, seed=0)  # A.1 step 3
    model = build_model("vgg16", x.shape[1:], classes, init_scale=scale, seed=0)
    initial = model.get_weights()
    steps = total_steps_for_epochs(epochs, len(x), 256)
    compile_sgd(model, learning_rate, steps)
    logits = model.predict(x[:512], batch_size=256, verbose=0)
    print(f"{setup} {reading}: init_scale {init_scale} read on the {reading} -> std factor {math.sqrt(scale):.3f}, "
          f"{classes} random classes, "
          f"{len(x)} images, {epochs} epochs = {steps} steps; rms logit at init {np.sqrt(np.mean(logits**2)):.1e}, "
          f"ln C = {math.log(classes):.3f}", flush=True)
    start, done = time.time(), 0
    while done < epochs and time.time() - start < max_seconds:
        block = min(report_every, epochs - done)
        history = model.fit(x, y, batch_size=256, epochs=done + block, initial_epoch=done, verbose=0).history
        done += block
        print(f"  epoch {done:4d} ({time.time() - start:6.1f} s): loss {history['loss'][-1]:.4f}, "
              f"train accuracy (running) {history['accuracy'][-1]:.3f}", flush=True)
    loss, accuracy = model.evaluate(x, y, batch_size=1024, verbose=0)
    print(f"  end after {done} of {epochs} epochs: loss {loss:.4f}, accuracy on the entire training set "
          f"{accuracy:.3f} (chance {1 / classes:.3f})", flush=True)
    return model, initial


def compile_sgd(model, learning_rate: float, steps: int) -> None:
    """A.3: SGD with momentum 0.9, the rate divided by 3 after 1/3 and 2/3 of the steps."""
    import keras

    from rltx.hyperrule import learning_rate_boundaries
    first, second = learning_rate_boundaries(steps)
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [first, second], [learning_rate, learning_rate / 3, learning_rate / 9])
    model.compile(keras.optimizers.SGD(schedule, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])


def fine_tune(pretrained, initial, x, y, setup: str, reading: str, epochs: int, report_every: int) -> None:
    """Fig. 1: the pre-trained model (A.4) against one trained from scratch, on real and on 10 random labels."""
    import numpy as np

    from rltx.hyperrule import random_labels, total_steps_for_epochs
    from rltx.models import HEAD, build_model
    init_scale, learning_rate, _, _ = SETUPS[setup]
    scale, steps = READINGS[reading](init_scale), total_steps_for_epochs(epochs, len(x), 256)
    for labels, targets in (("real", y), ("random", random_labels(len(x), 10, seed=0, salt=1))):
        curves = {}
        for start in ("pretrained", "scratch"):
            model = build_model("vgg16", x.shape[1:], 10, init_scale=scale, seed=1)  # fresh head (A.4)
            if start == "pretrained":
                transfer_rescaled(pretrained, initial, model, HEAD)
            compile_sgd(model, learning_rate, steps)  # A.4: the same rate and schedule
            curve = [model.evaluate(x, targets, batch_size=1024, verbose=0)[1]]
            for done in range(report_every, epochs + 1, report_every):
                model.fit(x, targets, batch_size=256, epochs=done, initial_epoch=done - report_every, verbose=0)
                curve.append(model.evaluate(x, targets, batch_size=1024, verbose=0)[1])
            curves[start] = np.array(curve)
            print(f"  {labels} labels, {start}: train accuracy " + " ".join(f"{a:.2f}" for a in curve)
                  + f"; AUC {curve_auc(curve):.3f}", flush=True)
        print(f"  {setup} {labels} labels: AUC pretrained - scratch = "
              f"{curve_auc(curves['pretrained']) - curve_auc(curves['scratch']):+.3f}", flush=True)


def transfer_rescaled(source, initial, target, head: str) -> None:
    """A.4: every layer but the head copied from `source`, times the factor giving its norm at initialisation."""
    from rltx.hyperrule import rescale_factor
    start = 0
    for layer, target_layer in zip(source.layers, target.layers):
        count = len(layer.weights)
        if count and layer.name != head:
            trained = layer.get_weights()  # numpy arrays
            factor = rescale_factor(initial[start:start + count], trained, "l2")
            target_layer.set_weights([factor * w for w in trained])
        start += count


def curve_auc(curve) -> float:
    """Mean accuracy over the equally spaced eval points (rltx's verdicts use the trapezoid rule, which moves
    the differences of docs/calibration.md by at most 0.005)."""
    return float(sum(curve) / len(curve))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    write = sub.add_parser("write")
    write.add_argument("path")
    write.add_argument("--count", type=int, default=20000)  # A.5: num_examples_upstream
    write.add_argument("--seed", type=int, default=0)
    run = sub.add_parser("run")
    run.add_argument("path")
    run.add_argument("--setups", default="exp12", help="comma-separated: " + ", ".join(SETUPS))
    run.add_argument("--readings", default="std,variance")
    run.add_argument("--examples", type=int, default=20000)
    run.add_argument("--epochs", type=int, default=0, help="0: the set-up's own (A.5)")
    run.add_argument("--max-seconds", type=float, default=float("inf"), help="per run")
    run.add_argument("--report-every", type=int, default=10, help="epochs")
    run.add_argument("--transfer", help="npz of fresh images with real labels: fine-tune as Fig. 1")
    run.add_argument("--epochs-downstream", type=int, default=200, help="Fig. 10-11 captions: 200")
    args = parser.parse_args()
    if args.command == "write":
        write_images(args.path, args.count, args.seed)
        return
    import numpy as np
    x = np.load(args.path)["x"][: args.examples].astype("float32") / 127.5 - 1  # A.3: [-1, 1]
    if args.transfer:
        down = np.load(args.transfer)
        x_down, y_down = down["x"][: args.examples].astype("float32") / 127.5 - 1, down["y"][: args.examples]
    for setup in args.setups.split(","):
        for reading in args.readings.split(","):
            model, initial = train(x, setup, reading, args.epochs, args.max_seconds, args.report_every)
            if args.transfer:
                fine_tune(model, initial, x_down, y_down, setup, reading, args.epochs_downstream, args.report_every)


if __name__ == "__main__":
    main()
