"""`rltx analyze KIND RUN...`: one click command per kind, each a thin shell over its library function."""
from __future__ import annotations

import functools
from pathlib import Path

import click

from rltx.analysis.curvature import DEFAULT_ETAS  # numpy-only at import, like similarity
from rltx.analysis.similarity import KERNELS
from rltx.cli_options import SET_OPTION, FiniteRange, check_one_checkpoint_choice, comma_list
from rltx.errors import UsageError

RUNS = click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
# Value ranges refused by click before any run is opened, in one line (rltx.cli).
COUNT = click.IntRange(min=0)  # a number of examples (0: all), a seed
AT_LEAST_ONE = click.IntRange(min=1)
AT_LEAST_TWO = click.IntRange(min=2)  # grid points
NON_NEGATIVE = FiniteRange(min=0)
POSITIVE = FiniteRange(min=0, min_open=True)


def _checked_output(context, _parameter, path: Path | None) -> Path | None:
    """-o is refused before any work when it points into a run or at a file that is not a result of this
    command's kind (an hour of Hessian iterations was lost to the refusal when it came only at the write)."""
    if path is not None:
        from rltx import store
        name = context.command.name
        kinds = {name, name.replace("-", "_")}  # the result kind is the command's name, some with underscores
        store.check_output(path, lambda existing: store.result_kind(existing) in kinds, f"an rltx {name} result")
    return path


def output_options(command):
    """-o/--json and the checkpoint choice shared by every kind."""
    for option in reversed([
        click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), callback=_checked_output,
                     help="Store the result in this HDF5 file (replaces only a result of the same kind)."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of a table."),
    ]):
        command = option(command)
    return command


def checkpoint_options(analysis):
    @functools.wraps(analysis)
    def command(*args, step=None, all_steps=False, **kwargs):
        check_one_checkpoint_choice(step, all_steps)
        return analysis(*args, step=step, all_steps=all_steps, **kwargs)
    for option in reversed([
        click.option("--step", type=int, help="Checkpoint step [default: the last stored]."),
        click.option("--all-steps", is_flag=True, help="Every stored checkpoint (a curve over training)."),
    ]):
        command = option(command)
    return command


def layer_options(command):
    for option in reversed([
        click.option("--layer", help="Layer name [default: the first transferable layer]."),
        click.option("--num-examples", type=COUNT, default=0, show_default=True,
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


# Each command imports its computation when it runs, so `rltx analyze --help` stays light.
@click.group()
def analyze():
    """Analyse stored runs; each KIND stores HDF5 (-o), prints a table, or JSON (--json)."""
    from rltx.cluster import check_environment
    check_environment()  # RLTX_GPU_MEMORY_MB caps the GPUs an analysis uses (rltx.runs): checked before anything


@analyze.command("misalignment", short_help="Misalignment of Sigma_w with Sigma_x (Fig. 2).")
@RUNS
@layer_options
@checkpoint_options
@click.option("--tolerance", type=NON_NEGATIVE, default=1e-6, show_default=True,
              help="Relative tolerance grouping equal eigenvalues of Sigma_x into one eigenspace.")
@click.option("--seed", type=COUNT, default=0, show_default=True, help="Seed of the random orthonormal basis (Fig. 2 baseline).")
@output_options
def misalignment(runs, layer, num_examples, uncentered, step, all_steps, tolerance, seed, output, as_json):
    """Misalignment of Sigma_w (pooled over RUNS) with Sigma_x (Def. 2, Prop. 2.7, A.6, Fig. 2)."""
    from rltx.analysis.covariance import analyze_misalignment
    emit(analyze_misalignment(runs, layer=layer, step=step, all_steps=all_steps, num_examples=num_examples,
                              centered=not uncentered, tolerance=tolerance, seed=seed), output, as_json)


@analyze.command("transfer-function", short_help="f(sigma): tau_i against sigma_i (Fig. 4).")
@RUNS
@layer_options
@checkpoint_options
@click.option("--tolerance", type=NON_NEGATIVE, default=1e-6, show_default=True, help="Eigenvalue grouping tolerance (relative).")
@output_options
def transfer_function(runs, layer, num_examples, uncentered, step, all_steps, tolerance, output, as_json):
    """f(sigma): tau_i = sqrt(v_i^T Sigma_w v_i) against sigma_i (Def. 3, Sec. 2.3, A.8, Fig. 4)."""
    from rltx.analysis.covariance import analyze_transfer_function
    emit(analyze_transfer_function(runs, layer=layer, step=step, all_steps=all_steps, num_examples=num_examples,
                                   centered=not uncentered, tolerance=tolerance), output, as_json)


@analyze.command("eigenvectors", short_help="Eigenvectors of Sigma_w and the data (Fig. 3).")
@RUNS
@layer_options
@click.option("--step", type=int, help="Checkpoint step [default: the last stored].")
@click.option("--top-k", type=AT_LEAST_ONE, default=10, show_default=True, help="Eigenvectors of Sigma_w to match.")
@click.option("--threshold", type=FiniteRange(0, 1, max_open=True), default=0.4, show_default=True, help="Minimum |<v_x, v_w>| of a match (Fig. 3).")
@output_options
def eigenvectors(runs, layer, num_examples, uncentered, step, top_k, threshold, output, as_json):
    """Top eigenvectors of Sigma_w and the data eigenvectors they combine (Fig. 3, A.7, D.1)."""
    from rltx.analysis.covariance import analyze_eigenvectors
    emit(analyze_eigenvectors(runs, layer=layer, step=step, num_examples=num_examples, centered=not uncentered,
                              top_k=top_k, threshold=threshold), output, as_json)


@analyze.command("eigen-stability", short_help="Eigen-stability between disjoint halves (D.1).")
@RUNS
@layer_options
@click.option("--step", type=int, help="Checkpoint step [default: the last stored].")
@click.option("--between", type=click.Choice(["data", "runs"]), default="data", show_default=True,
              help="Sigma_x of two disjoint halves of the data, or Sigma_w of two disjoint groups of RUNS.")
@click.option("--relative-gap", type=NON_NEGATIVE, default=0.05, show_default=True, help="Eigenvalues this close form a 2-D pair.")
@click.option("--seed", type=COUNT, default=0, show_default=True, help="Seed of the split into halves.")
@output_options
def eigen_stability(runs, layer, num_examples, uncentered, step, between, relative_gap, seed, output, as_json):
    """Stability of eigenvalues and eigenvectors between disjoint halves (D.1)."""
    from rltx.analysis.covariance import analyze_eigen_stability
    emit(analyze_eigen_stability(runs, layer=layer, step=step, num_examples=num_examples, centered=not uncentered,
                                 between=between, relative_gap=relative_gap, seed=seed), output, as_json)


@analyze.command("activations", short_help="ReLU activation frequencies (Fig. 7, 10, 11).")
@RUNS
@checkpoint_options
@click.option("--num-examples", type=COUNT, default=5000, show_default=True, help="Examples to run (A.11: 5k held-out).")
@click.option("--examples", "which", type=click.Choice(["test", "train"]), default="test", show_default=True,
              help="The run's held-out set or its training set.")
@click.option("--bins", type=AT_LEAST_ONE, default=20, show_default=True, help="Histogram bins over [0, 1].")
@click.option("--conv-neurons", type=click.Choice(["position", "channel"]), default="position", show_default=True,
              help="A conv neuron is one channel at one position, or one channel active anywhere.")
@output_options
def activations(runs, step, all_steps, num_examples, which, bins, conv_neurons, output, as_json):
    """Fraction of examples activating each ReLU neuron and of neurons each example activates
    (Sec. 3, Fig. 7, A.11, Fig. 10, 11)."""
    from rltx.analysis.activations import analyze_activations
    emit(analyze_activations(runs, step=step, all_steps=all_steps, num_examples=num_examples, which=which,
                             bins=bins, conv_neurons=conv_neurons), output, as_json)


@analyze.command("activation-trajectory", short_help="Activations over pre-training, transfer (F).")
@click.argument("pretrain_run", type=click.Path(path_type=Path))
@click.argument("transfer_run", type=click.Path(path_type=Path))
@click.option("--num-examples", type=COUNT, default=5000, show_default=True, help="Held-out examples to run.")
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


@analyze.command("curves", short_help="Accuracy-curve AUCs, seeds, pairs (App. B).")
@RUNS
@click.option("--group-by", default="auto", show_default=True,
              help="Recipe key(s), comma-separated, that define a group (auto: everything but the seed).")
@output_options
def curves(runs, group_by, output, as_json):
    """Area under the train/test accuracy curves, group statistics over seeds, and pretrained vs
    from-scratch pairs (App. B, the table behind Fig. 12-15)."""
    from rltx.analysis.curves import analyze_curves, caveats
    keys = group_by if group_by == "auto" or "," not in group_by else [key.strip() for key in group_by.split(",")]
    result = analyze_curves(runs, group_by=keys)
    for line in caveats(result):
        click.echo(line, err=True)
    emit(result, output, as_json)


@analyze.command("weights", short_help="Distances from init and between runs, norms.")
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


@analyze.command("spectrum", short_help="Singular values of every layer (Neyshabur C).")
@RUNS
@checkpoint_options
@click.option("--thresholds", default="0.1,0.01", show_default=True,
              help="Count singular values below each (comma-separated; Fig. 33).")
@click.option("--bins", type=AT_LEAST_ONE, default=50, show_default=True, help="Histogram bins of the whole-network spectrum.")
@click.option("--input-size", type=COUNT, default=0, show_default=True,
              help="n of the n x n circular input of every conv layer (0: each layer's own input size).")
@output_options
def spectrum(runs, step, all_steps, thresholds, bins, input_size, output, as_json):
    """Singular values of every conv (Sedghi et al. 2019 FFT) and dense layer, whole-network histogram,
    counts below thresholds, sum of ||W||_F/||W||_2 (Neyshabur et al. App. C, Figs. 31-33)."""
    from rltx.analysis.spectrum import analyze_spectrum
    emit(analyze_spectrum(runs, step=step, all_steps=all_steps, thresholds=thresholds, bins=bins,
                          input_size=input_size), output, as_json)


RUN_A = click.argument("run_a", type=click.Path(path_type=Path))
RUN_B = click.argument("run_b", type=click.Path(path_type=Path))


def step_options(command):
    command = click.option("--step-b", type=int, help="Checkpoint of RUN_B [default: the last stored].")(command)
    return click.option("--step-a", type=int, help="Checkpoint of RUN_A [default: the last stored].")(command)


@analyze.command("cka", short_help="Layer x layer CKA between two runs (Table 7).")
@RUN_A
@RUN_B
@step_options
@click.option("--kernel", type=click.Choice(KERNELS), default="linear", show_default=True)
@click.option("--rbf-fraction", type=POSITIVE, default=1.0, show_default=True,
              help="RBF bandwidth as a fraction of the median distance between examples.")
@click.option("--debiased", is_flag=True, help="Debiased HSIC (Song et al. 2012) instead of the biased one.")
@click.option("--num-examples", type=COUNT, default=1000, show_default=True, help="Held-out examples of RUN_A (0: all).")
@output_options
def cka(run_a, run_b, step_a, step_b, kernel, rbf_fraction, debiased, num_examples, output, as_json):
    """Layer x layer CKA between two runs on RUN_A's held-out examples (Neyshabur et al. B.3, Table 7)."""
    source = click.get_current_context().get_parameter_source("rbf_fraction")
    if source == click.core.ParameterSource.COMMANDLINE and kernel != "rbf":
        raise UsageError(f"--rbf-fraction sets the RBF kernel's bandwidth; add --kernel rbf or drop it "
                         f"(kernel {kernel})")
    from rltx.analysis.similarity import analyze_cka
    emit(analyze_cka(run_a, run_b, step_a=step_a, step_b=step_b, kernel=kernel, debiased=debiased,
                     num_examples=num_examples, rbf_fraction=rbf_fraction), output, as_json)


@analyze.command("mistakes", short_help="Common and uncommon mistakes of two runs.")
@RUN_A
@RUN_B
@step_options
@output_options
def mistakes(run_a, run_b, step_a, step_b, output, as_json):
    """Common and uncommon mistakes g1, g2, common, r1, r2 per class and overall (Neyshabur et al. B.2,
    Tables 3-6)."""
    from rltx.analysis.similarity import analyze_mistakes
    emit(analyze_mistakes(run_a, run_b, step_a=step_a, step_b=step_b), output, as_json)


EXAMPLES_OPTION = click.option("--num-examples", type=COUNT, default=512, show_default=True,
                               help="First training examples of the fixed subset the loss is taken on.")


@analyze.command("hessian", short_help="Top Hessian eigenvalues by Lanczos.")
@RUNS
@checkpoint_options
@click.option("--top-k", type=AT_LEAST_ONE, default=5, show_default=True, help="Largest Hessian eigenvalues to find.")
@click.option("--iterations", type=AT_LEAST_ONE, default=30, show_default=True, help="Lanczos iterations (>= top-k).")
@EXAMPLES_OPTION
@click.option("--seed", type=COUNT, default=0, show_default=True, help="Seed of the Lanczos start vector.")
@output_options
def hessian(runs, step, all_steps, top_k, iterations, num_examples, seed, output, as_json):
    """Top Hessian eigenvalues of the training loss by Lanczos (Liu et al. Fig. 3a)."""
    from rltx.analysis.curvature import analyze_hessian
    emit(analyze_hessian(runs, step=step, all_steps=all_steps, top_k=top_k, iterations=iterations,
                         num_examples=num_examples, seed=seed), output, as_json)


@analyze.command("landscape", short_help="Filter-normalised loss landscape of a run.")
@RUNS
@click.option("--step", type=int, help="Checkpoint step [default: the last stored].")
@click.option("--center", type=click.Choice(["checkpoint", "init"]), default="checkpoint", show_default=True,
              help="Centre on the checkpoint (Fig. 3) or the run's step-0 weights (Fig. 5).")
@click.option("--layer", help="Perturb only this layer [default: the whole network].")
@click.option("--two-d", is_flag=True, help="A 2-D slice along two directions instead of a 1-D one.")
@click.option("--span", type=POSITIVE, default=1.0, show_default=True, help="Grid from -span to span along each direction.")
@click.option("--points", type=AT_LEAST_TWO, default=21, show_default=True, help="Grid points per direction.")
@click.option("--seed", type=COUNT, default=0, show_default=True, help="Seed of the random directions.")
@click.option("--include-biases", is_flag=True,
              help="Perturb biases and normalisation parameters too (default: zero in the directions).")
@EXAMPLES_OPTION
@output_options
def landscape(runs, step, center, layer, two_d, span, points, seed, include_biases, num_examples, output, as_json):
    """Filter-normalised loss landscape around a checkpoint (Liu et al. Fig. 3, 5; Li et al. 2018)."""
    from rltx.analysis.curvature import analyze_landscape
    emit(analyze_landscape(runs, step=step, layer=layer, two_d=two_d, span=span, points=points, seed=seed,
                           num_examples=num_examples, center=center, include_biases=include_biases),
         output, as_json)


@analyze.command("gradient", short_help="Loss along the gradient, gradient scales.")
@RUNS
@checkpoint_options
@EXAMPLES_OPTION
@click.option("--etas", default=",".join(map(str, DEFAULT_ETAS)), show_default=True,
              help="Step sizes along the gradient, comma-separated.")
@click.option("--direction", type=click.Choice(["normalized", "raw"]), default="normalized", show_default=True,
              help="Step along g/||g|| (fixed step size, Liu B.2) or along g (step = gradient size, Liu App. A).")
@output_options
def gradient(runs, step, all_steps, num_examples, etas, direction, output, as_json):
    """Loss along the gradient, per-layer gradient scale, weight projection on the gradient's
    singular vectors (Liu et al. Fig. 6, 7)."""
    from rltx.analysis.curvature import analyze_gradient
    emit(analyze_gradient(runs, step=step, all_steps=all_steps, num_examples=num_examples,
                          etas=comma_list(etas, "--etas", example="0.01,0.1"), direction=direction), output, as_json)


@analyze.command("barrier", short_help="Loss and accuracy barrier between two runs.")
@click.argument("run_a", type=click.Path(path_type=Path))
@click.argument("run_b", required=False, type=click.Path(path_type=Path))
@click.option("--step-a", type=int, help="Checkpoint of RUN_A [default: last; with one run: 0].")
@click.option("--step-b", type=int, help="Checkpoint of RUN_B [default: last] (of RUN_A with one run).")
@click.option("--points", type=AT_LEAST_TWO, default=31, show_default=True, help="Grid points on [alpha-min, alpha-max] (0, 1 added).")
@click.option("--alpha-min", type=FiniteRange(), default=-1.0, show_default=True, help="Grid start (B.6 extrapolates to [-1, 2]).")
@click.option("--alpha-max", type=FiniteRange(), default=2.0, show_default=True, help="Grid end.")
@click.option("--num-examples", type=COUNT, default=0, show_default=True, help="Train and test examples (0: all).")
@output_options
def barrier(run_a, run_b, step_a, step_b, points, alpha_min, alpha_max, num_examples, output, as_json):
    """Accuracy and loss along (1-a) theta_1 + a theta_2 on RUN_A's data, and the performance and
    loss barrier heights (Neyshabur et al. App. B.4-B.8). With one run: its step-0 and last
    checkpoints. BatchNorm statistics are recomputed at every point."""
    from rltx.analysis.interpolation import analyze_barrier
    emit(analyze_barrier(run_a, run_b, step_a=step_a, step_b=step_b, points=points, alpha_min=alpha_min,
                         alpha_max=alpha_max, num_examples=num_examples), output, as_json)


@analyze.command("criticality", short_help="Module criticality of every layer.")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--step", type=int, help="The final checkpoint theta_F [default: the last stored].")
@click.option("--alphas", default="0,0.25,0.5,0.75,1", show_default=True, help="Rewinding points a in [0, 1].")
@click.option("--sigmas", default="0,0.01,0.05,0.1", show_default=True, help="Noise standard deviations.")
@click.option("--samples", type=AT_LEAST_ONE, default=3, show_default=True, help="Noise draws per (a, sigma > 0).")
@click.option("--tolerance", type=NON_NEGATIVE, default=0.01, show_default=True, help="Allowed train error above the final one.")
@click.option("--num-examples", type=COUNT, default=0, show_default=True, help="Training examples (0: all).")
@click.option("--seed", type=COUNT, default=0, show_default=True, help="Seed of the noise.")
@output_options
def criticality(run, step, alphas, sigmas, samples, tolerance, num_examples, seed, output, as_json):
    """Module criticality of every transferable layer and the head: train error with the module
    rewound towards its initialisation plus Gaussian noise (Neyshabur et al. App. B.9; Chatterji et al.)."""
    from rltx.analysis.interpolation import analyze_criticality
    emit(analyze_criticality(run, step=step, alphas=comma_list(alphas, "--alphas"), sigmas=comma_list(sigmas, "--sigmas"),
                             samples=samples, tolerance=tolerance, num_examples=num_examples, seed=seed),
         output, as_json)


@analyze.command("transferability-curve", short_help="Transfer accuracy vs the source's step.")
@click.argument("pretrain_run", type=click.Path(path_type=Path))
@click.argument("recipe", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory of the transfer runs (one step_N per checkpoint; completed ones are reused).")
@click.option("--steps", help="Comma-separated pre-training checkpoints [default: all stored].")
@SET_OPTION
@output_options
def transferability_curve(pretrain_run, recipe, out, steps, overrides, output, as_json):
    """Downstream accuracy of RECIPE fine-tuned from each checkpoint of PRETRAIN_RUN, against the
    pre-training step (Liu et al. Sec. 5.2, Fig. 9)."""
    from rltx.analysis.transferability import analyze_transferability
    from rltx.recipe_file import load_recipe
    chosen = comma_list(steps, "--steps", int, "0,100,1000") if steps else None
    emit(analyze_transferability(pretrain_run, load_recipe(recipe, tuple(overrides)), out, steps=chosen),
         output, as_json)


@analyze.command("representation-alignment", short_help="Alignment of representations with labels.")
@click.argument("run", type=click.Path(path_type=Path))
@checkpoint_options
@click.option("--examples", "which", type=click.Choice(("train", "test")), default="train", show_default=True,
              help="The run's training set or its held-out set.")
@click.option("--num-examples", type=COUNT, default=1000, show_default=True, help="First N examples (0: all).")
@click.option("--labels-from", type=click.Path(path_type=Path),
              help="Use this run's labels of the same examples (source vs target task).")
@click.option("--points", type=AT_LEAST_TWO, default=50, show_default=True, help="Thresholds tau from 0 to sigma_max.")
@click.option("--row-norm", type=click.Choice(("unit", "max")), default="unit", show_default=True,
              help="Rows to length one, or all rows divided by the largest row length.")
@click.option("--constant-feature/--no-constant-feature", default=True, show_default=True,
              help="Append a constant feature (the bias unit, Sec. 2).")
@output_options
def representation_alignment(run, step, all_steps, which, num_examples, labels_from, points, row_norm,
                             constant_feature, output, as_json):
    """Alignment(Phi, y, tau) of every layer's representation with the labels (Imani et al.
    2022, Eq. 2, Sec. 4-7): inputs and each transferable layer, curves over tau."""
    from rltx.analysis.representation import analyze_representation_alignment
    emit(analyze_representation_alignment(run, step=step, all_steps=all_steps, which=which,
                                          num_examples=num_examples, labels_from=labels_from, points=points,
                                          row_norm=row_norm, constant_feature=constant_feature),
         output, as_json)
