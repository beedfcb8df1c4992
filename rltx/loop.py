"""The training loop shared by every command that trains (pretrain, transfer), read top to bottom.

`train(plan, run_dir, ...)` trains a model on a labelled training set with SGD + momentum and the
A.3 schedule under a tf.distribute strategy, optionally computing in mixed precision (the weights,
the logits and the loss stay float32). At each eval point it stores metrics on the *whole*
training set and the held-out set (A.3), kept checkpoints and a resume state; rerun on the same
directory it resumes from the last resume state and ends with the same weights.
"""
from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
import time
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from rltx import hyperrule, native_memory, store
from rltx.config import Recipe, key_default, run_defining
from rltx.distribute import (WholeSet, check_batch_divides, choose_strategy, distributed_batches, host_tensor,
                             is_chief, replica_part, use_xla, whole_set)
from rltx.environment import describe_environment
from rltx.errors import UsageError
from rltx.events import EventLog
from rltx.health import change_line, judge
from rltx.models import HEAD, transferable_layers
from rltx.progress import Reporter

# The resume state (weights and optimizer slots: twice the model) is written at an eval point only once this
# long has passed since the last one, and always at the last step and on a signal: a killed run loses at most
# this much training, and short runs with many eval points do not rewrite it at each (Fig. 5's quick profile,
# then 24 runs of about 10 s with 11 eval points each, wrote 9 GB of resume states, a minute of its wall time).
STATE_EVERY_SECONDS = 60.0
# Example indices of the batch order built at a time (128 MiB of int64): the order of a whole run is steps x
# batch indices, 25 GB for 50M steps of 64, which hung a run before step 0.
SEGMENT_INDICES = 2 ** 24


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; the resume state was saved at `step`."""

    def __init__(self, step: int, run_dir: Path):
        super().__init__(f"interrupted at step {step}; state saved in {run_dir}. "
                         "Rerun the same command to resume")
        self.step = step


def _last_finite(metrics: list[dict]) -> str:
    """The last eval point whose whole-set train loss was finite, in a few words."""
    row = next((r for r in reversed(metrics) if np.isfinite(r.get("train_loss", np.nan))), None)
    if row is None:
        return "no eval point had a finite loss"
    return (f"last finite eval point: step {row['step']}, train loss {row['train_loss']:.4g}, "
            f"train accuracy {row.get('train_accuracy', float('nan')):.4f}")


class Diverged(Exception):
    """The training loss became NaN or infinite; `health` is the run record's flag for it."""

    def __init__(self, message: str, health: str):
        super().__init__(message)
        self.health = health


@dataclass(frozen=True)
class RunSummary:
    run_dir: Path
    status: str
    step: int
    metrics: dict


@dataclass(frozen=True)
class TrainPlan:
    """The optimisation of one run (A.3), whatever the task."""
    total_steps: int
    learning_rate: float
    momentum: float
    batch_size: int
    seed: int
    num_eval_points: int
    eval_batch_size: int
    checkpoint_every: int
    checkpoint_steps: tuple[int, ...]
    dtype_policy: str  # Keras dtype policy of the model's layers: float32, mixed_float16, mixed_bfloat16
    jit_compile: str | bool = "auto"  # XLA for the steps: True, False, or auto (on GPUs only)
    tensorboard: bool = True  # also write RUN/tensorboard/ event files (rltx.events)
    schedule_steps: int | None = None  # A.3's schedule length (None: total_steps); longer trains its first part

    @property
    def schedule_length(self) -> int:
        return self.schedule_steps or self.total_steps

    @classmethod
    def from_recipe(cls, recipe: Recipe, *, downstream: bool) -> "TrainPlan":
        """Upstream: the recipe's schedule; downstream: the same unless overridden (A.4)."""
        learning_rate = recipe.learning_rate
        if downstream and recipe.learning_rate_downstream is not None:
            learning_rate = recipe.learning_rate_downstream
        policy = "float32" if recipe.mixed_precision == "none" else recipe.mixed_precision
        return cls(recipe.steps_downstream if downstream else recipe.steps, learning_rate, recipe.momentum,
                   recipe.batch_size, recipe.seed, recipe.num_eval_points, recipe.eval_batch_size,
                   recipe.checkpoint_every, tuple(recipe.checkpoint_steps), policy, recipe.jit_compile, recipe.tensorboard,
                   None if downstream else recipe.schedule_steps)


@dataclass(frozen=True)
class Examples:
    """What a run trains and evaluates on: inputs (uint8 pixels or floats) and int64 labels."""
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


@dataclass(frozen=True)
class Training:
    """What a command trains in a run directory: its plan, the record to store (kind, samples, ...),
    the examples, and the builder of its step-0 model, called with the plan's dtype policy."""
    plan: TrainPlan
    record: store.RunRecord
    examples: Examples
    make_model: Callable[[str], keras.Model]


# --- A.3: the optimisation ----------------------------------------------------------------

class PaperSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A.3: the initial learning rate, divided by 3 after 1/3 and 2/3 of the total steps."""

    def __init__(self, base_learning_rate: float, total_steps: int):
        self.base_learning_rate, self.total_steps = base_learning_rate, total_steps

    def __call__(self, step):
        first, second = hyperrule.learning_rate_boundaries(self.total_steps)
        step = tf.cast(step, tf.int64)
        drops = tf.cast(step >= first, tf.float32) + tf.cast(step >= second, tf.float32)
        return self.base_learning_rate / tf.pow(3.0, drops)

    def get_config(self):
        return {"base_learning_rate": self.base_learning_rate, "total_steps": self.total_steps}


def make_optimizer(plan: TrainPlan) -> keras.optimizers.Optimizer:
    """A.3's SGD; under float16 wrapped in dynamic loss scaling, since float16's 5 exponent bits
    flush small gradients to zero (bfloat16 has float32's exponent range and needs none)."""
    sgd = keras.optimizers.SGD(PaperSchedule(plan.learning_rate, plan.schedule_length), momentum=plan.momentum,
                               name="sgd")
    return keras.optimizers.LossScaleOptimizer(sgd) if plan.dtype_policy == "mixed_float16" else sgd


class Steps:
    """The compiled pieces of the loop: a chunk of SGD steps, a pass over a whole set, and a
    gather of a few numbers from every worker. With `jit_compile` one replica's SGD step and
    evaluation batch are XLA-compiled (the loops around them read tf.data iterators and host
    arrays, which XLA cannot compile)."""

    def __init__(self, model: keras.Model, optimizer: keras.optimizers.Optimizer,
                 strategy: tf.distribute.Strategy, global_batch: int, jit_compile: bool = False):
        self.model, self.optimizer, self.strategy, self.global_batch = model, optimizer, strategy, global_batch
        compile_ = functools.partial(tf.function, jit_compile=True) if jit_compile else (lambda step: step)
        self.sgd_step, self.eval_batch = compile_(self._sgd_step), compile_(self._eval_batch)
        self.train_chunk = tf.function(self._train_chunk)
        self.evaluate = tf.function(self._evaluate)
        self.gather = tf.function(self._gather)

    def _sgd_step(self, images, labels):
        with tf.GradientTape() as tape:
            logits = self.model(images, training=True)  # float32 whatever the policy (models.py)
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
            # Sum over this replica's examples / global batch: the replicas' gradients add up
            # to the gradient of the mean loss over the global batch.
            loss = tf.reduce_sum(losses) / self.global_batch
            scaled = self.optimizer.scale_loss(loss)  # times the loss scale, if any (the optimizer unscales)
        gradients = tape.gradient(scaled, self.model.trainable_variables)
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            gradients = _overflow_everywhere(gradients)
        self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
        return tf.stack([tf.reduce_sum(losses), _correct(logits, labels)])

    def _train_chunk(self, iterator, num_steps):
        totals = tf.zeros(2, tf.float64)
        for _ in tf.range(num_steps):
            images, labels = next(iterator)
            per_replica = self.strategy.run(self.sgd_step, args=(images, labels))
            totals += tf.cast(self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None), tf.float64)
        return totals

    def _eval_batch(self, images, labels, weights):
        """[loss sum, hits, examples, then the examples predicted as each class]."""
        logits = self.model(images, training=False)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
        predicted = tf.argmax(logits, -1)
        hits = tf.cast(tf.equal(predicted, labels), tf.float32)
        per_class = tf.reduce_sum(tf.one_hot(predicted, logits.shape[-1]) * weights[:, None], axis=0)
        totals = tf.stack([tf.reduce_sum(losses * weights), tf.reduce_sum(hits * weights), tf.reduce_sum(weights)])
        return tf.concat([totals, per_class], axis=0)

    def _evaluate(self, whole: WholeSet):
        totals = tf.zeros(3 + self.model.output_shape[-1], tf.float64)  # float64: sums over up to millions of examples
        for batch in tf.range(tf.shape(whole.rows)[0]):
            per_replica = self.strategy.run(self._evaluate_replica_part, args=(whole, batch))
            totals += tf.cast(self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None), tf.float64)
        return totals

    def _evaluate_replica_part(self, whole: WholeSet, batch):
        return self.eval_batch(*replica_part(whole, batch))

    def _gather(self, values):
        """`values` of every replica of every worker, stacked: [replicas, ...], the same everywhere."""
        def stack(value):
            return tf.distribute.get_replica_context().all_gather(value[tf.newaxis], axis=0)
        return self.strategy.experimental_local_results(self.strategy.run(stack, args=(values,)))[0]


def _overflow_everywhere(gradients):
    """LossScaleOptimizer skips a step whose gradients overflowed, but it checks one replica's
    gradients before they are summed: make an overflow on any replica show on all of them, so that
    all skip the same steps (else the sum carries the inf into the weights, or a worker that
    skips waits forever for one that applies)."""
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients])
    overflows = tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(finite, tf.float32))
    poison = tf.where(overflows > 0, np.float32("nan"), np.float32(0.0))
    return [g + poison for g in gradients]


def _correct(logits, labels):
    return tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1), labels), tf.float32))


def weights_of(variables) -> dict[str, np.ndarray]:
    """Variables by path: `model.weights` (BatchNorm statistics included) or `optimizer.variables`."""
    return {variable.path: np.asarray(variable.numpy()) for variable in variables}


def assign_weights(variables, weights: dict[str, np.ndarray], fix: str = "restore the run's own checkpoint") -> None:
    missing = [v.path for v in variables if v.path not in weights]
    if missing:
        raise UsageError(f"stored weights lack {', '.join(missing[:3])}; they belong to another architecture")
    reshaped = [f"{v.path} {np.shape(weights[v.path])} for {tuple(v.shape)}" for v in variables
                if tuple(np.shape(weights[v.path])) != tuple(v.shape)]
    if reshaped:
        raise UsageError(f"stored weights have other shapes ({', '.join(reshaped[:2])}); they belong to another "
                         f"architecture: {fix}")
    for variable in variables:
        variable.assign(weights[variable.path])


def layer_norms(model: keras.Model) -> dict[str, float]:
    """L2 norm of all parameters of each transferable layer and the head (A.4 rescales by these)."""
    names = transferable_layers(model) + [HEAD]
    return {name: float(np.sqrt(sum(np.sum(np.square(w.numpy(), dtype=np.float64))
                                    for w in model.get_layer(name).weights))) for name in names}


# --- the run ----------------------------------------------------------------------------

def run(run_dir: Path, identity: dict, prepare: Callable[[store.RunRecord | None], Training], *,
        resume: bool, reporter: Reporter) -> RunSummary:
    """The one lifecycle of a run directory, from lock to final status: check that the run already
    there (if any) is this one, do nothing if it completed, else train what `prepare(existing
    record or None)` gives. Several workers (TF_CONFIG) share run_dir; only the chief writes there."""
    writer = is_chief()
    with run_directory(run_dir, identity, resume, writer) as existing:
        if existing is not None and existing.status == "completed":
            return _completed_summary(run_dir, reporter)
        training = prepare(existing)
        if existing is not None:  # a resumed run keeps its birth and its health (no repeated warning)
            training.record.created, training.record.health = existing.created, existing.health
        return train(training.plan, run_dir, training.record, training.examples, training.make_model,
                     reporter, writer)


def _start(run_dir: Path, identity: dict, resume: bool):
    """The record already in `run_dir` (None for a new run), after checking it is the same run.

    `identity` is everything that defines the run (the recipe, the sources of a transfer); a
    directory holding a run with another identity is refused, so nothing is ever overwritten."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"{run_dir} is a file, not a run directory; choose another --out")
    store.check_outside_runs(run_dir, "--out")
    if not (run_dir / store.RUN_FILE).exists():
        _refuse_orphans(run_dir)
        return None
    record = store.read_run_record(run_dir)
    kind = identity.get("kind", "pretrain")
    if record.kind != kind:
        raise UsageError(f"{run_dir} holds a {record.kind} run, not a {kind} run; choose another --out")
    if not resume:
        raise UsageError(f"{run_dir} already holds a run ({record.status}); pass --resume to continue it "
                         "or choose another --out")
    stored = {**record.config, **record.identity}
    for name in identity.keys() - stored.keys():  # added to rltx after the run was made: it ran with the default
        if (default := key_default(name)) is not MISSING:
            stored[name] = default
    _known_init_file(run_dir, stored, identity, training_left=record.status != "completed")
    changed = [f"{k}: {stored.get(k)!r} -> {v!r}" for k, v in run_defining(identity).items() if stored.get(k) != v]
    if changed:
        fix = "choose another --out"
        if record.kind == "scratch" and record.paired_with:  # a pair resumes together, from its transfer
            fix = (f"it is the from-scratch pair of {record.paired_with[0]}: resume the pair with the command "
                   f"`rltx show {run_dir}` prints, or {fix}")
        raise UsageError(f"{run_dir} holds another run ({'; '.join(changed[:3])}); {fix}")
    return record


def _known_init_file(run_dir: Path, stored: dict, identity: dict, training_left: bool) -> None:
    """An init file at another path with the recorded sha256 (moved or copied with its run) is the recorded one:
    `stored` takes the new path; one with other bytes, wherever it lies, is refused, and so is a missing file (a run
    moved without it) while the run has training left: the one line gives the digest to look for. A record without
    the digest (older rltx) cannot show either: the path decides."""
    digest, recorded = identity.get("init_digest"), stored.get("init_digest")
    if training_left and identity.get("init_file") and digest is None and recorded is not None:  # no file there
        raise UsageError(f"init_file {identity['init_file']} does not exist; {run_dir} began from the init file of "
                         f"sha256 {recorded}: give that file with --init FILE, or choose another --out")
    if digest is not None and recorded is not None and digest != recorded:
        raise UsageError(f"init_file {identity.get('init_file')} is not the file {run_dir} began from (its sha256 "
                         "differs from the recorded one); give that file, or choose another --out")
    if digest is not None and recorded == digest:
        stored["init_file"] = identity.get("init_file")
    stored.setdefault("init_digest", digest)


def _refuse_orphans(run_dir: Path) -> None:
    """Files of a run whose run.h5 is gone: resuming them would mix another run into this one."""
    orphans = [name for name in (store.STATE_FILE, store.METRICS_FILE) if (run_dir / name).exists()]
    if store.checkpoint_steps_stored(run_dir):
        orphans.append(store.CHECKPOINT_DIR)
    if orphans:
        raise UsageError(f"{run_dir} holds {', '.join(orphans)} of a run without its {store.RUN_FILE}; remove "
                         "them or choose another --out")


def check_directory(run_dir: Path, identity: dict, resume: bool):
    """`_start` with a one-line error for an --out path the file system refuses (a name too long)."""
    try:
        return _start(run_dir, identity, resume)
    except OSError as error:
        raise store.write_failure(run_dir, error) from None


@contextlib.contextmanager
def run_directory(run_dir: Path, identity: dict, resume: bool, writer: bool):
    """The record already in `run_dir` (see `_start`), checked before anything is written; the writer
    then creates the directory and holds its lock. A run refused before its run.h5 exists leaves
    nothing behind (no lock file, no new directory), and a refused command never touches another
    run's lock. A completed run on read-only storage is reported without a lock (nothing is written)."""
    existing = check_directory(run_dir, identity, resume)
    if not writer:
        yield existing
        return
    created, had_lock = not run_dir.exists(), (run_dir / store.LOCK_FILE).exists()
    store.make_directory(run_dir)
    if existing is not None and existing.status == "completed" and not os.access(run_dir, os.W_OK):
        yield existing
        return
    lock = store.RunLock(run_dir).acquire()
    try:
        yield _start(run_dir, identity, resume)  # again under the lock: another writer may have begun
    except (UsageError, store.StoreWriteError, OSError):  # OSError: e.g. an input path too long, named by the CLI
        if not (run_dir / store.RUN_FILE).exists():
            _remove_leftovers(run_dir, created, had_lock)
        raise
    finally:
        lock.release()


def _remove_leftovers(run_dir: Path, created: bool, had_lock: bool) -> None:
    with contextlib.suppress(OSError):
        if not had_lock:
            (run_dir / store.LOCK_FILE).unlink(missing_ok=True)
        if created:
            run_dir.rmdir()  # only if empty


def _completed_summary(run_dir: Path, reporter: Reporter) -> RunSummary:
    """A rerun of a completed run does nothing and reports its final metrics."""
    metrics = store.read_metrics(run_dir)
    if not metrics:
        raise UsageError(f"{run_dir} is marked completed but has no {store.METRICS_FILE}: the run is damaged; "
                         "restore that file or train it again into another --out")
    reporter.message(f"{run_dir} is already completed; nothing to do")
    return RunSummary(run_dir, "completed", metrics[-1]["step"], metrics[-1])


def train(plan: TrainPlan, run_dir: Path, record: store.RunRecord, examples: Examples,
          make_model: Callable[[str], keras.Model], reporter: Reporter, writer: bool) -> RunSummary:
    """Train the model `make_model(plan.dtype_policy)` builds (its weights are those of step 0) and
    store the run (`run` holds the lock). Under several workers, every worker calls this and only
    the `writer` writes."""
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(plan.seed)
    strategy = choose_strategy()
    check_batch_divides(plan.batch_size, strategy)
    check_batch_divides(plan.eval_batch_size, strategy, "eval_batch_size")
    record.environment = describe_environment(strategy)
    if writer:  # the lock is held: temporaries in the run directory are a killed writer's leftovers
        store.remove_stale_temporaries(run_dir)
    return _Run(plan, run_dir, strategy, examples, make_model, record, reporter, writer).execute()


class _Run:
    """The state of one training run between eval points."""

    def __init__(self, plan, run_dir, strategy, examples, make_model, record, reporter, writer):
        self.plan, self.run_dir, self.strategy, self.reporter = plan, run_dir, strategy, reporter
        self.record, self.writer = record, writer
        self.total_steps = plan.total_steps
        self.keep_at = set(hyperrule.checkpoint_steps(self.total_steps, plan.checkpoint_every,
                                                      plan.checkpoint_steps).tolist())
        # Every kept checkpoint also gets metrics, so a table at given iterations (Table 1, E.3) reads them.
        self.eval_at = set(hyperrule.eval_steps(self.total_steps, plan.num_eval_points).tolist()) | self.keep_at
        self.num_train = len(examples.train_y)
        self.train_set = (host_tensor(examples.train_x), host_tensor(examples.train_y))
        self.test_set = (host_tensor(examples.test_x), host_tensor(examples.test_y))
        self.eval_sets = {name: whole_set(images, labels, plan.eval_batch_size, strategy.num_replicas_in_sync)
                          for name, (images, labels) in (("train", self.train_set), ("test", self.test_set))}
        with strategy.scope():
            self.model = make_model(plan.dtype_policy)
            self.optimizer = make_optimizer(plan)
            self.optimizer.build(self.model.trainable_variables)
        self.steps = Steps(self.model, self.optimizer, strategy, plan.batch_size, use_xla(plan.jit_compile, strategy))
        self.stop_signal = None
        self.state_saved_at = None  # time.monotonic() of the last resume state written by this process
        self.events = None  # the TensorBoard view of metrics.h5, opened once the kept rows are known

    def execute(self) -> RunSummary:
        self._write_record("running")
        try:
            with self._signals_checkpoint():
                step, metrics = self._restore()
                self._check_workers_start_at(step)
                if self.writer and self.plan.tensorboard:
                    self.events = EventLog(self.run_dir / store.EVENTS_DIR, metrics)
                step, metrics = self._train(step, metrics)
        except Interrupted:
            self._write_record("interrupted", "stopped by a signal; rerun the same command to resume")
            self.reporter.failure("interrupted", self.record.error)
            raise
        except BaseException as error:
            if isinstance(error, Diverged):  # flagged like a finite blow-up (rltx.health): no verdict counts it
                self.record.health = error.health
            with contextlib.suppress(store.StoreWriteError, UsageError):  # a full disk may refuse this record too
                self._write_record("failed", f"{type(error).__name__}: {error}")
            self.reporter.failure("failed", f"{type(error).__name__}: {error}")
            raise
        finally:
            if self.events is not None:
                self.events.close()
        self._write_record("completed")
        self.reporter.end(step, metrics[-1])
        return RunSummary(self.run_dir, "completed", step, metrics[-1])

    def _restore(self) -> tuple[int, list[dict]]:
        state = store.read_state(self.run_dir)
        if state is None:
            return 0, []
        step, weights, optimizer_values = state
        restart = f"delete {self.run_dir / store.STATE_FILE} to restart the run from step 0"
        assign_weights(self.model.weights, weights, restart)
        assign_weights(self.optimizer.variables, optimizer_values, restart)
        rows = [row for row in store.read_metrics(self.run_dir) if row["step"] <= step]
        if not rows:  # `_save` writes the metrics before the state, so a state without them was damaged
            raise UsageError(f"{self.run_dir} has a resume state at step {step} but no metrics up to it "
                             f"({store.METRICS_FILE} removed or replaced); restore it or {restart}")
        stored = set(store.checkpoint_steps_stored(self.run_dir))
        lost = sorted(s for s in self.keep_at if s <= step and s not in stored)
        if lost:  # written before the state too: removed since
            self.reporter.message(f"warning: {self.run_dir} lacks the checkpoints of steps "
                                  f"{', '.join(map(str, lost[:5]))}{' ...' if len(lost) > 5 else ''}; the resumed run "
                                  "will not have them")
        self.reporter.message(f"resuming {self.run_dir} at step {step}")
        return step, rows

    def _check_workers_start_at(self, step: int) -> None:
        """Each worker reads the resume state itself; workers starting at different steps would
        wait for each other forever in their first all-reduce."""
        steps = self.steps.gather(tf.constant(step, tf.int64)).numpy()
        if (steps != step).any():
            raise UsageError(f"the workers start at different steps ({', '.join(map(str, sorted(set(steps))))}); "
                             "give every worker the same --out on storage they all share")

    def _agree(self, chunk: int) -> tuple[int, bool]:
        """How many steps every worker runs next, and whether all stop now. Each worker times its
        own chunks, but one running more steps than another would wait forever in an all-reduce:
        all take the smallest proposal, and all stop when any of them was signalled."""
        proposals = self.steps.gather(tf.constant([chunk, self.stop_signal is not None], tf.int64)).numpy()
        return int(proposals[:, 0].min()), bool(proposals[:, 1].any())

    def _train(self, step: int, metrics: list[dict]) -> tuple[int, list[dict]]:
        plan = self.plan
        wall_offset = metrics[-1]["wall_time"] if metrics else 0.0
        started = time.monotonic()
        # A run killed after its final state but before its record said so resumes at its last step: no input.
        iterator, segment_end = self._segment(step, None) if step < self.total_steps else (None, step)
        self.reporter.start(self.total_steps, step)
        if step == 0 and not metrics:  # a resume from the state of step 0 keeps its stored row
            metrics = [self._eval_point(0, wall_offset, 0.0, [])]
        chunk, interval_images, interval_seconds = 1, 0, 0.0
        while step < self.total_steps:
            chunk, stop = self._agree(chunk)
            if stop:
                self._save(step, metrics)
                raise Interrupted(step, self.run_dir)
            if step == segment_end:
                iterator, segment_end = self._segment(step, iterator)
            target = min(self._next_event(step), step + chunk, segment_end)
            tick = time.monotonic()
            loss_sum, correct = self.steps.train_chunk(iterator, tf.constant(target - step)).numpy()
            seconds = time.monotonic() - tick
            images = (target - step) * plan.batch_size
            if not np.isfinite(loss_sum):
                raise Diverged(f"training loss became {loss_sum} between steps {step} and {target}; "
                               f"{_last_finite(metrics)}",
                               f"diverged: loss {loss_sum} between steps {step} and {target}")
            interval_images, interval_seconds = interval_images + images, interval_seconds + seconds
            chunk = max(1, int((target - step) / max(seconds, 1e-3)))  # about one progress update a second
            step = target
            self.reporter.train(step, step * plan.batch_size / self.num_train, loss_sum / images,
                                correct / images, images / max(seconds, 1e-9))
            if step in self.eval_at:
                wall = wall_offset + time.monotonic() - started
                metrics.append(self._eval_point(step, wall, interval_images / interval_seconds, metrics))
                interval_images, interval_seconds = 0, 0.0
        # Ask once past the last batch: the input threads then see the end and stop, and dropping the iterator
        # does not wait for them (it had waited 7-28 s in a third of short runs; docs/calibration.md, "Input
        # pipeline and re-measured cross-checks").
        if iterator is not None:
            iterator.get_next_as_optional()
        return step, metrics

    def _segment(self, step: int, finished):
        """The input of steps `step ..` up to the returned end: at most SEGMENT_INDICES example indices of the
        batch order at a time (a pure function of seed and step, so segments change nothing), never the order
        of a whole long run in memory. `finished`, the previous segment's iterator, is asked once past its end."""
        if finished is not None:
            finished.get_next_as_optional()
        plan = self.plan
        end = min(self.total_steps, step + max(1, SEGMENT_INDICES // plan.batch_size))
        order = hyperrule.batch_order(self.num_train, plan.batch_size, plan.seed, step, end - step)
        iterator = iter(distributed_batches(self.strategy, *self.train_set, order))
        # Building the iterator is when TensorFlow fixes glibc's mmap threshold at 128 KiB (rltx.native_memory).
        native_memory.reuse_freed_buffers()
        return iterator, end

    def _next_event(self, step: int) -> int:
        return min(s for s in self.eval_at if s > step)

    def _eval_point(self, step: int, wall_time: float, images_per_second: float, previous: list[dict]) -> dict:
        """A.3: accuracy and loss on the entire training set (not the mini-batch) and the held-out set."""
        row = {"step": step, "epoch": step * self.plan.batch_size / self.num_train,
               "learning_rate": hyperrule.learning_rate_at(step, self.plan.learning_rate, self.plan.schedule_length)}
        for name, whole in self.eval_sets.items():
            loss, hits, count, *per_class = self.steps.evaluate(whole).numpy()
            row[f"{name}_accuracy"], row[f"{name}_loss"] = float(hits / count), float(loss / count)
            row[f"{name}_majority_fraction"] = float(max(per_class) / count)  # 1: a constant predictor
        if not np.isfinite(row["train_loss"]):  # the last update of a chunk made the weights NaN: stop before saving them
            raise Diverged(f"the whole-training-set loss became {row['train_loss']} at step {step}; "
                           f"{_last_finite(previous)}", f"diverged: loss {row['train_loss']} at step {step}")
        row.update({f"weight_norm/{k}": v for k, v in layer_norms(self.model).items()})
        row.update(wall_time=wall_time, images_per_second=images_per_second)
        self._save(step, previous + [row], state=self._state_due(step))
        if self.events is not None:
            self.events.append(row)
        self._judge_health(previous + [row])
        self.reporter.eval(row)
        return row

    def _judge_health(self, metrics: list[dict]) -> None:
        """Flag a run that diverged or collapsed (rltx.health) in its record, which keeps the latest
        numbers; one line when the kind of judgement changes, also when a run recovers from an early
        blow-up (the quickstart's first steps overshoot). The run goes on and still completes."""
        health = judge(metrics, int(self.model.output_shape[-1]), self.num_train)
        if health == self.record.health:
            return
        line = change_line(str(self.run_dir), self.record.health, health, metrics[-1])
        if line:
            self.reporter.message(line)
        self.record.health = health
        self._write_record(self.record.status, self.record.error)

    def _state_due(self, step: int) -> bool:
        """Whether an eval point writes the resume state: the first of this process, the last step, and
        then once STATE_EVERY_SECONDS have passed (a signal always writes it)."""
        return (self.state_saved_at is None or step >= self.total_steps
                or time.monotonic() - self.state_saved_at >= STATE_EVERY_SECONDS)

    def _save(self, step: int, metrics: list[dict], state: bool = True) -> None:
        """Kept checkpoint (on its schedule), metrics, then the resume state: a kill between two of
        these writes, or between two resume states, leaves metrics rows past the resume step, which
        `_restore` drops (and the resumed run computes again, bit for bit)."""
        if not self.writer:
            return
        weights = weights_of(self.model.weights)
        if step in self.keep_at:
            store.write_checkpoint(self.run_dir, step, weights)
            self.reporter.checkpoint(step, store.checkpoint_path(self.run_dir, step))
        if metrics:
            store.write_metrics(self.run_dir, metrics)
        if state:
            store.write_state(self.run_dir, step, weights, weights_of(self.optimizer.variables))
            self.state_saved_at = time.monotonic()

    def _write_record(self, status: str, error: str = "") -> None:
        self.record.status, self.record.error = status, error
        if self.writer:
            store.write_run_record(self.run_dir, self.record)

    @contextlib.contextmanager
    def _signals_checkpoint(self):
        """SIGINT / SIGTERM: finish the current chunk, save the resume state, exit cleanly."""
        def remember(signum, _frame):
            self.stop_signal = signum
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers can only be installed from the main thread
            return
        previous = {s: signal.signal(s, remember) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
