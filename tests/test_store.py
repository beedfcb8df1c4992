"""Run store: atomic writes never leave a damaged file; one writer per run."""
import json
import multiprocessing
import os
import signal

import h5py
import numpy as np
import pytest

from rltx import store
from rltx.errors import UsageError


def record():
    return store.RunRecord("dataset: gaussian\n", {"python": "3"}, {"upstream_indices": np.arange(5)})


def test_run_record_round_trip(tmp_path):
    store.write_run_record(tmp_path, record())
    loaded = store.read_run_record(tmp_path)
    assert loaded.config_yaml == "dataset: gaussian\n" and loaded.status == "running"
    np.testing.assert_array_equal(loaded.samples["upstream_indices"], np.arange(5))


def test_failed_write_keeps_the_previous_file(tmp_path):
    store.write_metrics(tmp_path, [{"step": 0, "loss": 1.0}])
    with pytest.raises(RuntimeError):
        with store.atomic_h5(tmp_path / store.METRICS_FILE) as handle:
            handle.create_dataset("step", data=[7])
            raise RuntimeError("disk full")
    assert store.read_metrics(tmp_path) == [{"step": 0, "loss": 1.0}]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _write_forever(path):
    index = 0
    while True:
        index += 1
        store.write_metrics(path, [{"step": i, "value": float(i)} for i in range(index % 50 + 1)])


def test_killed_writer_leaves_a_readable_file(tmp_path):
    store.write_metrics(tmp_path, [{"step": 0, "value": 0.0}])
    for delay in (0.05, 0.13, 0.21):
        writer = multiprocessing.get_context("fork").Process(target=_write_forever, args=(tmp_path,))
        writer.start()
        writer.join(delay)
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
        rows = store.read_metrics(tmp_path)  # a complete file, old or new
        assert [r["step"] for r in rows] == list(range(len(rows)))


def _hold_lock(path, ready, release):
    with store.RunLock(path):
        ready.set()
        release.wait(10)


def test_second_writer_refused_and_lock_freed_on_death(tmp_path):
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_lock, args=(tmp_path, ready, release))
    holder.start()
    assert ready.wait(10)
    with pytest.raises(UsageError, match=f"another rltx process \\(pid {holder.pid}\\)"):
        store.RunLock(tmp_path).acquire()
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    with store.RunLock(tmp_path):
        pass


def test_status_running_without_lock_reads_interrupted(tmp_path):
    store.write_run_record(tmp_path, record())
    assert store.read_status(tmp_path) == "interrupted"
    with store.RunLock(tmp_path):
        assert store.read_status(tmp_path) == "running"


def test_not_a_run_file(tmp_path):
    (tmp_path / store.RUN_FILE).write_bytes(b"not hdf5 at all")
    with pytest.raises(UsageError, match="not a readable HDF5 file"):
        store.read_run_record(tmp_path)
    with h5py.File(tmp_path / store.RUN_FILE, "w") as handle:
        handle.attrs["x"] = 1
    with pytest.raises(UsageError, match="not an rltx run file"):
        store.read_run_record(tmp_path)


def test_checkpoints_and_state(tmp_path):
    store.write_checkpoint(tmp_path, 0, {"conv_0/kernel": np.ones((3, 3))})
    store.write_checkpoint(tmp_path, 12, {"conv_0/kernel": np.zeros((3, 3))})
    assert store.checkpoint_steps_stored(tmp_path) == [0, 12]
    np.testing.assert_array_equal(store.read_checkpoint(tmp_path, 0)["conv_0/kernel"], np.ones((3, 3)))
    with pytest.raises(UsageError, match="stored steps: 0, 12"):
        store.read_checkpoint(tmp_path, 5)
    store.write_state(tmp_path, 12, {"a/b": np.arange(3)}, {"sgd/iteration": np.array(12), "sgd/m": np.ones(2)})
    step, weights, optimizer = store.read_state(tmp_path)
    assert step == 12 and list(weights) == ["a/b"] and int(optimizer["sgd/iteration"]) == 12


def test_json_text_is_strict_json_of_numpy_values():
    """What `--json` prints must parse anywhere: NaN and infinities as null, numpy scalars and 0-d arrays
    as numbers, HDF5 byte strings as text."""
    value = {"scalar": np.asarray(5), "row": np.array([1.5, np.nan, np.inf]), "single": np.float32(2.5),
             "missing": np.asarray(np.nan), "names": np.array([b"conv_0"]), "nested": [{"n": np.int64(3)}]}

    def refuse(constant):
        raise ValueError(constant)
    assert json.loads(store.json_text(value), parse_constant=refuse) == {
        "scalar": 5, "row": [1.5, None, None], "single": 2.5, "missing": None, "names": ["conv_0"],
        "nested": [{"n": 3}]}
