"""TensorBoard event files are a view of metrics.h5: read back with TensorBoard's own event reader,
they hold the same numbers at the same steps, also after a kill and a resume (no duplicate step)."""
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest
import yaml
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from rltx import store
from rltx.config import make_recipe
from rltx.events import TAGS
from rltx.pretrain import pretrain
from tests_support import TINY, wait_for_rows


def read_events(run_dir) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} in file order, by TensorBoard's reader (tf.summary writes scalars
    as tensors)."""
    events = event_accumulator.EventAccumulator(str(run_dir / "tensorboard"),
                                                size_guidance={event_accumulator.TENSORS: 0})
    events.Reload()
    return {tag: [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in events.Tensors(tag)]
            for tag in events.Tags()["tensors"]}


def assert_events_equal_metrics(run_dir):
    names_of = {tag: name for name, tag in TAGS.items()}
    events = {names_of.get(tag, tag): points for tag, points in read_events(run_dir).items()}
    with h5py.File(run_dir / store.METRICS_FILE) as metrics:
        names = []
        metrics.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
        steps = metrics["step"][()].tolist()
        assert set(events) == set(names) - {"step"}
        assert {"train_accuracy", "test_accuracy", "train_loss", "test_loss", "learning_rate",
                "images_per_second", "weight_norm/conv_0", "weight_norm/head"} <= set(events)
        for tag, points in events.items():
            assert [step for step, _ in points] == steps, tag  # every eval point once, in order
            np.testing.assert_array_equal([value for _, value in points], metrics[tag][()].astype(np.float32))


def test_events_hold_the_metrics_of_every_eval_point_and_the_recipe_key_turns_them_off(tmp_path):
    pretrain(make_recipe(TINY), tmp_path / "on")
    assert_events_equal_metrics(tmp_path / "on")
    pretrain(make_recipe({**TINY, "total_steps": 4, "tensorboard": False}), tmp_path / "off")
    assert (tmp_path / "off" / store.METRICS_FILE).exists() and not (tmp_path / "off" / "tensorboard").exists()


@pytest.mark.slow
def test_after_a_kill_and_a_resume_the_events_have_no_duplicate_or_missing_step(tmp_path):
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({**TINY, "total_steps": 400, "num_eval_points": 40}))
    command = [sys.executable, "-m", "rltx", "pretrain", "r.yaml", "--out", "run", "--quiet"]
    process = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    wait_for_rows(tmp_path / "run", 6, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert store.read_status(tmp_path / "run") == "interrupted"
    assert subprocess.run(command, cwd=tmp_path, capture_output=True, timeout=300).returncode == 0
    assert_events_equal_metrics(tmp_path / "run")
