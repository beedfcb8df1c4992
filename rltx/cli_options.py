"""The recipe options that several commands share, declared once: `--set KEY=VALUE` and `--profile`."""
from __future__ import annotations

import click

SET_OPTION = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                          help="Override a recipe key (value read as YAML); repeatable.")
PROFILE_OPTION = click.option("--profile", metavar="NAME",
                              help="Apply the recipe's profile NAME (e.g. quick: scaled down for a CPU) before --set.")
