"""bench/gpu.py in its reduced form (what runs without a GPU): the table's rows and columns."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "gpu.py"


@pytest.mark.slow
def test_reduced_benchmark_prints_and_saves_the_table(tmp_path):
    result = subprocess.run([sys.executable, str(BENCH), "--models", "simple_cnn", "--save", str(tmp_path / "r.json")],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    header = lines.index(next(line for line in lines if line.split()[:1] == ["model"]))
    assert lines[header].split() == ["model", "precision", "xla", "train", "img/s", "ceiling", "img/s",
                                     "train/ceiling", "eval", "img/s"]
    rows = [line.split()[:3] for line in lines[header + 1:header + 5]]
    assert rows == [["simple_cnn", p, x] for p in ("float32", "mixed_bfloat16") for x in ("off", "on")]
    saved = json.loads((tmp_path / "r.json").read_text())
    assert [r["K"] for r in saved["packing"]] == [1, 2] and saved["packing"][0]["gain"] == 1.0
    assert all(r["train img/s"] > 0 and r["ceiling img/s"] > 0 and r["eval img/s"] > 0 for r in saved["rows"])
    assert saved["device"] and saved["date"] and saved["batch_size"] == 8
    assert set(saved["train_images_per_second"]) == {"simple_cnn"}  # float32 at jit_compile auto's choice
