"""Progress display: a rich live bar on a terminal, plain log lines otherwise, nothing when quiet."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn


class Reporter:
    """The callbacks of the training loop, in plain Python: subclass it and override what you need
    (every method here does nothing). For one run the loop calls, in order:

    - `start(total_steps, first_step)` when training begins (first_step > 0 on a resume);
    - `train(step, epoch, loss, accuracy, images_per_second)` about once a second (mini-batch numbers);
    - `eval(row)` at each eval point, with the row just stored in metrics.h5 (step, epoch,
      learning_rate, train/test accuracy and loss, weight_norm/<layer>, wall_time, images_per_second);
    - `checkpoint(step, path)` after each kept checkpoint is written;
    - `end(step, row)` when the run completed, with its last metrics row; or
    - `failure(status, reason)` when it stopped: status `interrupted` (a signal; rerunning resumes)
      or `failed` (reason: the error);
    - `message(text)` for lines meant for the user, and `close()` when the command is done with it.

    `Reporters(a, b, ...)` passes every call on to several reporters (e.g. the progress display and
    a tracker), `CsvReporter(run_dir)` writes RUN/metrics.csv.
    """

    def start(self, total_steps: int, first_step: int) -> None: ...

    def train(self, step: int, epoch: float, loss: float, accuracy: float, images_per_second: float) -> None: ...

    def eval(self, row: dict) -> None: ...

    def checkpoint(self, step: int, path: Path) -> None: ...

    def end(self, step: int, row: dict) -> None: ...

    def failure(self, status: str, reason: str) -> None: ...

    def message(self, text: str) -> None: ...

    def close(self) -> None: ...


class Reporters(Reporter):
    """Every callback passed on to each of `reporters`, in order."""

    def __init__(self, *reporters: Reporter):
        self.reporters = reporters

    def _each(self, method: str, *args) -> None:
        for reporter in self.reporters:
            getattr(reporter, method)(*args)

    def start(self, total_steps, first_step):
        self._each("start", total_steps, first_step)

    def train(self, step, epoch, loss, accuracy, images_per_second):
        self._each("train", step, epoch, loss, accuracy, images_per_second)

    def eval(self, row):
        self._each("eval", row)

    def checkpoint(self, step, path):
        self._each("checkpoint", step, path)

    def end(self, step, row):
        self._each("end", step, row)

    def failure(self, status, reason):
        self._each("failure", status, reason)

    def message(self, text):
        self._each("message", text)

    def close(self):
        self._each("close")


class CsvReporter(Reporter):
    """The run's metrics as RUN/metrics.csv, rewritten at each eval point (a resumed run keeps the
    rows up to its resume step, as metrics.h5 does): a file any spreadsheet or tracker reads."""

    def __init__(self, run_dir: Path, file_name: str = "metrics.csv"):
        self.run_dir, self.path, self.rows = Path(run_dir), Path(run_dir) / file_name, []

    def start(self, total_steps, first_step):
        from rltx import store
        self.rows = [row for row in store.read_metrics(self.run_dir) if first_step and row["step"] <= first_step]

    def eval(self, row):
        from rltx import store
        self.rows.append(row)
        store.write_metrics_csv(self.path, self.rows)


def _eval_line(row: dict) -> str:
    return (f"eval step {row['step']} epoch {row['epoch']:.2f}: train acc {row['train_accuracy']:.4f} "
            f"loss {row['train_loss']:.4f} | test acc {row['test_accuracy']:.4f} loss {row['test_loss']:.4f}")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else (f"{minutes}m{secs:02d}s" if minutes else f"{secs}s")


class _Clock:
    """Elapsed time since training began, and the time left at the speed measured since the first
    training update (so neither graph compilation nor a resume's earlier steps skew it)."""

    def __init__(self):
        self.started, self._reference = time.monotonic(), None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self, step: int, total: int) -> float | None:
        now = time.monotonic()
        if self._reference is None:
            self._reference = (step, now)
        first_step, first_time = self._reference
        return (now - first_time) / (step - first_step) * (total - step) if step > first_step else None


class LogReporter(Reporter):
    """One line per eval point and at most one training line every `every_seconds` (for log files)."""

    def __init__(self, stream=None, every_seconds: float = 10.0):
        self.stream, self.every_seconds = stream or sys.stderr, every_seconds
        self._last, self._clock, self._total = 0.0, _Clock(), 1

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def start(self, total_steps, first_step):
        self._clock, self._total = _Clock(), total_steps

    def train(self, step, epoch, loss, accuracy, images_per_second):
        remaining = self._clock.remaining(step, self._total)
        now = time.monotonic()
        if now - self._last < self.every_seconds and step < self._total:
            return
        self._last = now
        self._print(f"step {step}/{self._total} epoch {epoch:.2f} loss {loss:.4f} acc {accuracy:.4f} "
                    f"{images_per_second:.0f} img/s elapsed {_duration(self._clock.elapsed())} "
                    f"eta {_duration(remaining)}")

    def eval(self, row):
        self._print(_eval_line(row))

    def message(self, text):
        self._print(text)


class RichReporter(Reporter):
    """A live progress bar with step, epoch, loss, accuracy, images/s, elapsed time and ETA; the
    mini-batch numbers show '-' until the first training update."""

    def __init__(self, label: str, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn(f"[bold]{label}"), BarColumn(), TextColumn("step {task.completed}/{task.total}"),
            TextColumn("{task.fields[numbers]}"), TextColumn("elapsed {task.fields[elapsed]} eta {task.fields[eta]}"),
            console=self.console)
        self.task, self._clock, self._total = None, _Clock(), 0

    def start(self, total_steps, first_step):
        self._clock, self._total = _Clock(), total_steps  # this run's, when one reporter shows several runs
        self.progress.start()
        self.task = self.progress.add_task("train", total=total_steps, completed=first_step,
                                           numbers="epoch - loss - acc - - img/s", elapsed="0s", eta="-")

    def train(self, step, epoch, loss, accuracy, images_per_second):
        remaining = self._clock.remaining(step, self._total)
        self.progress.update(self.task, completed=step, elapsed=_duration(self._clock.elapsed()),
                             eta=_duration(remaining), numbers=f"epoch {epoch:.2f} loss {loss:.4f} "
                             f"acc {accuracy:.4f} {images_per_second:.0f} img/s")

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
