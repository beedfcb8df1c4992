"""`rltx analyze KIND RUN...`: one click command per kind, each a thin shell over its library function."""
from __future__ import annotations

from pathlib import Path

import click

from rltx.lazy_group import LazyGroup

RUNS = click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))


def output_options(command):
    """-o/--json and the checkpoint choice shared by every kind."""
    for option in reversed([
        click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
                     help="Store the result in this HDF5 file."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of a table."),
    ]):
        command = option(command)
    return command


def checkpoint_options(command):
    for option in reversed([
        click.option("--step", type=int, help="Checkpoint step [default: the last stored]."),
        click.option("--all-steps", is_flag=True, help="Every stored checkpoint (a curve over training)."),
    ]):
        command = option(command)
    return command


def layer_options(command):
    for option in reversed([
        click.option("--layer", help="Layer name [default: the first transferable layer]."),
        click.option("--num-examples", type=int, default=0, show_default=True,
                     help="Training examples for Sigma_x (0: all the run was trained on)."),
        click.option("--uncentered", is_flag=True, help="Use E[x x^T] instead of the covariance for Sigma_x."),
    ]):
        command = option(command)
    return command


def emit(result, output: Path | None, as_json: bool) -> None:
    from rltx.analysis.results import print_table, to_json, write_result
    if output is not None:
        write_result(result, output)
    if as_json:
        click.echo(to_json(result))
    else:
        print_table(result)
        if output is not None:
            click.echo(f"stored in {output}")


# The kinds of these modules are added on first use (`add_commands(group)` in each).
@click.group(cls=LazyGroup, command_modules=(
    "rltx.analysis.spectrum", "rltx.analysis.similarity", "rltx.analysis.curvature",
    "rltx.analysis.interpolation", "rltx.analysis.transferability", "rltx.analysis.representation"))
def analyze():
    """Analyse stored runs; each KIND stores HDF5 (-o), prints a table, or JSON (--json)."""


@analyze.command()
@RUNS
@layer_options
@checkpoint_options
@click.option("--tolerance", default=1e-6, show_default=True,
              help="Relative tolerance grouping equal eigenvalues of Sigma_x into one eigenspace.")
@click.option("--seed", default=0, show_default=True, help="Seed of the random orthonormal basis (Fig. 2 baseline).")
@output_options
def misalignment(runs, layer, num_examples, uncentered, step, all_steps, tolerance, seed, output, as_json):
    """Misalignment of Sigma_w (pooled over RUNS) with Sigma_x (Def. 2, Prop. 2.7, A.6, Fig. 2)."""
    from rltx.analysis.covariance import analyze_misalignment
    emit(analyze_misalignment(runs, layer=layer, step=step, all_steps=all_steps, num_examples=num_examples,
                              centered=not uncentered, tolerance=tolerance, seed=seed), output, as_json)


@analyze.command("transfer-function")
@RUNS
@layer_options
@checkpoint_options
@click.option("--tolerance", default=1e-6, show_default=True, help="Eigenvalue grouping tolerance (relative).")
@output_options
def transfer_function(runs, layer, num_examples, uncentered, step, all_steps, tolerance, output, as_json):
    """f(sigma): tau_i = sqrt(v_i^T Sigma_w v_i) against sigma_i (Def. 3, Sec. 2.3, A.8, Fig. 4)."""
    from rltx.analysis.covariance import analyze_transfer_function
    emit(analyze_transfer_function(runs, layer=layer, step=step, all_steps=all_steps, num_examples=num_examples,
                                   centered=not uncentered, tolerance=tolerance), output, as_json)


@analyze.command()
@RUNS
@layer_options
@click.option("--step", type=int, help="Checkpoint step [default: the last stored].")
@click.option("--top-k", default=10, show_default=True, help="Eigenvectors of Sigma_w to match.")
@click.option("--threshold", default=0.4, show_default=True, help="Minimum |<v_x, v_w>| of a match (Fig. 3).")
@output_options
def eigenvectors(runs, layer, num_examples, uncentered, step, top_k, threshold, output, as_json):
    """Top eigenvectors of Sigma_w and the data eigenvectors they combine (Fig. 3, A.7, D.1)."""
    from rltx.analysis.covariance import analyze_eigenvectors
    emit(analyze_eigenvectors(runs, layer=layer, step=step, num_examples=num_examples, centered=not uncentered,
                              top_k=top_k, threshold=threshold), output, as_json)


@analyze.command("eigen-stability")
@RUNS
@layer_options
@click.option("--step", type=int, help="Checkpoint step [default: the last stored].")
@click.option("--between", type=click.Choice(["data", "runs"]), default="data", show_default=True,
              help="Sigma_x of two disjoint halves of the data, or Sigma_w of two disjoint groups of RUNS.")
@click.option("--relative-gap", default=0.05, show_default=True, help="Eigenvalues this close form a 2-D pair.")
@click.option("--seed", default=0, show_default=True, help="Seed of the split into halves.")
@output_options
def eigen_stability(runs, layer, num_examples, uncentered, step, between, relative_gap, seed, output, as_json):
    """Stability of eigenvalues and eigenvectors between disjoint halves (D.1)."""
    from rltx.analysis.covariance import analyze_eigen_stability
    emit(analyze_eigen_stability(runs, layer=layer, step=step, num_examples=num_examples, centered=not uncentered,
                                 between=between, relative_gap=relative_gap, seed=seed), output, as_json)


@analyze.command()
@RUNS
@checkpoint_options
@click.option("--num-examples", default=5000, show_default=True, help="Examples to run (A.11: 5k held-out).")
@click.option("--examples", "which", type=click.Choice(["test", "train"]), default="test", show_default=True,
              help="The run's held-out set or its training set.")
@click.option("--bins", default=20, show_default=True, help="Histogram bins over [0, 1].")
@click.option("--conv-neurons", type=click.Choice(["position", "channel"]), default="position", show_default=True,
              help="A conv neuron is one channel at one position, or one channel active anywhere.")
@output_options
def activations(runs, step, all_steps, num_examples, which, bins, conv_neurons, output, as_json):
    """Fraction of examples activating each ReLU neuron and of neurons each example activates
    (Sec. 3, Fig. 7, A.11, Fig. 10, 11)."""
    from rltx.analysis.activations import analyze_activations
    emit(analyze_activations(runs, step=step, all_steps=all_steps, num_examples=num_examples, which=which,
                             bins=bins, conv_neurons=conv_neurons), output, as_json)


@analyze.command("activation-trajectory")
@click.argument("pretrain_run", type=click.Path(path_type=Path))
@click.argument("transfer_run", type=click.Path(path_type=Path))
@click.option("--num-examples", default=5000, show_default=True, help="Held-out examples to run.")
@click.option("--examples", "which", type=click.Choice(["test", "train"]), default="test", show_default=True,
              help="The pre-training run's held-out set or its training set.")
@click.option("--conv-neurons", type=click.Choice(["position", "channel"]), default="position", show_default=True,
              help="A conv neuron is one channel at one position, or one channel active anywhere.")
@output_options
def activation_trajectory(pretrain_run, transfer_run, num_examples, which, conv_neurons, output, as_json):
    """Activation frequency at every checkpoint of a pre-training run and then of a transfer run
    started from it, with the switch marked (App. F, Fig. 24)."""
    from rltx.analysis.activations import analyze_trajectory
    emit(analyze_trajectory(pretrain_run, transfer_run, num_examples=num_examples, which=which,
                            conv_neurons=conv_neurons), output, as_json)


@analyze.command()
@RUNS
@click.option("--group-by", default="auto", show_default=True,
              help="Recipe key(s), comma-separated, that define a group (auto: everything but the seed).")
@output_options
def curves(runs, group_by, output, as_json):
    """Area under the train/test accuracy curves, group statistics over seeds, and pretrained vs
    from-scratch pairs (App. B, the table behind Fig. 12-15)."""
    from rltx.analysis.curves import analyze_curves
    keys = group_by if group_by == "auto" or "," not in group_by else group_by.split(",")
    emit(analyze_curves(runs, group_by=keys), output, as_json)


@analyze.command()
@RUNS
@checkpoint_options
@click.option("--reference", type=click.Choice(["init", "source"]), default="init", show_default=True,
              help="Distance to the run's own initialisation or to its transfer source.")
@click.option("--other", type=click.Path(path_type=Path), help="Also the per-module L2 distance to this run.")
@output_options
def weights(runs, step, all_steps, reference, other, output, as_json):
    """Per-layer ||W - W0||_F, its Liu et al. normalisation, distances between runs, and the
    rescaling norms of transfers (Liu et al. Sec. 3; Neyshabur et al. B.3; A.4)."""
    from rltx.analysis.weights import analyze_weights
    emit(analyze_weights(runs, step=step, all_steps=all_steps, reference=reference, other=other), output, as_json)
