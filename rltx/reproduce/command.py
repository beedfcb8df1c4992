"""`rltx reproduce`: the command line over rltx.reproduce."""
from __future__ import annotations

from pathlib import Path

import click

from rltx.cli_options import PROFILE_OPTION, SET_OPTION
from rltx.errors import UsageError
from rltx.reproduce.spec import MAX_SEEDS


def _list_recipes(context, _parameter, value):
    if not value or context.resilient_parsing:
        return
    from rltx.recipe_file import read_recipe_file
    from rltx.reproduce import available_recipes, find_recipe
    for name in available_recipes():
        click.echo(f"{name:18} {read_recipe_file(find_recipe(name)).keys.get('description', '')}")
    context.exit()


@click.command()
@click.argument("name")
@click.option("--list", is_flag=True, expose_value=False, is_eager=True, callback=_list_recipes,
              help="List the recipes that can be reproduced, and exit.")
@click.option("--quick", is_flag=True, help="Use the recipe's quick profile: minutes on a 2-core CPU, offline data "
                                            "when the real dataset is absent.")
@PROFILE_OPTION
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Directory for runs, analyses, figures and verdict.txt [default: runs/reproduce/NAME[-quick]].")
@SET_OPTION
@click.option("--seeds", type=click.IntRange(min=1, max=MAX_SEEDS), metavar="N",
              help="Number of seeds (recipe seed, seed + 1, ...) [default: the recipe's reproduce: seeds; "
                   "for a sweep recipe, its sweep: seeds per group].")
@click.option("--groups", type=click.IntRange(min=1), metavar="N",  # the sweep: section checks the upper bound
              help="Sweep recipes (cifar10_a, imagenet_a, ...): groups per architecture; groups keep their draws, "
                   "so more groups add to the recipe's [default: its sweep: groups].")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Sweep recipes (cifar10_a, imagenet_a, ...): concurrent runs; the other pipelines "
                   "run one run at a time.")
@click.option("--quiet", is_flag=True, help="No progress bars (the stage lines and the verdict are still printed).")
def reproduce(name: str, quick: bool, profile: str | None, out: Path | None, overrides: tuple[str, ...],
              seeds: int | None, groups: int | None, workers: int, quiet: bool):
    """Reproduce one figure or table: pretrain -> transfer / construct-init -> analyze -> plot, then
    a verdict of what was observed against what the paper reports. NAME is a recipe name (see
    `rltx reproduce --list`) or a recipe file with a reproduce: section. Rerunning continues."""
    from rltx.progress import make_reporter
    from rltx.reproduce import reproduce as run
    if quick and profile not in (None, "quick"):
        raise UsageError("--quick is --profile quick; give only one of them")
    report = run(name, profile="quick" if quick else profile, out=out, overrides=overrides, seeds=seeds, groups=groups,
                 workers=workers, reporter=lambda label: make_reporter(quiet, label), echo=click.echo)
    click.echo(report.text(), nl=False)
    click.echo(f"verdict in {report.out / 'verdict.txt'}")
