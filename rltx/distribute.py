"""Which tf.distribute strategy a run uses, and the input pipelines that feed it.

A.3 fixes the global batch at 256: under any strategy each global batch is the same set of
examples as on one device, split evenly over the replicas, so results do not depend on the
number of devices beyond floating-point summation order.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from rltx.data import to_model_input
from rltx.cluster import gpu_memory_limit, tf_config
from rltx.errors import UsageError


def configure_gpus() -> None:
    """Before the first strategy (and before an analysis, construct-init or export reads data or builds a
    model): every GPU of this process grows its memory as needed (TF's default
    reserves nearly all of it, and a second process on the GPU then fails out of memory), or, when
    RLTX_GPU_MEMORY_MB is set, is one logical device capped at that many MiB. No GPU: nothing to do.
    Once TF has initialised its devices the settings are fixed and this leaves them as they are."""
    limit = gpu_memory_limit()
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            if limit:
                tf.config.set_logical_device_configuration(
                    gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=limit)])
            else:
                tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # devices already initialised (a caller set them up): keep theirs
            return


@functools.cache
def choose_strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirrored when TF_CONFIG names a cluster, Mirrored over all local GPUs, else one device.

    Several logical CPU devices (set up by the caller, e.g. for tests) are mirrored too. One
    strategy serves every run of a process (a transfer and its baseline, a table's runs): TF sets up
    the collective ops of a cluster once, and a second MultiWorkerMirroredStrategy breaks them.
    """
    configure_gpus()
    if tf_config().get("cluster"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([d.name for d in gpus])
    if gpus:
        return tf.distribute.OneDeviceStrategy(gpus[0].name)
    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) > 1:
        return tf.distribute.MirroredStrategy([d.name for d in cpus])
    return tf.distribute.OneDeviceStrategy(cpus[0].name)


def use_xla(setting: str | bool, strategy: tf.distribute.Strategy) -> bool:
    """Whether the recipe's jit_compile compiles the steps under `strategy`: auto compiles on GPUs
    only (on CPUs XLA was measured slower for VGG16 and fails under MirroredStrategy over split
    logical CPU devices)."""
    devices = strategy.extended.worker_devices
    on_gpu = all("GPU" in device.upper() for device in devices)
    if setting is True and not on_gpu and len(devices) > 1:
        # XLA compiles for one CPU device and cannot reach the variables of the other replicas
        raise UsageError(f"jit_compile: true does not work with MirroredStrategy over {len(devices)} CPU devices; "
                         "set jit_compile: auto or false")
    return on_gpu if setting == "auto" else bool(setting)


def is_chief() -> bool:
    """Only the chief (or worker 0 when there is no chief) writes run files (multi-worker runs)."""
    config = tf_config()
    task = config.get("task")
    if not task:
        return True
    if "chief" in config.get("cluster", {}):
        return task["type"] == "chief"
    return task["type"] == "worker" and task.get("index", 0) == 0


def check_batch_divides(batch_size: int, strategy: tf.distribute.Strategy, name: str = "batch_size") -> None:
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise UsageError(f"{name} {batch_size} is not divisible by the {replicas} replicas; "
                         f"choose a multiple of {replicas}")


def host_tensor(array: np.ndarray, unknown_sizes: int = 1) -> tf.Variable:
    """Keep a data array on the host as a variable: tf.data functions and the evaluation step read it
    by handle, never as a graph constant (which would hit the 2 GB graph limit on CIFAR-sized data).
    Its first `unknown_sizes` sizes are left unknown to tf.function, so that passes over the training
    and the test set share one trace (a second one cost 0.3 s in every Simple CNN run, 0.7 s in every
    ResNet18 run)."""
    with tf.device("/cpu:0"):
        shape = [None] * unknown_sizes + list(np.shape(array)[unknown_sizes:])
        return tf.Variable(array, trainable=False, shape=tf.TensorShape(shape))


def _replica_slices(index_batches: np.ndarray, context: tf.distribute.InputContext) -> np.ndarray:
    """From [batches, global_batch] indices, the per-replica rows this input pipeline feeds, in order."""
    replicas, pipelines = context.num_replicas_in_sync, context.num_input_pipelines
    per_replica, local = index_batches.shape[1] // replicas, replicas // pipelines
    split = index_batches.reshape(len(index_batches), replicas, per_replica)
    mine = split[:, context.input_pipeline_id * local:(context.input_pipeline_id + 1) * local]
    return mine.reshape(-1, per_replica)


# A fixed prefetch and no tf.data autotuning: the pipeline only gathers rows of an array already in memory.
# With autotuning, dropping a finished run's iterator waited 7-28 s for its input threads in some short runs, even
# after the loop asked past the last batch (rltx.loop; docs/calibration.md, "Input pipeline and re-measured
# cross-checks"); Fig. 5's quick profile, then 24 runs, had spent about a minute there.
PREFETCH_BATCHES = 2


def _without_autotune() -> tf.data.Options:
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def replica_batches(images: tf.Variable, labels: tf.Variable, rows: np.ndarray) -> tf.data.Dataset:
    """One input pipeline's dataset: per step, the model inputs and labels of `rows[step]`,
    a fixed number of batches ahead, without tf.data autotuning."""
    def gather(index):
        return to_model_input(tf.gather(images, index)), tf.gather(labels, index)
    dataset = tf.data.Dataset.from_tensor_slices(rows).map(gather).prefetch(PREFETCH_BATCHES)
    return dataset.with_options(_without_autotune())


def distributed_batches(strategy, images: tf.Variable, labels: tf.Variable, index_batches: np.ndarray):
    """A distributed dataset yielding, per step, the global batch `index_batches[step]`."""
    def dataset_fn(context):
        return replica_batches(images, labels, _replica_slices(index_batches, context))
    options = tf.distribute.InputOptions(experimental_fetch_to_device=True)
    return strategy.distribute_datasets_from_function(dataset_fn, options)


class WholeSet(NamedTuple):
    """A whole set for evaluation (A.3: metrics on the entire training and held-out sets) in padded global
    batches, read by index from the host arrays inside the evaluation step. No tf.data here: a tf.data iterator
    made for every pass cost 25-30 ms, as much as the pass itself over 1k 12x12 images on 2 CPU cores (a quick
    profile's eval point; bench/eval_pass.py: 1.9-2.7x the time per pass)."""
    images: tf.Variable
    labels: tf.Variable
    rows: tf.Variable     # [batches, global batch] example indices, the last row padded
    weights: tf.Variable  # [batches, global batch]: 1 for an example, 0 for padding


def whole_set(images: tf.Variable, labels: tf.Variable, batch_size: int, replicas: int = 1) -> WholeSet:
    """A set smaller than `batch_size` is one batch of its own size rounded up to a multiple of the `replicas`,
    not padded to a full batch (a quick profile's 256 test images would cost a forward pass over 1024)."""
    count = int(tf.shape(labels)[0])
    rows, weights = padded_batches(count, min(batch_size, max(1, -(-count // replicas)) * replicas))
    # both sizes unknown: sets of other sizes and batch widths share one trace
    return WholeSet(images, labels, host_tensor(rows, unknown_sizes=2), host_tensor(weights, unknown_sizes=2))


def replica_part(whole: WholeSet, batch) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Inside strategy.run: this replica's slice of global batch `batch` of `whole` (model inputs, labels,
    weights), the slice the input pipelines would feed it (`_replica_slices`: replicas in sync-group order)."""
    context = tf.distribute.get_replica_context()
    # A gather reads one row where the variable lives (host); slicing the variable would read all of it to the
    # replica's device first, the whole index array for every batch.
    row, weight_row = tf.gather(whole.rows, batch), tf.gather(whole.weights, batch)
    per_replica = tf.shape(row)[0] // context.num_replicas_in_sync
    start = context.replica_id_in_sync_group * per_replica
    index, weights = row[start:start + per_replica], weight_row[start:start + per_replica]
    return to_model_input(tf.gather(whole.images, index)), tf.gather(whole.labels, index), weights


def padded_batches(num_examples: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """All indices 0..num_examples-1 in [batches, batch_size] rows, the last row padded;
    weights are 1 for real examples and 0 for padding."""
    num_batches = -(-num_examples // batch_size)
    indices = np.zeros(num_batches * batch_size, dtype=np.int64)
    indices[:num_examples] = np.arange(num_examples)
    weights = (np.arange(num_batches * batch_size) < num_examples).astype(np.float32)
    return indices.reshape(num_batches, batch_size), weights.reshape(num_batches, batch_size)
