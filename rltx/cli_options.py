"""The options that several commands share, declared once: `--set KEY=VALUE`, `--profile`, and a
finite number range."""
from __future__ import annotations

import math

import click

from rltx.errors import UsageError

SET_OPTION = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                          help="Override a recipe key (value read as YAML); repeatable.")
PROFILE_OPTION = click.option("--profile", metavar="NAME",
                              help="Apply the recipe's profile NAME (e.g. quick: scaled down for a CPU) before --set.")


class FiniteRange(click.FloatRange):
    """click.FloatRange, which lets nan and inf through its bounds, refusing them too."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def check_one_checkpoint_choice(step: int | None, all_steps: bool) -> None:
    """`--step N` and `--all-steps` (analyze and plot commands) each choose the checkpoints: one of them."""
    if step is not None and all_steps:
        raise UsageError("--step and --all-steps both choose the checkpoints; give one of them")
