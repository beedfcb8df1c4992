"""The `rltx` command line: a thin shell over the library (rltx.config, rltx.pretrain, ...)."""
from __future__ import annotations

import errno
import sys
import warnings
from pathlib import Path

import click

from rltx import native_stderr
from rltx.cli_options import PROFILE_OPTION, RECIPE_ARGUMENT, SET_OPTION, comma_list
from rltx.cluster import check_environment
from rltx.config import describe_keys
from rltx.errors import UsageError, shorten
from rltx.recipe_file import load_recipe


_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2; 8.1 prints the help itself


class FixableError(click.ClickException):
    """Printed as one line 'Error: ...' with exit code 2 (bad input), never a traceback."""
    exit_code = 2


def _analyze():
    from rltx.analysis.commands import analyze
    return analyze


def _plot():
    from rltx.plotting.commands import plot
    return plot


def _sweep():
    from rltx.sweep.command import sweep
    return sweep


def _reproduce():
    from rltx.reproduce.command import reproduce
    return reproduce


# Command groups loaded when used, so that `rltx --help` and completion of the other commands never
# import numpy, h5py or TensorFlow: the loader, and the line `rltx --help` shows for it.
LAZY_COMMANDS = {
    "analyze": (_analyze, "Analyse stored runs: Sigma_w, activations, CKA and more."),
    "plot": (_plot, "Draw the papers' figures from runs and analyses."),
    "reproduce": (_reproduce, "Reproduce one figure or table of the paper."),
    "sweep": (_sweep, "Run an experiment grid of App. B (groups x seeds)."),
}


class Group(click.Group):
    """Loads the LAZY_COMMANDS when they are used, and turns the library's exceptions into one-line
    messages: bad input exits 2, a failed write 1, an interrupt 130; genuine bugs keep their traceback."""

    def list_commands(self, context):
        return sorted(set(super().list_commands(context)) | set(LAZY_COMMANDS))

    def get_command(self, context, name):
        if name in LAZY_COMMANDS and name not in self.commands:
            self.add_command(LAZY_COMMANDS[name][0](), name)
        return super().get_command(context, name)

    def format_commands(self, context, formatter):
        """The command list of `rltx --help`, without loading the lazy commands."""
        rows = []
        for name in self.list_commands(context):
            if name in LAZY_COMMANDS:
                rows.append((name, LAZY_COMMANDS[name][1]))
            elif not self.commands[name].hidden:
                rows.append((name, self.commands[name].get_short_help_str(formatter.width)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def parse_args(self, context, args):
        """`rltx --bogus`: the group's own options, parsed before any command is invoked."""
        try:
            return super().parse_args(context, args)
        except _NO_ARGS_IS_HELP:
            raise
        except click.UsageError as error:
            raise FixableError(_one_line_usage(error)) from None

    def invoke(self, context):
        try:
            return super().invoke(context)
        except UsageError as error:
            raise FixableError(str(error)) from None
        except _NO_ARGS_IS_HELP:  # `rltx plot` alone: click shows the group's help
            raise
        except click.UsageError as error:  # a command line click cannot parse: one line, as rltx's own errors
            raise FixableError(_one_line_usage(error)) from None
        except OSError as error:
            if error.errno == errno.ENAMETOOLONG:  # any path given on the command line, wherever it is first used
                raise FixableError(f"{shorten(str(error.filename or ''))}: a name in this path is too long (over "
                                   "255 bytes); use a shorter name") from None
            if error.errno in (errno.EACCES, errno.EPERM) and error.filename:  # a file or folder rltx may not read
                raise FixableError(f"{shorten(str(error.filename))}: permission denied; give this user access "
                                   "(chmod / chown) or use another path") from None
            raise
        except Exception as error:
            store = sys.modules.get("rltx.store")  # not imported (help, completion): no write could fail
            if store is not None and isinstance(error, store.StoreWriteError):
                raise click.ClickException(str(error)) from None
            loop = sys.modules.get("rltx.loop")
            if loop is not None and isinstance(error, loop.Interrupted):
                # a signal stopped a run of reproduce, sweep or construct-init --table, its state saved (pretrain
                # and transfer say it in _train_and_report)
                click.echo(str(error), err=True)
                raise SystemExit(130) from None
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            raise SystemExit(130) from None


def _one_line_usage(error: click.UsageError) -> str:
    """click's message ("Invalid value for '--seeds': 0 is not in the range ...") and where the usage is,
    instead of click's usage block above it."""
    message = " ".join(error.format_message().split())
    if not message.endswith((".", "?")):
        message += "."
    command = error.ctx.command_path if error.ctx is not None else "rltx"
    return f"{message} Run `{command} --help` for the usage."


def _keys_help(with_construct_keys: bool = False) -> str:
    """The recipe keys for a command's --help; the construct_*/table_* keys only where they apply."""
    lines = ["\b", "Recipe keys (set in the YAML or with --set KEY=VALUE):"]
    for name, default, unit, text in describe_keys():
        if name.startswith(("construct_", "table_")) and not with_construct_keys:
            continue
        unit = f" [{unit}]" if unit else ""
        lines.append(f"  {name} = {default}{unit}: {text}")
    return "\n".join(lines)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rltx")
@click.option("--verbose", is_flag=True, help="Also show TensorFlow's own log lines (hidden by default).")
@click.pass_context
def main(context: click.Context, verbose: bool):
    """rltx: what neural networks learn when trained with random labels (Maennel et al., NeurIPS 2020)."""
    # tf.data warns on every trace of a distributed dataset iterated inside tf.function; it is
    # about its own internals and says nothing to an rltx user.
    warnings.filterwarnings("ignore", message="To make it possible to preserve tf.data options")
    if context.obj == PROGRAM and not native_stderr.wants_native_logs(verbose):
        native_stderr.divert_native_stderr()
        native_stderr.quiet_python_loggers()


PROGRAM = "rltx program"  # context.obj when run as the `rltx` program, not in-process by tests or notebooks


def run() -> None:
    """The `rltx` program (console script and python -m rltx): the CLI owning this process's stderr."""
    main(obj=PROGRAM)


INIT_OPTION = click.option("--init", type=click.Path(dir_okay=False, path_type=Path),
                           help="Initial weights from `rltx construct-init` (sets the recipe key init_file).")


def _init_override(init: Path | None) -> tuple[str, ...]:
    return () if init is None else (f"init_file={init}",)


def run_options(command):
    """The options every training command shares."""
    for option in reversed([
        SET_OPTION,
        click.option("--resume/--no-resume", default=True, show_default=True,
                     help="Continue a run already in --out with the same recipe; --no-resume refuses to touch one."),
        click.option("--quiet", is_flag=True, help="No progress output."),
        PROFILE_OPTION,
    ]):
        command = option(command)
    return command


def _train_and_report(label: str, quiet: bool, train) -> list:
    """Run `train(reporter)`; signals and divergence become messages and exit codes."""
    from rltx.distribute import is_chief
    from rltx.loop import Diverged, Interrupted
    from rltx.progress import make_reporter
    reporter = make_reporter(quiet or not is_chief(), label)  # one progress display per multi-worker run
    try:
        summaries = train(reporter)
    except Interrupted as stop:
        reporter.close()
        click.echo(str(stop), err=True)
        raise SystemExit(130)
    except Diverged as failure:
        reporter.close()
        raise click.ClickException(f"run failed: {failure}") from None
    reporter.close()
    if not quiet:
        for summary in summaries:
            metrics = summary.metrics
            click.echo(f"{summary.status}: {summary.run_dir} at step {summary.step}: train accuracy "
                       f"{metrics['train_accuracy']:.4f}, test accuracy {metrics['test_accuracy']:.4f}")
    return summaries


def _default_out(recipe: Path, suffix: str, kinds: tuple[str, ...]) -> Path:
    """Where a run goes without --out: the directory of a given run.h5 of a run of `kinds` (the run resumes),
    else runs/<recipe name><suffix>, a run.h5 naming it by its directory."""
    if recipe.suffix != ".h5":
        return Path("runs") / f"{recipe.stem}{suffix}"
    from rltx.store import read_run_record
    if read_run_record(recipe.parent).kind in kinds:
        return recipe.parent
    return Path("runs") / f"{recipe.parent.name}{suffix}"


@main.command(epilog=_keys_help(), short_help="Pre-train a model on (random) labels (A.1-A.3).")
@RECIPE_ARGUMENT
@run_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Run directory [default: runs/<recipe name>; the directory of a given run.h5 of a pre-training "
                   "run].")
@INIT_OPTION
def pretrain(recipe: Path, overrides: tuple[str, ...], out: Path | None, resume: bool, quiet: bool,
             profile: str | None, init: Path | None):
    """Pre-train a model on (random) labels as in Appendix A.1-A.3; RECIPE is a YAML file, a recipe name
    (`rltx recipe list`) or a run.h5."""
    config = load_recipe(recipe, overrides + _init_override(init), profile)
    out = out or _default_out(recipe, "", ("pretrain",))
    check_environment()  # before TensorFlow loads
    from rltx.pretrain import pretrain as run_pretrain
    _train_and_report("pretrain", quiet, lambda reporter: [run_pretrain(config, out, resume=resume, reporter=reporter)])


@main.command(epilog=_keys_help(), short_help="Fine-tune downstream from pre-trained runs or scratch.")
@RECIPE_ARGUMENT
@click.option("--from", "sources", multiple=True, required=True, metavar="RUN|scratch",
              help="Source run directory; repeat to pool Sigma_w over runs (covariance mode); "
                   "'scratch' trains from a fresh initialisation.")
@click.option("--from-step", type=int, help="Checkpoint step of the source [default: its last].")
@click.option("--with-baseline", is_flag=True,
              help="Also train the paired from-scratch run into OUT-scratch (same data, seed, fresh layers).")
@run_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Run directory [default: runs/<recipe name>-transfer, or -scratch; the directory of a given "
                   "run.h5 of a transfer or scratch run].")
@INIT_OPTION
def transfer(recipe: Path, sources: tuple[str, ...], from_step: int | None, with_baseline: bool,
             overrides: tuple[str, ...], out: Path | None, resume: bool, quiet: bool, profile: str | None,
             init: Path | None):
    """Fine-tune on the downstream task (A.4, A.9, A.10) from pre-trained runs, or from scratch."""
    config = load_recipe(recipe, overrides + _init_override(init), profile)
    scratch = sources == ("scratch",)
    if "scratch" in sources and not scratch:
        raise UsageError("--from scratch cannot be combined with source runs; use --with-baseline for the pair")
    if scratch and (from_step is not None or with_baseline):
        option = "--from-step picks a source checkpoint" if from_step is not None else \
            "--with-baseline adds the from-scratch run of a transfer"
        raise UsageError(f"{option}; a run from scratch has no source: drop it, or give --from RUN")
    out = out or _default_out(recipe, "-scratch" if scratch else "-transfer", ("transfer", "scratch"))
    check_environment()  # before TensorFlow loads
    from rltx.transfer import transfer as run_transfer
    paths = [] if scratch else [Path(s) for s in sources]
    _train_and_report("transfer", quiet, lambda reporter: run_transfer(
        config, out, paths, from_step=from_step, with_baseline=with_baseline, resume=resume, reporter=reporter))


@main.command("construct-init", epilog=_keys_help(with_construct_keys=True),
              short_help="Build conv filters from the data's patch covariances.")
@RECIPE_ARGUMENT
@click.option("--layers", metavar="1,2,3",
              help="Conv layers to construct from the data, 1-based and increasing (Table 1's {1,2,3}).")
@click.option("--covariance-from", "covariance_runs", multiple=True, type=click.Path(path_type=Path),
              help="Sample layer 1 from N(0, Sigma_w) of these trained runs instead (Sec. 2.4); repeatable.")
@SET_OPTION
@PROFILE_OPTION
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="The init file to write (HDF5); never overwritten.")
@click.option("--table", type=click.Path(file_okay=False, path_type=Path),
              help="Instead: for each of table_layer_sets, construct, train, and tabulate the accuracies after "
                   "table_iterations steps (Table 1-6), with runs, init files and table.h5 in this directory.")
@click.option("--quiet", is_flag=True, help="No training progress (--table), no per-layer lines (-o).")
def construct_init(recipe: Path, layers: str | None, covariance_runs: tuple[Path, ...], overrides: tuple[str, ...],
                   profile: str | None, output: Path | None, table: Path | None, quiet: bool):
    """Build conv filters from the data's patch covariances, layer by layer (Sec. 2.5, E.3)."""
    config = load_recipe(recipe, overrides, profile)
    if table is not None:
        given = [name for name, value in (("--layers", layers), ("-o", output), ("--covariance-from", covariance_runs))
                 if value]
        if given:
            raise UsageError("--table builds its init files from the recipe's table_layer_sets; "
                             f"drop {', '.join(given)}")
        check_environment()  # before TensorFlow loads
        from rltx.analysis.results import print_table, write_result
        from rltx.construct_table import construct_table
        from rltx.distribute import is_chief
        from rltx.progress import make_reporter
        result = construct_table(config, table, make_reporter(quiet or not is_chief(), "construct"))
        write_result(result, table / "table.h5")
        print_table(result)
        click.echo(f"stored in {table / 'table.h5'}")
        return
    if layers is None or output is None:
        missing = " and ".join(name for name, value in (("--layers (e.g. 1,2,3)", layers), ("-o INIT.h5", output))
                               if value is None)
        raise UsageError(f"construct-init needs {missing} (or --table DIR instead)")
    numbers = comma_list(layers, "--layers", int, "1,2,3")
    check_environment()  # before TensorFlow loads (rltx.runs sets up the GPUs it reads)
    if output.exists() or output.is_symlink():
        raise UsageError(f"{output} exists; choose another -o or remove it")
    from rltx.store import check_output
    check_output(output, lambda existing: False, "a new file")
    from rltx.construct import construct_init as build
    from rltx.progress import make_reporter
    from rltx.store import write_init
    weights, records, indices = build(config, numbers, covariance_runs, make_reporter(quiet, "construct"))
    write_init(output, config.to_yaml(), weights, records, indices)
    if not quiet:
        for layer, record in records.items():
            click.echo(f"{layer}: {record.method}, {', '.join(f'{k} {v:.4g}' for k, v in record.numbers.items())}")
    click.echo(f"wrote {output}")


@main.command("runs", short_help="List runs: kind, status, step, accuracies, age.")
@click.argument("directories", nargs=-1, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON instead of a table.")
def runs_command(directories: tuple[Path, ...], as_json: bool):
    """List the runs found at or under DIRECTORIES [default: runs]: name, kind (pretrain, transfer,
    scratch), recipe, status, step/total, final train/test accuracy, and time since the last write."""
    from rltx.inspect_runs import find_runs, summary, summary_table, to_json
    directories = directories or (Path("runs"),)
    unreadable: list[str] = []
    rows = [summary(run_dir) for run_dir in find_runs(list(directories), unreadable)]
    for folder in unreadable:
        click.echo(f"warning: {folder} cannot be listed (permission denied): runs in it are not shown", err=True)
    if as_json:
        click.echo(to_json(rows))
    elif rows:
        click.echo(summary_table(rows))
    else:
        click.echo(f"no runs under {', '.join(map(str, directories))}")


@main.command("show", short_help="Show one run: recipe, sources, status, resume command.")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print as JSON instead of text.")
def show_command(run: Path, as_json: bool):
    """Show the run RUN (its directory or run.h5): status and reason, step, resolved recipe, source runs
    with the sha256 of their checkpoints, samples, last metrics, checkpoints, and the command that resumes it."""
    from rltx.inspect_runs import details, details_text, to_json
    info = details(run)
    click.echo(to_json(info) if as_json else details_text(info))


@main.command("export", short_help="Write a run's Keras model at a step, or its metrics as CSV.")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--step", type=int, help="Checkpoint step of the model [default: the last stored].")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="The Keras model file to write (.keras); never overwritten.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also (or instead) write the metrics, one row per eval point, to this CSV file.")
def export_command(run: Path, step: int | None, output: Path | None, csv_path: Path | None):
    """Export the run RUN: -o model.keras writes the Keras model with the weights of checkpoint --step,
    loadable with keras.saving.load_model; --csv metrics.csv writes its metrics."""
    check_environment()  # before TensorFlow loads
    from rltx.export import export
    for line in export(run, step=step, model_path=output, csv_path=csv_path):
        click.echo(line)



@main.group("recipe", short_help="List the installed recipes, or show one resolved.")
def recipe_group():
    """The recipes installed with rltx (also usable by name in pretrain, transfer, construct-init)."""


@recipe_group.command("list", short_help="List the installed recipes with their descriptions.")
def recipe_list():
    """List the installed recipes: name and description."""
    from rltx.recipe_file import read_recipe_file
    from rltx.reproduce import available_recipes, find_recipe
    for name in available_recipes():
        click.echo(f"{name:18} {read_recipe_file(find_recipe(name)).keys.get('description', '')}")


@recipe_group.command("show", short_help="Print a recipe with every key resolved.")
@RECIPE_ARGUMENT
@SET_OPTION
@PROFILE_OPTION
def recipe_show(recipe: Path, overrides: tuple[str, ...], profile: str | None):
    """Print RECIPE (a name, a YAML file or a run.h5) as the training commands would use it: every
    key, defaults included, after --profile and --set."""
    click.echo(load_recipe(recipe, overrides, profile).to_yaml(), nl=False)
