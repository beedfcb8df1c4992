"""The options that several commands share, declared once: the RECIPE argument, `--set KEY=VALUE`,
`--profile`, a finite number range, and comma-separated lists of numbers."""
from __future__ import annotations

import math
from pathlib import Path

import click

from rltx.errors import UsageError, shorten

SET_OPTION = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                          help="Override a recipe key (value read as YAML); repeatable.")
PROFILE_OPTION = click.option("--profile", metavar="NAME",
                              help="Apply the recipe's profile NAME (e.g. quick: scaled down for a CPU) before --set.")


def _recipe_path(_context, _parameter, value: str) -> Path:
    """A recipe file or run.h5 by path, or an installed recipe by name (quickstart, fig5, ...)."""
    path = Path(value)
    if path.exists() or path.suffix in (".yaml", ".yml", ".h5"):
        return path
    from rltx.reproduce import find_recipe  # the recipe folders; kept out of `rltx --help`
    return find_recipe(value)


RECIPE_ARGUMENT = click.argument("recipe", callback=_recipe_path, metavar="RECIPE",
                                 type=click.Path(dir_okay=False))


class FiniteRange(click.FloatRange):
    """click.FloatRange, which lets nan and inf through its bounds, refusing them too."""

    def _describe_range(self) -> str:  # click's text for no bounds reads "x<=None"
        return super()._describe_range() if (self.min, self.max) != (None, None) else "finite"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def check_one_checkpoint_choice(step: int | None, all_steps: bool) -> None:
    """`--step N` and `--all-steps` (analyze and plot commands) each choose the checkpoints: one of them."""
    if step is not None and all_steps:
        raise UsageError("--step and --all-steps both choose the checkpoints; give one of them")


def comma_list(text: str, option: str, convert=float, example: str = "0,0.1,0.5", count: int | None = None) -> list:
    """The comma-separated numbers given to `option`, each read by `convert` (float or int) and finite:
    at least one, or exactly `count`. Anything else is one line naming the option and an example."""
    try:
        values = [convert(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) for v in values) or (count is not None and len(values) != count):
        kind = "integers" if convert is int else "finite numbers"
        how = f"takes {count}" if count is not None else "must be"
        raise UsageError(f"{option} {how} comma-separated {kind}, e.g. {example}; got {shorten(text)}")
    return values
