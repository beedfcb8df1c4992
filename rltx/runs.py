"""The one reader of stored runs: every command opens a run, a checkpoint or a model at a step here."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from rltx import store
from rltx.config import Recipe, make_recipe
from rltx.data import to_model_input
from rltx.distribute import configure_gpus
from rltx.errors import UsageError
from rltx.loop import assign_weights
from rltx.models import ARCHITECTURES, HEAD
from rltx.tasks import build_recipe_model, open_recipe_source


@dataclass(frozen=True)
class Run:
    """A stored run: its recipe, its run.h5 record (kind, samples of A.1, status, identity, how a
    transfer began) and its stored checkpoints."""
    run_dir: Path
    recipe: Recipe
    record: store.RunRecord
    steps: tuple[int, ...]

    @property
    def kind(self) -> str:
        return self.record.kind  # pretrain | transfer | scratch

    @property
    def samples(self) -> dict[str, np.ndarray]:
        return self.record.samples

    @property
    def rltx_version(self) -> str:
        """Of the program that made the run (its init_scale reading: models.py)."""
        return self.record.environment.get("version/rltx", "unknown")

    @property
    def init_file(self) -> str | None:
        """Where the init file the run began from is now (store.located_init: beside a moved run)."""
        return store.located_init(self.run_dir, self.record)

    @property
    def num_classes(self) -> int:
        return self.recipe.num_classes_upstream if self.kind == "pretrain" else self.recipe.num_classes_downstream

    @property
    def final_step(self) -> int:
        """The step a completed run ends at, whose checkpoint it always stores."""
        return self.recipe.steps if self.kind == "pretrain" else self.recipe.steps_downstream

    @property
    def train_indices(self) -> np.ndarray:
        """The examples this run was trained on (upstream for pre-training, downstream for transfer)."""
        return self.samples["upstream_indices" if self.kind == "pretrain" else "downstream_indices"]


@dataclass(frozen=True)
class Checkpoint:
    """A run's weights at one stored step, with its step-0 weights (what a transfer starts from, A.4)."""
    run_dir: Path
    recipe: Recipe
    step: int
    weights: dict[str, np.ndarray]
    initial: dict[str, np.ndarray]
    upstream_indices: np.ndarray
    digest: str  # sha256 of the checkpoint file, so a transfer records exactly what it started from
    rltx_version: str  # of the program that made the run (Run.rltx_version)
    health: str  # its run record's health check (rltx.health): a flagged source is named, not hidden


def open_run(path: str | Path) -> Run:
    """The run in directory `path` (or of its run.h5)."""
    run_dir = Path(path)
    if run_dir.name == store.RUN_FILE:
        run_dir = run_dir.parent
    elif run_dir.is_file():
        raise UsageError(f"{path} is a file, not a run directory; give the folder a run was written to")
    record = store.read_run_record(run_dir)
    return Run(run_dir.resolve(), make_recipe(record.config), record,
               tuple(store.checkpoint_steps_stored(run_dir)))


def open_checkpoint(path: str | Path, step: int | None = None) -> Checkpoint:
    """The run at checkpoint `step` (default: its last, which needs a completed run)."""
    run = open_run(path)
    if run.kind != "pretrain":  # its upstream set (A.1) is what keeps a transfer's downstream set fresh
        raise UsageError(f"source {path} is a {run.kind} run; transfer from a pre-training run (rltx pretrain)")
    if step is None:
        if run.record.status != "completed":
            raise UsageError(f"source {path} is {store.live_status(run.run_dir, run.record.status)}, not completed; finish it or pass "
                             f"--from-step with one of its stored steps: {', '.join(map(str, run.steps)) or 'none'}")
        check_final_checkpoint(run, f"source {path}", "--from-step")
        step = run.final_step
    weights = store.read_checkpoint(run.run_dir, step)
    digest = store.checkpoint_sha256(run.run_dir, step)
    return Checkpoint(run.run_dir, run.recipe, step, weights, store.read_checkpoint(run.run_dir, 0),
                      run.samples["upstream_indices"], digest, run.rltx_version, run.record.health)


def check_final_checkpoint(run: Run, name: str, option: str | None) -> None:
    """A completed run always stores its final checkpoint; without it the run is damaged, and an earlier
    step is used only when asked for by `option` (None: the command takes the final step only), never silently."""
    if run.final_step not in run.steps:
        fix = (f" or pass {option} with one of its stored steps: {', '.join(map(str, run.steps)) or 'none'}"
               if option else "")
        raise UsageError(f"{name} is marked completed but its final checkpoint (step {run.final_step}) is missing: "
                         f"the run is damaged; restore {store.checkpoint_path(run.run_dir, run.final_step).name}{fix}")


def check_distinct(paths, option: str) -> None:
    """Each source run once: a run given twice would count twice in a pooled Sigma_w."""
    twice = store.first_repeated(paths)
    if twice is not None:
        raise UsageError(f"{twice} is given twice to {option}; give each run once")


def check_distinct_checkpoints(runs_and_digests, option: str) -> None:
    """Each source once by content too: a copy of a run (the same checkpoint bytes, sha256) would also
    count twice in a pooled Sigma_w."""
    seen = {}
    for run_dir, digest in runs_and_digests:
        if digest in seen:
            raise UsageError(f"{run_dir} holds the same checkpoint as {seen[digest]} (equal sha256: the same weights, "
                             f"a copy or one initialisation); give each run once to {option}")
        seen[digest] = run_dir


def step_taken_from(transfer: Run, source_dir: Path) -> int | None:
    """The step of `source_dir` that `transfer` started from, or None when it is not one of its sources:
    a source named by its path, else (runs moved or copied together) one whose checkpoint at a recorded
    step is the recorded bytes (sha256)."""
    record, source_dir = transfer.record, Path(source_dir).resolve()
    sources = [Path(p).resolve() for p in record.sources]
    if source_dir in sources:
        return int(record.from_steps[sources.index(source_dir)])
    for step, digest in zip(record.from_steps, record.source_digests):
        path = store.checkpoint_path(source_dir, int(step))
        if path.exists() and store.checkpoint_sha256(source_dir, int(step)) == digest:
            return int(step)
    return None


def check_source_unchanged(transfer: Run, source_dir: Path, step: int) -> None:
    """The checkpoint a transfer run started from must still be the one it recorded (sha256)."""
    sources = [Path(p).resolve() for p in transfer.record.sources]
    digests = transfer.record.source_digests
    if Path(source_dir).resolve() not in sources or len(digests) != len(sources):
        return
    path = store.checkpoint_path(Path(source_dir), step)
    recorded = digests[sources.index(Path(source_dir).resolve())]
    if path.exists() and store.checkpoint_sha256(source_dir, step) != recorded:
        raise UsageError(f"{path} is not the checkpoint {transfer.run_dir} started from (its sha256 differs); "
                         "restore the original source run")


def check_same_model(runs: list[Run], what: str = "these runs") -> None:
    """Runs pooled or paired must share the architecture keys and the shapes of their stored layers."""
    first = runs[0]
    keys = ("architecture",) + ARCHITECTURES[first.recipe.architecture].options
    shapes = _layer_shapes(first)
    for run in runs[1:]:
        differ = [f"{k}={getattr(first.recipe, k)!r} vs {getattr(run.recipe, k)!r}" for k in keys
                  if getattr(run.recipe, k, None) != getattr(first.recipe, k)]
        if not differ and _layer_shapes(run) != shapes:
            differ = ["their stored layer shapes differ"]
        if differ:
            raise UsageError(f"{what} need one architecture, but {run.run_dir} differs from {first.run_dir} "
                             f"({'; '.join(differ[:3])}); give runs of the same architecture")


def check_same_distribution(runs: list[Run], what: str) -> None:
    """Runs pooled against one Sigma_x must see inputs of one law (`DataSpec.distribution`): rotated Gaussian data
    of another seed has another covariance, and the pooled filters would be measured against the wrong one."""
    first = runs[0].recipe.data.distribution()
    for run in runs[1:]:
        theirs = run.recipe.data.distribution()
        differ = [f"{k}={first.get(k)!r} vs {theirs.get(k)!r}" for k in sorted(first.keys() | theirs.keys())
                  if first.get(k) != theirs.get(k)]
        if differ:
            raise UsageError(f"{what} need inputs of one distribution, but {run.run_dir} differs from "
                             f"{runs[0].run_dir} ({'; '.join(differ[:3])}); give runs of the same data (rotated or "
                             "labelled Gaussian data: the same gaussian_seed)")


def _layer_shapes(run: Run) -> dict[str, tuple]:
    if not run.steps:
        return {}
    with store.open_h5(store.checkpoint_path(run.run_dir, run.steps[0])) as handle:
        shapes = {}
        if "weights" in handle:
            handle["weights"].visititems(lambda name, item: shapes.__setitem__(name, item.shape)
                                         if hasattr(item, "shape") else None)
        # the head's width follows the number of classes, in which pooled runs may differ
        return {name: shape for name, shape in shapes.items() if not name.startswith(f"{HEAD}/")}


def select_steps(run: Run, step: int | None, all_steps: bool) -> list[int]:
    """The checkpoints to analyse: one given step, all stored ones (a curve over training), or the last. A
    completed run that lost its final checkpoint is damaged: its curve or last step would end early unseen."""
    if step is None and run.record.status == "completed":
        check_final_checkpoint(run, str(run.run_dir), "--step")
    if step is None and not run.steps:
        raise UsageError(f"{run.run_dir} has no checkpoint yet; wait for its first one")
    if all_steps:
        return list(run.steps)
    if step is None:
        return [run.steps[-1]]
    if step not in run.steps:
        raise UsageError(f"{run.run_dir} has no checkpoint at step {step}; stored steps: "
                         f"{', '.join(map(str, run.steps))}")
    return [step]


def model_at(run: Run, step: int, input_shape: tuple[int, ...]) -> keras.Model:
    """The run's model with the weights of its checkpoint at `step`."""
    configure_gpus()  # shared GPUs (RLTX_GPU_MEMORY_MB, or memory grown as needed), as training sets them up
    model = build_recipe_model(run.recipe, input_shape, run.num_classes, with_init_file=False)
    assign_weights(model.weights, store.read_checkpoint(run.run_dir, step))
    return model


def load_model(run_dir: str | Path, step: int | None = None) -> keras.Model:
    """The Keras model of a stored run with the weights of its checkpoint at `step` (default: the
    last stored). The input shape is read from one of the run's held-out examples, so the run's
    data must be reachable."""
    run = open_run(run_dir)
    chosen = select_steps(run, step, all_steps=False)[0]
    return model_at(run, chosen, tuple(examples(run, "test", limit=1).shape[1:]))


def examples(run: Run, which: str, limit: int = 0) -> np.ndarray:
    """Model inputs (scaled as in training, A.3) of the run's training set or held-out set;
    `limit` > 0 keeps the first `limit` of them (in stored order, which is sorted by index)."""
    if limit < 0:
        raise UsageError(f"num_examples {limit} is negative; pass 0 for all examples or a positive count")
    configure_gpus()  # before the data's first TensorFlow op initialises the devices
    source = open_recipe_source(run.recipe)
    if which == "train":
        indices, split = run.train_indices, source.train
    else:
        indices = run.samples["test_indices"]
        split = source.train if bool(run.samples["test_from_train"]) else source.test
    if limit:
        indices = indices[:limit]
    return np.asarray(to_model_input(split(indices).x))


def kernel_filters(run: Run, step: int, layer: str) -> np.ndarray:
    """The filters of `layer` as columns of a [fan_in, filters] matrix, in the (row, column, channel)
    order of its input patches (the order `rltx.analysis.patches` uses)."""
    weights = store.read_checkpoint(run.run_dir, step)
    name = f"{layer}/kernel"
    if name not in weights:
        layers = sorted({key.split("/")[0] for key in weights if key.endswith("/kernel")})
        raise UsageError(f"{run.run_dir} has no layer {layer!r} with a kernel; layers: {', '.join(layers)}")
    kernel = weights[name].astype(np.float64)
    return kernel.reshape(-1, kernel.shape[-1])
