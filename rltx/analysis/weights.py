"""How far weights move: distance to a reference point per layer, between two runs, and the A.4
rescaling of a transfer run, from the stored checkpoints only (no data, no model).

Definitions
-----------
- Layers: every layer of the checkpoint that has a `<layer>/kernel` (the conv and dense layers among
  `rltx.models.transferable_layers`, and the head `HEAD`); a layer's parameters are its kernel and,
  when it has one, its bias ("<layer>/kernel", "<layer>/bias"), taken together as in the A.4 norms.
  Normalisation layers (gamma/beta, BatchNorm statistics) are not included. Checkpoints store no
  layer order, so layers are listed in natural name order (conv_2 before conv_10), head last.
- Distance of a layer to its reference (Liu et al., Sec. 3: "the Frobenius norm of the deviation
  between fine-tuned weight W and pretrained weight W0"): ||W_l - W0_l||_F, computed in float64.
  reference="init": W0 is the run's own step-0 checkpoint, its starting point (for a transfer run:
  the rescaled source layers and the fresh ones; Neyshabur et al., App. B.3 "distance to
  initialization per module"). reference="source": W0 is the source run's checkpoint at the step
  the transfer started from (identity "sources" / "from_step"), unscaled; only the transferred
  layers (transfer "layers") have one, the others are NaN.
- Totals over the layers with a reference:
  `distance_liu` = (1 / sqrt(n)) * sum_l ||W_l - W0_l||_F, with n the number of training examples of
  the run (Liu et al., Sec. 3: "we compute the sum of deviations in all layers (1/sqrt(n)) sum_l
  ||W(l) - W0(l)||_F", "where n denotes the number of target examples");
  `distance_total` = sqrt(sum_l ||W_l - W0_l||_F^2), the L2 norm of the whole parameter difference
  (Neyshabur et al., App. B.3 / Table 8 "overall distance"; the appendix gives no formula, this is
  the L2 norm of the concatenated parameters).
- `other`: the L2 distance per module between two runs at the same step, ||W_l^a - W_l^b||_F, and
  its overall L2 norm (Neyshabur et al., App. B.3, Figure 10 "l2 distance between modules of two
  instances"). Both runs must have the same layers with the same shapes.
- Rescaling of a transfer run (Maennel et al., A.4): the stored factor/<layer>, and the L2 norms
  (kernel and bias) of the layer at the source's initialisation, in the source at the transfer step,
  and in the transfer run at step 0; `norm_ratio` = transferred / source, which equals the factor
  for an L2 or L1 rescaling unless the biases were zeroed (`zero_transferred_biases`). With
  `rescaling: l2` the transferred norm equals the source's initial norm (A.4).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from rltx import store
from rltx.analysis.results import Result
from rltx.errors import UsageError
from rltx.models import HEAD
from rltx.runs import Run, check_same_model, open_run, select_steps

REFERENCES = ("init", "source")


def _natural(name: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def weight_layers(weights: dict[str, np.ndarray]) -> list[str]:
    """Layers with a kernel, in natural name order, the head last."""
    layers = sorted({key.rsplit("/", 1)[0] for key in weights if key.endswith("/kernel")}, key=_natural)
    return [name for name in layers if name != HEAD] + ([HEAD] if HEAD in layers else [])


def layer_parameters(weights: dict[str, np.ndarray], layer: str) -> list[str]:
    """The parameter names of a layer: its kernel and, if it has one, its bias."""
    return [name for name in (f"{layer}/kernel", f"{layer}/bias") if name in weights]


def layer_norm(weights: dict[str, np.ndarray], layer: str) -> float:
    """L2 norm of the layer's kernel and bias together (float64)."""
    names = layer_parameters(weights, layer)
    return float(np.sqrt(sum(np.sum(np.square(weights[n].astype(np.float64))) for n in names)))


def layer_distance(a: dict[str, np.ndarray], b: dict[str, np.ndarray], layer: str) -> float:
    """||W_a - W_b||_F over the layer's kernel and bias together (float64)."""
    names = layer_parameters(a, layer)
    if names != layer_parameters(b, layer) or any(a[n].shape != b[n].shape for n in names):
        raise ValueError(f"layer {layer} has different parameters in the two weight sets")
    return float(np.sqrt(sum(np.sum(np.square(a[n].astype(np.float64) - b[n].astype(np.float64))) for n in names)))


def _shapes(weights: dict[str, np.ndarray], layers: list[str]) -> dict[str, tuple]:
    return {n: weights[n].shape for layer in layers for n in layer_parameters(weights, layer)}


class _Source:
    """The source of a weights-mode transfer run: its checkpoint at the transfer step and at step 0."""

    def __init__(self, run: Run, *, required: bool):
        self.weights = self.initial = None
        self.layers: list[str] = []
        self.missing = ""
        record = run.record
        sources, steps, digests = record.sources, record.from_steps, record.source_digests
        if record.transfer.get("mode") == "covariance" or len(sources) != 1:
            if required:
                raise UsageError(f"--reference source needs a transfer that copied weights; {run.run_dir} sampled its "
                                 "first layer (transfer_mode: covariance); use --reference init")
            return
        self.layers = record.transferred_layers
        source, step = store.located_source(run.run_dir, record), int(steps[0])
        if source is None:
            if required:
                raise UsageError(f"the source run {sources[0]} of {run.run_dir} is not found (nor next to it); "
                                 "restore it there or use --reference init")
            self.missing = sources[0]
            return
        path = store.checkpoint_path(source, step)  # a source found beside the run already had the recorded sha256
        if source == Path(sources[0]) and path.exists() and digests and store.checkpoint_sha256(source, step) != digests[0]:
            if required:
                raise UsageError(f"the checkpoint {path} is not the one {run.run_dir} started from (its sha256 "
                                 "differs); restore the original source run or use --reference init")
            self.missing = f"{path} (changed since the transfer)"
            return
        self.weights, self.initial = store.read_checkpoint(source, step), store.read_checkpoint(source, 0)


def analyze_weights(run_paths, *, step=None, all_steps=False, reference="init", other=None) -> Result:
    """Per layer ||W - W0||_F (W0: the run's step-0 checkpoint, or its source for reference='source'),
    the totals of Liu et al. Sec. 3 and Neyshabur et al. B.3, the per-module L2 distance to `other` at
    the same steps, and the rescaling factors and norms of transfer runs (see the module docstring)."""
    runs, other_run = _open_runs(run_paths, reference, other)
    layers: list[str] | None = None
    rows = _DistanceRows()
    rescaling = {"run": [], "factor": [], "source_init_norm": [], "source_norm": [], "transferred_norm": []}
    steps_used, missing_sources = {}, []
    for index, run in enumerate(runs):
        initial = _initial_weights(run, reference)
        steps_used[str(run.run_dir)] = steps = select_steps(run, step, all_steps)
        layers = _same_layers(layers, weight_layers(initial), runs[0], run)
        source = _Source(run, required=reference == "source") if run.kind == "transfer" else None
        if source is not None and source.missing:
            missing_sources.append(source.missing)
        ref, compared = (initial, layers) if reference == "init" else (source.weights, source.layers)
        initial_shapes = _shapes(initial, layers)
        for s in steps:
            weights = store.read_checkpoint(run.run_dir, s)
            if _shapes(weights, layers) != initial_shapes:
                raise UsageError(f"{store.checkpoint_path(run.run_dir, s)} and the run's step-0 checkpoint hold layers "
                                 "of different shapes: one is a checkpoint of another architecture; restore the "
                                 "run's own")
            rows.add(index, s, [layer_distance(weights, ref, layer) if layer in compared else np.nan
                                for layer in layers], len(run.train_indices))
            if other_run is not None:
                rows.add_other(_distances_to_other(weights, run, other_run, s, layers))
        if source is not None:
            _add_rescaling(rescaling, index, run.record, initial, source, layers)
    arrays = _weight_arrays(runs, layers, rows, rescaling, other_run)
    inputs = {"runs": [str(r.run_dir) for r in runs], "steps": steps_used, "reference": reference,
              "other": str(other_run.run_dir) if other_run is not None else None, "layers": layers,
              "distance_liu": "sum over layers of ||W_l - W0_l||_F / sqrt(num_examples) (Liu et al. Sec. 3)",
              "distance_total": "sqrt(sum over layers of ||W_l - W0_l||_F^2) (Neyshabur et al. B.3)",
              "sources_missing": missing_sources}
    return Result("weights", inputs, arrays, _weight_table(runs, layers, rows, reference, other_run))


def _open_runs(run_paths, reference: str, other) -> tuple[list[Run], Run | None]:
    if reference not in REFERENCES:
        raise UsageError(f"reference must be one of {', '.join(REFERENCES)}, got {reference!r}")
    if isinstance(run_paths, (str, Path)):
        run_paths = [run_paths]
    runs = [open_run(path) for path in run_paths]
    if not runs:
        raise UsageError("no runs given; pass one or more run directories")
    other_run = open_run(other) if other is not None else None
    if other_run is not None:
        check_same_model([other_run, *runs], "runs compared with --other")
    return runs, other_run


def _initial_weights(run: Run, reference: str) -> dict[str, np.ndarray]:
    """The run's step-0 checkpoint, after checking the run can be measured against `reference`."""
    if reference == "source" and run.kind != "transfer":
        raise UsageError(f"--reference source needs a transfer run; {run.run_dir} is a {run.kind} run with no "
                         "source weights; use --reference init")
    if 0 not in run.steps:
        raise UsageError(f"{run.run_dir} has no step-0 checkpoint (its initial weights); rerun it with rltx, "
                         "which always keeps step 0")
    return store.read_checkpoint(run.run_dir, 0)


def _same_layers(layers: list[str] | None, run_layers: list[str], first: Run, run: Run) -> list[str]:
    if layers is not None and run_layers != layers:
        raise UsageError(f"layers differ between runs: {first.run_dir} has {', '.join(layers)}; "
                         f"{run.run_dir} has {', '.join(run_layers)}; analyse runs of one architecture together")
    return run_layers


class _DistanceRows:
    """One row per (run, step): per-layer distances to the reference and their totals, and the
    distances to the other run at the same step."""

    def __init__(self):
        self.run, self.step, self.distance, self.liu, self.total = [], [], [], [], []
        self.other_distance, self.other_total = [], []

    def add(self, index: int, step: int, distances: list[float], num_examples: int) -> None:
        row = np.array(distances, dtype=np.float64)
        finite = row[np.isfinite(row)]
        self.run.append(index)
        self.step.append(step)
        self.distance.append(row)
        self.liu.append(finite.sum() / np.sqrt(num_examples))
        self.total.append(np.sqrt(np.sum(finite ** 2)))

    def add_other(self, between: np.ndarray) -> None:
        self.other_distance.append(between)
        self.other_total.append(np.sqrt(np.sum(between ** 2)))


def _distances_to_other(weights, run: Run, other_run: Run, step: int, layers: list[str]) -> np.ndarray:
    """||W_l^a - W_l^b||_F per layer between the run and `other_run` at the same step."""
    theirs = store.read_checkpoint(other_run.run_dir, step)
    if weight_layers(theirs) != layers or _shapes(theirs, layers) != _shapes(weights, layers):
        raise UsageError(f"layers differ between {run.run_dir} and {other_run.run_dir} (names or shapes); "
                         "compare runs of the same architecture and number of classes")
    return np.array([layer_distance(weights, theirs, layer) for layer in layers])


def _add_rescaling(rescaling: dict, index: int, record: store.RunRecord, initial, source: _Source, layers) -> None:
    """A transfer run's A.4 factors and the norms of its layers at the source's step 0, in the source, and
    after the transfer."""
    factors = {k.split("/", 1)[1]: float(v) for k, v in record.transfer.items() if k.startswith("factor/")}
    have = source.weights is not None
    rescaling["run"].append(index)
    rescaling["factor"].append([factors.get(layer, np.nan) for layer in layers])
    rescaling["transferred_norm"].append([layer_norm(initial, layer) if layer in factors else np.nan
                                          for layer in layers])
    for name, weights in (("source_norm", source.weights), ("source_init_norm", source.initial)):
        rescaling[name].append([layer_norm(weights, layer) if have and layer in source.layers else np.nan
                                for layer in layers])


def _weight_arrays(runs, layers, rows: _DistanceRows, rescaling: dict, other_run) -> dict[str, np.ndarray]:
    num_layers = len(layers)
    arrays = {
        "runs": store.string_array(r.run_dir for r in runs),
        "layers": store.string_array(layers),
        "num_examples": np.array([len(r.train_indices) for r in runs], dtype=np.int64),
        "row_run": np.array(rows.run, dtype=np.int64),
        "row_step": np.array(rows.step, dtype=np.int64),
        "distance": np.array(rows.distance, dtype=np.float64).reshape(-1, num_layers),
        "distance_liu": np.array(rows.liu, dtype=np.float64),
        "distance_total": np.array(rows.total, dtype=np.float64),
    }
    if other_run is not None:
        arrays.update({"other": store.string_array([other_run.run_dir]),
                       "other_distance": np.array(rows.other_distance, dtype=np.float64).reshape(-1, num_layers),
                       "other_distance_total": np.array(rows.other_total, dtype=np.float64)})
    arrays["rescaling/run"] = np.array(rescaling["run"], dtype=np.int64)
    for name in ("factor", "source_init_norm", "source_norm", "transferred_norm"):
        arrays[f"rescaling/{name}"] = np.array(rescaling[name], dtype=np.float64).reshape(-1, num_layers)
    with np.errstate(divide="ignore", invalid="ignore"):
        arrays["rescaling/norm_ratio"] = arrays["rescaling/transferred_norm"] / arrays["rescaling/source_norm"]
    return arrays


def _weight_table(runs, layers, rows: _DistanceRows, reference: str, other_run) -> list[dict]:
    table = []
    for i, (r, s) in enumerate(zip(rows.run, rows.step)):
        scale = 1 / np.sqrt(len(runs[r].train_indices))
        entries = [(layer, rows.distance[i][j], rows.distance[i][j] * scale,
                    rows.other_distance[i][j] if other_run is not None else None) for j, layer in enumerate(layers)]
        entries.append(("(all layers)", rows.total[i], rows.liu[i],
                        rows.other_total[i] if other_run is not None else None))
        for layer, value, normalised, between in entries:
            row = {"run": runs[r].run_dir.name, "step": s, "layer": layer, f"||W-W0|| ({reference})": float(value),
                   "/sqrt(n) (Liu)": float(normalised)}
            if other_run is not None:
                row["||W-W_other||"] = float(between)
            table.append(row)
    return table
