"""Write any rltx data source to a .npz file that the `npz` source reads back, e.g. to cross-check a
reproduction on a data set it was not calibrated on, read through `--set dataset=npz --set data_path=F`:

    python bench/make_npz.py photos photos.npz --set natural_seed=3
    python bench/make_npz.py cifar10 cifar10.npz --num-train 20000 --set data_dir=~/tensorflow_datasets

The data keys (--set KEY=VALUE) are recipe keys: natural_*, gaussian_*, data_dir, image_size, ...
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import click  # noqa: E402

from rltx.config import DataSpec, parse_override  # noqa: E402
from rltx.data import open_source  # noqa: E402
from rltx.data.files import write_npz  # noqa: E402
from rltx.errors import UsageError  # noqa: E402

@click.command()
@click.argument("dataset")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--num-train", type=click.IntRange(min=0), help="Training examples to write [default: all].")
@click.option("--num-test", type=click.IntRange(min=0), help="Test examples to write [default: all].")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="A data key of the source.")
def main(dataset, out, num_train, num_test, overrides):
    try:
        keys = dict(parse_override(text) for text in overrides)
        try:
            source = open_source(DataSpec.of(dataset, offline=True, **keys))
        except TypeError:
            raise UsageError(f"{', '.join(keys)}: not all are data keys; --set takes natural_*, gaussian_*, "
                             "data_dir, manual_dir, data_path, image_size") from None
        path = write_npz(source, out, num_train, num_test)
    except UsageError as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(2)
    click.echo(f"wrote {path}: {num_train if num_train is not None else source.num_train} training, "
               f"{num_test if num_test is not None else source.num_test} test examples")


if __name__ == "__main__":
    main()
