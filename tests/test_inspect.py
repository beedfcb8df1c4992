"""`rltx runs`, `rltx show` and `rltx export` on completed, interrupted, failed and running runs,
and `rltx.load_model`: the exported model reproduces the stored train accuracy at its step."""
import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from rltx import store
from rltx.config import make_recipe
from rltx.pretrain import pretrain
from rltx.progress import Reporter
from tests_support import TINY, invoke_ok

STOP_AT = 20  # an eval point of TINY (40 steps, checkpoints every 10)


class StopAt(Reporter):
    """Ends a run from inside at its eval point STOP_AT: by a signal (the loop saves and marks it
    interrupted) or by an exception (the loop marks it failed with the reason)."""

    def __init__(self, how):
        self.how = how

    def eval(self, row):
        if row["step"] == STOP_AT:
            if self.how == "signal":
                os.kill(os.getpid(), signal.SIGINT)
            else:
                raise RuntimeError("stopped by the test")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("inspect")
    # metrics at the checkpoints only (0, 10, ... 40; STOP_AT is one)
    recipe = make_recipe({**TINY, "labels_downstream": "random", "num_classes_downstream": 3,
                          "total_steps_downstream": 10, "num_eval_points": 2})
    pretrain(recipe, directory / "done")
    with pytest.raises(Exception, match="interrupted"):
        pretrain(recipe, directory / "stopped", reporter=StopAt("signal"))
    with pytest.raises(RuntimeError):
        pretrain(recipe, directory / "broken", reporter=StopAt("exception"))
    (directory / "r.yaml").write_text(yaml.safe_dump(recipe.to_dict()))
    invoke_ok("transfer", directory / "r.yaml", "--from", directory / "done", "--out", directory / "tr", "--quiet")
    return directory


def rows_of(directory):
    return {os.path.basename(row["name"]): row for row in json.loads(invoke_ok("runs", directory, "--json").output)}


def test_runs_lists_every_run_with_status_progress_and_final_accuracies(runs):
    rows = rows_of(runs)
    assert {name: (row["kind"], row["status"], row["total_steps"]) for name, row in rows.items()} == {
        "done": ("pretrain", "completed", 40), "stopped": ("pretrain", "interrupted", 40),
        "broken": ("pretrain", "failed", 40), "tr": ("transfer", "completed", 10)}
    assert rows["done"]["step"] == 40 and rows["broken"]["step"] == STOP_AT
    assert rows["stopped"]["step"] >= STOP_AT
    for name, row in rows.items():
        with h5py.File(runs / name / store.METRICS_FILE) as metrics:
            assert row["train_accuracy"] == metrics["train_accuracy"][-1]
            assert row["test_accuracy"] == metrics["test_accuracy"][-1]
    table = invoke_ok("runs", runs).output.splitlines()
    assert table[0].split()[:4] == ["NAME", "KIND", "RECIPE", "STATUS"] and len(table) == 5
    assert any("failed" in line and "/40" in line for line in table)


def test_a_run_being_written_shows_as_running(runs):
    with store.RunLock(runs / "stopped"):
        record = store.read_run_record(runs / "stopped")
        record.status = "running"
        store.write_run_record(runs / "stopped", record)
        assert rows_of(runs)["stopped"]["status"] == "running"
        record.status = "interrupted"
        store.write_run_record(runs / "stopped", record)


def test_a_completed_run_missing_its_final_checkpoint_or_metrics_is_listed_as_damaged(runs, tmp_path):
    """A completed run keeps its final checkpoint and its metrics; without the one `transfer`, `export` and
    `analyze` refuse it, without the other a rerun does, and `runs` / `show` say so instead of `completed` and
    health ok. Interrupted, failed and whole runs (a transfer's final step is its own) are not damaged."""
    import shutil
    assert {name: row["damage"] for name, row in rows_of(runs).items()} == dict.fromkeys(
        ("done", "stopped", "broken", "tr"))
    removals = {"no_final": [f"{store.CHECKPOINT_DIR}/step_00000040.h5"], "no_metrics": [store.METRICS_FILE],
                "neither": [f"{store.CHECKPOINT_DIR}/step_00000040.h5", store.METRICS_FILE],
                "flagged": [store.METRICS_FILE]}
    for name, removed in removals.items():
        shutil.copytree(runs / "done", tmp_path / name)
        for path in removed:
            (tmp_path / name / path).unlink()
    shutil.copytree(runs / "tr", tmp_path / "tr_no_final")
    (tmp_path / "tr_no_final" / store.CHECKPOINT_DIR / "step_00000010.h5").unlink()
    shutil.copytree(runs / "done", tmp_path / "whole")
    with store.RunLock(tmp_path / "flagged"):
        record = store.read_run_record(tmp_path / "flagged")
        record.health = "diverged: loss nan at step 40"
        store.write_run_record(tmp_path / "flagged", record)
    for name in ("old_keys", "old_keys_no_checkpoints"):  # keys of an older rltx: the final step is unknown
        shutil.copytree(runs / "done", tmp_path / name)
        with store.RunLock(tmp_path / name):
            record = store.read_run_record(tmp_path / name)
            record.config_yaml += "a_key_since_renamed: 1\n"
            store.write_run_record(tmp_path / name, record)
    shutil.rmtree(tmp_path / "old_keys_no_checkpoints" / store.CHECKPOINT_DIR)
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / store.RUN_FILE).write_bytes(b"not hdf5")
    rows = rows_of(tmp_path)
    assert rows["old_keys"]["total_steps"] is None and rows["old_keys"]["damage"] is None
    assert rows["old_keys_no_checkpoints"]["damage"] == "every checkpoint (checkpoints/) missing; restore from a backup"
    final = "its final checkpoint checkpoints/step_00000040.h5"
    assert rows["no_final"]["damage"] == f"{final} missing; restore from a backup"
    assert rows["no_metrics"]["damage"] == "metrics.h5 missing; restore from a backup"
    assert rows["neither"]["damage"] == f"{final} and metrics.h5 missing; restore from a backup"
    assert rows["tr_no_final"]["damage"] == ("its final checkpoint checkpoints/step_00000010.h5 missing; "
                                             "restore from a backup")
    assert rows["whole"]["damage"] is None and rows["whole"]["status"] == "completed"
    assert rows["garbage"]["status"] == "unreadable" and rows["garbage"]["damage"] is None
    table = {line.split()[0]: line for line in invoke_ok("runs", tmp_path).output.splitlines()[1:]}
    assert "completed, damaged" in table[str(tmp_path / "no_final")]
    assert "completed, damaged, diverged" in table[str(tmp_path / "flagged")]
    assert "damaged" not in table[str(tmp_path / "whole")]
    text = invoke_ok("show", tmp_path / "no_final").output.splitlines()
    assert f"damaged:     {final} missing; restore from a backup" in text
    assert not any(line.startswith("damaged:") for line in invoke_ok("show", tmp_path / "whole").output.splitlines())
    # a completed run with no checkpoint left has none missing, not none yet
    assert "checkpoints: none (missing)" in invoke_ok("show", tmp_path / "old_keys_no_checkpoints").output.splitlines()


def test_runs_linked_in_are_listed_and_plotted_and_a_link_cycle_ends(runs, tmp_path):
    """Run folders linked in by symbolic links (from scratch storage) were skipped: `rltx runs` said no runs,
    `plot curves` that the folder holds none. Each real folder is walked once, so a link back up ends."""
    import shutil
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "done").symlink_to(runs / "done", target_is_directory=True)
    (linked / "loop").symlink_to(linked, target_is_directory=True)
    shutil.copytree(runs / "done", linked / "exp7")
    (linked / "a_latest").symlink_to(linked / "exp7", target_is_directory=True)  # listed by its real name, once
    assert sorted(rows_of(linked)) == ["done", "exp7"]
    both = [row["name"] for row in json.loads(invoke_ok("runs", linked / "exp7", linked, "--json").output)]
    assert both == [str(linked / "exp7"), str(linked / "done")]  # each real folder once over all the paths given
    shutil.rmtree(linked / "exp7")
    (linked / "a_latest").unlink()
    invoke_ok("plot", "curves", linked, "-o", tmp_path / "linked.png")
    assert (tmp_path / "linked.png").stat().st_size > 0


def test_show_gives_the_reason_sources_with_sha256_and_a_resume_command_that_works(runs, tmp_path):
    shown = json.loads(invoke_ok("show", runs / "tr", "--json").output)
    checkpoint = store.checkpoint_path(runs / "done", 40)
    assert shown["sources"] == [{"run": str((runs / "done").resolve()), "step": 40,
                                 "sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
                                 "now": str((runs / "done").resolve())}]
    assert shown["samples"]["downstream_labels"] == {"count": TINY["num_examples_downstream"], "classes": 3}
    assert yaml.safe_load(shown["recipe_yaml"])["total_steps_downstream"] == 10
    text = invoke_ok("show", runs / "broken").output
    assert "failed (RuntimeError: stopped by the test)" in text and "resume:" in text
    broken = json.loads(invoke_ok("show", runs / "broken", "--json").output)
    assert broken["checkpoints"] == [0, 10, 20] and broken["last_metrics"]["step"] == STOP_AT
    command = shlex.split(broken["resume_command"])
    assert command[0] == "rltx"
    invoke_ok(*command[1:], "--quiet")
    assert store.read_status(runs / "broken") == "completed"
    assert store.read_metrics(runs / "broken")[-1]["step"] == 40
    scratch_command = json.loads(invoke_ok("show", runs / "tr", "--json").output)["resume_command"]
    assert "--from-step 40" in scratch_command and f"--out {runs / 'tr'}" in scratch_command


def test_exported_model_reproduces_the_stored_train_accuracy_and_csv_the_metrics(runs, tmp_path):
    import keras

    from rltx.runs import examples, open_run
    invoke_ok("export", runs / "done", "--step", 20, "-o", tmp_path / "m.keras", "--csv", tmp_path / "m.csv")
    model = keras.saving.load_model(tmp_path / "m.keras")  # plain Keras, no rltx code
    run = open_run(runs / "done")
    predicted = model.predict(examples(run, "train"), verbose=0).argmax(-1)
    accuracy = np.mean(predicted == run.samples["upstream_labels"])
    with h5py.File(runs / "done" / store.METRICS_FILE) as metrics:
        steps = list(metrics["step"][()])
        assert accuracy == pytest.approx(metrics["train_accuracy"][steps.index(20)], abs=1e-6)
        majority = np.bincount(predicted).max() / len(predicted)  # health's column
        assert majority == pytest.approx(metrics["train_majority_fraction"][steps.index(20)], abs=1e-6)
        lines = (tmp_path / "m.csv").read_text().splitlines()
        header = lines[0].split(",")
        assert [float(line.split(",")[header.index("test_loss")]) for line in lines[1:]] == \
            pytest.approx(metrics["test_loss"][()].tolist(), rel=1e-12)
    import rltx
    assert np.array_equal(rltx.load_model(runs / "done", 20).predict(examples(run, "train"), verbose=0).argmax(-1),
                          predicted)


def test_export_refuses_an_existing_file_and_a_step_not_stored_writing_nothing(runs, tmp_path):
    from click.testing import CliRunner

    from rltx.cli import main
    (tmp_path / "m.csv").write_text("mine")
    taken = CliRunner().invoke(main, ["export", str(runs / "done"), "-o", str(tmp_path / "a.keras"),
                                      "--csv", str(tmp_path / "m.csv")])
    assert taken.exit_code == 2 and "m.csv exists" in taken.output and not (tmp_path / "a.keras").exists()
    missing = CliRunner().invoke(main, ["export", str(runs / "done"), "--step", "7", "-o", str(tmp_path / "b.keras")])
    assert missing.exit_code == 2 and "stored steps: 0, 10, 20, 30, 40" in missing.output
    assert not (tmp_path / "b.keras").exists()


def test_export_takes_run_h5_and_refuses_a_step_for_csv_alone_and_a_run_without_metrics(runs, tmp_path):
    """`export RUN/run.h5` is the run, as for show and analyze (it read RUN/run.h5/run.h5); --step with --csv
    alone did nothing; a completed run that lost its metrics.h5 gave a CSV of no rows. Each refusal is one line,
    as a user meets it, and writes nothing."""
    import shutil
    invoke_ok("export", runs / "done" / store.RUN_FILE, "--csv", tmp_path / "all.csv")
    assert len((tmp_path / "all.csv").read_text().splitlines()) == 1 + len(store.read_metrics(runs / "done"))
    shutil.copytree(runs / "done", tmp_path / "older")  # a recipe key of an older rltx: its metrics still export
    with store.RunLock(tmp_path / "older"):
        record = store.read_run_record(tmp_path / "older")
        record.config_yaml += "a_key_since_renamed: 1\n"
        store.write_run_record(tmp_path / "older", record)
    invoke_ok("export", tmp_path / "older", "--csv", tmp_path / "older.csv")
    assert (tmp_path / "older.csv").read_text() == (tmp_path / "all.csv").read_text()
    shutil.copytree(runs / "done", tmp_path / "lost")
    (tmp_path / "lost" / store.METRICS_FILE).unlink()
    for args, line in (
            (("--step", "7", "--csv", tmp_path / "s.csv"), "--step chooses the model's checkpoint, and the CSV holds "
                                                          "every eval point: add -o MODEL.keras or drop --step"),
            (("--csv", tmp_path / "s.csv"), None)):
        run = runs / "done" if line else tmp_path / "lost"
        line = line or (f"{(tmp_path / 'lost').resolve()} is completed but its metrics.h5 is missing: the run is "
                        "damaged; restore the file from a backup")
        result = subprocess.run([sys.executable, "-m", "rltx", "export", str(run), *map(str, args)],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 2 and result.stderr == f"Error: {line}\n", result.stderr
        assert not (tmp_path / "s.csv").exists()


def test_import_rltx_does_not_import_tensorflow():
    code = "import sys, rltx; assert callable(rltx.load_model); print('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def test_run_times_are_iso_8601_and_old_float_times_still_read(tmp_path):
    import datetime
    record = store.RunRecord("dataset: gaussian\n", {}, {"upstream_indices": np.arange(3)}, created=1796187429.25)
    store.write_run_record(tmp_path, record)
    with h5py.File(tmp_path / store.RUN_FILE) as handle:
        created, updated = str(handle.attrs["created"]), str(handle.attrs["updated"])
    assert created == "2026-12-02T04:57:09.250000+00:00"
    assert datetime.datetime.fromisoformat(updated).tzinfo is not None
    assert store.read_run_record(tmp_path).created == 1796187429.25
    with h5py.File(tmp_path / store.RUN_FILE, "a") as handle:  # as written by earlier versions
        handle.attrs["created"] = 1796187429.25
    assert store.read_run_record(tmp_path).created == 1796187429.25


def test_the_resume_command_of_a_paired_transfer_resumes_its_baseline_too(tmp_path):
    from rltx.inspect_runs import resume_command
    identity = {"sources": json.dumps(["/r/source"]), "from_step": json.dumps([40]),
                "source_digests": json.dumps(["0" * 64])}
    transfer = store.RunRecord("", {}, {}, kind="transfer", identity=identity,
                               transfer={"paired_with": json.dumps(["/r/t-scratch"])})
    scratch = store.RunRecord("", {}, {}, kind="scratch", identity=identity,
                              transfer={"paired_with": json.dumps(["/r/t"])})
    expected = "rltx transfer /r/t/run.h5 --from /r/source --from-step 40 --with-baseline --out /r/t"
    assert resume_command(Path("/r/t"), transfer) == expected
    assert resume_command(Path("/r/t-scratch"), scratch) == expected
    # the pair moved together (its records still name /r): the scratch run resumes its transfer where it is now
    for name, record in (("t", transfer), ("t-scratch", scratch)):
        (tmp_path / name).mkdir()
        store.write_run_record(tmp_path / name, record)
    moved = f"rltx transfer {tmp_path}/t/run.h5 --from /r/source --from-step 40 --with-baseline --out {tmp_path}/t"
    assert resume_command(tmp_path / "t-scratch", scratch) == moved
