"""The command line on real inputs: help, real images, offline data, bad input (exit 2, one line)."""
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from rltx import store
from rltx.cli import main
from rltx.config import FIELDS
from rltx.errors import UsageError
from tests_support import tiny_recipe_dict


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "rltx", *map(str, args)], capture_output=True, text=True, timeout=300)


def every_command(group, path=()):
    """(path, command) for every command under `group`, groups included."""
    import click
    yield path, group
    if isinstance(group, click.Group):
        context = click.Context(group)
        for name in group.list_commands(context):
            yield from every_command(group.get_command(context, name), (*path, name))


def test_no_help_text_shows_a_bound_of_none():
    """click writes an unbounded FloatRange as "x<=None"; rltx's FiniteRange says "finite"."""
    shown = {" ".join(path): CliRunner().invoke(main, [*path, "--help"], terminal_width=200).output
             for path, _ in every_command(main)}
    assert [path for path, text in shown.items() if "None]" in text] == []
    assert "[default: 2.0; finite]" in shown["analyze barrier"]


def test_help_documents_every_key_and_every_command():
    top = CliRunner().invoke(main, ["--help"])
    assert top.exit_code == 0
    for command in ("pretrain", "transfer", "construct-init", "analyze", "plot", "sweep", "reproduce"):
        assert f"  {command} " in top.output
    text = CliRunner().invoke(main, ["pretrain", "--help"]).output
    construct = CliRunner().invoke(main, ["construct-init", "--help"]).output
    for name in FIELDS:  # construct-init's own keys only in its help
        assert f"  {name} = " in (construct if name.startswith(("construct_", "table_")) else text), name
    assert "learning_rate = (required)" in text and "batch_size = 256 [examples]" in text


@pytest.mark.slow
def test_real_images_end_to_end(tmp_path):
    """sklearn's 8x8 digit scans (real images shipped in the wheel) with their real labels."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    pixels = np.round(digits.images / 16 * 255).astype(np.uint8)[..., None]
    np.savez(tmp_path / "digits.npz", x=pixels, y=digits.target)
    recipe = {key: value for key, value in tiny_recipe_dict().items() if not key.startswith("gaussian")}
    recipe.update(dataset="npz", data_path="digits.npz", labels_upstream="real", num_classes_upstream=10,
                  num_examples_upstream=1024, num_examples_downstream=256, num_examples_test=256,
                  padding="same", stride=1, num_filters=16, num_units=32, learning_rate=0.05, total_steps=60)
    (tmp_path / "digits.yaml").write_text(yaml.safe_dump(recipe))
    result = run_cli("pretrain", tmp_path / "digits.yaml", "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    metrics = store.read_metrics(tmp_path / "run")
    # Real labels are learnable and generalise: held-out accuracy far above the 10% of chance.
    assert metrics[-1]["test_accuracy"] > 0.6 > metrics[0]["test_accuracy"]
    samples = store.read_run_record(tmp_path / "run").samples
    np.testing.assert_array_equal(samples["upstream_labels"], digits.target[samples["upstream_indices"]])
    assert "step 60/60" in result.stderr  # plain progress lines when not on a terminal


@pytest.mark.slow
def test_missing_dataset_offline_fails_fast(tmp_path):
    recipe = {key: value for key, value in tiny_recipe_dict().items() if not key.startswith("gaussian")}
    recipe.update(dataset="cifar10", data_dir=str(tmp_path / "empty"), offline=True)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(recipe))
    started = time.monotonic()
    result = run_cli("pretrain", tmp_path / "c.yaml", "--out", tmp_path / "run")
    assert time.monotonic() - started < 30  # including the TensorFlow import
    assert result.returncode == 2 and "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("Error: ") and "data_dir" in message and "manual_dir" in message


@pytest.mark.parametrize("content, words", [
    ("dataset: [cifar10\n", "YAML"),
    ("{}", "missing required key"),
    ("learning_rate: 0.1\nlerning: 1\n", "unknown recipe key"),
])
def test_bad_recipes_exit_2_with_one_line(tmp_path, content, words):
    (tmp_path / "bad.yaml").write_text(content)
    result = CliRunner().invoke(main, ["pretrain", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert words in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_truncated_run_file_as_recipe(tmp_path):
    (tmp_path / "run.h5").write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    result = CliRunner().invoke(main, ["pretrain", str(tmp_path / "run.h5")])
    assert result.exit_code == 2 and "not a readable HDF5 file" in result.output


@pytest.mark.slow
def test_stored_config_reruns_as_is(tmp_path, tiny_yaml):
    assert run_cli("pretrain", tiny_yaml, "--out", tmp_path / "a", "--quiet").returncode == 0
    again = run_cli("pretrain", tmp_path / "a" / "run.h5", "--out", tmp_path / "b", "--quiet")
    assert again.returncode == 0, again.stderr
    first, second = store.read_metrics(tmp_path / "a"), store.read_metrics(tmp_path / "b")
    assert [r["train_loss"] for r in first] == [r["train_loss"] for r in second]


def test_comma_lists_of_every_option_are_read_by_one_rule():
    from rltx.cli_options import comma_list
    assert comma_list("0, 0.5,1e-3,", "--alphas") == [0.0, 0.5, 0.001]
    assert comma_list("5,10", "--steps", int) == [5, 10]
    assert comma_list("0,1,0,1", "--zoom", count=4) == [0.0, 1.0, 0.0, 1.0]
    for text, convert, count in ((",", float, None), ("nan,1", float, None), ("1.5", int, None), ("1,2", float, 4)):
        with pytest.raises(UsageError, match="comma-separated"):
            comma_list(text, "--x", convert, count=count)
