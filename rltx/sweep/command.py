"""`rltx sweep`: the command line over rltx.sweep."""
from __future__ import annotations

from pathlib import Path

import click

from rltx import store
from rltx.cli_options import PROFILE_OPTION, RECIPE_ARGUMENT, SET_OPTION, FiniteRange
from rltx.cluster import check_environment
from rltx.recipe_file import parse_overrides, read_recipe_file
from rltx.errors import UsageError
from rltx.sweep import expand, run_local, summarize, write_plan
from rltx.sweep.plan import PLAN_FILE, fixed_draws
from rltx.throughput import summary_lines

EXECUTORS = ("local", "ray")


@click.command()
@RECIPE_ARGUMENT
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Sweep directory: plan.json, group recipes, runs, logs/, curves.h5 [default: runs/<recipe name>].")
@PROFILE_OPTION
@click.option("--quick", is_flag=True, help="Same as --profile quick.")
@SET_OPTION
@click.option("--groups", type=click.IntRange(min=1),
              help="Groups per architecture [default: the recipe's sweep: groups]. A finished sweep grows: its "
                   "groups keep their draws and runs.")
@click.option("--seeds", type=click.IntRange(min=1),
              help="Seeds per group [default: the recipe's sweep: seeds]; more seeds also grow a finished sweep.")
@click.option("--plan-only", is_flag=True,
              help="Write the plan and print one command per run (stage 1 before stage 2) for an external "
                   "scheduler (Slurm array, Kubernetes indexed job); run nothing.")
@click.option("--workers", type=click.IntRange(min=1),
              help="Local executor: concurrent runs [default: --runs-per-gpu per visible GPU, else --runs-per-gpu].")
@click.option("--runs-per-gpu", type=click.IntRange(min=1), default=1, show_default=True,
              help="Local executor: concurrent runs sharing each GPU, each capped at about 1/K of its memory.")
@click.option("--executor", type=click.Choice(EXECUTORS), default="local", show_default=True,
              help="local: worker processes on this machine; ray: one Ray task per run (pip install 'rltx[ray]').")
@click.option("--address", help="Ray: the cluster address (e.g. ray://head:10001) [default: RAY_ADDRESS, else start a local Ray].")
@click.option("--gpus-per-run", type=FiniteRange(min=0), default=None,
              help="Ray: GPUs each run requests, fractions (0.25) share a GPU [default: 1 when the cluster has GPUs, else 0].")
def sweep(recipe: Path, out: Path | None, profile: str | None, quick: bool, overrides: tuple[str, ...],
          groups: int | None, seeds: int | None, plan_only: bool, workers: int | None, runs_per_gpu: int,
          executor: str, address: str | None, gpus_per_run: float | None):
    """Run an experiment of App. B: groups x seeds x pre-trained / from scratch x transfer depth x
    real / random downstream labels. Completed runs are skipped and interrupted ones resumed, so the
    same command continues a killed sweep. Ends with the group summaries of `analyze curves` and the
    sampled values that go with each panel's transfer (associations.h5)."""
    if quick and profile not in (None, "quick"):
        raise UsageError("--quick is --profile quick; give only one of them")
    profile = "quick" if quick else profile
    executor_options = {"--workers": workers is not None, "--runs-per-gpu": runs_per_gpu != 1,
                        "--executor": executor != "local", "--address": address is not None,
                        "--gpus-per-run": gpus_per_run is not None}
    if plan_only and any(executor_options.values()):
        given = ", ".join(name for name, set_ in executor_options.items() if set_)
        raise UsageError(f"--plan-only runs nothing, so {given} would do nothing; drop them or drop --plan-only")
    if executor == "local" and (address is not None or gpus_per_run is not None):
        raise UsageError("--address and --gpus-per-run are for --executor ray; drop them or add --executor ray")
    if executor == "ray" and (workers is not None or runs_per_gpu != 1):
        raise UsageError("--workers and --runs-per-gpu are for the local executor; with Ray use --gpus-per-run "
                         "(e.g. 0.25 for 4 runs per GPU)")
    recipe_file = read_recipe_file(recipe).profile(profile, parse_overrides(overrides)).with_sweep(groups=groups,
                                                                                                  seeds=seeds)
    out = out or Path("runs") / (recipe.stem + (f"-{profile}" if profile else ""))
    check_environment()  # the runs read TF_CONFIG and RLTX_GPU_MEMORY_MB: refused before the plan is written
    store.check_outside_runs(out / PLAN_FILE, "--out")
    plan = expand(recipe_file, out, overrides)
    plan_path = write_plan(plan)
    counts = plan.counts()
    click.echo(f"{plan_path}: {counts['groups']} groups, {counts['experiments']} experiments "
               f"({counts['pretrain_runs']} pre-training runs, {counts['transfer_commands']} transfer commands, "
               "each training a pre-trained model and its from-scratch pair)", err=plan_only)
    for line in summary_lines(plan):
        click.echo(line, err=plan_only)
    for line in fixed_draws(plan, overrides):
        click.echo(line, err=True)
    if plan_only:
        for stage in ("pretrain", "transfer"):
            click.echo(f"# stage {stage}: start after the previous stage completed" if stage == "transfer"
                       else "# stage pretrain: independent runs")
            for run in plan.runs:
                if run.stage == stage:
                    click.echo(run.command())
        return
    if executor == "ray":
        from rltx.sweep.ray_executor import run_ray
        outcomes = run_ray(plan, address=address, gpus_per_run=gpus_per_run, echo=click.echo)
    else:
        outcomes = run_local(plan, workers=workers or _default_workers(runs_per_gpu), runs_per_gpu=runs_per_gpu,
                             echo=click.echo)
    _report(plan, outcomes)


def _default_workers(runs_per_gpu: int) -> int:
    from rltx.sweep.execute import visible_gpus
    return runs_per_gpu * max(1, len(visible_gpus()))


def _report(plan, outcomes) -> None:
    tally = {status: sum(o.status == status for o in outcomes) for status in ("completed", "skipped", "failed", "blocked")}
    click.echo(", ".join(f"{count} {status}" for status, count in tally.items()))
    result = summarize(plan)
    if result is not None:
        _print_pairs(plan, result)
        click.echo(f"group summaries in {Path(plan.out) / 'curves.h5'} (rltx analyze curves; rltx plot auc-scatter)")
        if not (tally["failed"] or tally["blocked"]):  # a blocked run has no record to check the health of
            _report_associations(plan, result)
    if tally["failed"] or tally["blocked"]:
        failed = [o for o in outcomes if o.status == "failed"]
        runs = f"{len(failed)} run{'s' if len(failed) > 1 else ''}"
        raise click.ClickException(f"{runs} failed (first: {failed[0].name}, log {failed[0].log}); "
                                   "fix the cause and rerun the same command to finish the sweep")


def _print_pairs(plan, result) -> None:
    """One line per (group, transfer depth, downstream labels): mean train-accuracy AUC of the
    pre-trained and from-scratch runs over the seeds (App. B's scatter-plot coordinates)."""
    import collections

    from rich.console import Console
    from rich.table import Table
    arrays, rows = result.arrays, collections.defaultdict(list)
    for run, pretrained, scratch in zip(arrays["pairs/transfer_run"], arrays["pairs/pretrained_train_auc"],
                                        arrays["pairs/scratch_train_auc"]):
        name = Path(store.text(run)).relative_to(plan.out).as_posix()
        group, _, variant = name.rpartition("/")
        rows[(group, variant.split("-", 1)[1])].append((pretrained, scratch))
    table = Table("group", "transfer", "seeds", "pre-trained AUC", "from-scratch AUC", "difference")
    for (group, variant), values in rows.items():
        pretrained, scratch = (sum(v) / len(values) for v in zip(*values))
        table.add_row(group, variant, str(len(values)), f"{pretrained:.3f}", f"{scratch:.3f}", f"{pretrained - scratch:+.3f}")
    console = Console()
    (console if console.is_terminal else Console(width=160)).print(table)  # logs: no truncated names


def _report_associations(plan, result) -> None:
    """The sampled values that go with each panel's transfer (as `rltx reproduce` of a sweep recipe
    says them), over the pairs whose runs are all unflagged; every tested value in associations.h5."""
    from rltx.analysis.results import write_result
    from rltx.health import is_flagged
    from rltx.reproduce.verdicts import panel_association_findings
    from rltx.sweep.panels import ASSOCIATIONS_FILE, associations_result, counted_pairs, panel_associations
    flagged = []

    def counts(run: Path) -> bool:
        if is_flagged(store.read_run_record(run).health) and run not in flagged:
            flagged.append(run)
        return run not in flagged

    counted = counted_pairs(plan, result.arrays["pairs/transfer_run"], counts)
    panels = panel_associations(plan, result.arrays, counted)
    path = Path(plan.out) / ASSOCIATIONS_FILE
    write_result(associations_result(panels), path)
    click.echo(f"sampled values and transfer, over {int(counted.sum())} of {len(counted)} pairs"
               + (f" ({len(flagged)} flagged run{'s' if len(flagged) > 1 else ''} left out: rltx runs {plan.out})"
                  if flagged else "") + ":")
    for finding in panel_association_findings(panels):
        click.echo("  " + finding.line())
    click.echo(f"every tested value in {path}")
