"""An experiment of App. B expanded into runs: groups x seeds x pre-trained / from scratch x
transfer one / all layers x real / random downstream labels.

The `sweep:` section of a recipe file (its other keys are shared by every run):

    sweep:
      architectures: [simple_cnn, vgg16, resnet18]
      groups: 20                         # groups per architecture
      seeds: 2                           # seeds seed, seed+1, ... of every group
      transfer_layers: [1, all]          # (c) transfer one / all layers
      labels_downstream: [real, random]  # (d)
      seed: 0                            # seed of the hyper-parameter draws
      sample:                            # drawn once per group (App. B.1-B.4)
        init_scale: {log_uniform: [0.5, 1.35]}
        num_classes_upstream: {uniform: [2, 5, 10, 25, 50, 100]}
      by_architecture:                   # drawn (or fixed) only for that architecture
        simple_cnn: {num_conv_layers: {uniform: [1, 2, 3, 4, 5]}}

Every group gets a recipe file OUT/<architecture>/gNN/recipe.yaml; its runs are one pre-training per
seed and one `rltx transfer --with-baseline` per (seed, transfer depth, downstream labels), which
trains the pre-trained model and its from-scratch pair: two of App. B's experiments.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
from pathlib import Path

import yaml

from rltx import hyperrule
from rltx.config import ARCHITECTURE_NAMES, SEED_MAX, check_section, make_recipe
from rltx.errors import UsageError, shorten
from rltx.recipe_file import RecipeFile, parse_overrides

PLAN_FILE = "plan.json"
LIST_EXAMPLES = {"architectures": "[simple_cnn, vgg16]", "transfer_layers": "[1, all]",
                 "labels_downstream": "[real, random]"}
MAX_COUNT = 10_000  # groups per architecture, seeds per group: far beyond App. B's 20 x 2
SECTION_KEYS = ("architectures", "groups", "seeds", "transfer_layers", "labels_downstream", "seed", "sample",
                "by_architecture")


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    architectures: tuple[str, ...]
    groups: int
    seeds: int
    transfer_layers: tuple
    labels_downstream: tuple[str, ...]
    seed: int = 0
    sample: dict = dataclasses.field(default_factory=dict)
    by_architecture: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_section(cls, section: dict, where: str) -> "SweepSpec":
        check_section(section, "sweep", SECTION_KEYS, where, "recipes/cifar10_a.yaml")
        _check_shapes(section, where)
        values = {**section, "architectures": tuple(section.get("architectures") or ()),
                  "transfer_layers": tuple(section.get("transfer_layers") or ("all",)),
                  "labels_downstream": tuple(section.get("labels_downstream") or ("real",))}
        spec = cls(**{"groups": 1, "seeds": 1, **values})
        spec.check(where)
        return spec

    def check(self, where: str) -> None:
        bad = [a for a in self.architectures if a not in ARCHITECTURE_NAMES]
        if not self.architectures or bad:
            raise UsageError(f"{where}: sweep architectures must be a non-empty list of {', '.join(ARCHITECTURE_NAMES)}")
        for name in ("groups", "seeds"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_COUNT:
                raise UsageError(f"{where}: sweep {name} must be an integer from 1 to {MAX_COUNT}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed <= SEED_MAX:
            raise UsageError(f"{where}: sweep seed must be an integer from 0 to {SEED_MAX}")
        for name, spec in [*self.sample.items(), *(kv for v in self.by_architecture.values() for kv in v.items())]:
            _check_distribution(name, spec, where)
        self._check_entries(where)

    def _check_entries(self, where: str) -> None:
        """Transfer depths and label kinds name run directories (s0-layers_1-real): each must be one of
        the plan's words, once."""
        if not all(layers in ("all", "conv") or (isinstance(layers, int) and not isinstance(layers, bool)
                                                 and layers >= 1) for layers in self.transfer_layers):
            raise UsageError(f"{where}: sweep transfer_layers entries must be a number of layers (1, 2, ...), all "
                             f"or conv, e.g. {LIST_EXAMPLES['transfer_layers']}")
        if not all(labels in ("real", "random") for labels in self.labels_downstream):
            raise UsageError(f"{where}: sweep labels_downstream entries must be real or random, "
                             f"e.g. {LIST_EXAMPLES['labels_downstream']}")
        for name in ("architectures", "transfer_layers", "labels_downstream"):
            entries = [str(entry) for entry in getattr(self, name)]
            twice = sorted({entry for entry in entries if entries.count(entry) > 1})
            if twice:
                raise UsageError(f"{where}: sweep {name} lists {', '.join(twice)} twice; give each entry once")


def _check_shapes(section: dict, where: str) -> None:
    """The entries are of the kinds the plan reads: lists, and mappings of recipe keys."""
    for name in ("architectures", "transfer_layers", "labels_downstream"):
        if not isinstance(section.get(name, []), list):
            raise UsageError(f"{where}: sweep {name} must be a list, e.g. {LIST_EXAMPLES[name]}")
    by_architecture = section.get("by_architecture", {})
    for name, entry in [("sample", section.get("sample", {})), ("by_architecture", by_architecture),
                        *((f"by_architecture: {a}", v) for a, v in (by_architecture.items() if isinstance(by_architecture, dict) else ()))]:
        if not isinstance(entry, dict):
            raise UsageError(f"{where}: sweep {name} must be a mapping of recipe keys with indented entries")


def _check_distribution(name: str, spec, where: str) -> None:
    if not (isinstance(spec, dict) and len(spec) == 1):
        return
    (kind, values), = spec.items()
    ok = ((kind == "log_uniform" and isinstance(values, list) and len(values) == 2
           and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
           and 0 < values[0] <= values[1])
          or (kind == "uniform" and isinstance(values, list) and values))
    if not ok:
        raise UsageError(f"{where}: sweep value of {name} must be {{log_uniform: [low, high]}} with 0 < low <= high, "
                         f"or {{uniform: [v1, v2, ...]}}")


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    name: str                   # e.g. simple_cnn/g03/s0-all-real
    stage: str                  # pretrain | transfer
    argv: tuple[str, ...]       # arguments of `rltx`
    run_dirs: tuple[str, ...]   # the run directories it completes
    after: tuple[str, ...]      # runs that must complete first
    experiments: int            # App. B experiments it produces (downstream models)

    def command(self) -> str:
        return "rltx " + shlex.join(self.argv)


@dataclasses.dataclass(frozen=True)
class Plan:
    recipe: str
    out: str
    groups: tuple[dict, ...]    # name, architecture, recipe file, sampled values
    runs: tuple[PlannedRun, ...]
    design: dict = dataclasses.field(default_factory=dict)  # the sweep: section but its counts (`experiment_design`)

    def counts(self) -> dict[str, int]:
        return {"groups": len(self.groups), "experiments": sum(r.experiments for r in self.runs),
                "pretrain_runs": sum(r.stage == "pretrain" for r in self.runs),
                "transfer_commands": sum(r.stage == "transfer" for r in self.runs)}

    def downstream_dirs(self) -> list[str]:
        return [d for run in self.runs if run.stage == "transfer" for d in run.run_dirs]


# Recipe keys a sweep sets per group or run from its sweep: section, which a --set could only mislabel.
SET_PER_RUN = {"architecture": "architectures", "transfer_layers": "transfer_layers",
               "labels_downstream": "labels_downstream"}


def trained_values(group: dict) -> dict:
    """A planned group's sampled keys as its recipe trained them: a --set wins over the draw, which
    plan.json's `values` keep (so that the plan stays the one its runs were made by)."""
    recipe = yaml.safe_load(group["yaml"])
    return {key: recipe.get(key, value) for key, value in group["values"].items()}


def fixed_draws(plan: Plan, overrides: tuple[str, ...]) -> list[str]:
    """One note per key the sweep draws per group that a --set fixes for every group (`trained_values`): the
    groups no longer differ in it, so its association with the transfer cannot be measured."""
    fixed = parse_overrides(overrides)
    drawn = {key for group in plan.groups for key in group["values"]}
    return [f"note: --set {key}={fixed[key]} replaces the value each group draws (sweep: sample); every group "
            "trains with it, and plan.json keeps the draws" for key in sorted(drawn & set(fixed))]


def group_values(spec: SweepSpec, architecture: str, group: int) -> dict:
    """The sampled (and per-architecture fixed) recipe keys of one group."""
    generator = hyperrule.group_generator(spec.seed, ARCHITECTURE_NAMES.index(architecture), group)
    entries = {**spec.sample, **spec.by_architecture.get(architecture, {})}
    return {name: hyperrule.sample_hyperparameter(value, generator) for name, value in entries.items()}


def expand(recipe_file: RecipeFile, out: Path, overrides: tuple[str, ...] = (), quiet: bool = True) -> Plan:
    """All groups and runs of the sweep of `recipe_file` (a profile already applied), into `out`."""
    spec = SweepSpec.from_section(recipe_file.sweep, str(recipe_file.path))
    out = Path(out).resolve()
    fixed = parse_overrides(overrides)  # paths resolved against the working directory, as pretrain does
    clash = sorted(set(fixed) & set(SET_PER_RUN))
    if clash:
        key = clash[0]
        raise UsageError(f"--set {key} cannot change a sweep: its sweep: section sets {key} for every group or run "
                         f"({SET_PER_RUN[key]}); edit that section in a copy of the recipe instead")
    groups, runs, layer_counts = [], [], {}
    for architecture in spec.architectures:
        for index in range(spec.groups):
            directory = out / architecture / f"g{index:02d}"
            values = group_values(spec, architecture, index)
            keys = {**recipe_file.keys, "architecture": architecture, **values, **fixed}
            recipe = make_recipe(keys)  # every group's recipe is valid before anything runs
            _check_transfers(spec, keys, layer_counts, f"{architecture}/g{index:02d}", values)
            if recipe.seed + spec.seeds - 1 > SEED_MAX:  # the runs take seeds seed, seed+1, ...
                raise UsageError(f"{recipe_file.path}: seeds {recipe.seed}..{recipe.seed + spec.seeds - 1} "
                                 f"go beyond {SEED_MAX}; lower the recipe's seed or sweep seeds")
            name = f"{architecture}/g{index:02d}"
            groups.append({"name": name, "architecture": architecture, "recipe": str(directory / "recipe.yaml"),
                           "values": values, "yaml": recipe.to_yaml()})
            runs += _group_runs(spec, name, directory, recipe.seed, quiet)
    return Plan(str(recipe_file.path), str(out), tuple(groups), tuple(runs), experiment_design(spec))


def experiment_design(spec: SweepSpec) -> dict:
    """What a sweep's groups are drawn from and which runs each has: its sweep: section but the counts
    (groups, seeds), which a plan may grow (`write_plan`)."""
    return {name: value for name, value in dataclasses.asdict(spec).items() if name not in ("groups", "seeds")}


def _check_transfers(spec: SweepSpec, keys: dict, layer_counts: dict, group: str, values: dict) -> None:
    """Each transfer's keys are valid too, so that no fine-tuning fails after the pre-training ran. A
    depth k > 1 needs the model's layer count: each model is built once (`layer_counts` caches)."""
    for layers in spec.transfer_layers:
        for labels in spec.labels_downstream:
            recipe = make_recipe({**keys, "transfer_layers": layers, "labels_downstream": labels})
            recipe.check_downstream()
            if isinstance(layers, int) and layers > 1:
                _check_depth(recipe, layers, layer_counts, group, values)


def _check_depth(recipe, layers: int, layer_counts: dict, group: str, values: dict) -> None:
    """Depth k fits the group's model. Keras loads only for sweeps with depths k > 1."""
    from rltx.models import ARCHITECTURES
    from rltx.tasks import transferable_count
    options = ARCHITECTURES[recipe.architecture].options
    model_key = (recipe.architecture, *(repr(getattr(recipe, name)) for name in options))
    if model_key not in layer_counts:
        layer_counts[model_key] = transferable_count(recipe)
    count = layer_counts[model_key]
    if count is not None and layers > count:
        drawn = ", ".join(f"{name}={value}" for name, value in values.items())
        raise UsageError(f"sweep transfer_layers {layers} exceeds the {count} transferable layers of group {group}'s "
                         f"model{f' ({drawn})' if drawn else ''}; lower it or use all")


def _group_runs(spec: SweepSpec, name: str, directory: Path, base_seed: int, quiet: bool) -> list[PlannedRun]:
    recipe = str(directory / "recipe.yaml")
    tail = ("--quiet",) if quiet else ()
    runs = []
    per_transfer = hyperrule.experiments_per_group(1, 1, 1)  # the transfer and its from-scratch pair
    for seed in range(base_seed, base_seed + spec.seeds):
        source = str(directory / f"s{seed}-pretrain")
        pretrain = PlannedRun(f"{name}/s{seed}-pretrain", "pretrain",
                              ("pretrain", recipe, "--set", f"seed={seed}", "--out", source, *tail),
                              (source,), (), 0)
        runs.append(pretrain)
        for layers in spec.transfer_layers:
            for labels in spec.labels_downstream:
                target = str(directory / f"s{seed}-layers_{layers}-{labels}")
                argv = ("transfer", recipe, "--set", f"seed={seed}", "--set", f"transfer_layers={layers}",
                        "--set", f"labels_downstream={labels}", "--from", source, "--with-baseline",
                        "--out", target, *tail)
                runs.append(PlannedRun(f"{name}/s{seed}-layers_{layers}-{labels}", "transfer", argv,
                                       (target, f"{target}-scratch"), (pretrain.name,), per_transfer))
    return runs


def write_plan(plan: Plan) -> Path:
    """The group recipe files and OUT/plan.json. An existing plan must be the same plan, or one this
    plan extends (more groups or seeds: every stored group and run is in it, unchanged): a sweep
    directory never mixes two experiments, but a finished sweep can grow."""
    from rltx import store
    from rltx.store import atomic_write_text
    out = Path(plan.out)
    path = out / PLAN_FILE
    text = json.dumps(_as_dict(plan), indent=1)
    planned = json.loads(text)
    stored = _resolved(_relocated(json.loads(_plan_text(path)), plan.out)) \
        if path.exists() or path.is_symlink() else None
    if stored is not None and not _extends(planned, stored):
        if "design" not in stored and _run_kinds(planned) == _run_kinds(stored) and \
                _extends(planned, {**stored, "design": planned["design"]}):
            raise UsageError(f"{path} was written before plans kept their design, so it cannot grow in one step: "
                             "rerun it with its own groups and seeds first (that adds the design), then with more")
        raise UsageError(f"{path} holds another plan ({_difference(planned, stored)}); use another --out (or the "
                         "recipe, profile and --set that made this sweep, with as many groups and seeds or more)")
    for group in plan.groups:
        recipe = Path(group["recipe"])
        store.make_directory(recipe.parent)
        atomic_write_text(recipe, group["yaml"])
    atomic_write_text(path, text)
    return path


def _extends(plan: dict, stored: dict) -> bool:
    """`plan` is `stored` (a plan written before plans kept their design has no "design"), or grows it:
    the same folder and design (distributions, architectures, depths, labels), and each stored group
    (its recipe as written) and run unchanged (a group's draws depend on its index only, a run's
    seeds on the recipe's seed). Where the recipe file lies is not compared: a recipe given by name
    lies where rltx is installed, which an upgrade or another virtualenv moves."""
    compared = [key for key in stored if key != "recipe"]
    if {key: plan.get(key) for key in compared} == {key: stored[key] for key in compared}:
        return True
    return all(plan[key] == stored.get(key) for key in ("out", "design")) and \
        all(group in plan["groups"] for group in stored["groups"]) and all(run in plan["runs"] for run in stored["runs"])


def _difference(plan: dict, stored: dict) -> str:
    """The first thing that keeps `plan` from being or growing `stored`, in words for the refusal: a changed
    sweep: section, a stored group left out or with another recipe, or a stored run left out or changed."""
    design, stored_design = plan.get("design") or {}, stored.get("design")
    if isinstance(stored_design, dict) and design != stored_design:
        key = _first_changed(stored_design, design)
        return f"sweep: {key} was {shorten(stored_design.get(key))}, now {shorten(design.get(key))}"
    groups = {group.get("name"): group for group in plan["groups"]}
    for group in stored["groups"]:
        name, now = group.get("name"), groups.get(group.get("name"))
        if now is None:
            return f"its group {name} is not in this plan: fewer groups"
        if now != group:
            before, after = _recipe_keys(group.get("yaml")), _recipe_keys(now.get("yaml"))
            key = _first_changed(before, after)
            return f"group {name}'s recipe had {key} {shorten(before.get(key))}, now {shorten(after.get(key))}" \
                if key else f"group {name} differs"
    runs = {run.get("name"): run for run in plan["runs"]}
    for run in stored["runs"]:
        if run.get("name") not in runs:
            return f"its run {run.get('name')} is not in this plan: fewer seeds or other runs"
        if runs[run.get("name")] != run:
            return f"its run {run.get('name')} is planned with other arguments"
    return "another recipe, profile or --set"


def _first_changed(before: dict, after: dict) -> str | None:
    return next((key for key in sorted(set(before) | set(after), key=str) if before.get(key) != after.get(key)), None)


def _recipe_keys(text) -> dict:
    try:
        keys = yaml.safe_load(text) if isinstance(text, str) else None
    except yaml.YAMLError:
        keys = None
    return keys if isinstance(keys, dict) else {}


def _relocated(plan: dict, out: str) -> dict:
    """A stored plan as if written at `out`: a sweep folder moved or copied elsewhere (from a cluster's
    scratch disk, say) keeps its runs, so every path under the folder it was written at (group recipes,
    run folders, the arguments naming them) is read under `out`. A transfer run's record still names its
    source and its from-scratch partner at their old paths; `analyze curves` looks for the partner next
    to it (rltx.analysis.curves)."""
    old = plan.get("out")
    if not isinstance(old, str) or old == out:
        return plan

    def moved(value):
        if isinstance(value, str) and (value == old or value.startswith(old + os.sep)):
            return out + value[len(old):]
        if isinstance(value, list):
            return [moved(entry) for entry in value]
        return value

    def under_out(entry: dict, keys: tuple[str, ...]) -> dict:
        return {**entry, **{key: moved(entry[key]) for key in keys if key in entry}}
    return {**plan, "out": out, "groups": [under_out(group, ("recipe",)) for group in plan["groups"]],
            "runs": [under_out(run, ("argv", "run_dirs")) for run in plan["runs"]]}


def _resolved(plan: dict) -> dict:
    """A stored plan with each group's recipe as this rltx writes it: a key added to rltx since (with its
    default) must not make a finished sweep "another plan"; a changed value still does."""
    groups = []
    for group in plan["groups"]:
        if isinstance(group.get("yaml"), str):
            try:
                group = {**group, "yaml": make_recipe(yaml.safe_load(group["yaml"]) or {}).to_yaml()}
            except (UsageError, yaml.YAMLError, TypeError, ValueError):
                pass  # compared as stored: it differs, so the plan is refused as another
        groups.append(group)
    return {**plan, "groups": groups}


def _run_kinds(plan: dict) -> set[str]:
    """The runs each group has, seed aside (e.g. pretrain, layers_all-real): more groups or seeds keep
    them, another label set or depth does not."""
    return {run["name"].rsplit("/", 1)[-1].split("-", 1)[-1] for run in plan["runs"]}


def _as_dict(plan: Plan) -> dict:
    return {"recipe": plan.recipe, "out": plan.out, "counts": plan.counts(), "design": plan.design,
            "groups": list(plan.groups),
            "runs": [dataclasses.asdict(run) for run in plan.runs]}


def _plan_text(path: Path) -> str:
    """The text of a stored plan, or a one-line error saying it is damaged and how to rebuild it."""
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text)
        if not isinstance(raw, dict) or not {"recipe", "out", "groups", "runs"} <= raw.keys() or \
                not all(isinstance(raw[key], list) and all(isinstance(entry, dict) for entry in raw[key])
                        for key in ("groups", "runs")):
            raise ValueError("not a plan")
        return text
    except (OSError, ValueError, RecursionError):
        raise UsageError(f"{path} is damaged (not a plan written by rltx sweep); remove that one file (the runs "
                         "beside it are kept and reused) and rerun the sweep with the same recipe and --plan-only "
                         "to write it again") from None


def read_plan(path: Path) -> Plan:
    raw = json.loads(_plan_text(Path(path)))
    runs = tuple(PlannedRun(**{k: tuple(v) if isinstance(v, list) else v for k, v in run.items()})
                 for run in raw["runs"])
    return Plan(raw["recipe"], raw["out"], tuple(raw["groups"]), runs, raw.get("design", {}))
