"""The `rltx` program keeps TensorFlow's native log lines (absl's pre-init warning, I0000 oneDNN /
cudart lines, E0000 cuInit) off the terminal unless asked (--verbose): stderr holds rltx's lines only."""
import re
import subprocess
import sys

import pytest
import yaml

from tests_support import tiny_recipe_dict

pytestmark = pytest.mark.slow  # subprocesses, end to end

NATIVE_LINE = re.compile(r"^(WARNING: All log messages before absl|[IWEF]\d{4} )")


def rltx(*args, cwd):
    return subprocess.run([sys.executable, "-m", "rltx", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_training_and_errors_print_only_rltx_lines_and_verbose_shows_tensorflows(tmp_path):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({**tiny_recipe_dict(), "total_steps": 4}))
    trained = rltx("pretrain", "tiny.yaml", "--out", "run", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert trained.stderr and not [line for line in trained.stderr.splitlines() if NATIVE_LINE.match(line)]
    # an error found after TensorFlow was loaded and the devices queried (the cuInit line's moment)
    failed = rltx("transfer", "tiny.yaml", "--from", "run", "--from-step", "3", "--out", "t", cwd=tmp_path)
    assert failed.returncode == 2
    assert len(failed.stderr.splitlines()) == 1 and failed.stderr.startswith("Error: "), failed.stderr
    verbose = rltx("--verbose", "transfer", "tiny.yaml", "--from", "run", "--from-step", "3", "--out", "t",
                   cwd=tmp_path)
    assert verbose.returncode == 2 and any(NATIVE_LINE.match(line) for line in verbose.stderr.splitlines())
