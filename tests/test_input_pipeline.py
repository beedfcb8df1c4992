"""The training input pipeline (rltx.distribute): the batches it feeds, and its fixed prefetch without tf.data
autotuning (an autotuned iterator held each short run's end for its input threads; see docs/calibration.md, "Input
pipeline and re-measured cross-checks", and bench/input_pipeline.py). The evaluation of whole sets, read by index
without tf.data (distribute.WholeSet; docs/calibration.md, "Evaluation by index")."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from rltx import distribute


def _arrays():
    images = np.arange(6 * 2 * 2 * 3, dtype=np.uint8).reshape(6, 2, 2, 3)
    labels = np.array([5, 4, 3, 2, 1, 0], dtype=np.int64)
    return tf.Variable(images), tf.Variable(labels), images, labels


def test_replica_batches_gather_the_rows_in_order_as_model_input():
    images_var, labels_var, images, labels = _arrays()
    rows = np.array([[4, 0], [2, 5]])
    batches = list(distribute.replica_batches(images_var, labels_var, rows))
    assert len(batches) == 2
    for (x, y), index in zip(batches, rows):
        np.testing.assert_allclose(x.numpy(), images[index] / 127.5 - 1.0, rtol=1e-6)  # A.3's [-1, 1]
        np.testing.assert_array_equal(y.numpy(), labels[index])


def test_replica_batches_prefetch_a_fixed_number_without_autotuning():
    images_var, labels_var, _, _ = _arrays()
    dataset = distribute.replica_batches(images_var, labels_var, np.array([[0, 1]]))
    assert dataset.options().autotune.enabled is False
    prefetch = dataset._input_dataset  # with_options wraps the prefetch
    while not isinstance(prefetch, type(tf.data.Dataset.range(1).prefetch(1))):
        prefetch = prefetch._input_dataset
    assert int(prefetch._buffer_size) == distribute.PREFETCH_BATCHES


def test_distributed_batches_yield_the_global_batches_in_order():
    images_var, labels_var, _, labels = _arrays()
    order = np.array([[3, 1], [0, 2], [5, 4]])
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    seen = [strategy.experimental_local_results(y)[0].numpy()
            for _, y in distribute.distributed_batches(strategy, images_var, labels_var, order)]
    np.testing.assert_array_equal(np.stack(seen), labels[order])


# The evaluation of a whole set (loop.Steps.evaluate over distribute.WholeSet), against numpy: the softmax
# cross-entropy summed over every example once, the hits, the count, and the predictions per class. 10 examples in
# global batches of 4 (the last padded by 2); with 2 replicas each reads its own half of every batch, so a
# replica reading another's slice would count examples twice and miss others.
WHOLE_SET_SCRIPT = """
import sys
import numpy as np, tensorflow as tf
if sys.argv[1] == "2":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
else:
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
import keras
from rltx import distribute, loop
from rltx.models import build_model
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (10, 4, 4, 3), dtype=np.uint8)
labels = rng.integers(0, 3, 10).astype(np.int64)
with strategy.scope():
    model = build_model("simple_cnn", (4, 4, 3), 3, num_conv_layers=1, num_filters=2, num_units=5, seed=1)
    optimizer = keras.optimizers.SGD(0.1)
steps = loop.Steps(model, optimizer, strategy, 4)
whole = distribute.whole_set(distribute.host_tensor(images), distribute.host_tensor(labels), 4,
                             strategy.num_replicas_in_sync)
totals = steps.evaluate(whole).numpy()
logits = model.predict(images / 127.5 - 1.0, verbose=0).astype(np.float64)
log_p = logits - logits.max(1, keepdims=True)
log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
predicted = logits.argmax(1)
oracle = [-log_p[np.arange(10), labels].sum(), (predicted == labels).sum(), 10] + list(np.bincount(predicted, minlength=3))
np.testing.assert_allclose(totals, oracle, rtol=1e-5)
print("ok", strategy.num_replicas_in_sync)
"""


@pytest.mark.slow  # subprocesses
@pytest.mark.parametrize("replicas", ["1", "2"])
def test_whole_set_evaluation_counts_every_example_once_on_any_number_of_replicas(replicas):
    result = subprocess.run([sys.executable, "-c", WHOLE_SET_SCRIPT, replicas], capture_output=True, text=True,
                            timeout=300, env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["ok", replicas]


def test_a_set_smaller_than_a_batch_is_one_batch_of_its_own_size():
    _, _, images, labels = _arrays()
    assert distribute.whole_set(tf.Variable(images), tf.Variable(labels), 1024).rows.numpy().tolist() == [list(range(6))]
    two = distribute.whole_set(tf.Variable(images[:5]), tf.Variable(labels[:5]), 1024, replicas=2)
    assert two.rows.numpy().tolist() == [[0, 1, 2, 3, 4, 0]] and two.weights.numpy().tolist() == [[1, 1, 1, 1, 1, 0]]
    assert distribute.whole_set(tf.Variable(images), tf.Variable(labels), 4).rows.shape == (None, None)  # one trace


def test_sets_of_any_size_share_one_trace_of_the_evaluation():
    """Two traces per run had cost 0.3-0.7 s (the sets' sizes were part of the trace key; distribute.host_tensor)."""
    import keras

    from rltx import loop
    from rltx.models import build_model
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = build_model("simple_cnn", (2, 2, 3), 6, num_conv_layers=1, num_filters=2, num_units=3)
    steps = loop.Steps(model, keras.optimizers.SGD(0.1), strategy, 4)
    _, _, images, labels = _arrays()
    counts = [steps.evaluate(distribute.whole_set(distribute.host_tensor(images[:n]), distribute.host_tensor(labels[:n]),
                                                  4)).numpy()[2] for n in (6, 3)]
    assert counts == [6, 3]
    assert steps.evaluate.experimental_get_tracing_count() == 1
