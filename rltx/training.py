"""Pre-training (Maennel et al. 2020, A.1-A.3), as one loop that reads top to bottom.

`pretrain(recipe, run_dir)` samples the upstream set, labels it, builds the model, trains with
SGD + momentum under a tf.distribute strategy, and at each eval point stores metrics on the
*whole* upstream set and the held-out set (A.3), kept checkpoints and a resume state. Rerunning
it on the same directory resumes from the last resume state and ends with the same weights.
"""
from __future__ import annotations

import contextlib
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
import yaml

from rltx import hyperrule, store
from rltx.config import Recipe
from rltx.data import open_source
from rltx.distribute import (check_batch_divides, choose_strategy, distributed_batches, host_tensor,
                             is_chief, padded_batches)
from rltx.environment import describe_environment
from rltx.errors import UsageError
from rltx.models import ARCHITECTURES, HEAD, build_model, transferable_layers
from rltx.progress import Reporter, SilentReporter


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; the resume state was saved at `step`."""

    def __init__(self, step: int, run_dir: Path):
        super().__init__(f"interrupted at step {step}; state saved in {run_dir}. "
                         "Rerun the same command to resume")
        self.step = step


class Diverged(Exception):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class RunSummary:
    run_dir: Path
    status: str
    step: int
    metrics: dict


# --- A.1: what the run trains and evaluates on --------------------------------------------

def draw_samples(recipe: Recipe, source) -> dict[str, np.ndarray]:
    """A.1 steps 1-4: disjoint upstream / downstream indices of the training split, upstream labels,
    and the held-out set (the test split, or a further disjoint part of the training split)."""
    held_out_from_train = source.num_test == 0
    if held_out_from_train and recipe.num_examples_test == 0:
        raise UsageError(f"dataset {recipe.dataset} has no test split; set num_examples_test to carve "
                         "a held-out set from the training split")
    sizes = (recipe.num_examples_upstream, recipe.num_examples_downstream)
    sizes += (recipe.num_examples_test,) if held_out_from_train else ()
    if sum(sizes) > source.num_train:
        raise UsageError(f"upstream + downstream{' + test' if held_out_from_train else ''} examples "
                         f"({sum(sizes)}) exceed the {source.num_train} of the training split; sample fewer")
    drawn = hyperrule.sample_disjoint(source.num_train, sizes, recipe.seed)
    if held_out_from_train:
        test_indices = drawn[2]
    else:
        test_count = recipe.num_examples_test or source.num_test
        if test_count > source.num_test:
            raise UsageError(f"num_examples_test {test_count} exceeds the {source.num_test} held-out examples; lower it")
        test_indices = np.arange(test_count)
    return {"upstream_indices": drawn[0], "downstream_indices": drawn[1], "test_indices": test_indices,
            "test_from_train": np.array(held_out_from_train),
            "upstream_labels": _labels(recipe, source, drawn[0], is_train=True, salt=0),
            "test_labels": _labels(recipe, source, test_indices, is_train=held_out_from_train, salt=1)}


def _labels(recipe: Recipe, source, indices: np.ndarray, *, is_train: bool, salt: int) -> np.ndarray:
    if recipe.labels_upstream == "random":
        return hyperrule.random_labels(len(indices), recipe.num_classes_upstream, recipe.seed, salt)
    if source.num_classes != recipe.num_classes_upstream:
        raise UsageError(f"{recipe.dataset} has {source.num_classes} real classes; set "
                         f"num_classes_upstream: {source.num_classes} for labels_upstream: real")
    return (source.train if is_train else source.test)(indices).y.astype(np.int64)


def load_examples(source, samples: dict) -> dict[str, np.ndarray]:
    """The images of the sampled sets (labels come from `samples`, never from the source)."""
    test_split = source.train if bool(samples["test_from_train"]) else source.test
    return {"upstream": source.train(samples["upstream_indices"]).x, "test": test_split(samples["test_indices"]).x}


def open_recipe_source(recipe: Recipe):
    return open_source(recipe.dataset, data_dir=recipe.data_dir, manual_dir=recipe.manual_dir,
                       offline=recipe.offline, data_path=recipe.data_path, image_size=recipe.image_size or None,
                       seed=recipe.seed, gaussian_spectrum=recipe.gaussian_spectrum,
                       gaussian_patch_size=recipe.gaussian_patch_size, gaussian_image_size=recipe.gaussian_image_size,
                       gaussian_rotate=recipe.gaussian_rotate, gaussian_num_train=recipe.gaussian_num_train,
                       gaussian_num_test=recipe.gaussian_num_test)


def build_recipe_model(recipe: Recipe, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    options = {name: getattr(recipe, name) for name in ARCHITECTURES[recipe.architecture].options}
    return build_model(recipe.architecture, input_shape, num_classes, init_algorithm=recipe.init_algorithm,
                       init_scale=recipe.init_scale, seed=recipe.seed, **options)


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


class Steps:
    """The compiled pieces of the loop: a chunk of SGD steps and a pass over a whole set."""

    def __init__(self, model: keras.Model, optimizer: keras.optimizers.Optimizer,
                 strategy: tf.distribute.Strategy, global_batch: int):
        self.model, self.optimizer, self.strategy, self.global_batch = model, optimizer, strategy, global_batch
        self.train_chunk = tf.function(self._train_chunk)
        self.evaluate = tf.function(self._evaluate)

    def _sgd_step(self, images, labels):
        with tf.GradientTape() as tape:
            logits = tf.cast(self.model(images, training=True), tf.float32)
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
            # Sum over this replica's examples / global batch: the replicas' gradients add up
            # to the gradient of the mean loss over the global batch.
            loss = tf.reduce_sum(losses) / self.global_batch
        gradients = tape.gradient(loss, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
        return tf.stack([tf.reduce_sum(losses), _correct(logits, labels)])

    def _train_chunk(self, iterator, num_steps):
        totals = tf.zeros(2, tf.float64)
        for _ in tf.range(num_steps):
            images, labels = next(iterator)
            per_replica = self.strategy.run(self._sgd_step, args=(images, labels))
            totals += tf.cast(self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None), tf.float64)
        return totals

    def _eval_batch(self, images, labels, weights):
        logits = tf.cast(self.model(images, training=False), tf.float32)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
        hits = tf.cast(tf.equal(tf.argmax(logits, -1), labels), tf.float32)
        return tf.stack([tf.reduce_sum(losses * weights), tf.reduce_sum(hits * weights), tf.reduce_sum(weights)])

    def _evaluate(self, dataset):
        totals = tf.zeros(3, tf.float64)  # float64: sums over up to millions of examples
        for images, labels, weights in dataset:
            per_replica = self.strategy.run(self._eval_batch, args=(images, labels, weights))
            totals += tf.cast(self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None), tf.float64)
        return totals


def _correct(logits, labels):
    return tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1), labels), tf.float32))


def weights_of(variables) -> dict[str, np.ndarray]:
    """Variables by path: `model.weights` (BatchNorm statistics included) or `optimizer.variables`."""
    return {variable.path: np.asarray(variable.numpy()) for variable in variables}


def assign_weights(variables, weights: dict[str, np.ndarray]) -> None:
    missing = [v.path for v in variables if v.path not in weights]
    if missing:
        raise UsageError(f"stored weights lack {', '.join(missing[:3])}; they belong to another architecture")
    for variable in variables:
        variable.assign(weights[variable.path])


def layer_norms(model: keras.Model) -> dict[str, float]:
    """L2 norm of all parameters of each transferable layer and the head (A.4 rescales by these)."""
    names = transferable_layers(model) + [HEAD]
    return {name: float(np.sqrt(sum(np.sum(np.square(w.numpy(), dtype=np.float64))
                                    for w in model.get_layer(name).weights))) for name in names}


# --- the run ----------------------------------------------------------------------------

def pretrain(recipe: Recipe, run_dir: Path, *, resume: bool = True, reporter: Reporter | None = None) -> RunSummary:
    """Train `recipe` into `run_dir`, resuming the run already there if it has the same recipe."""
    run_dir, reporter = Path(run_dir), reporter or SilentReporter()
    run_dir.mkdir(parents=True, exist_ok=True)
    writer = is_chief()
    with (store.RunLock(run_dir) if writer else contextlib.nullcontext()):
        existing = _existing_run(run_dir, recipe, resume)
        if existing is not None and existing.status == "completed":
            metrics = store.read_metrics(run_dir)
            reporter.message(f"{run_dir} is already completed; nothing to do")
            return RunSummary(run_dir, "completed", recipe.steps, metrics[-1] if metrics else {})
        tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(recipe.seed)
        strategy = choose_strategy()
        check_batch_divides(recipe.batch_size, strategy)
        check_batch_divides(recipe.eval_batch_size, strategy, "eval_batch_size")
        source = open_recipe_source(recipe)
        samples = existing.samples if existing is not None else draw_samples(recipe, source)
        record = store.RunRecord(recipe.to_yaml(), describe_environment(strategy), samples)
        if existing is not None:
            record.created = existing.created
        run = _Run(recipe, run_dir, strategy, source, samples, record, reporter, writer)
        return run.execute()


def _existing_run(run_dir: Path, recipe: Recipe, resume: bool):
    if not (run_dir / store.RUN_FILE).exists():
        return None
    record = store.read_run_record(run_dir)
    if not resume:
        raise UsageError(f"{run_dir} already holds a run ({record.status}); pass --resume to continue it "
                         "or choose another --out")
    stored = yaml.safe_load(record.config_yaml)
    changed = [f"{k}: {stored.get(k)!r} -> {v!r}" for k, v in recipe.to_dict().items() if stored.get(k) != v]
    if changed:
        raise UsageError(f"{run_dir} holds a run of another recipe ({'; '.join(changed[:3])}); "
                         "choose another --out")
    return record


class _Run:
    """The state of one training run between eval points."""

    def __init__(self, recipe, run_dir, strategy, source, samples, record, reporter, writer):
        self.recipe, self.run_dir, self.strategy, self.reporter = recipe, run_dir, strategy, reporter
        self.samples, self.record, self.writer = samples, record, writer
        self.total_steps = recipe.steps
        self.eval_at = set(hyperrule.eval_steps(self.total_steps, recipe.num_eval_points).tolist())
        self.keep_at = set(hyperrule.checkpoint_steps(self.total_steps, recipe.checkpoint_every,
                                                      tuple(recipe.checkpoint_steps)).tolist())
        examples = load_examples(source, samples)
        self.num_upstream = len(samples["upstream_indices"])
        self.upstream = (host_tensor(examples["upstream"]), host_tensor(samples["upstream_labels"]))
        self.test = (host_tensor(examples["test"]), host_tensor(samples["test_labels"]))
        with strategy.scope():
            self.model = build_recipe_model(recipe, tuple(examples["upstream"].shape[1:]), recipe.num_classes_upstream)
            self.optimizer = keras.optimizers.SGD(PaperSchedule(recipe.learning_rate, self.total_steps),
                                                  momentum=recipe.momentum, name="sgd")
            self.optimizer.build(self.model.trainable_variables)
        self.steps = Steps(self.model, self.optimizer, strategy, recipe.batch_size)
        self.stop_signal = None

    def execute(self) -> RunSummary:
        self._write_record("running")
        try:
            with self._signals_checkpoint():
                step, metrics = self._restore()
                step, metrics = self._train(step, metrics)
        except Interrupted:
            self._write_record("interrupted", "stopped by a signal; rerun the same command to resume")
            raise
        except BaseException as error:
            self._write_record("failed", f"{type(error).__name__}: {error}")
            raise
        self._write_record("completed")
        return RunSummary(self.run_dir, "completed", step, metrics[-1])

    def _restore(self) -> tuple[int, list[dict]]:
        state = store.read_state(self.run_dir)
        if state is None:
            return 0, []
        step, weights, optimizer_values = state
        assign_weights(self.model.weights, weights)
        assign_weights(self.optimizer.variables, optimizer_values)
        self.reporter.message(f"resuming {self.run_dir} at step {step}")
        return step, [row for row in store.read_metrics(self.run_dir) if row["step"] <= step]

    def _train(self, step: int, metrics: list[dict]) -> tuple[int, list[dict]]:
        recipe = self.recipe
        wall_offset = metrics[-1]["wall_time"] if metrics else 0.0
        started = time.monotonic()
        order = hyperrule.batch_order(self.num_upstream, recipe.batch_size, recipe.seed, step, self.total_steps - step)
        iterator = iter(distributed_batches(self.strategy, *self.upstream, order))
        self.reporter.start(self.total_steps, step)
        if step == 0:
            metrics = [self._eval_point(0, wall_offset, 0.0, [])]
        chunk, interval_images, interval_seconds = 1, 0, 0.0
        while step < self.total_steps:
            target = min(self._next_event(step), step + chunk)
            tick = time.monotonic()
            loss_sum, correct = self.steps.train_chunk(iterator, tf.constant(target - step)).numpy()
            seconds = time.monotonic() - tick
            images = (target - step) * recipe.batch_size
            if not np.isfinite(loss_sum):
                raise Diverged(f"training loss became {loss_sum} between steps {step} and {target}; "
                               f"last finite metrics: {metrics[-1]}")
            interval_images, interval_seconds = interval_images + images, interval_seconds + seconds
            chunk = max(1, int((target - step) / max(seconds, 1e-3)))  # about one progress update a second
            step = target
            self.reporter.train(step, step * recipe.batch_size / self.num_upstream, loss_sum / images,
                                correct / images, images / max(seconds, 1e-9))
            if step in self.eval_at:
                wall = wall_offset + time.monotonic() - started
                metrics.append(self._eval_point(step, wall, interval_images / interval_seconds, metrics))
                interval_images, interval_seconds = 0, 0.0
            elif step in self.keep_at:
                self._save(step, metrics)
            if self.stop_signal is not None:
                self._save(step, metrics)
                raise Interrupted(step, self.run_dir)
        return step, metrics

    def _next_event(self, step: int) -> int:
        return min(s for s in self.eval_at | self.keep_at if s > step)

    def _eval_point(self, step: int, wall_time: float, images_per_second: float, previous: list[dict]) -> dict:
        """A.3: accuracy and loss on the entire upstream set (not the mini-batch) and the held-out set."""
        row = {"step": step, "epoch": step * self.recipe.batch_size / self.num_upstream,
               "learning_rate": hyperrule.learning_rate_at(step, self.recipe.learning_rate, self.total_steps)}
        for name, (images, labels) in (("train", self.upstream), ("test", self.test)):
            batches, weights = padded_batches(int(labels.shape[0]), self.recipe.eval_batch_size)
            loss, hits, count = self.steps.evaluate(
                distributed_batches(self.strategy, images, labels, batches, weights)).numpy()
            row[f"{name}_accuracy"], row[f"{name}_loss"] = float(hits / count), float(loss / count)
        row.update({f"weight_norm/{k}": v for k, v in layer_norms(self.model).items()})
        row.update(wall_time=wall_time, images_per_second=images_per_second)
        self.reporter.eval(row)
        self._save(step, previous + [row])
        return row

    def _save(self, step: int, metrics: list[dict]) -> None:
        """Kept checkpoint (on its schedule), metrics, then the resume state: a kill between two of
        these writes leaves metrics rows past the resume step, which `_restore` drops."""
        if not self.writer:
            return
        weights = weights_of(self.model.weights)
        if step in self.keep_at:
            store.write_checkpoint(self.run_dir, step, weights)
        if metrics:
            store.write_metrics(self.run_dir, metrics)
        store.write_state(self.run_dir, step, weights, weights_of(self.optimizer.variables))

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
