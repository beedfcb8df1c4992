"""`rltx plot KIND INPUT... -o FILE`: one click command per kind, each a thin shell over a function
that returns a matplotlib figure (so tests can read the plotted data back from its artists)."""
from __future__ import annotations

import functools
from pathlib import Path

import click

from rltx.lazy_group import LazyGroup

INPUTS = click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))

def figure_options(command):
    """-o, --title and --style, shared by every kind; the whole command draws inside the style, so
    legends and text added after the figure was made follow it too."""
    draw = command

    @functools.wraps(draw)
    def styled(*args, style, **kwargs):
        from rltx.plotting.figure import style_context
        with style_context(style):
            return draw(*args, style=style, **kwargs)

    command = styled
    for option in reversed([
        click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
                     help="Image file: .png, .pdf or .svg."),
        click.option("--title", help="Figure title."),
        click.option("--style", type=click.Choice(["paper", "screen"]), default="paper", show_default=True,
                     help="paper: column width, 8 pt; screen: larger."),
    ]):
        command = option(command)
    return command


def finish(figure, output: Path, title: str | None) -> None:
    from rltx.plotting.figure import save
    click.echo(f"wrote {save(figure, output, title)}")


@click.group(cls=LazyGroup, command_modules=(
    "rltx.plotting.training", "rltx.plotting.alignment", "rltx.plotting.diagnostics"))
def plot():
    """Draw the papers' figures from stored run and analysis files (never retrains or recomputes)."""
