"""The training and evaluation input pipeline (rltx.distribute): the batches it feeds, and its fixed prefetch
without tf.data autotuning (an autotuned iterator held each short run's end for its input threads; see
docs/calibration.md, "Input pipeline and re-measured cross-checks", and bench/input_pipeline.py)."""
import numpy as np
import tensorflow as tf

from rltx import distribute


def _arrays():
    images = np.arange(6 * 2 * 2 * 3, dtype=np.uint8).reshape(6, 2, 2, 3)
    labels = np.array([5, 4, 3, 2, 1, 0], dtype=np.int64)
    return tf.Variable(images), tf.Variable(labels), images, labels


def test_replica_batches_gather_the_rows_in_order_as_model_input():
    images_var, labels_var, images, labels = _arrays()
    rows = np.array([[4, 0], [2, 5]])
    weight_rows = np.array([[1.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    batches = list(distribute.replica_batches(images_var, labels_var, rows, weight_rows))
    assert len(batches) == 2
    for (x, y, w), index, weight in zip(batches, rows, weight_rows):
        np.testing.assert_allclose(x.numpy(), images[index] / 127.5 - 1.0, rtol=1e-6)  # A.3's [-1, 1]
        np.testing.assert_array_equal(y.numpy(), labels[index])
        np.testing.assert_array_equal(w.numpy(), weight)


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
