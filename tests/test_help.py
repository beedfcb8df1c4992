"""Help and shell completion answer at once, without importing TensorFlow (nor numpy/h5py for the
top level), and the command lists show whole one-line summaries, never a sentence cut short."""
import os
import resource
import subprocess
import sys

import pytest

PROBE = """
import sys
from rltx.cli import main
try:
    main(sys.argv[1:], prog_name="rltx")
except SystemExit:
    pass
print("loaded:", *sorted(m for m in ("tensorflow", "keras", "h5py", "numpy", "scipy.stats") if m in sys.modules),
      file=sys.stderr)
"""


def probe(*args, env=None):
    """The output of `rltx ARGS` in a fresh interpreter, the modules it loaded, and the CPU time it took
    (user + system, the less of two tries). CPU time, not wall time: the suite runs in two processes on
    two cores, so a help process may wait for a core while the other process trains."""
    times = []
    for _ in range(2):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60,
                              env={**os.environ, **(env or {})})
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    loaded = done.stderr.strip().splitlines()[-1].split()[1:]
    return done.stdout, loaded, min(times)


@pytest.mark.parametrize("args", [["--help"], ["analyze", "--help"], ["plot", "--help"], ["pretrain", "--help"],
                                  ["runs", "--help"], ["reproduce", "--help"]])
def test_help_answers_without_tensorflow_within_a_second_and_a_half_of_cpu(args):
    output, loaded, seconds = probe(*args)
    assert "Usage: rltx" in output
    assert "tensorflow" not in loaded and "keras" not in loaded and "scipy.stats" not in loaded  # 0.5 s of imports
    if args[0] not in ("analyze", "plot", "reproduce"):
        assert loaded == []
    assert seconds < 1.5


def test_completion_answers_without_tensorflow():
    output, loaded, seconds = probe(env={"_RLTX_COMPLETE": "bash_complete", "COMP_WORDS": "rltx analyze tr",
                                         "COMP_CWORD": "2"})
    assert output.split() == ["plain,transfer-function", "plain,transferability-curve"]
    assert "tensorflow" not in loaded and seconds < 1.5
    script, _, _ = probe(env={"_RLTX_COMPLETE": "bash_source"})
    assert "_rltx_completion" in script


@pytest.mark.parametrize("group", [[], ["analyze"], ["plot"]])
def test_command_lists_show_whole_summaries(group):
    from click.testing import CliRunner

    from rltx.cli import main
    output = CliRunner().invoke(main, [*group, "--help"], terminal_width=80).output
    commands = output.split("Commands:\n")[1].splitlines()
    assert len(commands) >= 10
    for line in commands:  # one line per command (a wrapped summary would indent a second line)
        assert line.startswith("  ") and not line.startswith("   ") and line.endswith("."), line


def test_recipe_keys_in_help_only_where_they_apply():
    from click.testing import CliRunner

    from rltx.cli import main
    for command, shown in (("pretrain", False), ("transfer", False), ("construct-init", True)):
        output = CliRunner().invoke(main, [command, "--help"]).output
        assert "  learning_rate = " in output
        assert ("  construct_tau = " in output) == shown and ("  table_iterations = " in output) == shown


def test_runs_and_show_read_a_run_without_tensorflow(tmp_path):
    """`rltx runs` / `rltx show` read only the HDF5 files (README, "Inspecting runs"): they answer at
    once, also beside a training run. The tensorboard folder's name once pulled TensorFlow in."""
    from tests_support import TINY

    from rltx.config import make_recipe
    from rltx.pretrain import pretrain
    pretrain(make_recipe({**TINY, "total_steps": 2}), tmp_path / "run")
    for command in ("runs", "show"):
        output, loaded, _ = probe(command, str(tmp_path / "run"))
        assert "completed" in output and "tensorflow" not in loaded and "keras" not in loaded, (command, loaded)
