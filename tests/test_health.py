"""Runs that fail silently are flagged (rltx.health): oracles are metric series whose failure is
known by construction, and real runs forced to diverge or collapse."""
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
from tests_support import TINY

from rltx import health, store
from rltx.config import make_recipe
from rltx.pretrain import pretrain
from rltx.progress import Reporter

LN4 = float(np.log(4))


def rows(*points):
    return [{"step": s, "train_loss": loss, "train_accuracy": accuracy} for s, loss, accuracy in points]


def test_a_learning_run_is_ok_even_when_it_starts_at_chance():
    # an untrained model at ln C and chance accuracy is not a collapse; learning from there is fine
    assert health.judge(rows((0, LN4, 0.25)), 4, 1000) == "ok"
    assert health.judge(rows((0, LN4, 0.25), (10, 1.0, 0.6)), 4, 1000) == "ok"
    # a spike that recovers is no failure at the end
    assert health.judge(rows((0, 2.0, 0.25), (1, 15.0, 0.25), (10, 0.8, 0.7)), 4, 1000) == "ok"


def test_divergence_is_three_times_the_initial_loss():
    assert health.judge(rows((0, 2.0, 0.25), (10, 5.9, 0.3)), 4, 1000) == "ok"
    flagged = health.judge(rows((0, 2.0, 0.25), (5, 3.0, 0.3), (10, 6.2, 0.3)), 4, 1000)
    assert flagged == "diverged: loss 6.2 at step 10, 3.1x its initial 2"
    assert health.is_flagged(flagged)


def test_a_loss_that_is_not_a_number_is_diverged_not_ok():
    """NaN compares false with everything, so "more than 3x the initial loss" alone passed it as ok (a run
    whose last update made its weights NaN was recorded `completed`, health ok)."""
    for loss in (np.nan, np.inf):
        flagged = health.judge(rows((0, 2.0, 0.25), (4, loss, 0.1)), 4, 1000)
        assert flagged == f"diverged: loss {loss} at step 4" and health.is_flagged(flagged)
        assert health.change_line("r", "diverged: loss 42.5 at step 1, 12.5x its initial 3.41", flagged,
                                  {"step": 4, "train_loss": loss}) is None  # never "no longer diverged: loss nan"


def test_collapse_is_chance_accuracy_at_the_loss_of_a_constant_predictor():
    # chance band for C = 4, n = 1000: 0.25 + 3 sqrt(0.25 * 0.75 / 1000) = 0.291
    collapsed = rows((0, 2.3, 0.25), (5, 9.0, 0.26), (10, LN4 * 1.005, 0.27), (20, LN4, 0.29))
    flagged = health.judge(collapsed, 4, 1000)
    assert flagged.startswith("collapsed: constant outputs from step 10") and health.is_flagged(flagged)
    assert health.judge(rows((0, 2.3, 0.25), (20, LN4, 0.30)), 4, 1000) == "ok"        # above chance
    assert health.judge(rows((0, 2.3, 0.25), (20, LN4 * 1.02, 0.26)), 4, 1000) == "ok"  # loss off ln C by 2%
    assert not health.is_flagged("ok") and not health.is_flagged("unchecked")


def test_a_slow_model_that_still_tells_inputs_apart_is_not_collapsed():
    # at chance with the loss at ln C, but one class for only 94% of the examples: alive and slow
    # (Table 5's smallest-eigenvector filters), evidence of slowness; 99.8%: constant (Table 4's dead runs)
    slow = [{"step": 0, "train_loss": LN4, "train_accuracy": 0.25, "train_majority_fraction": 0.5},
            {"step": 20, "train_loss": LN4, "train_accuracy": 0.26, "train_majority_fraction": 0.94}]
    assert health.judge(slow, 4, 1000) == "ok"
    slow[-1]["train_majority_fraction"] = 0.998
    assert health.judge(slow, 4, 1000).startswith("collapsed: constant outputs from step 20")


def test_constant_unequal_outputs_are_collapsed_and_learning_below_ln_c_is_not():
    """Constant outputs q = (0.2, 0.8/9 x 9) on 10 balanced classes: cross-entropy -(ln 0.2 + 9 ln(0.8/9)) / 10
    = 2.339, 1.6% above ln 10, at chance, one class for every example: collapsed (the rule once asked for a
    loss within 1% of ln C on both sides and called this ok). One class for 99.5% of the examples but the
    loss 3% below ln C: the outputs still follow the inputs, so the run is learning."""
    loss = -(np.log(0.2) + 9 * np.log(0.8 / 9)) / 10
    assert loss == pytest.approx(2.339, abs=1e-3)
    constant = [{"step": 0, "train_loss": 2.30, "train_accuracy": 0.1, "train_majority_fraction": 0.3},
                {"step": 50, "train_loss": loss, "train_accuracy": 0.1, "train_majority_fraction": 1.0}]
    assert health.judge(constant, 10, 10000).startswith("collapsed: constant outputs from step 50")
    constant[-1]["train_loss"] = 0.97 * np.log(10)
    constant[-1]["train_majority_fraction"] = 0.995
    assert health.judge(constant, 10, 10000) == "ok"


@pytest.mark.parametrize("keys, expected", [
    ({"checkpoint_every": 0}, "ok"),  # TINY learns in its 40 steps (test_devices: loss down > 0.5)
    ({"learning_rate": 20.0, "total_steps": 12}, "diverged"),  # loss 2.3 -> 300 after one step, ~16 at 12
    ({"init_scale": 1e-8}, "collapsed"),                     # std 1e-4 of He's: logits ~0, constant outputs
])
def test_forced_failures_are_flagged_and_still_complete(tmp_path, keys, expected):
    messages = []

    class Recorder(Reporter):
        def message(self, text):
            messages.append(text)
    pretrain(make_recipe({**TINY, **keys}), tmp_path / "run", reporter=Recorder())
    record = store.read_run_record(tmp_path / "run")
    assert record.status == "completed" and health.health_kind(record.health) == expected, record.health
    # a line only when the judgement's kind changes (the record keeps the latest numbers): the last says
    # what the record holds, and no two lines in a row say the same
    prefix = f"warning: {tmp_path / 'run'} "
    kinds = [health.health_kind(m.removeprefix(prefix)) if m.startswith(prefix) else "ok" for m in messages]
    assert kinds[-1:] == ([] if expected == "ok" else [expected]), messages
    assert all(a != b for a, b in zip(kinds, kinds[1:])), messages


def test_a_line_only_when_the_kind_of_judgement_changes():
    row = {"step": 24, "train_loss": 8.53}
    diverged, later = "diverged: loss 42.5 at step 1, 12.5x its initial 3.41", "diverged: loss 163 at step 5, 47.7x its initial 3.41"
    collapsed = "collapsed: constant outputs from step 30 (train accuracy 0.100, loss 2.303, ln 10 = 2.303)"
    assert health.change_line("r", "ok", diverged, row) == f"warning: r {diverged}"
    assert health.change_line("r", diverged, later, row) is None  # only the numbers moved
    assert health.change_line("r", diverged, collapsed, row) == f"warning: r {collapsed}"
    assert health.change_line("r", later, "ok", row) == "note: r no longer diverged: loss 8.53 at step 24"
    assert health.change_line("r", "unchecked", "ok", row) is None  # a run written before the flag existed
    assert health.change_line("r", "unchecked", diverged, row) == f"warning: r {diverged}"


def test_a_resumed_run_keeps_its_health_and_warns_only_once(tmp_path):
    """Interrupted while flagged (lr 20 blows TINY up: diverged, then constant outputs) and resumed: the record
    never reads ok in between, and the resumed process does not warn again of what the record already says (it
    once started from a fresh record, 'ok')."""
    recipe = make_recipe({**TINY, "learning_rate": 20.0, "total_steps": 12, "num_eval_points": 12})
    lines, seen = [], []

    class StopAtEight(Reporter):
        def eval(self, row):
            if row["step"] == 8:
                os.kill(os.getpid(), signal.SIGINT)

        def message(self, text):
            lines.append(text)

    with pytest.raises(Exception, match="interrupted"):
        pretrain(recipe, tmp_path / "run", reporter=StopAtEight())
    stored = store.read_run_record(tmp_path / "run")
    assert stored.status == "interrupted" and health.is_flagged(stored.health), stored.health
    before = len(lines)

    class Watch(Reporter):
        def start(self, total_steps, first_step):  # after the resumed run wrote its record as running
            seen.append(store.read_run_record(tmp_path / "run").health)

        def eval(self, row):
            seen.append(store.read_run_record(tmp_path / "run").health)

        def message(self, text):
            lines.append(text)
    pretrain(recipe, tmp_path / "run", reporter=Watch())
    assert seen and all(health.is_flagged(h) for h in seen), seen
    repeated = f"warning: {tmp_path / 'run'} {health.health_kind(stored.health)}"
    assert not (lines[before:] and lines[before].startswith(repeated)), lines[before:]


@pytest.mark.slow  # a subprocess, end to end
def test_a_run_that_recovers_from_an_early_blow_up_says_so_and_ends_ok(tmp_path):
    """The quickstart's first steps overshoot (loss 3.41 -> 42.5 at step 1, 163 at step 5) and it then learns:
    the user meets a warning, a note once it is back within 3x, and a healthy record (the count of lines
    between them depends on the chaotic overshoot, so it is not pinned)."""
    completed = subprocess.run([sys.executable, "-m", "rltx", "pretrain", "quickstart", "--out", "run",
                                "--set", "total_steps=60"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    lines = [line for line in completed.stderr.splitlines() if line.startswith(("warning:", "note:"))]
    assert re.fullmatch(r"warning: run diverged: loss \S+ at step 1, \S+x its initial 3\.41", lines[0]), lines
    assert re.fullmatch(r"note: run no longer diverged: loss \S+ at step \d+", lines[-1]), lines
    assert store.read_run_record(tmp_path / "run").health == "ok"


def test_a_stored_run_that_ended_nan_under_an_older_rltx_reads_diverged_and_is_left_out(tmp_path):
    """Before 2026-12-07 a run whose last update made its weights NaN was recorded `completed`, health ok, with
    a NaN last loss in metrics.h5. Such a record reads diverged (the status stays completed), so `rltx runs`
    shows it and no verdict counts it; a finite run, or a flagged one, reads as stored."""
    import h5py

    from rltx.reproduce.pipelines import Context
    pretrain(make_recipe({**TINY, "total_steps": 4, "num_eval_points": 2}), tmp_path / "older", reporter=Reporter())
    assert store.read_run_record(tmp_path / "older").health == "ok"
    with h5py.File(tmp_path / "older" / store.METRICS_FILE, "r+") as metrics:
        metrics["train_loss"][-1] = np.nan
    record = store.read_run_record(tmp_path / "older")
    assert record.status == "completed"
    assert record.health == "diverged: loss nan at step 4 (judged on reading; its record said ok)"
    assert health.on_reading("collapsed: constant outputs from step 2", np.nan, 4).startswith("collapsed")
    assert health.on_reading("unchecked", 2.1, 4) == "unchecked"
    listed = subprocess.run([sys.executable, "-m", "rltx", "runs", str(tmp_path)], capture_output=True, text=True,
                            timeout=300)
    assert listed.returncode == 0 and "completed, diverged" in listed.stdout, listed.stdout + listed.stderr
    context = Context(None, None, tmp_path, None, print)
    assert not context.counts(tmp_path / "older") and context.excluded == [f"{tmp_path / 'older'}: {record.health}"]
