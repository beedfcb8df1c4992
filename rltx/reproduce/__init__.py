"""`rltx reproduce NAME`: one figure or table of the paper from its recipe, ending with the figure
files and a short verdict of what was observed against what the paper reports."""
from __future__ import annotations

import dataclasses
import shlex
import sys
import sysconfig
from pathlib import Path
from typing import Callable

from rltx import store
from rltx.cluster import check_environment
from rltx.config import make_recipe
from rltx.recipe_file import override_texts, parse_overrides, read_recipe_file
from rltx.errors import UsageError
from rltx.reproduce import pipelines
from rltx.reproduce.spec import ReproduceSpec

VERDICT_FILE = "verdict.txt"


def recipe_directories() -> list[Path]:
    """Where named recipes live: the source checkout's recipes/ (also for editable installs), then
    the copy a wheel installs as data files under <prefix>/share/rltx/recipes (the prefix of the
    install scheme, e.g. /usr/local on Debian's system Python, and sys.prefix)."""
    prefixes = dict.fromkeys([sysconfig.get_path("data"), sys.prefix])
    return [Path(__file__).resolve().parents[2] / "recipes",
            *(Path(prefix) / "share" / "rltx" / "recipes" for prefix in prefixes)]


def available_recipes() -> list[str]:
    names = {p.stem for d in recipe_directories() if d.is_dir() for p in d.glob("*.yaml")}
    return sorted(names)


def find_recipe(name: str) -> Path:
    """A recipe file given by path, or by name (fig5, table1, quickstart, ...)."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise UsageError(f"cannot read recipe {path}: no such file; check the path")
        return path
    for directory in recipe_directories():
        if (directory / f"{name}.yaml").exists():
            return directory / f"{name}.yaml"
    raise UsageError(f"no recipe named {name!r}; choose one of {', '.join(available_recipes()) or '(none installed)'}")


@dataclasses.dataclass(frozen=True)
class Report:
    name: str
    out: Path
    paper: str
    description: str
    data: str
    seeds: tuple[int, ...]
    figures: tuple[Path, ...]
    findings: tuple[pipelines.verdicts.Finding, ...]
    excluded: tuple[str, ...] = ()
    command: str = ""  # the `rltx reproduce` line that reruns it (see `command_line`)

    def text(self) -> str:
        lines = [f"{self.name}: {self.description}", *([f"command: {self.command}"] if self.command else []),
                 f"data: {self.data}",
                 f"seeds: {', '.join(map(str, self.seeds))}", f"paper: {self.paper or '(not stated in the recipe)'}",
                 "observed:", *(f"  - {finding.line()}" for finding in self.findings)]
        if self.excluded:
            lines += ["excluded (diverged or collapsed, not counted as evidence):", *(f"  {e}" for e in self.excluded)]
        lines += ["figures:", *(f"  {path}" for path in self.figures)]
        return "\n".join(lines) + "\n"


def _check_overrides_leave_variants(spec: ReproduceSpec, overrides: dict, name: str) -> None:
    """A key that the variants set (their `set:` entries) is what tells the curves apart: a --set of it
    would give the other variants that value too, merging curves the verdict compares."""
    clash = sorted({key for variant in spec.variants for key in variant.keys} & set(overrides))
    if clash:
        raise UsageError(f"{', '.join(clash)} {'is' if len(clash) == 1 else 'are'} set per variant by {name}'s "
                         f"reproduce section; drop --set {clash[0]}, or copy the recipe and edit its variants")


def command_line(recipe: str, profile: str | None, seeds: int | None, groups: int | None, overrides: dict) -> str:
    """The `rltx reproduce` command that reruns a reproduction, for its verdict: the description names
    the recipe as written, this line what the run changed (profile, seeds, groups, --set keys with their paths
    made absolute); --out and --workers are left out, as they change where and how fast, not what."""
    words = ["rltx", "reproduce", recipe, *(["--profile", profile] if profile else []),
             *(["--seeds", str(seeds)] if seeds is not None else []),
             *(["--groups", str(groups)] if groups is not None else [])]
    for text in override_texts(overrides):
        words += ["--set", text]
    return shlex.join(words)


def describe_data(recipe, fallback: str | None) -> str:
    """The data a reproduction ran on, and whether it is the offline stand-in for the recipe's."""
    name = recipe.dataset + (f" {recipe.data_path}" if recipe.dataset in ("npz", "image_folder") else "")
    if recipe.dataset == "dead_leaves":
        name += f" ({recipe.natural_labels} labels)"
    return name + (f" (offline fallback: {fallback} is not available here)" if fallback else " (not a fallback)")


def reproduce(name: str, *, profile: str | None = None, out: Path | None = None, overrides: tuple[str, ...] = (),
              seeds: int | None = None, groups: int | None = None, workers: int = 1,
              reporter: Callable[[str], object], echo: Callable[[str], None]) -> Report:
    """Run the recipe's pipeline into `out` (default runs/reproduce/NAME[-PROFILE]) and write the verdict;
    `seeds` replaces the number of seeds of the recipe's reproduce: section (a sweep's: of its sweep:
    section), `groups` a sweep's groups per architecture."""
    from rltx.plotting.figure import style_context
    from rltx.store import atomic_write_text
    path = find_recipe(name)
    parsed = parse_overrides(overrides)
    recipe_file = read_recipe_file(path).profile(profile, parsed)
    spec = ReproduceSpec.from_section(recipe_file.reproduce, str(path))
    if seeds is not None:
        spec = dataclasses.replace(spec, seeds=seeds)
        if spec.pipeline == "sweep":  # a sweep's runs take their seeds from its sweep: section
            recipe_file = recipe_file.with_sweep(seeds=seeds)
    if groups is not None:
        if spec.pipeline != "sweep":
            raise UsageError(f"--groups sets a sweep's groups; {path.stem}'s {spec.pipeline} pipeline has none: "
                             "drop --groups")
        recipe_file = recipe_file.with_sweep(groups=groups)
    recipe = make_recipe(recipe_file.keys)
    _check_overrides_leave_variants(spec, parsed, path.stem)
    named = name if path.stem == name else str(path.resolve())  # a recipe file: its absolute path
    command = command_line(named, profile, seeds, groups, parsed)  # before anything runs: it can refuse a value
    if workers > 1 and spec.pipeline != "sweep":
        raise UsageError(f"--workers runs a sweep's runs concurrently; {path.stem}'s {spec.pipeline} pipeline runs "
                         "one run at a time: drop --workers")
    if spec.pipeline == "construct-table":
        spec.judged_sets(recipe.table_layer_sets)  # checked before anything is trained or written
    if spec.pipeline == "alignment" and spec.seeds > 1:  # its seeds' filters are pooled against one Sigma_x
        pipelines.check_pooled_seeds(recipe, spec.seeds)
    if spec.pipeline == "sweep":  # its sweep: section (with --seeds/--groups) checked before --out is made
        from rltx.sweep.plan import SweepSpec
        SweepSpec.from_section(recipe_file.sweep, str(path))
    out = Path(out or Path("runs") / "reproduce" / (path.stem + (f"-{profile}" if profile else "")))
    check_environment()  # before --out is made
    if (out / store.RUN_FILE).is_file():
        raise UsageError(f"{out} is a run directory; give --out a folder of its own for the reproduction's runs")
    store.check_outside_runs(out / "runs", "--out")  # checked before any run trains
    made = not out.exists()
    store.make_directory(out)
    echo(f"{path.stem}: {recipe.description}")
    context = pipelines.Context(recipe, spec, out, reporter, echo)
    try:
        with style_context("paper"):  # as `rltx plot` draws: legends and texts in the style's sizes
            if spec.pipeline == "sweep":
                outcome = pipelines.sweep_pipeline(context, recipe_file, workers, overrides)
            else:
                outcome = pipelines.PIPELINES[spec.pipeline](context)
    except UsageError:
        if made:  # refused before anything was written (a variant's class count, the data's size): no trace
            store.remove_empty_folders(out)
        raise
    report = Report(path.stem, out, spec.paper, recipe.description, describe_data(recipe, recipe_file.fallback),
                    tuple(outcome.seeds), tuple(outcome.figures), tuple(outcome.findings), tuple(context.excluded),
                    command)
    atomic_write_text(out / VERDICT_FILE, report.text())
    return report
