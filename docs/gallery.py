"""Regenerate the README's gallery: one PNG per `rltx plot` kind, from small offline runs of the
gaussian_patches recipe (Gaussian-patch images, random labels), made, analysed and drawn with the `rltx` command
(through click's CliRunner, in one process).

    python docs/gallery.py docs/gallery

Takes a few minutes on 2 CPU cores. The figures show what each kind draws, on toy data: they are
not evidence. In particular misalignment.png shows no gap between the data and the random basis
(about 3.39 vs 3.36 at the end): 2 x 64 first-layer filters after 16 epochs of two small runs on one covariance
(the recipe's gaussian_seed) sit at the estimator's noise floor. `rltx reproduce quickstart` shows the effect (Prop. 1, about 20x), and the README's
"What reproduces" section says what shows on natural-image statistics.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from click.testing import CliRunner

from rltx.cli import main as rltx

PATCH_RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "gaussian_patches.yaml"
SMALL = ("gaussian_num_train=6000", "num_examples_downstream=1024", "labels_downstream=random",
         "num_classes_downstream=10", "epochs=16", "checkpoint_every=64", "num_eval_points=12")


NOT_EVIDENCE = ("note: toy data; misalignment.png shows no data-vs-random gap because 64 filters of one short run "
                "sit at the noise floor; `rltx reproduce quickstart` shows the effect")


def command(*args) -> None:
    result = CliRunner().invoke(rltx, [str(a) for a in args], catch_exceptions=False)
    if result.exit_code != 0:
        raise SystemExit(f"rltx {' '.join(map(str, args))} failed: {result.output}")


def make_runs(work: Path) -> None:
    overrides = [item for pair in SMALL for item in ("--set", pair)]
    for seed in (0, 1):
        seeded = (*overrides, "--set", f"seed={seed}")
        command("pretrain", PATCH_RECIPE, *seeded, "--out", work / f"pre{seed}", "--quiet")
        command("transfer", PATCH_RECIPE, "--from", work / f"pre{seed}", *seeded, "--out", work / f"transfer{seed}",
                "--with-baseline", "--quiet")


def make_analyses(work: Path) -> None:
    pre, transfer = work / "pre0", work / "transfer0"
    analyses = {
        "curves": ("curves", work / "transfer0", work / "transfer0-scratch", work / "transfer1",
                   work / "transfer1-scratch"),
        "activations_init": ("activations", pre, "--step", "0", "--num-examples", "500"),
        "activations_end": ("activations", pre, transfer, "--num-examples", "500"),
        "trajectory": ("activation-trajectory", pre, transfer, "--num-examples", "500"),
        "misalignment": ("misalignment", pre, work / "pre1", "--all-steps"),
        "transfer_function": ("transfer-function", pre, work / "pre1", "--all-steps"),
        "eigenvectors": ("eigenvectors", pre, work / "pre1", "--top-k", "4"),
        "representation": ("representation-alignment", pre, "--all-steps", "--num-examples", "500"),
        "cka": ("cka", transfer, work / "transfer0-scratch", "--num-examples", "500"),
        "barrier": ("barrier", pre, work / "pre1", "--points", "13", "--num-examples", "1000"),
        "spectrum": ("spectrum", pre),
        "landscape": ("landscape", pre, "--two-d", "--points", "11", "--num-examples", "256"),
        "hessian": ("hessian", pre, "--all-steps", "--num-examples", "256", "--top-k", "3"),
    }
    for name, arguments in analyses.items():
        command("analyze", *arguments, "-o", work / f"{name}.h5")


def draw(work: Path, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "curves": ("curves", work / "transfer0", work / "transfer1", work / "transfer0-scratch",
                   work / "transfer1-scratch", "--band", "minmax"),
        "auc-scatter": ("auc-scatter", work / "curves.h5", "--dots", "pair"),
        "table": ("table", work / "curves.h5"),
        "activations": ("activations", work / "activations_init.h5", work / "activations_end.h5"),
        "activation-trajectory": ("activations", work / "trajectory.h5"),
        "misalignment": ("misalignment", work / "misalignment.h5"),
        "eigenvectors": ("eigenvectors", work / "eigenvectors.h5"),
        "f-sigma": ("f-sigma", work / "transfer_function.h5"),
        "alignment-curve": ("alignment-curve", work / "representation.h5", "--all-steps"),
        "cka": ("cka", work / "cka.h5"),
        "barrier": ("barrier", work / "barrier.h5"),
        "spectrum": ("spectrum", work / "spectrum.h5"),
        "landscape": ("landscape", work / "landscape.h5"),
        "hessian": ("hessian", work / "hessian.h5"),
    }
    written = []
    for name, arguments in figures.items():
        command("plot", *arguments, "--style", "screen", "-o", out / f"{name}.png")
        written.append(out / f"{name}.png")
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        make_runs(work)
        make_analyses(work)
        for path in draw(work, Path(argv[0])):
            print(path)
    print(NOT_EVIDENCE)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
