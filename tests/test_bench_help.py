"""Every benchmark answers --help with its usage and exits, without starting its measurement (bench/construct.py
once ignored --help and trained for minutes)."""
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
WITHOUT_OPTIONS = ("alignment", "construct", "malloc_reuse", "natural_spectrum", "vgg_signal")  # argparse for --help alone


@pytest.mark.slow
def test_benchmarks_without_options_answer_help_and_exit():
    started = {name: subprocess.Popen([sys.executable, str(BENCH / f"{name}.py"), "--help"], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for name in WITHOUT_OPTIONS}
    try:
        answers = {name: process.communicate(timeout=120) for name, process in started.items()}
    finally:
        for process in started.values():  # a benchmark that ignored --help is not left running
            process.kill()
    for name, (out, err) in answers.items():
        assert started[name].returncode == 0 and out.startswith(f"usage: {name}.py [-h]"), (name, err[-2000:])


@pytest.mark.slow
def test_eval_pass_benchmark_checks_both_passes_agree_and_prints_their_ratio():
    result = subprocess.run([sys.executable, str(BENCH / "eval_pass.py"), "--examples", "30", "--passes", "1"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("30 examples: by index ") and "iterator / by index" in line
                                   for line in lines)
