"""Learning-curve summaries (Maennel et al. 2020, App. B): the area under the accuracy curve of each
run, statistics over the seeds of a group, and the pre-trained vs from-scratch pairs behind the
scatter plots of Figures 12-15.

Definitions
-----------
- AUC (App. B, "Visualizing the experiments": "we use the area under the curve (AUC) to sketch the
  training with a single number"). App. B gives neither the grid nor a normalisation. Here the
  accuracy is linearly interpolated between the stored evaluation points (trapezoid rule in the
  training step) and the area is divided by the length of the interval, so the AUC is the
  time-averaged accuracy and lies in [0, 1] (App. B.1 reads the test-accuracy AUCs of Fig. 12 as
  "y > 0.7", i.e. on the accuracy scale). rltx evaluates at step 0 (README, "Metrics"), so the
  interval is [0, horizon] and the AUC is area / horizon. Epochs are steps * batch / examples, a
  linear change of the x axis, under which this normalised AUC does not change: the step grid and
  the epoch grid give the same number. The trapezoid weights each eval point by the time it
  covers, so the denser early points of rltx's eval grid (A.3) do not bias it.
- Groups (App. B, "Experimental setup": runs are gathered in a group when they share the
  hyper-parameters and differ in the random seed). `group_by="auto"`: runs whose resolved recipes
  are equal apart from `seed` (and `description`, `data_dir`, `manual_dir`, `offline`, which say
  where the data lives, not what is trained), with the same kind (pretrain / transfer / scratch) and
  the same source step (`from_step`). An `init_file` counts by what the file holds, not its path
  (`init_group_value`): each seed of a construction has a file of its own. An explicit key (one recipe key or a list of them, "from_step" allowed)
  groups on those values only; the kind is always part of the key, so pre-trained and from-scratch
  runs are never pooled. Statistics over a group: mean, standard deviation with ddof=1 (the sample
  standard deviation; NaN for a group of one run), minimum and maximum.
- Pairs (App. B: "compare the downstream performance of the pre-trained models to that of models
  trained from scratch with same hyperparameters"): each transfer run among the inputs with the
  scratch run it names in `paired_with` (written by `rltx transfer --with-baseline`; the partner is
  taken from the inputs, else read from disk), and every other transfer run with the scratch run
  among the inputs trained on the same data: the same seed, data keys (where the data lives aside)
  and downstream sample (examples, labels, held-out set); among several, the one whose recipe
  shares the most keys with the transfer run's (the first on a tie). Both AUCs of a pair are taken over the same horizon,
  the last step both have reached. `pair_groups` averages the pairs of a group: one dot of the
  Fig. 12-15 scatter plots ("Each dot corresponds to one group of experiments").
  Axis orientation: the captions of Figs. 12-15 say that points *below* the x = y line are
  experiments where the pre-trained models train faster, i.e. x = pre-trained AUC, y = scratch AUC.
  The arrays are named by what they hold (pretrained_*, scratch_*), not by axis.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rltx import store
from rltx.analysis.results import Result
from rltx.config import FIELDS, NOT_RUN_DEFINING, format_value
from rltx.errors import UsageError
from rltx.health import is_flagged
from rltx.runs import Run, check_same_model, open_run

METRICS = ("train_auc", "test_auc", "final_train_accuracy", "final_test_accuracy")
STATISTICS = ("mean", "std", "min", "max")
STD_DDOF = 1  # sample standard deviation over the seeds of a group
# group_by="auto" ignores the seed and the keys that only say where the data lives or describe the run
NOT_GROUPED = ("seed", *NOT_RUN_DEFINING)
SAME_SAMPLES = ("downstream_indices", "downstream_labels", "test_indices", "test_labels")


def accuracy_auc(steps, accuracy, horizon=None) -> float:
    """Area under the accuracy curve divided by the length of the interval (App. B "AUC"; the
    normalisation is ours, see the module docstring): trapezoid rule in the step between the
    evaluation points, from the first step to `horizon` (default: the last step). A horizon between
    two eval points cuts the curve there (linear interpolation). For a curve starting at step 0 this
    is area / horizon; it lies in [0, 1] for accuracies in [0, 1], and a constant accuracy a gives a.
    """
    steps = np.asarray(steps, dtype=np.float64)
    accuracy = np.asarray(accuracy, dtype=np.float64)
    if steps.ndim != 1 or steps.shape != accuracy.shape:
        raise ValueError(f"steps and accuracy must be 1-D of the same length, got {steps.shape} and {accuracy.shape}")
    if steps.size < 2:
        raise ValueError(f"an accuracy curve needs at least two evaluation points, got {steps.size}")
    if not (np.all(np.isfinite(steps)) and np.all(np.isfinite(accuracy))):
        raise ValueError("steps and accuracy must be finite")
    if np.any(np.diff(steps) <= 0):
        raise ValueError("steps must be strictly increasing")
    horizon = steps[-1] if horizon is None else float(horizon)
    if not steps[0] < horizon <= steps[-1]:
        raise ValueError(f"horizon {horizon:g} is outside the curve (steps {steps[0]:g} to {steps[-1]:g}); "
                         "choose a horizon after the first and at most the last step")
    inside = steps < horizon
    x = np.append(steps[inside], horizon)
    y = np.append(accuracy[inside], np.interp(horizon, steps, accuracy))
    area = np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2)
    return float(area / (horizon - steps[0]))


def group_statistics(values, groups, num_groups: int | None = None) -> dict[str, np.ndarray]:
    """Per group g (values[groups == g]): count, mean, std (ddof=STD_DDOF=1; NaN for one value), min, max."""
    values, groups = np.asarray(values, dtype=np.float64), np.asarray(groups, dtype=np.int64)
    num_groups = int(groups.max()) + 1 if num_groups is None else num_groups
    out = {name: np.full(num_groups, np.nan) for name in STATISTICS}
    out["count"] = np.zeros(num_groups, dtype=np.int64)
    for g in range(num_groups):
        members = values[groups == g]
        out["count"][g] = members.size
        if members.size:
            mean = members.sum() / members.size
            out["mean"][g], out["min"][g], out["max"][g] = mean, members.min(), members.max()
            if members.size > STD_DDOF:
                out["std"][g] = np.sqrt(np.sum((members - mean) ** 2) / (members.size - STD_DDOF))
    return out


# --- runs -------------------------------------------------------------------------------

@dataclass
class _Curve:
    run: Run
    record: store.RunRecord
    steps: np.ndarray
    train: np.ndarray
    test: np.ndarray
    fingerprint: str
    numbers: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.run.run_dir)

    def auc(self, horizon=None) -> tuple[float, float]:
        return accuracy_auc(self.steps, self.train, horizon), accuracy_auc(self.steps, self.test, horizon)


def _load_curve(path) -> _Curve:
    run = open_run(path)
    record = run.record
    rows = store.read_metrics(run.run_dir)
    if len(rows) < 2:
        raise UsageError(f"{run.run_dir} has {len(rows)} evaluation point(s); an accuracy curve needs step 0 and a "
                         "later one: let the run go on, or leave it out")
    check_curve_rows(run.run_dir, rows)
    curve = _Curve(run, record, np.array([r["step"] for r in rows], dtype=np.int64),
                   np.array([r["train_accuracy"] for r in rows]), np.array([r["test_accuracy"] for r in rows]),
                   metrics_fingerprint(rows))
    train_auc, test_auc = curve.auc()
    curve.numbers = {"train_auc": train_auc, "test_auc": test_auc,
                     "final_train_accuracy": float(curve.train[-1]), "final_test_accuracy": float(curve.test[-1])}
    return curve


def check_curve_rows(run_dir: Path, rows: list[dict]) -> None:
    """rltx stores finite accuracies (a diverged run predicts something) at increasing steps; a NaN or inf
    accuracy, or steps out of order, were written by hand (a curve drawn or integrated from them is wrong)."""
    path, fix = Path(run_dir) / store.METRICS_FILE, "restore the file rltx wrote, or leave the run out"
    bad = [row["step"] for row in rows if not all(np.isfinite(row.get(k, 0.0)) for k in ("train_accuracy",
                                                                                          "test_accuracy"))]
    if bad:
        raise UsageError(f"{path} holds a non-finite accuracy at step {bad[0]}; {fix}")
    back = [(a["step"], b["step"]) for a, b in zip(rows, rows[1:]) if b["step"] <= a["step"]]
    if back:
        raise UsageError(f"{path} holds steps out of order (step {back[0][1]} after step {back[0][0]}); {fix}")


def metrics_fingerprint(rows: list[dict]) -> str:
    """The sha256 of a run's metric rows, every column: two runs with the same are copies of one run. Losses
    make coincidence impossible (accuracies alone can coincide: two runs collapsed at chance), and the measured
    throughput tells an experiment made twice from a copy (on deterministic hardware the rest may agree)."""
    return hashlib.sha256(json.dumps(rows, sort_keys=True, default=float).encode()).hexdigest()


def check_no_copies(members) -> None:
    """`members`: (group, run directory, metrics fingerprint) of each run. A copy of a run in its group would
    count as a second seed in the group's mean and spread."""
    seen = {}
    for group, run_dir, fingerprint in members:
        if (group, fingerprint) in seen:
            raise UsageError(f"{run_dir} has the same metrics as {seen[group, fingerprint]} (a copy of that run): it "
                             "would count twice in its group's statistics; give each run once")
        seen[group, fingerprint] = run_dir


def _key_values(curve: _Curve, group_by) -> dict:
    """The values that define the group of a run (kind always included)."""
    if group_by == "auto":
        return auto_group_values(curve.run)
    every = {**_grouped_recipe(curve.run), "kind": curve.run.kind, "from_step": curve.record.from_steps}
    return {"kind": curve.run.kind, **{name: every[name] for name in group_by}}


def auto_group_values(run) -> dict:
    """What puts runs (rltx.runs.Run) in one group under group_by auto: every recipe key but NOT_GROUPED, the
    kind and the source step."""
    values = {name: value for name, value in _grouped_recipe(run).items() if name not in NOT_GROUPED}
    return {**values, "kind": run.kind, "from_step": run.record.from_steps}


def _grouped_recipe(run) -> dict:
    """The run's recipe with its init file counted by what it holds (`init_group_value`), not by its path: each
    seed of a construction has a file of its own, and the seeds are one group. The file is read where it is now
    (Run.init_file: beside a moved run)."""
    recipe = run.recipe.to_dict()
    return {**recipe, "init_file": init_group_value(run.init_file)} if recipe.get("init_file") else recipe


def init_group_value(path: str) -> str:
    """An init file as a group value: the layers it constructed from the data, with their methods, and a digest of
    the recipe keys it was built with but NOT_GROUPED ones (the seed among them), which decide the rest. A
    file with a layer drawn from trained runs' covariance (`--covariance-from`, whose runs it does not
    record), or one that cannot be read, counts by its path."""
    try:
        keys, methods = store.read_init_construction(Path(path))
    except UsageError:
        return path
    if any(method.startswith("learned") for method in methods.values()):
        return path
    built = {name: value for name, value in keys.items() if name not in NOT_GROUPED}
    digest = hashlib.sha256(json.dumps([built, methods], sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{', '.join(methods) or 'none'} constructed [{digest}]"


def _group_keys(group_by) -> str | tuple[str, ...]:
    if group_by == "auto":
        return "auto"
    keys = (group_by,) if isinstance(group_by, str) else tuple(group_by)
    valid = set(FIELDS) | {"kind", "from_step"}
    if not all(keys):
        raise UsageError(f"group_by {','.join(keys)!r} holds an empty key (a comma too many?); give recipe keys "
                         "separated by commas, e.g. kind,learning_rate")
    unknown = [k for k in keys if k not in valid]
    if unknown or not keys:
        raise UsageError(f"group_by names unknown key(s) {', '.join(unknown) or '(none)'}; use 'auto' or recipe "
                         "keys such as learning_rate, init_scale, num_classes_upstream (or from_step)")
    return keys


def _label(key: dict, varying: list[str]) -> str:
    shown = [k for k in varying if k != "kind" and k in key and key[k] != []]  # no from_step for pre-training
    return ", ".join([str(key["kind"])] + [f"{k}={format_value(key[k])}" for k in shown])


def _same_data(transfer: _Curve, scratch: _Curve) -> bool:
    """Same seed, data keys and downstream sample (see the module docstring, Pairs)."""
    mine, theirs = transfer.run.recipe, scratch.run.recipe
    same_data = [k for k in mine.data.identity() if k not in NOT_GROUPED]  # data keys, not where it lives
    if mine.seed != theirs.seed or any(getattr(mine, k) != getattr(theirs, k) for k in same_data):
        return False
    samples, other = transfer.record.samples, scratch.record.samples
    return all(name in samples and name in other and np.array_equal(samples[name], other[name]) for name in SAME_SAMPLES)


def _scratch_on_same_data(curve: _Curve, by_path: dict[str, _Curve]) -> _Curve | None:
    candidates = [c for c in by_path.values() if c.run.kind == "scratch" and _same_data(curve, c)]
    if not candidates:
        return None
    mine = curve.run.recipe.to_dict()
    return max(candidates, key=lambda c: sum(value == mine.get(k) for k, value in c.run.recipe.to_dict().items()))


def _partner(curve: _Curve, by_path: dict[str, _Curve]) -> _Curve | None:
    """The scratch run paired with a transfer run: the one it names (`store.located_partner`: next to it
    when the pair was moved or copied together, else at the stored path), taken from the inputs when
    given there; without one, the scratch run among the inputs trained on the same data."""
    paired = curve.record.paired_with
    if not paired:
        return _scratch_on_same_data(curve, by_path)
    found = store.located_partner(curve.run.run_dir, paired[0])
    if found is None:
        raise UsageError(f"the scratch run {paired[0]} paired with {curve.run.run_dir} is not found (nor next to "
                         "it); restore it or pass its directory among the runs")
    partner = by_path.get(str(found.resolve())) or _load_curve(found)
    check_same_model([curve.run, partner.run], "a pre-trained / from-scratch pair")
    return partner


def analyze_curves(run_paths, *, group_by="auto") -> Result:
    """AUCs and final accuracies per run, per group of seeds, and per pre-trained / scratch pair."""
    if isinstance(run_paths, (str, Path)):
        run_paths = [run_paths]
    keys = _group_keys(group_by)
    curves = _load_curves(run_paths)
    group_of, group_keys, labels = _groups(curves, keys)
    check_no_copies((group, curve.name, curve.fingerprint) for group, curve in zip(group_of, curves))
    arrays = {
        "runs": store.string_array(c.name for c in curves),
        "kind": store.string_array(c.run.kind for c in curves),
        "seed": np.array([c.run.recipe.seed for c in curves], dtype=np.int64),
        "status": store.string_array(store.live_status(c.run.run_dir, c.record.status) for c in curves),  # running or interrupted
        "health": store.string_array(c.record.health for c in curves),
        "last_step": np.array([c.steps[-1] for c in curves], dtype=np.int64),
        "group": group_of,
        **{m: np.array([c.numbers[m] for c in curves]) for m in METRICS},
        "groups/label": store.string_array(labels),
        "groups/key": store.string_array(json.dumps(k, sort_keys=True, default=str) for k in group_keys),
        "groups/kind": store.string_array(k["kind"] for k in group_keys),
    }
    stats = {m: group_statistics(arrays[m], group_of, len(group_keys)) for m in METRICS}
    arrays["groups/count"] = stats[METRICS[0]]["count"]
    for metric in METRICS:
        for statistic in STATISTICS:
            arrays[f"groups/{metric}_{statistic}"] = stats[metric][statistic]
    arrays.update(_pair_arrays(curves, group_of, labels))
    inputs = {"runs": [c.name for c in curves], "group_by": keys if keys == "auto" else list(keys),
              "auc": "trapezoid in step over [0, last step] / last step (App. B AUC, time-averaged accuracy)",
              "std_ddof": STD_DDOF}
    return Result("curves", inputs, arrays, _curves_table(arrays, labels))


def _load_curves(run_paths) -> list[_Curve]:
    curves = [_load_curve(path) for path in run_paths]
    if not curves:
        raise UsageError("no runs given; pass one or more run directories")
    seen = set()
    for curve in curves:
        if curve.name in seen:
            raise UsageError(f"{curve.name} is given twice; pass each run once")
        seen.add(curve.name)
    return curves


def _groups(curves: list[_Curve], keys) -> tuple[np.ndarray, list[dict], list[str]]:
    """Each curve's group index, the groups' key values in order of first appearance, and their labels
    (the keys whose values vary between groups)."""
    key_json, group_of, group_keys = {}, [], []
    for curve in curves:
        values = _key_values(curve, keys)
        text = json.dumps(values, sort_keys=True, default=str)
        if text not in key_json:
            key_json[text] = len(group_keys)
            group_keys.append(values)
        group_of.append(key_json[text])
    varying = sorted({k for key in group_keys for k in key if any(other.get(k) != key[k] for other in group_keys)})
    return np.array(group_of, dtype=np.int64), group_keys, [_label(key, varying) for key in group_keys]


def _pair_arrays(curves: list[_Curve], group_of: np.ndarray, labels: list[str]) -> dict[str, np.ndarray]:
    """Each transfer run among the inputs with its paired scratch run (named, or on the same data),
    their AUCs over the shorter horizon, and one scatter dot per group (Figs. 12-15): the mean over
    the group's pairs."""
    by_name = {curve.name: curve for curve in curves}
    pairs = []
    for index, curve in enumerate(curves):
        scratch = _partner(curve, by_name) if curve.run.kind == "transfer" else None
        if scratch is None:
            continue
        horizon = int(min(curve.steps[-1], scratch.steps[-1]))
        pairs.append((index, curve, scratch, horizon, curve.auc(horizon), scratch.auc(horizon)))
    pair_group = np.array([group_of[p[0]] for p in pairs], dtype=np.int64)
    arrays = {
        "pairs/transfer_run": store.string_array(p[1].name for p in pairs),
        "pairs/scratch_run": store.string_array(p[2].name for p in pairs),
        "pairs/group": pair_group,
        "pairs/seed": np.array([p[1].run.recipe.seed for p in pairs], dtype=np.int64),
        "pairs/labels_downstream": store.string_array(p[1].run.recipe.labels_downstream for p in pairs),
        "pairs/transfer_layers": store.string_array(format_value(p[1].run.recipe.transfer_layers) for p in pairs),
        "pairs/horizon": np.array([p[3] for p in pairs], dtype=np.int64),
        "pairs/pretrained_train_auc": np.array([p[4][0] for p in pairs], dtype=np.float64),
        "pairs/scratch_train_auc": np.array([p[5][0] for p in pairs], dtype=np.float64),
        "pairs/pretrained_test_auc": np.array([p[4][1] for p in pairs], dtype=np.float64),
        "pairs/scratch_test_auc": np.array([p[5][1] for p in pairs], dtype=np.float64),
    }
    dot_groups = sorted(set(pair_group.tolist()))
    remap = np.array([dot_groups.index(g) for g in pair_group], dtype=np.int64)
    arrays["pair_groups/group"] = np.array(dot_groups, dtype=np.int64)
    arrays["pair_groups/label"] = store.string_array(labels[g] for g in dot_groups)
    arrays["pair_groups/count"] = np.array([np.sum(pair_group == g) for g in dot_groups], dtype=np.int64)
    for name in ("pretrained_train_auc", "scratch_train_auc", "pretrained_test_auc", "scratch_test_auc"):
        arrays[f"pair_groups/{name}"] = (group_statistics(arrays[f"pairs/{name}"], remap, len(dot_groups))["mean"]
                                         if pairs else np.zeros(0))
    return arrays


def _curves_table(arrays: dict[str, np.ndarray], labels: list[str]) -> list[dict]:
    table = []
    for g, label in enumerate(labels):
        row = {"group": label, "runs": int(arrays["groups/count"][g])}
        for metric in METRICS:
            row[metric] = float(arrays[f"groups/{metric}_mean"][g])
            if metric.endswith("auc"):
                row[f"{metric} std"] = float(arrays[f"groups/{metric}_std"][g])
        table.append(row)
    return table


def caveats(result: Result) -> list[str]:
    """A warning per analysed run that is no evidence: not completed, or flagged by its health check
    (rltx.health). Their curves are in the result as they are; the warnings say which ones."""
    arrays = result.arrays
    lines = []
    for name, status, health in zip(arrays["runs"], arrays["status"], arrays["health"]):
        status, health = store.text(status), store.text(health)
        notes = ([status] if status != "completed" else []) + ([health] if is_flagged(health) else [])
        if notes:
            lines.append(f"warning: {store.text(name)} is {'; '.join(notes)}: its curve is included as it is")
    return lines
