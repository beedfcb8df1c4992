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


def test_a_missing_dataset_is_one_line_though_tfds_warns_while_probing_it(tmp_path):
    """tfds logs "Variant folder ... has no dataset_info.json" (absl, Python side) when it probes a
    dataset that is not prepared: the user meets that error as rltx's one line, and --verbose shows tfds's."""
    args = ("pretrain", "table1", "--out", "run", "--set", "offline=true", "--set", f"data_dir={tmp_path / 'tfds'}")
    failed = rltx(*args, cwd=tmp_path)
    assert failed.returncode == 2
    assert len(failed.stderr.splitlines()) == 1, failed.stderr
    assert failed.stderr.startswith("Error: dataset cifar10 is not prepared in "), failed.stderr
    verbose = rltx("--verbose", *args, cwd=tmp_path)
    assert verbose.returncode == 2 and "Variant folder" in verbose.stderr
    assert not (tmp_path / "run").exists()
