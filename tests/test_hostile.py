"""Issue 15's hostile cases, each run as the `rltx` program (a subprocess): the exit code, exactly
one stderr line `Error: ...`, no traceback, and the neighbouring completed run `base`
byte-identical afterwards (sha256 of every file). Cases of one class run concurrently."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from rltx import store
from rltx.analysis.results import Result, write_result
from tests_support import TINY, file_digests, invoke_ok

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
DROP_PERMISSION_BYPASS = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]  # root, bound by chmod
PERMISSIONS_BIND = os.geteuid() != 0 or (shutil.which("setpriv") is not None and subprocess.run(
    [*DROP_PERMISSION_BYPASS, "true"], capture_output=True).returncode == 0)
CAN_MOUNT_READ_ONLY = shutil.which("unshare") is not None and subprocess.run(
    ["unshare", "-m", "true"], capture_output=True).returncode == 0


RECIPE = {**TINY, "gaussian_num_classes": 4, "num_classes_downstream": 4}  # TINY with a downstream task


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """tiny.yaml, the completed run `base`, and `other` (same recipe with 4 filters)."""
    directory = tmp_path_factory.mktemp("hostile")
    (directory / "tiny.yaml").write_text(yaml.safe_dump(RECIPE))
    invoke_ok("pretrain", directory / "tiny.yaml", "--out", directory / "base", "--quiet")
    invoke_ok("pretrain", directory / "tiny.yaml", "--set", "num_filters=4", "--out", directory / "other", "--quiet")
    return directory


def copy_of(work: Path, name: str, source: str = "base") -> Path:
    shutil.copytree(work / source, work / name)
    return work / name


def rltx(work: Path, *args, env=None, read_only: Path | None = None,
         unprivileged: bool = False) -> subprocess.CompletedProcess:
    """`python -m rltx ARGS` in `work`; with `read_only`, that folder is mounted read-only for it; with
    `unprivileged`, file permissions bind it even when the tests run as root."""
    command = [sys.executable, "-m", "rltx", *map(str, args)]
    if unprivileged and os.geteuid() == 0:
        command = [*DROP_PERMISSION_BYPASS, *command]
    if read_only is not None:
        command = ["unshare", "-m", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', str(read_only),
                   *command]
    environment = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_CONFIG")}
    environment.update(PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run(command, cwd=work, capture_output=True, text=True, env=environment, timeout=300)


def run_cases(work: Path, cases: dict[str, tuple]) -> dict[str, subprocess.CompletedProcess]:
    """Each case (args, keyword args of `rltx`) in its own process, three at a time; `base` unchanged."""
    before = file_digests(work / "base")
    with ThreadPoolExecutor(3) as pool:
        futures = {name: pool.submit(rltx, work, *args, **(options or {})) for name, (args, options) in cases.items()}
        results = {name: future.result() for name, future in futures.items()}
    assert file_digests(work / "base") == before
    return results


def refused(result: subprocess.CompletedProcess, code: int, *words: str) -> None:
    lines = result.stderr.splitlines()
    assert result.returncode == code and len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for word in words:
        assert word in lines[0], lines[0]


def succeeded(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_outputs_never_replace_run_files_or_foreign_files_and_temporaries_are_cleaned(work):
    """Items 1, 8 (missing folder, long name, path under a file) and 11 (stale temporaries)."""
    (work / "results").mkdir()
    stale = [work / "results" / f".w.h5.rltx-{dead_pid()}.tmp", work / "results" / f".fig.rltx-{dead_pid()}.png"]
    for path in stale:
        path.write_bytes(b"left by a SIGKILL")
    own = [work / "results" / f".draft.{dead_pid()}.png", work / "results" / f".notes.{dead_pid()}.tmp"]
    for path in own:  # a user's hidden files that look like numbered temporaries: never rltx's to remove
        path.write_bytes(b"the user's")
    (work / "results" / "other.h5").write_bytes(b"")
    with h5py.File(work / "results" / "foreign.h5", "w") as handle:
        handle["x"] = np.zeros(3)
    cases = {
        "run file": (("analyze", "weights", "base", "-o", "base/metrics.h5"), None),
        "recipe": (("analyze", "weights", "base", "-o", "tiny.yaml"), None),
        "foreign hdf5": (("analyze", "weights", "base", "-o", "results/foreign.h5"), None),
        "plot into run": (("plot", "curves", "base", "-o", "base/fig.png"), None),
        "plot over recipe": (("plot", "curves", "base", "-o", "tiny.png"), None),
        "missing folder": (("analyze", "weights", "base", "-o", "missing/w.h5"), None),
        "under a file": (("analyze", "weights", "base", "-o", "tiny.yaml/w.h5"), None),
        "long name": (("analyze", "weights", "base", "-o", "results/" + "w" * 300 + ".h5"), None),
        "init missing folder": (("construct-init", "tiny.yaml", "--layers", "1", "-o", "missing/i.h5"), None),
        "same kind": (("analyze", "weights", "base", "-o", "results/w.h5"), None),
        # refused when the command line is read, before the analysis (here it would fail on the empty folder):
        # not after hours of it, at the write
        "other kind": (("analyze", "weights", "-o", "results/spectrum.h5", "results"), None),
        "plot": (("plot", "curves", "base", "-o", "results/fig.png"), None),
    }
    (work / "tiny.png").write_text("not an image")
    from rltx.analysis.results import Result, write_result
    write_result(Result("spectrum", {}, {}), work / "results" / "spectrum.h5")
    results = run_cases(work, cases)
    refused(results["run file"], 2, "inside the run directory")
    refused(results["recipe"], 2, "not an rltx weights result")
    refused(results["foreign hdf5"], 2, "not an rltx weights result")
    refused(results["other kind"], 2, "results/spectrum.h5 exists and is not an rltx weights result; choose another -o")
    assert store.result_kind(work / "results" / "spectrum.h5") == "spectrum"
    refused(results["plot into run"], 2, "inside the run directory")
    refused(results["plot over recipe"], 2, "not a PNG image")
    refused(results["missing folder"], 2, "not an existing folder")
    refused(results["under a file"], 2, "not an existing folder")
    refused(results["long name"], 2, "name")
    refused(results["init missing folder"], 2, "not an existing folder")
    assert "disk space" not in "".join(r.stderr for r in results.values())
    assert (work / "tiny.yaml").read_text() == yaml.safe_dump(RECIPE)
    succeeded(results["same kind"])
    succeeded(results["plot"])
    assert not any(path.exists() for path in stale)
    assert all(path.read_bytes() == b"the user's" for path in own)
    from rltx.errors import UsageError
    with pytest.raises(UsageError, match="not an rltx spectrum result"):
        write_result(Result("spectrum", {}, {}), work / "results" / "w.h5")
    write_result(Result("weights", {}, {}), work / "results" / "w.h5")  # a result of the same kind: replaced
    with pytest.raises(UsageError, match="inside the run directory"):
        write_result(Result("weights", {}, {}), work / "base" / "checkpoints" / "w.h5")
    assert store.result_kind(work / "results" / "w.h5") == "weights"


def test_transfer_from_a_damaged_source_and_mismatched_runs_are_refused(work):
    """Items 2 (final checkpoint missing) and 5 (pooled or paired runs of another architecture)."""
    damaged = copy_of(work, "damaged")
    (damaged / "checkpoints" / "step_00000040.h5").unlink()
    cases = {
        "damaged": (("transfer", "tiny.yaml", "--from", "damaged", "--out", "t_damaged", "--quiet"), None),
        "misalignment": (("analyze", "misalignment", "base", "other"), None),
        "barrier": (("analyze", "barrier", "base", "other"), None),
        "covariance-from": (("construct-init", "tiny.yaml", "--layers", "1", "--covariance-from", "base",
                             "--covariance-from", "other", "-o", "i.h5"), None),
        # one source of another filter count: its initial norm is not this recipe's layer's (it was used as such)
        "covariance-from a narrower layer": (("construct-init", "tiny.yaml", "--layers", "1", "--covariance-from",
                                              "other", "-o", "narrow.h5"), None),
    }
    results = run_cases(work, cases)
    refused(results["damaged"], 2, "final checkpoint (step 40) is missing", "--from-step")
    assert not (work / "t_damaged").exists()
    for name in ("misalignment", "barrier", "covariance-from"):
        refused(results[name], 2, "one architecture", "num_filters")
    refused(results["covariance-from a narrower layer"], 2, "the runs' conv_0 has 4 filters of dimension 27; this "
            f"recipe's has {RECIPE['num_filters']} of dimension 27; use runs whose conv_0 has the recipe's shape")
    assert not (work / "i.h5").exists() and not (work / "narrow.h5").exists()


def test_a_changed_source_checkpoint_is_refused_where_its_sha256_was_recorded(work):
    """Item 2: a transfer records its source's sha256; resuming it or tracing its activations checks it."""
    source = copy_of(work, "source")
    invoke_ok("transfer", work / "tiny.yaml", "--from", source, "--out", work / "t_digest", "--quiet")
    path = store.checkpoint_path(source, 40)
    with h5py.File(path, "a") as handle:
        handle["weights/conv_0/kernel"][0, 0, 0, 0] += 1.0
    results = run_cases(work, {
        "resume": (("transfer", "tiny.yaml", "--from", "source", "--out", "t_digest", "--quiet"), None),
        "trajectory": (("analyze", "activation-trajectory", "source", "t_digest", "--num-examples", "8"), None)})
    refused(results["resume"], 2, "sha256")
    refused(results["trajectory"], 2, "sha256")


def test_readers_ignore_stray_names_and_name_files_of_another_layout(work):
    """Items 9 and 11 (a truncated state.h5)."""
    stray = copy_of(work, "stray")
    shutil.copy(stray / "checkpoints" / "step_00000040.h5", stray / "checkpoints" / "step_00000040 (copy).h5")
    foreign_metrics, foreign_checkpoint, truncated = (copy_of(work, n) for n in ("fm", "fc", "trunc"))
    for path in (foreign_metrics / "metrics.h5", foreign_checkpoint / "checkpoints" / "step_00000040.h5"):
        path.unlink()
        with h5py.File(path, "w") as handle:
            handle["table"] = np.zeros((3, 3))
    record = store.read_run_record(truncated)
    record.status = "interrupted"
    store.write_run_record(truncated, record)
    state = (truncated / "state.h5").read_bytes()
    (truncated / "state.h5").write_bytes(state[:len(state) // 2])
    results = run_cases(work, {
        "stray": (("analyze", "weights", "stray", "--json"), None),
        "metrics": (("analyze", "curves", "fm"), None),
        "checkpoint": (("analyze", "weights", "fc"), None),
        "state": (("pretrain", "tiny.yaml", "--out", "trunc", "--quiet"), None)})
    succeeded(results["stray"])
    assert json.loads(results["stray"].stdout)["inputs"]
    refused(results["metrics"], 2, "fm/metrics.h5", "not an rltx metrics file")
    refused(results["checkpoint"], 2, "step_00000040.h5", "not an rltx checkpoint")
    refused(results["state"], 2, "state.h5", "delete it")


def test_checks_come_before_anything_is_written(work):
    """Item 10, item 8's output paths of training, item 13 (TF_CONFIG) and item 12 (plan.json)."""
    copy_of(work, "t10-scratch")  # holds a pre-training run, not the transfer's baseline
    sweep = {**RECIPE, "total_steps": 8,
             "total_steps_downstream": 8, "num_eval_points": 2, "checkpoint_every": 0,
             "sweep": {"architectures": ["simple_cnn"], "groups": 1, "seeds": 1, "transfer_layers": ["all"],
                       "labels_downstream": ["real"], "seed": 0}}
    (work / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    invoke_ok("construct-init", work / "tiny.yaml", "--set", "num_filters=4", "--layers", "1", "-o", work / "i4.h5")
    (work / "plan_dir" / "plan.json").mkdir(parents=True)
    (work / "plan_latin1").mkdir()
    (work / "plan_latin1" / "plan.json").write_bytes("{\"r\u00e9\": 1".encode("latin-1"))
    (work / "plan_json").mkdir()
    (work / "plan_json" / "plan.json").write_text("[1, 2")
    cases = {
        "baseline": (("transfer", "tiny.yaml", "--from", "base", "--with-baseline", "--out", "t10", "--quiet"), None),
        "lock": (("pretrain", "tiny.yaml", "--set", "seed=4", "--out", "base", "--quiet"), None),
        "late bad input": (("pretrain", "tiny.yaml", "--init", "i4.h5", "--out", "t_late", "--quiet"), None),
        "under a file": (("pretrain", "tiny.yaml", "--out", "tiny.yaml/run", "--quiet"), None),
        "long name": (("pretrain", "tiny.yaml", "--out", "r" * 300, "--quiet"), None),
        "long init name": (("pretrain", "tiny.yaml", "--init", "q" * 300 + ".h5", "--out", "t_long_init", "--quiet"),
                           None),  # found after the lock was taken: the new folder and its lock went unremoved
        "tf_config": (("pretrain", "tiny.yaml", "--out", "t_tf", "--quiet"), {"env": {"TF_CONFIG": "{bad"}}),
        "plan dir": (("sweep", "sweep.yaml", "--out", "plan_dir", "--plan-only"), None),
        "plan latin1": (("sweep", "sweep.yaml", "--out", "plan_latin1", "--plan-only"), None),
        "plan json": (("sweep", "sweep.yaml", "--out", "plan_json", "--plan-only"), None),
        "scratch from step": (("transfer", "tiny.yaml", "--from", "scratch", "--from-step", "3", "--out", "t_fs"),
                              None),
        "scratch baseline": (("transfer", "tiny.yaml", "--from", "scratch", "--with-baseline", "--out", "t_fb"), None),
    }
    results = run_cases(work, cases)
    refused(results["baseline"], 2, "t10-scratch holds a pretrain run, not a scratch run")
    assert not (work / "t10").exists()
    refused(results["lock"], 2, "holds another run")
    refused(results["late bad input"], 2, "does not fit this model")  # found after the lock was taken
    assert not (work / "t_late").exists()
    refused(results["under a file"], 2, "tiny.yaml/run")
    refused(results["long name"], 2, "name")
    refused(results["long init name"], 2, "a name in this path is too long")
    assert not (work / "t_long_init").exists()
    refused(results["tf_config"], 2, "TF_CONFIG")
    assert not (work / "t_tf").exists()
    for name in ("plan dir", "plan latin1", "plan json"):
        refused(results[name], 2, "damaged", "--plan-only")
    assert (work / "plan_json" / "plan.json").read_text() == "[1, 2"
    refused(results["scratch from step"], 2, "--from-step picks a source checkpoint", "drop it")
    refused(results["scratch baseline"], 2, "--with-baseline adds the from-scratch run", "drop it")
    assert not (work / "t_fs").exists() and not (work / "t_fb").exists()


def test_command_lines_click_cannot_parse_are_one_line_that_points_to_the_help(work):
    cases = {
        "range": (("reproduce", "table1", "--quick", "--seeds", "0"), None),
        "missing": (("pretrain",), None),
        "option": (("transfer", "tiny.yaml", "--from", "base", "--bogus"), None),
        "nested": (("analyze", "misalignment", "base", "--bogus"), None),
        "command": (("nosuchcmd",), None),
        "program option": (("--bogus",), None),
        "group alone": (("plot",), None),
        "workers outside a sweep": (("reproduce", "fig5", "--quick", "--workers", "2", "--out", "w2"), None),
        "groups outside a sweep": (("reproduce", "fig5", "--quick", "--groups", "20", "--out", "g20"), None),
        "too many groups": (("reproduce", "cifar10_a", "--profile", "quick_natural", "--groups", "10001", "--out", "g10001"),
                            None),
        "sweep, too many groups": (("sweep", Path(__file__).parents[1] / "recipes" / "cifar10_a.yaml", "--groups", "10001",
                                    "--plan-only", "--out", "s10001"), None),
        "step and all steps": (("analyze", "gradient", "base", "--step", "0", "--all-steps", "-o", "g.h5"), None),
        "rbf fraction, linear kernel": (("analyze", "cka", "base", "base", "--rbf-fraction", "0.3"), None),
    }
    results = run_cases(work, cases)
    refused(results["workers outside a sweep"], 2, "fig5's transfer pipeline runs one run at a time: drop --workers")
    assert not (work / "w2").exists()
    refused(results["groups outside a sweep"], 2, "--groups sets a sweep's groups; fig5's transfer pipeline has none: "
                                                  "drop --groups")
    assert not (work / "g20").exists()
    refused(results["too many groups"], 2, "groups must be an integer from 1 to 10000")
    assert not (work / "g10001").exists()  # refused before --out is made
    refused(results["sweep, too many groups"], 2, "groups must be an integer from 1 to 10000")
    assert not (work / "s10001").exists()
    refused(results["step and all steps"], 2, "--step and --all-steps both choose the checkpoints; give one of them")
    assert not (work / "g.h5").exists()
    refused(results["rbf fraction, linear kernel"], 2, "add --kernel rbf or drop it (kernel linear)")
    refused(results["range"], 2, "'--seeds': 0 is not in the range", "rltx reproduce --help`")
    refused(results["missing"], 2, "Missing argument 'RECIPE'", "rltx pretrain --help`")
    refused(results["option"], 2, "No such option '--bogus'", "rltx transfer --help`")
    refused(results["nested"], 2, "No such option '--bogus'", "rltx analyze misalignment --help`")
    refused(results["command"], 2, "No such command 'nosuchcmd'", "rltx --help`")
    refused(results["program option"], 2, "No such option '--bogus'", "rltx --help`")
    shown = results["group alone"]  # a group without its command shows the group's help, as --help does
    assert "Commands:" in shown.stdout + shown.stderr and "Traceback" not in shown.stderr


@pytest.mark.skipif(not CAN_MOUNT_READ_ONLY, reason="needs `unshare -m` to mount a folder read-only")
def test_read_only_storage(work):
    """Item 8: read-only folders for new runs, analysis and init outputs; a completed run rerun on them."""
    storage = work / "ro"
    storage.mkdir()
    shutil.copytree(work / "base", storage / "base")
    before = file_digests(storage / "base")
    read_only = {"read_only": storage}
    results = run_cases(work, {
        "new run": (("pretrain", "tiny.yaml", "--out", "ro/new", "--quiet"), read_only),
        "completed": (("pretrain", "tiny.yaml", "--out", "ro/base"), read_only),
        "analyze": (("analyze", "weights", "base", "-o", "ro/w.h5"), read_only),
        "init": (("construct-init", "tiny.yaml", "--layers", "1", "-o", "ro/i.h5"), read_only)})
    for name in ("new run", "analyze", "init"):
        refused(results[name], 2, "ro/")
        assert "disk space" not in results[name].stderr
    assert results["completed"].returncode == 0 and "completed" in results["completed"].stdout, \
        results["completed"].stderr
    assert file_digests(storage / "base") == before


def test_option_values_out_of_range_and_choices_that_contradict_are_refused_before_any_work(work):
    """Values that once reached a traceback, were read wrongly (a negative count dropped examples from
    the end), were ignored (--step with --center init) or trained anyway (a batch larger than the downstream set,
    an earlier checkpoint of a damaged --covariance-from run): one line each, nothing written."""
    cases = {
        "no downstream set": (("transfer", "tiny.yaml", "--from", "base", "--set", "num_examples_downstream=0",
                               "--out", "t_empty", "--quiet"), None),
        "seed draws other data": (("transfer", "tiny.yaml", "--from", "base", "--set", "seed=4", "--out", "t_seed",
                                   "--quiet"), None),
        "top-k": (("analyze", "eigenvectors", "base", "--top-k", "0"), None),
        "threshold": (("analyze", "eigenvectors", "base", "--threshold", "1.5"), None),
        "tolerance": (("analyze", "transfer-function", "base", "--tolerance", "-1"), None),
        "negative count": (("analyze", "barrier", "base", "--num-examples", "-2"), None),
        "landscape": (("analyze", "landscape", "base", "--center", "init", "--step", "40"), None),
        "batch over downstream": (("transfer", "tiny.yaml", "--from", "base", "--set", "batch_size=100",
                                   "--out", "t_batch", "--quiet"), None),
        "scratch batch": (("transfer", "tiny.yaml", "--from", "scratch", "--set", "batch_size=100",
                           "--out", "t_batch_s", "--quiet"), None),
        "construct over the split": (("construct-init", "tiny.yaml", "--layers", "1", "--set",
                                      "num_examples_upstream=100000", "-o", "over.h5"), None),
        "covariance no final": (("construct-init", "tiny.yaml", "--layers", "1", "--covariance-from", "no_final",
                                 "-o", "no_final.h5"), None),
    }
    no_final = copy_of(work, "no_final")
    store.checkpoint_path(no_final, store.checkpoint_steps_stored(no_final)[-1]).unlink()
    results = run_cases(work, cases)
    refused(results["no downstream set"], 2, "num_examples_downstream is 0", "num_examples_downstream=N")
    refused(results["seed draws other data"], 2, "another data (seed=3)", "gaussian_seed")
    refused(results["top-k"], 2, "'--top-k': 0 is not in the range x>=1")
    refused(results["threshold"], 2, "'--threshold': 1.5 is not in the range 0<=x<1")
    refused(results["tolerance"], 2, "'--tolerance': -1.0 is not in the range x>=0")
    refused(results["negative count"], 2, "'--num-examples': -2 is not in the range x>=0")
    refused(results["landscape"], 2, "--center init centres on step 0", "drop one of them")
    assert not (work / "t_empty").exists() and not (work / "t_seed").exists()
    for name in ("batch over downstream", "scratch batch"):  # pre-training refuses it for its upstream set
        refused(results[name], 2, "batch_size 100 is larger than num_examples_downstream 64")
    refused(results["construct over the split"], 2, "num_examples_upstream 100000 exceeds the 512 examples")
    refused(results["covariance no final"], 2, "final checkpoint (step 40) is missing", "restore step_00000040.h5")
    assert not any((work / name).exists() for name in ("t_batch", "t_batch_s", "over.h5", "no_final.h5"))


def test_barrier_of_one_run_without_a_step_0_checkpoint_runs_from_step_a(work):
    late = copy_of(work, "late")
    store.checkpoint_path(late, 0).unlink()
    results = run_cases(work, {"default": (("analyze", "barrier", "late", "--points", "2"), None),
                               "step-a": (("analyze", "barrier", "late", "--step-a", "10", "--points", "2",
                                           "--json"), None)})
    refused(results["default"], 2, "no step-0 checkpoint; give --step-a")
    succeeded(results["step-a"])
    assert json.loads(results["step-a"].stdout)["inputs"]["steps"] == [10, 40]


def test_leftovers_other_kinds_and_foreign_checkpoints_are_refused_not_adopted(work):
    """Files of a run whose run.h5 is gone, a transfer run where a pre-training run is expected, a
    file where --with-baseline's OUT-scratch goes, and a checkpoint of another architecture: one line
    each, before training, and nothing written."""
    orphan = copy_of(work, "orphan")
    (orphan / store.RUN_FILE).unlink()
    before = file_digests(orphan)
    invoke_ok("transfer", work / "tiny.yaml", "--from", work / "base", "--out", work / "t_kind", "--quiet")
    (work / "t_file-scratch").write_text("not a run")
    foreign = copy_of(work, "foreign")
    shutil.copy(store.checkpoint_path(work / "other", 40), store.checkpoint_path(foreign, 40))
    results = run_cases(work, {
        "orphans": (("pretrain", "tiny.yaml", "--set", "seed=5", "--out", "orphan", "--quiet"), None),
        "pretrain over a transfer": (("pretrain", "tiny.yaml", "--out", "t_kind", "--quiet"), None),
        "transfer from a transfer": (("transfer", "tiny.yaml", "--from", "t_kind", "--out", "t_chain", "--quiet"),
                                     None),
        "baseline path is a file": (("transfer", "tiny.yaml", "--from", "base", "--with-baseline", "--out", "t_file",
                                     "--quiet"), None),
        "foreign checkpoint": (("export", "foreign", "-o", "foreign.keras"), None),
        "foreign in weights": (("analyze", "weights", "foreign"), None),
    })
    refused(results["orphans"], 2, "state.h5, metrics.h5, checkpoints of a run without its run.h5")
    assert file_digests(orphan) == before
    refused(results["pretrain over a transfer"], 2, "holds a transfer run, not a pretrain run")
    refused(results["transfer from a transfer"], 2, "is a transfer run; transfer from a pre-training run")
    refused(results["baseline path is a file"], 2, "t_file-scratch is a file, not a run directory")
    refused(results["foreign checkpoint"], 2, "conv_0/kernel (3, 3, 3, 4) for (3, 3, 3, 8)", "another architecture")
    refused(results["foreign in weights"], 2, "step_00000040.h5 and the run's step-0 checkpoint hold layers")
    for name in ("t_chain", "t_file", "foreign.keras"):
        assert not (work / name).exists()


def test_long_names_bad_log_paths_non_finite_numbers_and_ignored_options_are_refused(work):
    long_name = "a" * 300
    (work / "notes.md").write_text("my notes\n")
    invoke_ok("analyze", "curves", work / "base", "-o", work / "curves.h5")
    cases = {
        "long export name": (("export", "base", "-o", long_name + ".keras"), None),
        "long runs path": (("runs", long_name), None),
        "long recipe name": (("pretrain", long_name + ".yaml"), None),
        "log path": (("runs", "base"), {"env": {"RLTX_NATIVE_LOG": str(work / "missing" / "x.log")}}),
        "nan alphas": (("analyze", "criticality", "base", "--alphas", "nan"), None),
        "no alphas": (("analyze", "criticality", "base", "--alphas", ","), None),
        "inf option": (("analyze", "barrier", "base", "--alpha-max", "inf"), None),
        "no thresholds": (("analyze", "spectrum", "base", "--thresholds", ""), None),
        "nan zoom": (("plot", "curves", "base", "--zoom", "nan,1,0,1", "-o", "z.png"), None),
        "covariance without layer 1": (("construct-init", "tiny.yaml", "--set", "num_conv_layers=2", "--set",
                                        "stride=1", "--set", "padding=same", "--layers", "2", "--covariance-from",
                                        "base", "-o", "i2.h5"), None),
        "curves without tau curves": (("plot", "f-sigma", "curves.h5", "--curves", "f1", "-o", "f.png"), None),
        "plan only with workers": (("sweep", "tiny.yaml", "--plan-only", "--workers", "3"), None),
        "table over notes": (("plot", "table", "curves.h5", "-o", "notes.md"), None),
    }
    results = run_cases(work, cases)
    for name in ("long export name", "long runs path", "long recipe name"):
        refused(results[name], 2, "a name in this path is too long (over 255 bytes)")
    refused(results["log path"], 2, "RLTX_NATIVE_LOG=", "cannot be opened for appending")
    refused(results["nan alphas"], 2, "--alphas must be comma-separated finite numbers")
    refused(results["no alphas"], 2, "--alphas must be comma-separated finite numbers")
    refused(results["inf option"], 2, "'--alpha-max': 'inf' is not a finite number")
    refused(results["no thresholds"], 2, "thresholds must be one or more finite numbers")
    refused(results["nan zoom"], 2, "--zoom takes 4 comma-separated finite numbers")
    refused(results["covariance without layer 1"], 2, "add 1 to --layers or drop --covariance-from")
    refused(results["curves without tau curves"], 2, "add --tau-curves or drop --curves")
    refused(results["plan only with workers"], 2, "--plan-only runs nothing, so --workers would do nothing")
    refused(results["table over notes"], 2, "notes.md exists and is not a md table written by rltx plot table")
    assert (work / "notes.md").read_text() == "my notes\n"
    assert not any((work / name).exists() for name in ("z.png", "i2.h5", "f.png"))
    table = invoke_ok("plot", "table", work / "curves.h5", "-o", work / "table.md")
    assert "table.md" in table.output
    invoke_ok("plot", "table", work / "curves.h5", "-o", work / "table.md")  # its own table is replaced


def test_a_file_where_a_run_or_folder_is_expected_is_named(work):
    invoke_ok("analyze", "curves", work / "base", "-o", work / "result.h5")
    results = run_cases(work, {
        "result as a run": (("analyze", "spectrum", "result.h5"), None),
        "result as a recipe": (("pretrain", "result.h5", "--out", "r_new"), None),
        "runs of a file": (("runs", "result.h5"), None),
        "export into a missing folder": (("export", "base", "-o", "missing/m.keras"), None),
    })
    refused(results["result as a run"], 2, "result.h5 is a file, not a run directory")
    refused(results["result as a recipe"], 2, "result.h5 is not a run's run.h5")
    refused(results["runs of a file"], 2, "result.h5 is a file, not a run")
    refused(results["export into a missing folder"], 2, "missing is not an existing folder")
    assert not (work / "r_new").exists()


def test_resuming_a_run_whose_metrics_were_removed_is_refused(work):
    """`_save` writes metrics before the resume state, so a state without metrics is damage: resuming it
    would leave the run's metric series (its AUC) without its first points."""
    damaged = copy_of(work, "no_metrics")
    record = store.read_run_record(damaged)
    record.status = "interrupted"
    store.write_run_record(damaged, record)
    (damaged / store.METRICS_FILE).unlink()
    kept = {name: digest for name, digest in file_digests(damaged).items() if name not in (store.RUN_FILE, store.LOCK_FILE)}
    results = run_cases(work, {"resume": (("pretrain", "tiny.yaml", "--out", "no_metrics", "--quiet"), None)})
    refused(results["resume"], 2, "resume state at step 40 but no metrics up to it", "delete")
    after = file_digests(damaged)
    assert {name: after[name] for name in kept} == kept and store.METRICS_FILE not in after
    record = store.read_run_record(damaged)  # the reason is recorded, as for any run that stops on an error
    assert record.status == "failed" and "no metrics up to it" in record.error


def test_constructed_or_loaded_weights_that_are_not_finite_are_refused(work):
    """construct_tau of zeros (a zero kernel, rescaled by inf to NaN) or of 1e308 (beyond float32), an init file
    holding NaN, and table_iterations without a step: one line each, no file written."""
    invoke_ok("construct-init", work / "tiny.yaml", "--layers", "1", "-o", work / "nan_init.h5")
    with h5py.File(work / "nan_init.h5", "a") as handle:
        kernels = [name for name in _datasets(handle) if name.endswith("conv_0/kernel")]
        handle[kernels[0]][0, 0, 0, 0] = np.nan
    huge = "[" + ",".join(["1e308"] * 8) + "]"
    results = run_cases(work, {
        "zero tau": (("construct-init", "tiny.yaml", "--layers", "1", "--set", f"construct_tau=[{','.join(['0'] * 8)}]",
                      "--set", "construct_rescale=he", "-o", "zero.h5"), None),
        "huge tau": (("construct-init", "tiny.yaml", "--layers", "1", "--set", f"construct_tau={huge}", "-o", "huge.h5"),
                     None),
        "nan init": (("pretrain", "tiny.yaml", "--init", "nan_init.h5", "--out", "from_nan", "--quiet"), None),
        "no table steps": (("construct-init", "tiny.yaml", "--table", "no_steps", "--set", "table_iterations=[]"), None),
    })
    refused(results["zero tau"], 2, "must be finite, non-negative and not all zero")
    refused(results["huge tau"], 2, "construct_tau holds a number that is 1e+308; it must fit in float32")  # read first
    refused(results["nan init"], 2, "nan_init.h5 holds non-finite values in conv_0/kernel")
    refused(results["no table steps"], 2, "table_iterations must list one or more training steps")
    assert not any((work / name).exists() for name in ("zero.h5", "huge.h5", "no_steps"))
    assert not (work / "from_nan" / store.RUN_FILE).exists()


def _datasets(handle) -> list[str]:
    names = []
    handle.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
    return names


def test_a_sweep_resolves_relative_paths_of_its_overrides_against_the_working_directory(work):
    sweep = {**RECIPE, "sweep": {"architectures": ["simple_cnn"], "groups": 1, "seeds": 1, "transfer_layers": ["all"],
                                 "labels_downstream": ["real"], "seed": 0}}
    (work / "paths.yaml").write_text(yaml.safe_dump(sweep))
    planned = rltx(work, "sweep", "paths.yaml", "--out", "paths_sweep", "--plan-only", "--set", "init_file=i.h5")
    assert planned.returncode == 0, planned.stderr  # --plan-only prints its summary on stderr
    group = yaml.safe_load((work / "paths_sweep" / "simple_cnn" / "g00" / "recipe.yaml").read_text())
    assert group["init_file"] == str((work / "i.h5").resolve())


def test_resuming_a_run_whose_checkpoints_were_removed_names_them(work):
    """Deleting checkpoints to save space is legitimate: the resume goes on and says which are gone."""
    thinned = copy_of(work, "thinned")
    record = store.read_run_record(thinned)
    record.status = "interrupted"
    store.write_run_record(thinned, record)
    store.checkpoint_path(thinned, 10).unlink()
    resumed = invoke_ok("pretrain", work / "tiny.yaml", "--out", thinned)
    assert f"warning: {thinned} lacks the checkpoints of steps 10;" in resumed.output
    assert store.read_run_record(thinned).status == "completed"


def test_a_sweep_checks_every_transfer_of_its_plan_before_anything_is_written(work):
    """Transfer depths and label kinds name run directories; a depth beyond the model or a fine-tuning
    without a downstream set would fail only after every pre-training ran. All are refused by
    --plan-only, which writes nothing."""
    section = {"architectures": ["simple_cnn"], "groups": 1, "seeds": 1, "transfer_layers": ["all"],
               "labels_downstream": ["real"]}
    variants = {"twice": {"architectures": ["simple_cnn", "simple_cnn"]}, "path": {"transfer_layers": ["../x"]},
                "labels": {"labels_downstream": ["bogus"]}, "deep": {"transfer_layers": [1, 3]}, "fine": {}}
    for name, change in variants.items():
        (work / f"sweep_{name}.yaml").write_text(yaml.safe_dump({**RECIPE, "sweep": {**section, **change}}))
    results = run_cases(work, {
        name: (("sweep", f"sweep_{name}.yaml", "--out", f"planned_{name}", "--plan-only",
                *(("--set", "num_examples_downstream=0") if name == "fine" else ())), None) for name in variants})
    refused(results["twice"], 2, "sweep architectures lists simple_cnn twice; give each entry once")
    refused(results["path"], 2, "sweep transfer_layers entries must be a number of layers (1, 2, ...), all or conv")
    refused(results["labels"], 2, "sweep labels_downstream entries must be real or random")
    refused(results["deep"], 2, "sweep transfer_layers 3 exceeds the 2 transferable layers of group simple_cnn/g00's "
                                "model; lower it or use all")  # TINY: conv_0 and dense_0
    refused(results["fine"], 2, "num_examples_downstream is 0: fine-tuning needs a downstream set")
    assert not any((work / f"planned_{name}").exists() for name in variants)


def test_constructions_that_cannot_fit_the_model_are_refused_before_anything_is_written(work):
    """An eigenvector range far past the patch dimension (27), tau files whose tau is empty or 1-D, an
    architecture without conv layers, random signs on rotated filters (no sign changes their law), and
    a Table 1 layer set the model lacks: the table's first set
    ({}: nothing to construct) must not train before the third is found wrong."""
    for name, tau in (("tau_empty.h5", np.zeros((0, 27))), ("tau_flat.h5", np.ones(27))):
        write_result(Result("transfer-function", {}, {"tau": tau, "sigma": np.ones(27)}), work / name)
    results = run_cases(work, {
        "range": (("construct-init", "tiny.yaml", "--layers", "1", "--set", "construct_eigenvectors=e1..e99999999999999",
                   "-o", "range.h5"), None),
        "empty tau": (("construct-init", "tiny.yaml", "--layers", "1", "--set", "construct_tau=tau_empty.h5",
                       "-o", "empty_tau.h5"), None),
        "flat tau": (("construct-init", "tiny.yaml", "--layers", "1", "--set", "construct_tau=tau_flat.h5",
                      "-o", "flat_tau.h5"), None),
        "mlp": (("construct-init", "tiny.yaml", "--layers", "1", "--set", "architecture=mlp", "-o", "mlp.h5"), None),
        "table": (("construct-init", "tiny.yaml", "--table", "bad_sets", "--set", "table_layer_sets=[[], [1], [1, 2]]"),
                  None),
        "signs": (("construct-init", "tiny.yaml", "--layers", "1", "--set", "construct_method=rotate", "--set",
                   "construct_signs=random", "-o", "signs.h5"), None),
    })
    refused(results["range"], 2, "eigenvectors 'e1..e99999999999999' do not fit a layer input of dimension 27")
    for case in ("empty tau", "flat tau"):
        refused(results[case], 2, "is not a transfer-function result for inputs of dimension 27")
    refused(results["mlp"], 2, "architecture mlp has no conv layers to construct")
    refused(results["table"], 2, "table_layer_sets entry 1,2 must be increasing numbers among 1..1")
    refused(results["signs"], 2, "construct_signs random flips the direct filters; construct_method rotate draws",
            "drop construct_signs or use construct_method direct")
    assert not any((work / name).exists()
                   for name in ("range.h5", "empty_tau.h5", "flat_tau.h5", "mlp.h5", "bad_sets", "signs.h5"))


def test_init_files_that_are_missing_damaged_or_would_do_nothing_are_refused(work):
    """`--init` beside `--from` gives the layers the source does not: with every layer transferred and no
    from-scratch pair it would do nothing, and is refused; with one layer transferred it is used, and said so."""
    invoke_ok("construct-init", work / "tiny.yaml", "--layers", "1", "-o", work / "init.h5")
    shutil.copy(work / "init.h5", work / "flat_init.h5")
    with h5py.File(work / "flat_init.h5", "a") as handle:
        del handle["weights"]
        handle["weights"] = np.zeros(3)
    results = run_cases(work, {
        "missing": (("pretrain", "tiny.yaml", "--init", "missing.h5", "--out", "from_missing"), None),
        "flat": (("pretrain", "tiny.yaml", "--init", "flat_init.h5", "--out", "from_flat"), None),
        "unused": (("transfer", "tiny.yaml", "--from", "base", "--init", "init.h5", "--out", "unused_init"), None),
        "unused 2": (("transfer", "tiny.yaml", "--from", "base", "--init", "init.h5", "--set", "transfer_layers=2",
                      "--out", "unused_init_2"), None),
        "missing beside": (("transfer", "tiny.yaml", "--from", "base", "--init", "missing.h5", "--set",
                            "transfer_layers=1", "--out", "missing_beside"), None),
    })
    refused(results["missing"], 2, "missing.h5 does not exist; check the path, or build an init file with "
                                   "`rltx construct-init RECIPE -o FILE`")
    refused(results["flat"], 2, "flat_init.h5 is not an init file of `rltx construct-init`")
    for case in ("unused", "unused 2"):  # TINY has two layers: all of them, and the first 2, are every layer
        refused(results[case], 2, "init.h5 would do nothing: the transfer replaces every layer it holds "
                                  "(conv_0, dense_0)")
    refused(results["missing beside"], 2, "missing.h5 does not exist")  # no note before the file is read
    assert not any((work / name).exists() for name in ("from_missing", "from_flat", "unused_init", "unused_init_2",
                                                       "missing_beside"))
    used = invoke_ok("transfer", work / "tiny.yaml", "--from", work / "base", "--init", work / "init.h5",
                     "--set", "transfer_layers=1", "--out", work / "init_beside_source")
    assert "init.h5 initialises dense_0 of the transfer" in used.output
    paired = invoke_ok("transfer", work / "tiny.yaml", "--from", work / "base", "--init", work / "init.h5",
                       "--with-baseline", "--out", work / "init_paired")
    assert "init.h5 initialises no layer of the transfer, and every layer of the from-scratch pair" in paired.output
    scratch_start = store.read_checkpoint(work / "init_paired-scratch", 0)
    np.testing.assert_array_equal(scratch_start["conv_0/kernel"], store.read_init_weights(work / "init.h5")["conv_0/kernel"])


def test_npz_files_of_pickled_objects_or_other_formats_are_refused_without_unpickling(work):
    np.savez(work / "objects.npz", x=np.array([np.zeros(3), np.zeros(4)], dtype=object), y=np.zeros(2))
    (work / "words.npz").write_text("not an archive")
    np.save(work / "bare.npy", np.zeros((4, 6, 6, 3), np.uint8))
    with zipfile.ZipFile(work / "raw.npz", "w") as archive:
        archive.writestr("x", "bytes that are not .npy")
    np.savez_compressed(work / "squeezed.npz", x=np.zeros((64, 6, 6, 3), np.uint8), y=np.zeros(64, np.int64))
    damaged = bytearray((work / "squeezed.npz").read_bytes())
    damaged[54:57] = b"\xff\xff\xff"  # inside the first member's deflate stream: zlib.error, not BadZipFile
    (work / "squeezed_damaged.npz").write_bytes(bytes(damaged))
    files = {"objects": "objects.npz", "words": "words.npz", "bare": "bare.npy", "raw": "raw.npz",
             "damaged": "squeezed_damaged.npz"}
    results = run_cases(work, {name: (("pretrain", "tiny.yaml", "--set", "dataset=npz", "--set", f"data_path={file}",
                                       "--out", f"from_{name}"), None) for name, file in files.items()})
    refused(results["objects"], 2, "objects.npz holds object arrays (pickled Python objects), which rltx never loads")
    refused(results["words"], 2, "words.npz is not a readable .npz file (not a zip of .npy arrays)")
    refused(results["bare"], 2, "bare.npy is a single .npy array, not an .npz archive of x and y")
    refused(results["raw"], 2, "raw.npz holds members that are not .npy arrays (x)")
    refused(results["damaged"], 2, "squeezed_damaged.npz is not a readable .npz file")
    assert not any((work / f"from_{name}").exists() for name in files)


def test_plots_of_results_edited_to_empty_or_non_finite_arrays_are_refused(work):
    invoke_ok("analyze", "spectrum", work / "base", "-o", work / "spectrum.h5")
    invoke_ok("analyze", "curves", work / "base", "-o", work / "curves.h5")
    invoke_ok("analyze", "activations", work / "base", "-o", work / "activations.h5")
    edits = {"nan_edges": ("spectrum.h5", "bin_edges", lambda a: np.full_like(a, np.nan)),
             "nan_activation_edges": ("activations.h5", "bin_edges", lambda a: np.full_like(a, np.nan)),
             "no_histogram": ("spectrum.h5", "histogram", lambda a: a[:0]),
             "no_groups": ("curves.h5", "groups/label", lambda a: a[:0])}
    for name, (source, array, change) in edits.items():
        shutil.copy(work / source, work / f"{name}.h5")
        with h5py.File(work / f"{name}.h5", "a") as handle:
            edited = change(handle[array][()])
            del handle[array]
            handle[array] = edited
    results = run_cases(work, {
        "nan_edges": (("plot", "spectrum", "nan_edges.h5", "-o", "nan_edges.png"), None),
        "no_histogram": (("plot", "spectrum", "no_histogram.h5", "-o", "no_histogram.png"), None),
        "nan_activation_edges": (("plot", "activations", "nan_activation_edges.h5", "-o", "nan_activations.png"), None),
        "no_groups": (("plot", "table", "no_groups.h5", "-o", "no_groups.md"), None),
        "no profiles": (("pretrain", "tiny.yaml", "--profile", "quick", "--out", "profiled"), None),
    })
    refused(results["nan_edges"], 2, "nan_edges.h5 holds non-finite values in bin_edges; produce it again with "
                                     "`rltx analyze spectrum")
    refused(results["no_histogram"], 2, "no_histogram.h5 holds empty arrays (histogram)")
    refused(results["nan_activation_edges"], 2, "nan_activation_edges.h5 holds non-finite values in bin_edges")
    refused(results["no_groups"], 2, "no_groups.h5 holds empty arrays (groups/label")
    refused(results["no profiles"], 2, "tiny.yaml has no profiles; drop --profile (or --quick)")
    assert not any((work / name).exists() for name in ("nan_edges.png", "no_histogram.png", "nan_activations.png",
                                                       "no_groups.md", "profiled"))


def test_environment_variables_of_a_wrong_form_are_refused_before_anything_is_written(work):
    """TF_CONFIG that is JSON but not TF's form (TF raised TypeError / ValueError tracebacks after the run's
    lock was taken), an RLTX_GPU_MEMORY_MB of a digit Python cannot read as a number, and an
    RLTX_NATIVE_LOG naming a FIFO (every command hung before its first line)."""
    one = {"worker": ["localhost:12345"]}
    configs = {"hosts as text": {"cluster": {"worker": "x"}}, "no hosts": {"cluster": {"worker": []}},
               "numbers": {"cluster": {"worker": [1, 2]}}, "not a host": {"cluster": {"worker": ["not a host"]}},
               "index past": {"cluster": one, "task": {"type": "worker", "index": 3}},
               "index true": {"cluster": one, "task": {"type": "worker", "index": True}},
               "other role": {"cluster": one, "task": {"type": "banana", "index": 0}},
               "task alone": {"task": {"type": "worker", "index": 0}}}
    cases = {name: (("pretrain", "tiny.yaml", "--out", f"env_{i}", "--quiet"), {"env": {"TF_CONFIG": json.dumps(c)}})
             for i, (name, c) in enumerate(configs.items())}
    cases["memory"] = (("pretrain", "tiny.yaml", "--out", "env_memory", "--quiet"), {"env": {"RLTX_GPU_MEMORY_MB": "²"}})
    cases["table"] = (("construct-init", "tiny.yaml", "--table", "env_table", "--quiet", "--set",  # checked early too
                       "table_layer_sets=[[], [1]]"), {"env": {"TF_CONFIG": json.dumps(configs["no hosts"])}})
    bad_memory = {"env": {"RLTX_GPU_MEMORY_MB": "12MB"}}  # the commands that load TensorFlow without training
    cases["init memory"] = (("construct-init", "tiny.yaml", "--layers", "1", "-o", "env_init.h5"), bad_memory)
    cases["analyze memory"] = (("analyze", "activations", "base", "--num-examples", "8"), bad_memory)
    cases["export memory"] = (("export", "base", "-o", "env_export.keras"), bad_memory)
    os.mkfifo(work / "log.fifo")  # no reader: opening it for writing would block the program
    cases["fifo log"] = (("runs", "base"), {"env": {"RLTX_NATIVE_LOG": str(work / "log.fifo")}})
    results = run_cases(work, cases)
    refused(results["fifo log"], 2, "RLTX_NATIVE_LOG=", "cannot be opened for appending (a FIFO that no process reads)")
    for name in [*configs, "table"]:
        refused(results[name], 2, "TF_CONFIG is not valid", "fix it or unset it")
    refused(results["memory"], 2, "RLTX_GPU_MEMORY_MB='²' is not a positive number of MiB")
    for name in ("init memory", "analyze memory", "export memory"):
        refused(results[name], 2, "RLTX_GPU_MEMORY_MB='12MB' is not a positive number of MiB")
    assert not (work / "env_init.h5").exists() and not (work / "env_export.keras").exists()
    assert not any((work / f"env_{i}").exists() for i in range(len(configs))) and not (work / "env_memory").exists()
    assert not (work / "env_table").exists()


def _strict_json(text: str):
    """JSON as any parser reads it: bare NaN or Infinity (Python's default) is refused."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_runs_lists_and_show_names_damaged_records_and_both_show_a_run_flagged_unhealthy(work):
    """Hand-edited run.h5 attributes, another program's state.h5 and text in a metrics column gave
    tracebacks that took down the whole `rltx runs` listing; a run flagged diverged was listed as plain
    completed; `--json` wrote bare NaN (a single seed's AUC spread)."""
    listing = work / "listing"
    unfinished = lambda run: _set_attribute(run / "run.h5", "/", "status", "interrupted")  # noqa: E731
    damage = {"state": lambda run: (h5py.File(run / "state.h5", "w").close(), unfinished(run)),
              "created": lambda run: _set_attribute(run / "run.h5", "/", "created", "garbage"),
              "recipe_list": lambda run: _set_attribute(run / "run.h5", "config", "yaml", "- 1\n- 2\n"),
              "recipe_broken": lambda run: _set_attribute(run / "run.h5", "config", "yaml", "a: [\n"),
              "metric_text": lambda run: _replace_dataset(run / "metrics.h5", "step", lambda v: np.array([b"a"] * len(v))),
              "state_truncated": lambda run: (os.truncate(run / "state.h5", 100), unfinished(run))}
    for name, change in damage.items():
        shutil.copytree(work / "base", listing / name)
        change(listing / name)
    shutil.copytree(work / "base", listing / "flagged")
    shutil.copytree(work / "base", listing / "done_state_truncated")  # completed: nothing reads its resume state
    os.truncate(listing / "done_state_truncated" / "state.h5", 100)
    _set_attribute(listing / "flagged" / "run.h5", "/", "health", "diverged: loss 9.1 at step 40, 3.6x its initial 2.5")
    results = run_cases(work, {"runs": (("runs", "listing"), None), "runs json": (("runs", "listing", "--json"), None),
                               "show flagged": (("show", "listing/flagged"), None),
                               "show done": (("show", "listing/done_state_truncated"), None),
                               "curves json": (("analyze", "curves", "base", "--json"), None),
                               **{name: (("show", f"listing/{name}"), None) for name in damage}})
    succeeded(results["runs"])
    rows = {line.split()[0]: line for line in results["runs"].stdout.splitlines()[1:]}
    assert all("unreadable" in rows[f"listing/{name}"] for name in damage), results["runs"].stdout
    assert "completed, diverged" in rows["listing/flagged"]
    assert "completed" in rows["listing/done_state_truncated"] and "unreadable" not in rows["listing/done_state_truncated"]
    succeeded(results["show done"])
    listed = {Path(row["name"]).name: row for row in _strict_json(results["runs json"].stdout)}
    assert listed["flagged"]["health"].startswith("diverged") and listed["state"]["status"] == "unreadable"
    assert "health:      diverged: loss 9.1 at step 40" in results["show flagged"].stdout
    curves = _strict_json(results["curves json"].stdout)
    assert any(value is None for row in curves["table"] for value in row.values())  # one seed: no spread
    refused(results["state"], 2, "state.h5 is not an rltx resume state (no integer step); restore the file rltx "
            "wrote, or delete it (a completed run does not need it; an unfinished one then restarts from step 0)")
    refused(results["state_truncated"], 2, "state.h5 is not a readable HDF5 file (truncated or another format); give "
            "the resume state rltx wrote, or delete it (a completed run does not need it")
    refused(results["created"], 2, "run.h5 holds a damaged `created` time")
    for name in ("recipe_list", "recipe_broken"):
        refused(results[name], 2, "run.h5 holds a damaged recipe (config/yaml is not a mapping of recipe keys)")
    refused(results["metric_text"], 2, "metrics.h5 is not an rltx metrics file (it needs equally long 1-D numeric")


def _set_attribute(path: Path, group: str, name: str, value) -> None:
    with h5py.File(path, "a") as handle:
        handle[group].attrs[name] = value


def _replace_dataset(path: Path, name: str, change) -> None:
    with h5py.File(path, "a") as handle:
        values = change(handle[name][()])
        del handle[name]
        handle[name] = values


@pytest.mark.skipif(not PERMISSIONS_BIND, reason="running as root without setpriv: every file is readable")
def test_files_and_folders_this_user_may_not_read_are_named_in_one_line(work):
    """A checkpoint folder, a run.h5 or an interrupted run's lock this user may not read, and a run folder
    `rltx runs` cannot list (a warning naming it; the other runs are still listed)."""
    folder = work / "private"
    for name in ("listed", "closed", "checkpoints", "record", "lock"):
        shutil.copytree(work / "base", folder / name)
    _set_attribute(folder / "lock" / "run.h5", "/", "status", "running")
    for path in (folder / "closed", folder / "checkpoints" / "checkpoints", folder / "record" / "run.h5",
                 folder / "lock" / "run.lock"):
        path.chmod(0)
    try:
        results = {name: rltx(work, *args, unprivileged=True) for name, args in {
            "runs": ("runs", "private"), "show checkpoints": ("show", "private/checkpoints"),
            "export checkpoints": ("export", "private/checkpoints", "-o", "private_model.keras"),
            "show record": ("show", "private/record"), "show lock": ("show", "private/lock")}.items()}
    finally:
        for path in (folder / "closed", folder / "checkpoints" / "checkpoints", folder / "record" / "run.h5",
                     folder / "lock" / "run.lock"):
            path.chmod(0o755)
    listing = results["runs"]
    assert listing.returncode == 0 and "private/listed" in listing.stdout and "Traceback" not in listing.stderr
    assert listing.stderr.splitlines() == ["warning: private/closed cannot be listed (permission denied): runs in it "
                                           "are not shown"]
    assert "unreadable" in next(line for line in listing.stdout.splitlines() if "private/lock" in line)
    for name in ("show checkpoints", "export checkpoints"):
        refused(results[name], 2, "private/checkpoints/checkpoints': permission denied; give this user access")
    refused(results["show record"], 2, "private/record/run.h5: permission denied; give this user read access")
    refused(results["show lock"], 2, "run.lock: permission denied, so whether the run is still training cannot")
    assert not (work / "private_model.keras").exists()


def test_outputs_inside_a_run_directory_are_refused_before_anything_trains(work):
    """`reproduce --out RUN` trained a whole pre-training into RUN/runs/ before refusing its first
    analysis; a run, a model, a CSV, a sweep plan or a table inside another run would be taken for part
    of it. A reproduction with a bad TF_CONFIG left an empty --out behind."""
    sweep = {**RECIPE, "sweep": {"architectures": ["simple_cnn"], "transfer_layers": ["all"]}}
    (work / "sweep_in_run.yaml").write_text(yaml.safe_dump(sweep))
    results = run_cases(work, {
        "reproduce into a run": (("reproduce", "quickstart", "--quick", "--out", "base"), None),
        "reproduce under a run": (("reproduce", "quickstart", "--quick", "--out", "base/checkpoints"), None),
        "pretrain under a run": (("pretrain", "tiny.yaml", "--out", "base/nested", "--quiet"), None),
        "export model": (("export", "base", "-o", "base/model.keras"), None),
        "export csv": (("export", "base", "--csv", "base/checkpoints/metrics.csv"), None),
        "sweep under a run": (("sweep", "sweep_in_run.yaml", "--out", "base/sweep", "--plan-only"), None),
        "table under a run": (("construct-init", "tiny.yaml", "--table", "base/table", "--set",
                               "table_layer_sets=[[], [1]]"), None),
        "reproduce, bad TF_CONFIG": (("reproduce", "quickstart", "--quick", "--out", "reproduce_tf"),
                                     {"env": {"TF_CONFIG": '{"cluster": {"worker": []}}'}}),
    })
    refused(results["reproduce into a run"], 2, "base is a run directory; give --out a folder of its own")
    refused(results["reproduce under a run"], 2, "base/checkpoints/runs is inside the run directory")
    refused(results["pretrain under a run"], 2, "base/nested is inside the run directory", "(choose another --out)")
    refused(results["export model"], 2, "base/model.keras is inside the run directory", "(choose another -o)")
    refused(results["export csv"], 2, "base/checkpoints/metrics.csv is inside the run directory", "(choose another --csv)")
    refused(results["sweep under a run"], 2, "base/sweep/plan.json is inside the run directory", "another --out")
    refused(results["table under a run"], 2, "base/table/table.h5 is inside the run directory", "another --table")
    refused(results["reproduce, bad TF_CONFIG"], 2, "TF_CONFIG is not valid")
    assert not (work / "reproduce_tf").exists()


def test_exporting_or_analysing_a_run_that_did_not_train_says_so_and_a_result_given_twice_is_refused(work):
    flagged = copy_of(work, "flagged_export")
    _set_attribute(flagged / "run.h5", "/", "health", "collapsed: constant outputs from step 10")
    exported = invoke_ok("export", flagged, "-o", work / "flagged.keras")
    assert "(the model at step 40; health collapsed: constant outputs from step 10)" in exported.output
    as_csv = invoke_ok("export", flagged, "--csv", work / "flagged.csv")
    assert "eval points; health collapsed: constant outputs from step 10)" in as_csv.output
    analysed = invoke_ok("analyze", "curves", flagged)  # alone: beside base, a copy of it is refused
    assert f"warning: {flagged} is collapsed: constant outputs from step 10: its curve is included" in analysed.output
    unflagged = invoke_ok("analyze", "curves", work / "base", "-o", work / "curves_once.h5")
    assert "warning:" not in unflagged.output
    twice = rltx(work, "plot", "auc-scatter", "curves_once.h5", "./curves_once.h5", "-o", "twice.png")
    refused(twice, 2, "curves_once.h5 is given twice; give each curves result once")
    assert not (work / "twice.png").exists()


def test_sources_given_twice_unfinished_or_flagged_are_refused_or_named(work):
    """A run given twice counted twice in a pooled Sigma_w; --covariance-from took interrupted runs (their
    untrained weights) that transfer refuses; a diverged source was used without a word."""
    unfinished = copy_of(work, "unfinished_source")
    _set_attribute(unfinished / "run.h5", "/", "status", "running")  # no writer holds its lock: interrupted
    flagged = copy_of(work, "flagged_source")
    _set_attribute(flagged / "run.h5", "/", "health", "diverged: loss 9.1 at step 40, 3.6x its initial 2.5")
    results = run_cases(work, {
        "from twice": (("transfer", "tiny.yaml", "--from", "base", "--from", "./base", "--set",
                        "transfer_mode=covariance", "--out", "pooled_twice"), None),
        "covariance twice": (("construct-init", "tiny.yaml", "--covariance-from", "base", "--covariance-from", "base",
                              "--layers", "1", "-o", "twice.h5"), None),
        "unfinished": (("construct-init", "tiny.yaml", "--covariance-from", "unfinished_source", "--layers", "1",
                        "-o", "unfinished.h5"), None),
        "no layers": (("construct-init", "tiny.yaml", "--covariance-from", "base", "-o", "no_layers.h5"), None),
        "variant key": (("reproduce", "fig5", "--quick", "--set", "transfer_mode=covariance", "--out", "merged"), None),
    })
    refused(results["from twice"], 2, "base is given twice to --from; give each run once")
    refused(results["covariance twice"], 2, "base is given twice to --covariance-from; give each run once")
    refused(results["unfinished"], 2, "unfinished_source is interrupted, not completed")
    refused(results["no layers"], 2, "construct-init needs --layers (e.g. 1,2,3) (or --table DIR instead)")
    # every variant would become a covariance transfer: curves merged, found only after all runs trained
    refused(results["variant key"], 2, "transfer_mode is set per variant by fig5's reproduce section; drop --set")
    assert not any((work / name).exists() for name in ("pooled_twice", "twice.h5", "unfinished.h5", "no_layers.h5",
                                                       "merged"))
    used = invoke_ok("transfer", work / "tiny.yaml", "--from", flagged, "--out", work / "from_flagged")
    assert f"warning: source {flagged} is diverged: loss 9.1 at step 40" in used.output
    built = invoke_ok("construct-init", work / "tiny.yaml", "--covariance-from", flagged, "--layers", "1",
                      "-o", work / "from_flagged.h5")
    assert f"warning: run {flagged} is diverged: loss 9.1" in built.output


def test_a_first_users_slips_get_the_line_that_names_them_and_leave_nothing_behind(work):
    """Found by a reviewer trying rltx as a new user: each gave a line that named another problem or a
    wrong fix (two lines for a damaged completed run), a copy of a run was pooled twice, a transfer of no
    layer ran as a transfer, a refused reproduction left empty folders, and `rltx sweep` took no recipe name."""
    no_metrics = copy_of(work, "slip_no_metrics")
    (no_metrics / store.METRICS_FILE).unlink()
    copy_of(work, "slip_base_copy")
    no_final = copy_of(work, "slip_no_final")
    final = store.checkpoint_steps_stored(no_final)[-1]
    store.checkpoint_path(no_final, final).unlink()
    invoke_ok("transfer", work / "tiny.yaml", "--from", work / "base", "--out", work / "slip_tr", "--quiet")
    results = run_cases(work, {
        "completed, no metrics": (("pretrain", "tiny.yaml", "--out", "slip_no_metrics"), None),
        "result is a folder": (("plot", "auc-scatter", "base", "-o", "scatter.png"), None),
        "table suffix": (("plot", "table", "base", "-o", "table.txt"), None),
        "roles swapped": (("analyze", "activation-trajectory", "slip_tr", "base"), None),
        "reference source": (("analyze", "weights", "base", "--reference", "source"), None),
        "init is a recipe": (("pretrain", "tiny.yaml", "--init", "tiny.yaml", "--out", "init_yaml"), None),
        "unknown dataset": (("pretrain", "tiny.yaml", "--set", "dataset=cifar11", "--out", "cifar11"), None),
        "copy pooled": (("construct-init", "tiny.yaml", "--covariance-from", "base", "--covariance-from",
                         "slip_base_copy",
                         "--layers", "1", "-o", "copies.h5"), None),
        "no layer": (("transfer", "tiny.yaml", "--from", "base", "--set", "transfer_layers=0", "--out", "none"), None),
        "no layer list": (("transfer", "tiny.yaml", "--from", "base", "--set", "transfer_layers=[]",
                           "--out", "none"), None),
        "reproduce refused": (("reproduce", "fig5", "--quick", "--set", "num_classes_downstream=20",
                               "--out", "refused_reproduction"), None),
        "sweep by name": (("sweep", "cifar10_a", "--quick", "--plan-only", "--out", "named_sweep"), None),
        "analysis twice": (("analyze", "eigenvectors", "base", "base", "-o", "twice.h5"), None),
        "analysis copy": (("analyze", "transfer-function", "base", "slip_base_copy", "-o", "copy_tf.h5"), None),
        "export, no final": (("export", "slip_no_final", "-o", "slip_no_final.keras"), None),
        "weights, no final": (("analyze", "weights", "slip_no_final"), None),
        "all steps, no final": (("analyze", "weights", "slip_no_final", "--all-steps"), None),  # ended early unseen
    })
    refused(results["completed, no metrics"], 2, "marked completed but has no metrics.h5")  # and no "nothing to do"
    refused(results["result is a folder"], 2, "base is a folder, not a file; give an analysis result")
    refused(results["table suffix"], 2, "must end in .md, .tex, .png, .pdf, .svg")
    refused(results["roles swapped"], 2, "slip_tr is a transfer run; give the pre-training run first")
    refused(results["reference source"], 2, "--reference source needs a transfer run", "use --reference init")
    refused(results["init is a recipe"], 2, "give an init file written by `rltx construct-init`")
    refused(results["unknown dataset"], 2, "use gaussian, dead_leaves, photos, npz, image_folder")
    refused(results["copy pooled"], 2, "base_copy holds the same checkpoint as", "give each run once")
    refused(results["analysis twice"], 2, "base is given twice to the RUN arguments; give each run once")
    refused(results["analysis copy"], 2, "base_copy holds the same checkpoint as", "give each run once to the RUN")
    for name in ("no layer", "no layer list"):
        refused(results[name], 2, "transfers no layer", "--from scratch")
    refused(results["reproduce refused"], 2, "num_classes_downstream")
    for name in ("export, no final", "weights, no final", "all steps, no final"):  # as transfer refuses it: never
        # silently an earlier step
        refused(results[name], 2, f"final checkpoint (step {final}) is missing", "pass --step")
    assert results["sweep by name"].returncode == 0, results["sweep by name"].stderr  # its summary is on stderr
    assert (work / "named_sweep" / "plan.json").is_file()
    assert not any((work / name).exists() for name in ("copies.h5", "none", "refused_reproduction", "init_yaml",
                                                       "cifar11", "slip_no_final.keras", "twice.h5", "copy_tf.h5"))
    older = copy_of(work, "transferred_nothing", "slip_tr")  # stored by an rltx that took transfer_layers 0
    record = store.read_run_record(older)
    record.config_yaml = yaml.safe_dump({**record.config, "transfer_layers": 0})
    store.write_run_record(older, record)
    invoke_ok("analyze", "curves", older)  # still opens: the refusal is the transfer command's, not the recipe's


def test_a_rotation_draw_that_cannot_be_made_is_refused_before_anything_is_written(work):
    """`covariance_draw: rotation` (or `centred`) takes one source's filters into a covariance transfer's first
    layer: with transfer_mode weights (as `gaussian_with_mean` there), or with two sources (transfer or
    construct-init), it is one line and no output."""
    rotation = ("--set", "covariance_draw=rotation")
    cases = {
        "weights": (("transfer", "tiny.yaml", "--from", "base", *rotation, "--out", "t_rot_w", "--quiet"), None),
        "weights, mean": (("transfer", "tiny.yaml", "--from", "base", "--set", "covariance_draw=gaussian_with_mean",
                           "--out", "t_mean_w", "--quiet"), None),
        "two sources": (("transfer", "tiny.yaml", "--from", "base", "--from", "other", *rotation,
                         "--set", "transfer_mode=covariance", "--out", "t_rot_2", "--quiet"), None),
        "two runs": (("construct-init", "tiny.yaml", "--layers", "1", "--covariance-from", "base",
                      "--covariance-from", "other", "--set", "covariance_draw=centred", "-o", "rot.h5"), None),
    }
    results = run_cases(work, cases)
    refused(results["weights"], 2, "covariance_draw rotation draws the first layer of transfer_mode covariance",
            "drop covariance_draw or set transfer_mode covariance")
    refused(results["weights, mean"], 2, "covariance_draw gaussian_with_mean draws the first layer of transfer_mode "
            "covariance", "drop covariance_draw or set transfer_mode covariance")
    refused(results["two sources"], 2, "takes the filters of one source run, but --from gives 2",
            "use covariance_draw gaussian")
    refused(results["two runs"], 2, "covariance_draw centred takes the filters of one source run, but "
            "--covariance-from gives 2")
    assert not any((work / name).exists() for name in ("t_rot_w", "t_mean_w", "t_rot_2", "rot.h5"))


def test_an_image_folder_of_one_split_or_one_class_is_named_not_read_as_a_class(work):
    """An image folder with train/ but no test/ was read as one class named "train", and one class of real
    labels got the fix "set num_classes_upstream=1", which the recipe then refused: both are one line now."""
    from PIL import Image
    pixels = np.random.default_rng(0).integers(0, 255, size=(8, 8, 3), dtype=np.uint8)
    for folder in ("imgs_train_only/train/a", "imgs_train_only/train/b", "imgs_one_class/a"):
        (work / folder).mkdir(parents=True)
        for index in range(5):
            Image.fromarray(pixels).save(work / folder / f"{index}.png")
    folder_keys = ("--set", "dataset=image_folder", "--set", "image_size=8", "--set", "num_examples_upstream=3",
                   "--set", "num_examples_downstream=1", "--set", "num_examples_test=1", "--set", "batch_size=3", "--set", "labels_upstream=real")
    results = run_cases(work, {
        "train only": (("pretrain", "tiny.yaml", *folder_keys, "--set", "data_path=imgs_train_only",
                        "--set", "num_classes_upstream=2", "--out", "folder_train_only"), None),
        "one class": (("pretrain", "tiny.yaml", *folder_keys, "--set", "data_path=imgs_one_class",
                       "--set", "num_classes_upstream=2", "--out", "folder_one_class"), None),
    })
    refused(results["train only"], 2, "has a train/ sub-folder but no test/", "add test/CLASS/... beside it")
    refused(results["one class"], 2, "has 1 real class, and a task needs 2 or more", "labels_upstream=random")
    assert not (work / "folder_train_only").exists() and not (work / "folder_one_class").exists()


def test_an_input_that_is_a_fifo_is_named_not_waited_on(work):
    """Opening a FIFO that no process writes blocks forever: as the recipe, the --init file, an analysis
    result to plot or an npz data_path it hung the command (a reviewer's walk of the faults table). Each is one
    line now, and a folder given as data_path is named as a folder, not as missing."""
    os.mkfifo(work / "input.fifo")
    results = run_cases(work, {
        "recipe": (("pretrain", "input.fifo", "--out", "fifo_recipe", "--quiet"), None),
        "init": (("pretrain", "tiny.yaml", "--init", "input.fifo", "--out", "fifo_init", "--quiet"), None),
        "result": (("plot", "table", "input.fifo", "-o", "fifo.md"), None),
        "npz": (("pretrain", "tiny.yaml", "--set", "dataset=npz", "--set", "data_path=input.fifo",
                 "--out", "fifo_npz", "--quiet"), None),
        "npz folder": (("pretrain", "tiny.yaml", "--set", "dataset=npz", "--set", "data_path=base",
                        "--out", "folder_npz", "--quiet"), None),
    })
    for name in ("recipe", "init", "result", "npz"):
        refused(results[name], 2, "input.fifo is not a regular file (a pipe, socket or device); give ")
    refused(results["npz folder"], 2, "is a folder; set data_path to the .npz file")
    assert not any((work / name).exists() for name in ("fifo_recipe", "fifo_init", "fifo.md", "fifo_npz",
                                                       "folder_npz"))
