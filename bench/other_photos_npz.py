"""Write a second photo cross-check set, from photographs that no rltx source uses (grass was one of the
ten photographs of the first calibration probes, docs/calibration.md "Data"), to the .npz the `npz` source reads:

    python bench/other_photos_npz.py other16.npz
    rltx reproduce table5 --quick --set dataset=npz --set data_path=other16.npz --set num_classes_upstream=6

Six classes, label = the photograph: scikit-learn's two sample photographs (china, flower), matplotlib's
grace_hopper.jpg, and scikit-image's brick, grass and gravel textures (grey, repeated in R, G and B).
Crops as the `photos` source takes them (rltx.data.natural.photo_crops): training crops from the left three
quarters of each photograph, test crops from the right-most quarter. Needs the test extras.

`--photographs grey` writes a third set, for a recipe whose calibration has seen the other two: six grey
photographs of scikit-image that no source uses (camera, coins, moon, clock, text, cell; camera was in the first probes),
each repeated in R, G and B. No colour photograph inside a wheel is left unused; grey crops keep the
photographs' edges and smooth regions, not their colour statistics (the colour-opponent patch eigenvalues are 0).

Image files given after OUT are the photographs instead, one class each in the order given (any format Pillow
reads; grey or RGBA converted to RGB). That makes a hold-out set from photographs rltx has never seen, e.g. the first
ten of the 24 Kodak PhotoCD images (docs/calibration.md, "A clean hold-out: the Kodak photographs"):

    python bench/other_photos_npz.py kodak16.npz kodim01.png kodim02.png ... kodim10.png
"""
import sys
from pathlib import Path

import click
import numpy as np

from rltx.errors import UsageError
from rltx.native_stderr import divert_native_stderr


def skimage_grey_as_rgb(names) -> list[np.ndarray]:
    """scikit-image's grey images of these names, each repeated in R, G and B."""
    from skimage import data
    return [np.repeat(getattr(data, name)()[..., None], 3, axis=2) for name in names]


def other_photographs() -> list[np.ndarray]:
    import matplotlib
    import matplotlib.image
    from sklearn.datasets import load_sample_images
    china, flower = load_sample_images().images
    hopper = matplotlib.image.imread(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    textures = skimage_grey_as_rgb(("brick", "grass", "gravel"))
    return [np.ascontiguousarray(p[..., :3], dtype=np.uint8) for p in (china, flower, hopper, *textures)]


GREY_PHOTOGRAPHS = ("camera", "coins", "moon", "clock", "text", "cell")


def grey_photographs() -> list[np.ndarray]:
    return [np.ascontiguousarray(p, dtype=np.uint8) for p in skimage_grey_as_rgb(GREY_PHOTOGRAPHS)]


def photographs_from_files(paths) -> list[np.ndarray]:
    """The image files as RGB uint8 arrays."""
    from PIL import Image, UnidentifiedImageError
    photos = []
    for path in paths:
        try:
            with Image.open(path) as image:
                photos.append(np.asarray(image.convert("RGB"), dtype=np.uint8))
        except FileNotFoundError:
            raise UsageError(f"{path}: no such file; give the paths of existing image files") from None
        except (OSError, UnidentifiedImageError):
            raise UsageError(f"{path} is not an image Pillow can read; give PNG or JPEG files") from None
    return photos


def check_photographs(photos: list[np.ndarray], image_size: int) -> None:
    """At least two classes, and room in each photograph for a crop in its train and its test columns."""
    if len(photos) < 2:
        raise UsageError("one photograph makes one class; give at least two image files")
    for index, photo in enumerate(photos):
        if photo.shape[0] < image_size or photo.shape[1] < 2 * image_size:
            raise UsageError(f"photograph {index + 1} is {photo.shape[1]}x{photo.shape[0]} pixels, too small for "
                             f"{image_size}x{image_size} crops in separate train and test columns; give larger "
                             "photographs or a smaller --image-size")


def write_crops(photos, out, image_size, num_train, num_test, seed, name) -> Path:
    from rltx.data.files import ArraySource, write_npz  # TensorFlow: imported once its log lines are diverted
    from rltx.data.natural import photo_crops
    check_photographs(photos, image_size)
    rng = np.random.default_rng(seed)
    y_train, y_test = rng.integers(0, len(photos), num_train), rng.integers(0, len(photos), num_test)
    x_train = photo_crops(photos, y_train, image_size, False, rng)
    x_test = photo_crops(photos, y_test, image_size, True, rng)
    return write_npz(ArraySource(name, x_train, y_train, x_test, y_test, len(photos)), out)


SETS = {"other": ("other photographs", other_photographs), "grey": ("grey photographs", grey_photographs)}


@click.command()
@click.argument("out", type=click.Path(dir_okay=False))
@click.argument("images", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--image-size", type=click.IntRange(min=1), default=16, show_default=True, help="Side of the square crops.")
@click.option("--num-train", type=click.IntRange(min=1), default=8000, show_default=True, help="Training crops.")
@click.option("--num-test", type=click.IntRange(min=1), default=1000, show_default=True, help="Test crops.")
@click.option("--seed", type=click.IntRange(min=0), default=7, show_default=True,
              help="Seed of the labels and crop positions.")
@click.option("--photographs", type=click.Choice(sorted(SETS)), default="other", show_default=True,
              help="Which set: the six other photographs, or the six grey ones (ignored when IMAGES are given).")
def main(out, images, image_size, num_train, num_test, seed, photographs):
    name, load = ("given photographs", lambda: photographs_from_files(images)) if images else SETS[photographs]
    try:
        divert_native_stderr()  # TensorFlow's start-up lines off the terminal, as the rltx program keeps them
        photos = load()
        path = write_crops(photos, out, image_size, num_train, num_test, seed, name)
    except UsageError as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(2)
    click.echo(f"wrote {path}: {num_train} training and {num_test} test crops of {len(photos)} {name}")


if __name__ == "__main__":
    main()
