"""TensorBoard event files of a run, RUN/tensorboard/: a view of metrics.h5, which stays the source
of truth. Every metric of an eval point is one `tf.summary` scalar at that step (x = step; tags as in
metrics.h5, but accuracy/train, accuracy/test, loss/train, loss/test), so
`tensorboard --logdir runs/` shows live curves across runs.

A resumed run rewrites the events from the metrics rows it kept (those up to its resume step) and
then appends, so the curves continue without duplicate or lost points, whatever moment a kill hit.
"""
from __future__ import annotations

from pathlib import Path

import tensorflow as tf

NOT_SCALARS = ("step",)  # the x axis
# TensorBoard groups the charts by the tag's prefix: train and test side by side
TAGS = {"train_accuracy": "accuracy/train", "test_accuracy": "accuracy/test",
        "train_loss": "loss/train", "test_loss": "loss/test"}


class EventLog:
    """The run's event file in `directory` (RUN/tensorboard, store.EVENTS_DIR), holding exactly the
    metric rows given to it."""

    def __init__(self, directory: Path, rows: list[dict]):
        for old in Path(directory).glob("events.out.tfevents.*"):  # only TensorBoard's own files, whatever the folder
            old.unlink()
        self._writer = tf.summary.create_file_writer(str(directory))
        for row in rows:
            self._write(row)
        self._writer.flush()

    def _write(self, row: dict) -> None:
        with self._writer.as_default():
            for name, value in row.items():
                if name not in NOT_SCALARS:
                    tf.summary.scalar(TAGS.get(name, name), value, step=int(row["step"]))

    def append(self, row: dict) -> None:
        """One more eval point, on disk at once (TensorBoard reads the file while the run trains)."""
        self._write(row)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
