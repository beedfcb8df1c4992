"""Write a second photo cross-check set, from photographs that neither rltx's sources nor its calibration
ever used, to the .npz the `npz` source reads:

    python bench/other_photos_npz.py other16.npz
    rltx reproduce table5 --quick --set dataset=npz --set data_path=other16.npz --set num_classes_upstream=6

Six classes, label = the photograph: scikit-learn's two sample photographs (china, flower), matplotlib's
grace_hopper.jpg, and scikit-image's brick, grass and gravel textures (grey, repeated in R, G and B).
Crops as the `photos` source takes them (rltx.data.natural.photo_crops): training crops from the left three
quarters of each photograph, test crops from the right-most quarter. Needs the test extras.
"""
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import click  # noqa: E402
import numpy as np  # noqa: E402

from rltx.data.files import ArraySource, write_npz  # noqa: E402
from rltx.data.natural import photo_crops  # noqa: E402


def other_photographs() -> list[np.ndarray]:
    import matplotlib
    import matplotlib.image
    from sklearn.datasets import load_sample_images
    from skimage import data
    china, flower = load_sample_images().images
    hopper = matplotlib.image.imread(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    textures = [np.repeat(getattr(data, name)()[..., None], 3, axis=2) for name in ("brick", "grass", "gravel")]
    return [np.ascontiguousarray(p[..., :3], dtype=np.uint8) for p in (china, flower, hopper, *textures)]


@click.command()
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--image-size", default=16, show_default=True, help="Side of the square crops.")
@click.option("--num-train", default=8000, show_default=True, help="Training crops.")
@click.option("--num-test", default=1000, show_default=True, help="Test crops.")
@click.option("--seed", default=7, show_default=True, help="Seed of the labels and crop positions.")
def main(out, image_size, num_train, num_test, seed):
    photos, rng = other_photographs(), np.random.default_rng(seed)
    y_train, y_test = rng.integers(0, len(photos), num_train), rng.integers(0, len(photos), num_test)
    x_train = photo_crops(photos, y_train, image_size, False, rng)
    x_test = photo_crops(photos, y_test, image_size, True, rng)
    path = write_npz(ArraySource("other photographs", x_train, y_train, x_test, y_test, len(photos)), out)
    click.echo(f"wrote {path}: {num_train} training and {num_test} test crops of {len(photos)} photographs")


if __name__ == "__main__":
    main()
