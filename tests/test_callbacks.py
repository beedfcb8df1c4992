"""The training loop's callback interface (rltx.progress.Reporter): the calls come in the documented
order with the stored numbers, and the CSV adaptor's file equals metrics.h5, also across a resume."""
import csv
import os
import signal

import pytest

from rltx import store
from rltx.config import make_recipe
from rltx.loop import Interrupted
from rltx.pretrain import pretrain
from rltx.progress import CsvReporter, Reporter, Reporters
from tests_support import TINY


class Recorder(Reporter):
    """Records every call but `train`; interrupts the run (SIGINT) at eval point `stop_at`."""

    def __init__(self, stop_at=None):
        self.calls, self.stop_at = [], stop_at

    def start(self, total_steps, first_step):
        self.calls.append(("start", total_steps, first_step))

    def eval(self, row):
        self.calls.append(("eval", row["step"]))
        if row["step"] == self.stop_at:
            os.kill(os.getpid(), signal.SIGINT)

    def checkpoint(self, step, path):
        assert path.exists()
        self.calls.append(("checkpoint", step))

    def end(self, step, row):
        self.calls.append(("end", step, row["train_accuracy"]))

    def failure(self, status, reason):
        self.calls.append(("failure", status))


def csv_rows(path):
    with open(path, newline="") as handle:
        return [{name: float(value) for name, value in row.items()} for row in csv.DictReader(handle)]


def test_callbacks_in_order_and_the_csv_adaptor_equals_metrics_across_a_resume(tmp_path):
    run_dir, recipe = tmp_path / "run", make_recipe(TINY)
    first = Recorder(stop_at=20)
    with pytest.raises(Interrupted):
        pretrain(recipe, run_dir, reporter=Reporters(first, CsvReporter(run_dir)))
    assert first.calls[0] == ("start", 40, 0) and first.calls[-1] == ("failure", "interrupted")
    second = Recorder()
    pretrain(recipe, run_dir, reporter=Reporters(second, CsvReporter(run_dir)))
    metrics = store.read_metrics(run_dir)
    resumed_at = second.calls[0][2]
    assert second.calls[0] == ("start", 40, resumed_at) and resumed_at >= 20
    assert [call[1] for call in second.calls if call[0] == "eval"] == [r["step"] for r in metrics if r["step"] > resumed_at]
    kept = [call[1] for call in first.calls + second.calls if call[0] == "checkpoint"]
    assert sorted(set(kept)) == store.checkpoint_steps_stored(run_dir)
    assert second.calls[-1] == ("end", 40, metrics[-1]["train_accuracy"])
    assert csv_rows(run_dir / "metrics.csv") == [pytest.approx(row, rel=1e-15) for row in metrics]


def test_a_failure_reaches_the_callbacks_with_its_reason(tmp_path):
    class Broken(Recorder):
        def eval(self, row):
            raise ValueError("tracker is down")
    recorder = Broken()
    with pytest.raises(ValueError):
        pretrain(make_recipe({**TINY, "total_steps": 4}), tmp_path / "run", reporter=recorder)
    assert recorder.calls[-1] == ("failure", "failed")
    assert store.read_run_record(tmp_path / "run").error == "ValueError: tracker is down"


def test_one_progress_bar_shown_over_several_runs_counts_each_runs_own_steps(monkeypatch):
    import io

    from rich.console import Console

    from rltx import progress
    totals = []
    monkeypatch.setattr(progress._Clock, "remaining", lambda clock, step, total: totals.append(total))
    bar = progress.RichReporter("reproduce", Console(file=io.StringIO(), force_terminal=True, width=160))
    for total in (100, 20):  # e.g. a pre-training run, then a shorter fine-tuning run
        bar.start(total, 0)
        bar.train(1, 0.1, 2.3, 0.1, 1000.0)
        bar.close()
    assert totals == [100, 20]


def test_progress_shows_no_nan_before_training_and_elapsed_time_with_the_eta():
    import io
    import time

    from rich.console import Console

    from rltx.progress import LogReporter, RichReporter
    screen = io.StringIO()
    bar = RichReporter("pretrain", Console(file=screen, force_terminal=True, width=160))
    bar.start(100, 40)  # a resume at step 40
    bar.progress.refresh()
    assert "nan" not in screen.getvalue() and "loss -" in screen.getvalue() and "elapsed 0s" in screen.getvalue()
    bar.train(50, 1.0, 0.5, 0.8, 1000.0)
    time.sleep(0.05)
    bar.train(60, 1.2, 0.4, 0.9, 1000.0)
    bar.progress.refresh()
    bar.close()
    assert "loss 0.4000" in screen.getvalue() and "eta " in screen.getvalue()
    log = io.StringIO()
    lines = LogReporter(log, every_seconds=0)
    lines.start(100, 40)
    lines.train(50, 1.0, 0.5, 0.8, 1000.0)
    lines.train(60, 1.2, 0.4, 0.9, 1000.0)
    first, second = log.getvalue().splitlines()
    assert first.endswith("eta -") and "elapsed 0s" in first
    remaining = float(second.split("eta ")[1].rstrip("s"))  # 40 steps at the pace of steps 50-60
    assert "nan" not in log.getvalue() and remaining >= 0
