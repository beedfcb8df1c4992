"""`rltx plot KIND INPUT... -o FILE`: one click command per kind, each a thin shell over a function
that returns a matplotlib figure (so tests can read the plotted data back from its artists)."""
from __future__ import annotations

import functools
from pathlib import Path

import click

from rltx.cli_options import check_one_checkpoint_choice, comma_list
from rltx.errors import UsageError

INPUTS = click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
STYLE_OPTION = click.option("--style", type=click.Choice(["paper", "screen"]), default="paper", show_default=True,
                            help="paper: column width, 8 pt; screen: larger.")

def _checked_output(_context, _parameter, path: Path) -> Path:
    """-o is refused before any drawing when it points into a run or at a file that is not an image."""
    from rltx.plotting.figure import check_image_output
    check_image_output(path)
    return path


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
                     callback=_checked_output,
                     help="Image file: .png, .pdf or .svg."),
        click.option("--title", help="Figure title."),
        STYLE_OPTION,
    ]):
        command = option(command)
    return command


def finish(figure, output: Path, title: str | None, style: str) -> None:
    from rltx.plotting.figure import save
    click.echo(f"wrote {save(figure, output, title, style)}")


def names(text: str | None) -> list[str] | None:
    """A comma-separated list of names (None when not given)."""
    return None if not text else [part.strip() for part in text.split(",") if part.strip()]


# Each command imports its drawing function when it runs, so `rltx plot --help` stays light.
@click.group()
def plot():
    """Draw the papers' figures from stored run and analysis files (never retrains or recomputes)."""


# ---------------------------------------------------------------- training curves and tables

@plot.command("curves", short_help="Train/test accuracy of groups of runs over seeds.")
@INPUTS
@click.option("--x", "x", type=click.Choice(["step", "epoch"]), default="step", show_default=True,
              help="x axis: training step or epoch.")
@click.option("--band", type=click.Choice(["std", "minmax", "none"]), default="std", show_default=True,
              help="Band over the seeds of a group: +-1 std (ddof=1) or min/max.")
@click.option("--accuracy", type=click.Choice(["both", "train", "test"]), default="both", show_default=True,
              help="Train (solid), test (dotted) or both.")
@click.option("--zoom", help="Axes limits X0,X1,Y0,Y1 (Fig. 5 RIGHT).")
@click.option("--labels", help="Comma-separated legend labels, one per group in order of appearance.")
@figure_options
def curves(inputs, x, band, accuracy, zoom, labels, output, title, style):
    """Mean train/test accuracy of groups of runs (same recipe, different seeds) with bands over
    the seeds (Fig. 1, 5, 6, 8, 9, 16-18). INPUTS: run directories, or folders searched for runs at
    any depth (a sweep, a reproduction's --out)."""
    from rltx.plotting.training import draw_curves
    figure = draw_curves(inputs, style=style, x=x, band=band, accuracy=accuracy,
                         zoom=comma_list(zoom, "--zoom", example="0,100,0.2,0.6", count=4) if zoom else None, labels=names(labels))
    finish(figure, output, title, style)


@plot.command("auc-scatter", short_help="Pre-trained vs from-scratch AUC (Fig. 12-15).")
@INPUTS
@click.option("--metric", type=click.Choice(["train", "test"]), default="train", show_default=True,
              help="AUC of the train or the test accuracy.")
@click.option("--dots", type=click.Choice(["group", "pair"]), default="group", show_default=True,
              help="One dot per group of seeds (the paper) or per pre-trained/scratch pair.")
@click.option("--downstream-labels", type=click.Choice(["real", "random"]),
              help="Only the groups fine-tuned on these labels (Fig. 12-15 draw them in separate rows).")
@figure_options
def auc_scatter(inputs, metric, dots, downstream_labels, output, title, style):
    """Pre-trained (x) vs from-scratch (y) AUC with the x = y line (App. B, Fig. 12-15).
    INPUTS: `rltx analyze curves ... -o FILE` results."""
    from rltx.plotting.training import draw_auc_scatter
    finish(draw_auc_scatter(inputs, style=style, metric=metric, dots=dots, downstream_labels=downstream_labels),
           output, title, style)


@plot.command("table", short_help="A Table 1-7 style table (Markdown, LaTeX or image).")
@INPUTS
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Table file: .md (Markdown), .tex (LaTeX), or .png/.pdf/.svg (an image).")
@click.option("--digits", type=click.IntRange(min=0), default=2, show_default=True, help="Decimals of each number.")
@click.option("--title", help="Title (images only).")
@STYLE_OPTION
def table(inputs, output, digits, title, style):
    """Table 1-7 style table from a `construct-init --table` result (table.h5) or an
    `analyze curves` result, as Markdown, LaTeX or an image (chosen by the -o suffix)."""
    from rltx.plotting.figure import FORMATS, style_context
    from rltx.plotting.training import TEXT_FORMATS, draw_table, format_table, table_rows, write_text
    suffix = output.suffix.lower()
    if suffix not in TEXT_FORMATS + FORMATS:
        raise UsageError(f"output {output} must end in {', '.join(TEXT_FORMATS + FORMATS)}")
    if suffix in TEXT_FORMATS:
        if len(inputs) != 1:
            raise UsageError(f"a table is made from one result file, got {len(inputs)}")
        text = format_table(*table_rows(inputs[0], digits=digits), suffix)
        written = write_text(text, output)  # first, so that a failed write prints only the error
        click.echo(text, nl=False)
        click.echo(f"wrote {written}")
    else:
        with style_context(style):
            finish(draw_table(inputs, style=style, digits=digits), output, title, style)


@plot.command("activations", short_help="Activation fraction histograms or trajectory.")
@INPUTS
@click.option("--layers", help="Comma-separated layer names (default: all).")
@click.option("--steps", help="Comma-separated checkpoint steps to show (default: all in the files).")
@click.option("--labels", help="Comma-separated legend labels, one per (file, run, step) curve.")
@figure_options
def activations(inputs, layers, steps, labels, output, title, style):
    """Per-layer histograms of neuron and example activation fractions, overlaid over results
    (Fig. 7, 10, 11), or an activation trajectory with the switch marked (Fig. 24).
    INPUTS: `rltx analyze activations` results, or one `activation-trajectory` result."""
    from rltx.plotting.training import draw_activations
    chosen = set(comma_list(steps, "--steps", int, "0,100")) if steps else None
    finish(draw_activations(inputs, style=style, layers=names(layers), steps=chosen, labels=names(labels)),
           output, title, style)


# ---------------------------------------------------------------- alignment (Sec. 2, Imani et al.)

LABELS_OPTION = click.option("--labels", help="Comma-separated legend names, one per input file "
                                              "[default: the file stems].")


@plot.command("misalignment", short_help="Misalignment over training (Fig. 2).")
@INPUTS
@LABELS_OPTION
@click.option("--x", "x", type=click.Choice(["step", "epoch"]), default="step", show_default=True,
              help="Horizontal axis; epoch reads the analysed run's metrics.h5.")
@click.option("--yscale", type=click.Choice(["log", "linear"]), default="log", show_default=True,
              help="log is used when the values span more than a factor of 10.")
@figure_options
def misalignment(inputs, labels, x, yscale, output, title, style):
    """Misalignment over training from `rltx analyze misalignment --all-steps` results: data
    eigenbasis solid, random basis dashed, one colour per file (Maennel et al. Fig. 2)."""
    from rltx.plotting.alignment import draw_misalignment
    finish(draw_misalignment(inputs, style=style, labels=names(labels), x=x, yscale=yscale), output, title, style)


@plot.command("eigenvectors", short_help="Eigenvectors of Sigma_w and the data as patches (Fig. 3).")
@INPUTS
@click.option("--rows", type=click.IntRange(min=1), help="Top eigenvectors of Sigma_w to show [default: all stored].")
@figure_options
def eigenvectors(inputs, rows, output, title, style):
    """Eigenvectors v_w of Sigma_w, the data eigenvectors v_x they match and their weighted
    combination, as patches, from `rltx analyze eigenvectors` (Fig. 3)."""
    from rltx.plotting.alignment import draw_eigenvectors
    finish(draw_eigenvectors(inputs, style=style, rows=rows), output, title, style)


@plot.command("f-sigma", short_help="tau = f(sigma) curves (Fig. 4, 20-23).")
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path))
@LABELS_OPTION
@click.option("--steps", help="Comma-separated checkpoints [default: up to 4 spread over the run].")
@click.option("--tau-curves", is_flag=True,
              help="Draw tau_1..tau_16 of the construct-init curves (Fig. 23) and the inputs' tau_i.")
@click.option("--curves", default="f1,f2,f3", show_default=True,
              help="Named tau curves for --tau-curves ('none' for only the inputs).")
@figure_options
def f_sigma(inputs, labels, steps, tau_curves, curves, output, title, style):
    """tau = f(sigma) from `rltx analyze transfer-function` results (Fig. 4, 20-22), or the tau
    sequences used by construct-init (--tau-curves, Fig. 23)."""
    from rltx.plotting.alignment import draw_f_sigma
    given = click.get_current_context().get_parameter_source("curves") == click.core.ParameterSource.COMMANDLINE
    if given and not tau_curves:
        raise UsageError("--curves chooses the tau curves of --tau-curves; add --tau-curves or drop --curves")
    named = [] if curves.strip().lower() == "none" else names(curves) or []
    finish(draw_f_sigma(inputs, style=style, labels=names(labels), steps=comma_list(steps, "--steps", int, "5,10,20") if steps else None,
                        tau_curves=tau_curves, curves=named), output, title, style)


@plot.command("alignment-curve", short_help="Representation alignment vs threshold per layer.")
@INPUTS
@LABELS_OPTION
@click.option("--layers", help="Comma-separated layers [default: all stored, inputs first].")
@click.option("--step", type=int, help="Checkpoint [default: the last stored].")
@click.option("--all-steps", is_flag=True, help="Overlay every stored checkpoint.")
@click.option("--normalize", is_flag=True, help="Divide by ||y||^2.")
@figure_options
def alignment_curve(inputs, labels, layers, step, all_steps, normalize, output, title, style):
    """Alignment vs threshold tau / sigma_1 per layer from `rltx analyze representation-alignment`
    (Imani et al. 2022, Fig. 5-7, 10-14)."""
    check_one_checkpoint_choice(step, all_steps)
    from rltx.plotting.alignment import draw_alignment_curve
    finish(draw_alignment_curve(inputs, style=style, labels=names(labels), layers=names(layers),
                                step=step, all_steps=all_steps, normalize=normalize), output, title, style)


# ---------------------------------------------------------------- diagnostics (Neyshabur et al., Liu et al.)

@plot.command("cka", short_help="Layer x layer CKA heat-map (Table 7).")
@INPUTS
@click.option("--annotate/--no-annotate", default=None,
              help="Write the values in the cells [default: when at most 64 cells].")
@figure_options
def cka(inputs, annotate, output, title, style):
    """Layer x layer CKA heat-map from `rltx analyze cka` (Neyshabur et al. Table 7)."""
    from rltx.plotting.diagnostics import draw_cka
    finish(draw_cka(inputs, style=style, annotate=annotate), output, title, style)


@plot.command("barrier", short_help="Accuracy and loss between two solutions.")
@INPUTS
@click.option("--labels", help="Legend names of the input files, comma-separated, in order.")
@click.option("--no-loss", is_flag=True, help="Only the accuracy panel.")
@figure_options
def barrier(inputs, labels, no_loss, output, title, style):
    """Accuracy and loss along the line between two solutions from `rltx analyze barrier`, one or
    several files (Neyshabur et al. Figs. 12-18)."""
    from rltx.plotting.diagnostics import draw_barrier
    finish(draw_barrier(inputs, style=style, labels=names(labels), loss=not no_loss), output, title, style)


@plot.command("spectrum", short_help="Singular value histogram and counts below thresholds.")
@INPUTS
@click.option("--log", is_flag=True, help="Logarithmic count axis of the histogram.")
@figure_options
def spectrum(inputs, log, output, title, style):
    """Histogram of singular values and counts below thresholds from `rltx analyze spectrum`
    (Neyshabur et al. Figs. 31-33)."""
    from rltx.plotting.diagnostics import draw_spectrum
    finish(draw_spectrum(inputs, style=style, log=log), output, title, style)


@plot.command("landscape", short_help="1-D loss curve or 2-D contours of the landscape.")
@INPUTS
@click.option("--levels", type=click.IntRange(min=1), default=20, show_default=True, help="Contour levels of a 2-D landscape.")
@click.option("--log", is_flag=True, help="Logarithmic loss (1-D: axis; 2-D: contours of log10 loss).")
@figure_options
def landscape(inputs, levels, log, output, title, style):
    """1-D loss curve or 2-D contours from `rltx analyze landscape` (Liu et al. Figs. 3, 5)."""
    from rltx.plotting.diagnostics import draw_landscape
    finish(draw_landscape(inputs, style=style, levels=levels, log=log), output, title, style)


@plot.command("hessian", short_help="Top-k Hessian eigenvalues against the step.")
@INPUTS
@click.option("--log", is_flag=True, help="Logarithmic eigenvalue axis (symmetric log if any is <= 0).")
@figure_options
def hessian(inputs, log, output, title, style):
    """Top-k Hessian eigenvalues against the step, or bars for one step, from `rltx analyze hessian`
    (Liu et al. Fig. 3a)."""
    from rltx.plotting.diagnostics import draw_hessian
    finish(draw_hessian(inputs, style=style, log=log), output, title, style)
