"""Faults and bad input (issue: reliability): kills, a full disk, concurrent writers, a bad-input
matrix, stored-file safety, and a fuzzed recipe parser. Nothing written may be lost or corrupted."""
import resource
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from rltx import store
from tests_support import tiny_recipe_dict, wait_for_rows
from rltx.cli import main
from rltx.config import FIELDS, make_recipe
from rltx.errors import UsageError

CLI = [sys.executable, "-m", "rltx"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def start(*args, **kwargs):
    return subprocess.Popen(CLI + [str(a) for a in args], stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, **kwargs)


def snapshot(directory):
    return {p.relative_to(directory): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({**tiny_recipe_dict(), "num_filters": 32, "num_units": 512, "total_steps": 300,
                                    "num_eval_points": 30, "checkpoint_every": 0,
                                    "labels_downstream": "random", "num_classes_downstream": 3}))
    return path


@pytest.mark.slow
def test_full_disk_keeps_the_previous_state_and_marks_the_run_failed(recipe, tmp_path):
    run = tmp_path / "run"
    process = start("pretrain", recipe, "--out", run, "--quiet")
    wait_for_rows(run, 5, process)
    process.kill()
    process.wait()
    before = (run / store.STATE_FILE).read_bytes()
    limit = 100_000  # bytes: run.h5 and metrics.h5 fit, the resume state (weights + momentum) does not
    assert len(before) > limit > (run / store.RUN_FILE).stat().st_size
    limited = subprocess.run(CLI + ["pretrain", str(recipe), "--out", str(run), "--quiet"], capture_output=True,
                             text=True, timeout=300,
                             preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert limited.returncode == 1 and "Traceback" not in limited.stderr
    message = limited.stderr.strip().splitlines()[-1]
    # the first write past the limit fails: the resume state, or a kept checkpoint of the steps it recomputes
    assert message.startswith("Error: cannot write") and ".h5: File too large" in message
    assert "the previous version is intact" in message
    assert (run / store.STATE_FILE).read_bytes() == before  # the previous resume point is intact
    record = store.read_run_record(run)
    assert record.status == "failed" and "File too large" in record.error
    assert not list(run.glob(".*.tmp"))
    resumed = subprocess.run(CLI + ["pretrain", str(recipe), "--out", str(run), "--quiet"], capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert store.read_run_record(run).status == "completed"


@pytest.mark.slow
def test_transfer_killed_resumes_to_the_same_result(recipe, tmp_path):
    source = tmp_path / "source"
    assert invoke("pretrain", recipe, "--set", "total_steps=20", "--out", source, "--quiet").exit_code == 0
    reference = tmp_path / "reference"
    assert invoke("transfer", recipe, "--set", "total_steps=20", "--from", source, "--set", "total_steps_downstream=200",
                  "--out", reference, "--quiet").exit_code == 0
    killed = tmp_path / "killed"
    arguments = ["transfer", recipe, "--set", "total_steps=20", "--from", source, "--set", "total_steps_downstream=200",
                 "--out", killed, "--quiet"]
    for rows in (3, 12):
        process = start(*arguments)
        wait_for_rows(killed, rows, process)
        process.kill()
        process.wait()
    assert subprocess.run(CLI + [str(a) for a in arguments], capture_output=True, timeout=300).returncode == 0
    final, expected = store.read_state(killed), store.read_state(reference)
    assert final[0] == expected[0] == 200
    for name, values in expected[1].items():
        np.testing.assert_array_equal(final[1][name], values)


def test_a_run_killed_between_its_final_state_and_its_record_completes_on_resume(tmp_path):
    """The final resume state is written before the record says `completed` (and the input threads are asked
    to stop in between), so a kill there leaves a `running` record at the last step. Resuming must finish the
    run without a step of input (it used to fail building an empty batch order) and without new rows."""
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({**tiny_recipe_dict(), "total_steps": 6, "num_eval_points": 3}))
    run = tmp_path / "run"
    assert invoke("pretrain", path, "--out", run, "--quiet").exit_code == 0
    rows, state = store.read_metrics(run), store.read_state(run)
    with h5py.File(run / store.RUN_FILE, "r+") as record:  # what a kill in that window leaves
        record.attrs["status"] = "running"
    result = invoke("pretrain", path, "--out", run)
    assert result.exit_code == 0 and "resuming" in result.output, result.output
    assert store.read_run_record(run).status == "completed"
    assert store.read_metrics(run) == rows
    for name, values in state[1].items():
        np.testing.assert_array_equal(store.read_state(run)[1][name], values)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [1.0, 4.0, 6.5])
def test_killed_construct_init_leaves_no_partial_file(recipe, tmp_path, delay):
    output, filters = tmp_path / "init.h5", ("--set", "num_filters=16")
    process = start("construct-init", recipe, "--layers", "1", *filters, "-o", output)
    time.sleep(delay)
    process.kill()
    process.wait()
    if output.exists():  # complete or absent, never half-written
        assert "construction/conv_0/eigenvalues" in h5py.File(output, "r")
    else:
        assert invoke("construct-init", recipe, "--layers", "1", *filters, "-o", output).exit_code == 0


@pytest.mark.slow
def test_second_writer_refused_and_analysis_while_training(recipe, tmp_path):
    run, longer = tmp_path / "run", ("--set", "total_steps=20000")
    process = start("pretrain", recipe, *longer, "--out", run, "--quiet")
    try:
        wait_for_rows(run, 3, process)
        second = subprocess.run(CLI + ["pretrain", str(recipe), *longer, "--out", str(run)], capture_output=True,
                                text=True, timeout=120)
        assert second.returncode == 2
        assert f"being written by another rltx process (pid {process.pid})" in second.stderr
        reading = subprocess.run(CLI + ["analyze", "misalignment", str(run), "--all-steps", "--json"],
                                 capture_output=True, text=True, timeout=120)
        assert reading.returncode == 0, reading.stderr
        assert store.read_status(run) == "running"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert store.read_run_record(run).status == "interrupted"


@pytest.fixture(scope="module")
def completed(tmp_path_factory):
    directory = tmp_path_factory.mktemp("matrix")
    (directory / "r.yaml").write_text(yaml.safe_dump({**tiny_recipe_dict(), "labels_downstream": "random",
                                                      "num_classes_downstream": 3, "total_steps": 10,
                                                      "num_eval_points": 2}))
    assert invoke("pretrain", directory / "r.yaml", "--out", directory / "run", "--quiet").exit_code == 0
    truncated = directory / "truncated"
    truncated.mkdir()
    (truncated / "run.h5").write_bytes((directory / "run" / "run.h5").read_bytes()[:2000])
    foreign = directory / "foreign"
    foreign.mkdir()
    (foreign / "run.h5").write_text("not hdf5")
    return directory


MATRIX = [
    ("malformed YAML", ["pretrain", "{bad}", "--out", "{new}"], "YAML"),
    ("unknown key", ["pretrain", "{recipe}", "--set", "learnin_rate=0.1", "--out", "{new}"], "did you mean"),
    ("wrong type", ["pretrain", "{recipe}", "--set", "batch_size=many", "--out", "{new}"], "must be an integer"),
    ("learning rate <= 0", ["pretrain", "{recipe}", "--set", "learning_rate=0", "--out", "{new}"], "must be > 0"),
    ("one class", ["pretrain", "{recipe}", "--set", "num_classes_upstream=1", "--out", "{new}"], "must be >= 2"),
    ("batch larger than data", ["pretrain", "{recipe}", "--set", "batch_size=1000", "--out", "{new}"], "larger than"),
    ("upstream + downstream beyond the split",
     ["pretrain", "{recipe}", "--set", "num_examples_downstream=200", "--out", "{new}"],
     "num_examples_downstream 200 exceed the 512 examples"),
    ("output holds another run", ["pretrain", "{recipe}", "--set", "seed=9", "--out", "{run}"], "holds another run"),
    ("transfer from another architecture", ["transfer", "{recipe}", "--from", "{run}", "--set", "num_units=7",
                                            "--out", "{new}"], "another architecture"),
    ("transfer from a missing step", ["transfer", "{recipe}", "--from", "{run}", "--from-step", "3", "--out", "{new}"],
     "no checkpoint at step 3"),
    ("truncated run file", ["transfer", "{recipe}", "--from", "{truncated}", "--out", "{new}"], "not a readable HDF5"),
    ("non-HDF5 run file", ["analyze", "weights", "{foreign}"], "not a readable HDF5"),
    ("analysis of a missing run", ["analyze", "curves", "{missing}"], "does not exist"),
    ("construct-init over an existing file", ["construct-init", "{recipe}", "--layers", "1", "-o", "{run}/run.h5"],
     "exists"),
]


@pytest.mark.parametrize("name, arguments, words", MATRIX, ids=[m[0] for m in MATRIX])
def test_bad_input_matrix(completed, tmp_path, name, arguments, words):
    (tmp_path / "bad.yaml").write_text("dataset: [gaussian\n")
    places = {"recipe": completed / "r.yaml", "run": completed / "run", "new": tmp_path / "new",
              "bad": tmp_path / "bad.yaml", "truncated": completed / "truncated", "foreign": completed / "foreign",
              "missing": tmp_path / "missing"}
    before = snapshot(completed / "run")
    result = invoke(*[a.format(**places) for a in arguments])
    assert result.exit_code == 2, result.output
    assert words in result.output and len(result.output.strip().splitlines()) == 1
    assert snapshot(completed / "run") == before  # nothing already written is touched
    assert not (tmp_path / "new" / "run.h5").exists()


def test_stored_files_hold_no_pickles(completed, tmp_path):
    """Only numbers and strings: every dataset and attribute of a run is of a plain dtype."""
    assert invoke("analyze", "weights", completed / "run", "--all-steps", "-o", tmp_path / "w.h5").exit_code == 0
    assert invoke("construct-init", completed / "r.yaml", "--layers", "1", "-o", tmp_path / "i.h5").exit_code == 0
    for path in list((completed / "run").rglob("*.h5")) + list(tmp_path.glob("*.h5")):
        with h5py.File(path, "r") as handle:
            def check(name, item):
                for value in item.attrs.values():
                    assert not (isinstance(value, bytes) and value.startswith(b"\x80")), (path, name)
                if isinstance(item, h5py.Dataset):
                    assert item.dtype.kind in "biufS" or h5py.check_string_dtype(item.dtype), (path, name)
            check("/", handle)
            handle.visititems(check)


VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 10 ** 6), st.floats(allow_nan=True),
                   st.text(max_size=12), st.lists(st.integers(-3, 50), max_size=4))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.one_of(st.sampled_from(sorted(FIELDS)), st.text(max_size=8)), VALUES, max_size=12))
def test_recipe_parser_never_fails_otherwise(raw):
    """Any mapping is either a valid recipe or a one-line UsageError, never another exception."""
    try:
        make_recipe(raw)
    except UsageError as error:
        assert "\n" not in str(error)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_recipe_text_gives_a_recipe_or_a_usage_error(tmp_path_factory, text):
    from rltx.recipe_file import load_recipe
    path = tmp_path_factory.mktemp("fuzz") / "r.yaml"
    path.write_text(text)
    try:
        load_recipe(path)
    except UsageError as error:
        assert "\n" not in str(error)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [2.0, 5.0])
def test_killed_analyze_leaves_no_partial_result(completed, tmp_path, delay):
    output = tmp_path / "w.h5"
    process = start("analyze", "weights", completed / "run", "--all-steps", "-o", output)
    time.sleep(delay)
    process.kill()
    process.wait()
    if output.exists():
        assert "distance" in h5py.File(output, "r")
    assert invoke("analyze", "weights", completed / "run", "--all-steps", "-o", tmp_path / "again.h5").exit_code == 0


@pytest.mark.parametrize("command", [("pretrain", "--out", "new_run", "--quiet"),
                                     ("construct-init", "--layers", "1", "--set", "num_filters=8", "-o", "new_init.h5")])
def test_a_file_size_limit_on_the_first_write_is_one_line_and_leaves_nothing(recipe, tmp_path, command):
    """HDF5 once wrote its files itself: a failed first write (run.h5 of a new run, an init file) surfaced in
    HDF5's clean-up, printed dozens of "Exception ignored" tracebacks and crashed the process (exit 139), leaving
    a temporary file and a lock. Now: one line, exit 1, nothing left but what was there."""
    limit = 8_192  # bytes: below the smallest file either command writes
    name, *options = command
    limited = subprocess.run(CLI + [name, str(recipe), *options], capture_output=True, text=True, timeout=300,
                             cwd=tmp_path, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    lines = limited.stderr.strip().splitlines()
    assert limited.returncode == 1 and len(lines) == 1, limited.stderr
    assert lines[0].startswith("Error: cannot write ") and ".h5: File too large" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml"]
