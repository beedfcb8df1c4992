"""The 3x3x3 patch covariance spectrum (27 eigenvalues, each divided by their sum) of the built-in
natural-statistics sources side by side with crops of real photographs (issue 14, README
"Natural-statistics data (offline)"); plain numpy, needs scikit-image and scikit-learn:

    python bench/natural_spectrum.py [IMAGE ...]

Image files given (any format Pillow reads) add a column of crops of those photographs, e.g. the Kodak
photographs of the hold-out check (docs/calibration.md, "A clean hold-out: the Kodak photographs").
"""
import argparse
import sys

import numpy as np
from skimage import data
from sklearn.datasets import load_sample_images

from other_photos_npz import photographs_from_files  # bench/, the script's own folder
from rltx.errors import UsageError
from rltx.native_stderr import divert_native_stderr

SIZE, PER_PHOTO = 32, 300


def patch_spectrum(images: np.ndarray) -> np.ndarray:
    """Eigenvalues (descending) of the covariance of all 3x3 patches of [N, H, W, 3] images, over their sum."""
    x = np.asarray(images, np.float64)
    h, w = x.shape[1:3]
    patches = np.stack([x[:, i:h - 2 + i, j:w - 2 + j] for i in range(3) for j in range(3)], axis=3)
    values = np.linalg.eigvalsh(np.cov(patches.reshape(-1, 27), rowvar=False))[::-1]
    return values / values.sum()


def random_crops(photos, rng) -> np.ndarray:
    crops = []
    for photo in photos:
        top = rng.integers(0, photo.shape[0] - SIZE + 1, PER_PHOTO)
        left = rng.integers(0, photo.shape[1] - SIZE + 1, PER_PHOTO)
        crops += [photo[y:y + SIZE, x:x + SIZE, :3] for y, x in zip(top, left)]
    return np.stack(crops)


def skimage_photos():
    return [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.immunohistochemistry(),
            data.retina(), data.hubble_deep_field(), data.stereo_motorcycle()[0]]


def main(images: list[str]) -> None:
    from rltx.data.natural import NaturalSource  # TensorFlow: imported once its log lines are diverted
    given = photographs_from_files(images) if images else None  # a bad file is refused before the minute of work
    rng = np.random.default_rng(0)
    columns = {
        "skimage photos": patch_spectrum(random_crops(skimage_photos(), rng)),
        "sklearn photos": patch_spectrum(random_crops(load_sample_images().images, rng)),
        "dead_leaves": patch_spectrum(NaturalSource("dead_leaves", num_train=2400, num_test=1).train(np.arange(2400)).x),
        "dead_leaves orientation": patch_spectrum(NaturalSource("dead_leaves", num_train=2400, num_test=1,
                                                                labels="orientation").train(np.arange(2400)).x),
        "dead_leaves orientation_colour": patch_spectrum(NaturalSource(
            "dead_leaves", num_train=2400, num_test=1, labels="orientation_colour").train(np.arange(2400)).x),
        "photos source": patch_spectrum(NaturalSource("photos", num_train=2400, num_test=1).train(np.arange(2400)).x),
    }
    if given:
        columns["given photographs"] = patch_spectrum(random_crops(given, rng))
    reference = columns["skimage photos"]
    print("| eigenvalue | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for i in range(27):
        print(f"| {i + 1} | " + " | ".join(f"{c[i]:.2e}" for c in columns.values()) + " |")
    print("| largest / smallest | " + " | ".join(f"{c[0] / c[-1]:.0f}" for c in columns.values()) + " |")
    print("| worst factor vs skimage photos | " + " | ".join(
        f"{np.max(np.maximum(c / reference, reference / c)):.2f}" for c in columns.values()) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="photographs to add as a column")
    images = parser.parse_args().images
    try:
        divert_native_stderr()  # TensorFlow's start-up lines off the terminal, as the rltx program keeps them
        main(images)
    except UsageError as error:  # an image file that is missing or not an image
        print(f"Error: {error}", file=sys.stderr)
        sys.exit(2)
