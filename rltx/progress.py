"""Progress display: a rich live bar on a terminal, plain log lines otherwise, nothing when quiet."""
from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn


class Reporter:
    """The calls the training loop makes; this base class ignores them all."""

    def start(self, total_steps: int, first_step: int) -> None: ...

    def train(self, step: int, epoch: float, loss: float, accuracy: float, images_per_second: float) -> None: ...

    def eval(self, row: dict) -> None: ...

    def message(self, text: str) -> None: ...

    def close(self) -> None: ...



def _eval_line(row: dict) -> str:
    return (f"eval step {row['step']} epoch {row['epoch']:.2f}: train acc {row['train_accuracy']:.4f} "
            f"loss {row['train_loss']:.4f} | test acc {row['test_accuracy']:.4f} loss {row['test_loss']:.4f}")


class LogReporter(Reporter):
    """One line per eval point and at most one training line every `every_seconds` (for log files)."""

    def __init__(self, stream=None, every_seconds: float = 10.0):
        self.stream, self.every_seconds = stream or sys.stderr, every_seconds
        self._last, self._started, self._first, self._total = 0.0, time.monotonic(), 0, 1

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def start(self, total_steps, first_step):
        self._started, self._first, self._total = time.monotonic(), first_step, total_steps

    def train(self, step, epoch, loss, accuracy, images_per_second):
        now = time.monotonic()
        if now - self._last < self.every_seconds and step < self._total:
            return
        self._last = now
        done = (step - self._first) / max(1, self._total - self._first)
        eta = (now - self._started) * (1 - done) / done if done > 0 else float("nan")
        self._print(f"step {step}/{self._total} epoch {epoch:.2f} loss {loss:.4f} acc {accuracy:.4f} "
                    f"{images_per_second:.0f} img/s eta {eta:.0f}s")

    def eval(self, row):
        self._print(_eval_line(row))

    def message(self, text):
        self._print(text)


class RichReporter(Reporter):
    """A live progress bar with step, epoch, loss, accuracy, images/s and ETA."""

    def __init__(self, label: str, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn(f"[bold]{label}"), BarColumn(), TextColumn("step {task.completed}/{task.total}"),
            TextColumn("epoch {task.fields[epoch]:.2f}"), TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("acc {task.fields[accuracy]:.4f}"), TextColumn("{task.fields[rate]:.0f} img/s"),
            TimeRemainingColumn(), console=self.console)
        self.task = None

    def start(self, total_steps, first_step):
        self.progress.start()
        self.task = self.progress.add_task("train", total=total_steps, completed=first_step, epoch=0.0,
                                           loss=float("nan"), accuracy=float("nan"), rate=0.0)

    def train(self, step, epoch, loss, accuracy, images_per_second):
        self.progress.update(self.task, completed=step, epoch=epoch, loss=loss, accuracy=accuracy,
                             rate=images_per_second)

    def eval(self, row):
        self.progress.console.print(_eval_line(row))

    def message(self, text):
        self.progress.console.print(text)

    def close(self):
        self.progress.stop()


def make_reporter(quiet: bool, label: str) -> Reporter:
    """`label` names the command on the progress bar."""
    if quiet:
        return Reporter()
    return RichReporter(label) if sys.stderr.isatty() else LogReporter()
