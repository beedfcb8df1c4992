"""End-to-end pre-training: the run file holds what it should, metrics match an independent
evaluation, kills and signals resume to the same result, and the replica count does not matter."""
import re
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import yaml

import rltx
from rltx import store
from tests_support import tiny_recipe_dict, wait_for_rows
from rltx.config import make_recipe
from rltx.errors import UsageError
from rltx.loop import Diverged
from rltx.pretrain import pretrain

CLI = [sys.executable, "-m", "rltx"]


def cli(*args, **kwargs):
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, timeout=300, **kwargs)


def final_state(run_dir):
    step, weights, optimizer = store.read_state(run_dir)
    return step, weights, store.read_metrics(run_dir)[-1]


def test_run_holds_every_item_and_metrics_are_whole_set(tiny_recipe, tmp_path):
    summary = pretrain(tiny_recipe, tmp_path / "run")
    run_dir = tmp_path / "run"
    record = store.read_run_record(run_dir)
    assert record.status == "completed" == store.read_status(run_dir)
    assert make_recipe(yaml.safe_load(record.config_yaml)) == tiny_recipe  # re-runnable as is
    assert {"version/tensorflow", "version/keras", "devices", "git_commit", "strategy"} <= set(record.environment)
    assert record.environment["version/rltx"] == rltx.__version__  # the running code's, read by transfers
    samples = record.samples
    assert len(samples["upstream_indices"]) == 384 and len(samples["downstream_indices"]) == 64
    assert not np.intersect1d(samples["upstream_indices"], samples["downstream_indices"]).size
    rows = store.read_metrics(run_dir)
    steps = [row["step"] for row in rows]
    assert steps[0] == 0 and steps[-1] == 40 and steps == sorted(steps)
    assert {"train_accuracy", "train_loss", "test_accuracy", "test_loss", "learning_rate", "wall_time",
            "images_per_second", "weight_norm/conv_0", "weight_norm/dense_0", "weight_norm/head"} <= set(rows[0])
    assert store.checkpoint_steps_stored(run_dir) == [0, 10, 20, 30, 40]
    assert final_state(run_dir)[0] == 40

    # Oracle: a plain Keras forward pass over the whole upstream set with the stored final
    # weights gives the stored train accuracy and loss (A.3: not mini-batch numbers).
    from rltx.tasks import build_recipe_model, open_recipe_source
    source = open_recipe_source(tiny_recipe)
    model = build_recipe_model(tiny_recipe, source.input_shape, 4)
    weights = store.read_checkpoint(run_dir, 40)
    for variable in model.weights:
        variable.assign(weights[variable.path])
    logits = model.predict(source.train(samples["upstream_indices"]).x, verbose=0)
    labels = samples["upstream_labels"]
    shifted = logits - logits.max(axis=1, keepdims=True)
    loss = np.mean(np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(labels)), labels])
    # an accuracy is a count over n: one example counted wrong moves it by 1/n, round-off of the
    # division (in any precision) by far less than 1/(2n)
    assert summary.metrics["train_accuracy"] == pytest.approx(np.mean(logits.argmax(1) == labels),
                                                              abs=0.5 / len(labels))
    assert summary.metrics["train_loss"] == pytest.approx(loss, rel=1e-4)
    # The stored initial checkpoint is the He initialisation, not the trained weights.
    assert rows[0]["weight_norm/conv_0"] == pytest.approx(
        np.sqrt(sum(np.sum(v ** 2) for k, v in store.read_checkpoint(run_dir, 0).items() if k.startswith("conv_0/"))))


def test_rerun_of_completed_run_changes_nothing_and_other_recipe_refused_but_not_another_name(tiny_recipe, tmp_path):
    pretrain(tiny_recipe, tmp_path)
    before = (tmp_path / store.RUN_FILE).read_bytes()
    assert pretrain(tiny_recipe, tmp_path).status == "completed"
    assert (tmp_path / store.RUN_FILE).read_bytes() == before
    # a new name (a renamed profile) or another data folder is the same run
    renamed = make_recipe({**tiny_recipe.to_dict(), "description": "renamed [other profile]",
                           "data_dir": str(tmp_path / "elsewhere"), "offline": True})
    assert pretrain(renamed, tmp_path).status == "completed"
    assert (tmp_path / store.RUN_FILE).read_bytes() == before
    other = make_recipe({**tiny_recipe.to_dict(), "learning_rate": 0.5})
    with pytest.raises(UsageError, match="holds another run.*learning_rate: 0.05 -> 0.5"):
        pretrain(other, tmp_path)
    with pytest.raises(UsageError, match="already holds a run"):
        pretrain(tiny_recipe, tmp_path, resume=False)
    assert (tmp_path / store.RUN_FILE).read_bytes() == before


def test_a_run_recorded_before_a_key_existed_resumes_with_its_default(tiny_recipe, tmp_path):
    """A record without a key added to rltx later (construct_signs) ran with that key's default: the
    same run, so it is resumed after an upgrade; a recipe with another value of it is another run."""
    import dataclasses
    pretrain(tiny_recipe, tmp_path)
    record = store.read_run_record(tmp_path)
    config = yaml.safe_load(record.config_yaml)
    assert config.pop("construct_signs") == "largest_positive"
    store.write_run_record(tmp_path, dataclasses.replace(record, config_yaml=yaml.safe_dump(config)))
    assert pretrain(tiny_recipe, tmp_path).status == "completed"
    other = make_recipe({**tiny_recipe.to_dict(), "construct_signs": "random"})
    with pytest.raises(UsageError, match="holds another run.*construct_signs: 'largest_positive' -> 'random'"):
        pretrain(other, tmp_path)


def test_divergence_marks_the_run_failed(tiny_recipe, tmp_path):
    exploding = make_recipe({**tiny_recipe.to_dict(), "learning_rate": 1e12})
    with pytest.raises(Diverged, match=r"last finite eval point: step \d+, train loss \d") as failure:
        pretrain(exploding, tmp_path)
    assert "nan" not in str(failure.value).split(";")[-1]  # the finite point, not a row of NaN
    record = store.read_run_record(tmp_path)
    assert record.status == "failed" and "Diverged" in record.error


def test_a_loss_that_becomes_nan_at_the_last_step_fails_the_run(tiny_recipe, tmp_path):
    """The mini-batch loss of the last update is still finite; the update makes the weights NaN, which only the
    whole-set loss of the last eval point shows. The run used to end `completed`, health ok. Now it fails as a
    blow-up mid-run does, the NaN weights are never saved, and a rerun fails again instead of completing."""
    exploding = make_recipe({**tiny_recipe.to_dict(), "learning_rate": 1e20, "total_steps": 1})
    for _ in range(2):
        with pytest.raises(Diverged, match=r"whole-training-set loss became (nan|inf) at step 1; last finite eval "
                                           r"point: step 0"):
            pretrain(exploding, tmp_path)
        record = store.read_run_record(tmp_path)
        assert record.status == "failed" and re.fullmatch(r"diverged: loss (nan|inf) at step 1", record.health)
        assert [row["step"] for row in store.read_metrics(tmp_path)] == [0]


@pytest.fixture
def long_yaml(tmp_path):
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump({**tiny_recipe_dict(), "total_steps": 400, "num_eval_points": 30, "checkpoint_every": 0}))
    return path


def test_a_longer_schedule_trains_the_first_steps_of_the_longer_run(tiny_recipe, tmp_path):
    """Oracle: the definition of schedule_steps. 20 steps on a 40-step A.3 schedule end with the
    weights the 40-step run holds at step 20 (its first division at 13, none at 6 as a 20-step
    schedule would have), and the stored learning rate is the longer schedule's."""
    pretrain(tiny_recipe, tmp_path / "long")  # 40 steps, checkpoint at 20
    first_part = make_recipe({**tiny_recipe.to_dict(), "total_steps": 20, "schedule_steps": 40})
    pretrain(first_part, tmp_path / "part")
    pretrain(make_recipe({**tiny_recipe.to_dict(), "total_steps": 20}), tmp_path / "short")
    long, part, short = (store.read_checkpoint(tmp_path / name, 20) for name in ("long", "part", "short"))
    for name in long:
        np.testing.assert_array_equal(part[name], long[name])
    assert any(not np.array_equal(short[name], long[name]) for name in long)
    rates = {row["step"]: row["learning_rate"] for row in store.read_metrics(tmp_path / "part")}
    assert rates[0] == pytest.approx(0.05) and rates[20] == pytest.approx(0.05 / 3)


@pytest.mark.slow
def test_sigkill_at_several_moments_resumes_to_the_same_result(long_yaml, tmp_path):
    reference = tmp_path / "reference"
    assert cli("pretrain", long_yaml, "--out", reference, "--quiet").returncode == 0
    killed = tmp_path / "killed"
    for rows in (3, 9, 16):  # kill moments: early, middle and late eval points
        process = subprocess.Popen(CLI + ["pretrain", str(long_yaml), "--out", str(killed), "--quiet"],
                                   stderr=subprocess.PIPE, text=True)
        wait_for_rows(killed, rows, process)
        time.sleep(0.1 * rows % 0.3)
        process.kill()
        process.wait()
        for path in killed.rglob("*.h5"):  # everything left behind opens
            h5py.File(path, "r").close()
        assert store.read_status(killed) == "interrupted" == store.read_status(str(killed))  # the README's call
    result = cli("pretrain", long_yaml, "--out", killed, "--quiet")
    assert result.returncode == 0, result.stderr
    step, weights, metrics = final_state(killed)
    ref_step, ref_weights, ref_metrics = final_state(reference)
    assert step == ref_step == 400
    for name in ("train_accuracy", "train_loss", "test_accuracy", "test_loss"):
        assert metrics[name] == ref_metrics[name]
    for name in ref_weights:
        np.testing.assert_array_equal(weights[name], ref_weights[name])
    assert [r["step"] for r in store.read_metrics(killed)] == [r["step"] for r in store.read_metrics(reference)]


@pytest.mark.slow
def test_sigterm_saves_and_says_how_to_resume(long_yaml, tmp_path):
    process = subprocess.Popen(CLI + ["pretrain", str(long_yaml), "--out", str(tmp_path / "run"), "--quiet"],
                               stderr=subprocess.PIPE, text=True)
    wait_for_rows(tmp_path / "run", 4, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Rerun the same command to resume" in stderr and "Traceback" not in stderr
    assert store.read_run_record(tmp_path / "run").status == "interrupted"
    assert store.read_state(tmp_path / "run")[0] > 0


@pytest.mark.slow
def test_two_replicas_match_one(tiny_yaml, tmp_path):
    """2 logical CPU devices under MirroredStrategy give the metrics of one device (A.3: the global
    batch stays batch_size, so only the summation order differs)."""
    split = ("import sys, tensorflow as tf; cpu = tf.config.list_physical_devices('CPU')[0]; "
             "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2); "
             "from rltx.cli import main; sys.argv[0] = 'rltx'; main()")
    one = cli("pretrain", tiny_yaml, "--out", tmp_path / "one", "--quiet")
    two = subprocess.run([sys.executable, "-c", split, "pretrain", str(tiny_yaml), "--out", str(tmp_path / "two"),
                          "--quiet"], capture_output=True, text=True, timeout=300)
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    assert store.read_run_record(tmp_path / "two").environment["num_replicas"] == "2"
    assert store.read_run_record(tmp_path / "one").environment["num_replicas"] == "1"
    for row_one, row_two in zip(store.read_metrics(tmp_path / "one"), store.read_metrics(tmp_path / "two")):
        for name in ("train_loss", "test_loss", "weight_norm/conv_0", "weight_norm/head"):
            assert row_two[name] == pytest.approx(row_one[name], rel=1e-4), (row_one["step"], name)
        assert abs(row_two["train_accuracy"] - row_one["train_accuracy"]) <= 2 / 384


@pytest.mark.slow
def test_cli_bad_input_one_line_exit_2(tiny_yaml, tmp_path):
    result = cli("pretrain", tiny_yaml, "--set", "learning_rat=0.1", "--out", tmp_path / "run")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == "Error: unknown recipe key 'learning_rat'; did you mean 'learning_rate'?"
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_the_resume_state_is_written_first_last_and_then_once_a_minute(tiny_recipe, tmp_path, monkeypatch):
    """A run shorter than STATE_EVERY_SECONDS with 8 eval points writes its metrics at each of them but its
    resume state (twice the model) only at the first and the last: step 0 and the final step."""
    from rltx import loop
    written = []
    write_state = store.write_state
    monkeypatch.setattr(store, "write_state", lambda run_dir, step, *rest: (written.append(step),
                                                                            write_state(run_dir, step, *rest)))
    recipe = make_recipe({**tiny_recipe.to_dict(), "num_eval_points": 8})
    pretrain(recipe, tmp_path / "run")
    assert len(store.read_metrics(tmp_path / "run")) == 8 and loop.STATE_EVERY_SECONDS >= 60
    assert written == [0, recipe.steps]


def test_a_batch_order_built_in_segments_trains_the_same_run(tiny_recipe, tmp_path, monkeypatch):
    """The batch order is built a segment at a time (a whole long run's order hung it before step 0). The
    order is a pure function of (seed, step), so 3-step segments must give the run of one segment (the
    oracle): the same weights at every checkpoint and the same metrics."""
    from rltx import loop
    pretrain(tiny_recipe, tmp_path / "whole")
    monkeypatch.setattr(loop, "SEGMENT_INDICES", 3 * tiny_recipe.batch_size)
    pretrain(tiny_recipe, tmp_path / "segmented")
    steps = store.checkpoint_steps_stored(tmp_path / "whole")
    assert steps == store.checkpoint_steps_stored(tmp_path / "segmented") and len(steps) > 2
    for step in steps:
        whole, segmented = (store.read_checkpoint(tmp_path / name, step) for name in ("whole", "segmented"))
        assert all(np.array_equal(whole[name], segmented[name]) for name in whole)
    timing = ("wall_time", "images_per_second")
    rows = [[{k: v for k, v in row.items() if k not in timing} for row in store.read_metrics(tmp_path / name)]
            for name in ("whole", "segmented")]
    assert rows[0] == rows[1]


def test_the_provenance_git_call_never_writes_the_checkouts_index(tmp_path):
    """`git status` refreshes a stale index, taking .git/index.lock; a run killed then (or limited in file size,
    as a test of a full disk was) left that lock in the user's checkout. The oracle is plain `git status`,
    which does rewrite this index, where rltx's call must leave its bytes alone."""
    import shutil
    import subprocess
    import time

    from rltx.environment import git_commit
    if shutil.which("git") is None:
        pytest.skip("no git")
    git = ["git", "-C", str(tmp_path), "-c", "user.email=a@b", "-c", "user.name=a"]
    (tmp_path / "f").write_text("a\n")
    for args in (["init", "-q"], ["add", "f"], ["commit", "-qm", "x"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    time.sleep(1.1)
    (tmp_path / "f").touch()  # same content, newer mtime: the index's stat data is stale
    index = tmp_path / ".git" / "index"
    before = index.read_bytes()
    assert len(git_commit(tmp_path)) == 40  # the commit, and clean: the content did not change
    assert index.read_bytes() == before
    subprocess.run([*git, "status", "--porcelain"], check=True, capture_output=True)
    assert index.read_bytes() != before  # the positive control
