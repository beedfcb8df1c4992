"""Recipes by name: `rltx recipe list`, `rltx recipe show NAME [--set] [--profile]`, and the
training commands accept an installed recipe's name as `reproduce` does."""
import yaml
from click.testing import CliRunner

from rltx.cli import main
from rltx.recipe_file import read_recipe_file
from rltx.reproduce import find_recipe
from tests_support import TINY, invoke_ok


def test_recipe_list_names_every_recipe_with_its_description():
    lines = invoke_ok("recipe", "list").output.splitlines()
    names = [line.split()[0] for line in lines]
    assert "quickstart" in names and names == sorted(names)
    description = read_recipe_file(find_recipe("quickstart")).keys["description"]
    assert lines[names.index("quickstart")].split(maxsplit=1)[1] == description


def test_recipe_show_resolves_profile_then_set_with_every_key():
    shown = yaml.safe_load(invoke_ok("recipe", "show", "quickstart", "--profile", "quick", "--set", "seed=4").output)
    quick = read_recipe_file(find_recipe("quickstart")).profiles["quick"]
    assert shown["seed"] == 4 and "[quick profile]" in shown["description"]
    assert all(shown[key] == value for key, value in quick.items() if key not in ("offline_fallback", "seed"))
    assert "tensorboard" in shown and "checkpoint_steps" in shown  # defaults included


def test_training_commands_take_recipe_names_and_refuse_unknown_ones(tmp_path):
    unknown = CliRunner().invoke(main, ["pretrain", "no_such_recipe", "--out", str(tmp_path / "r")])
    assert unknown.exit_code == 2 and "no recipe named 'no_such_recipe'; choose one of" in unknown.output
    assert "quickstart" in unknown.output and not (tmp_path / "r").exists()
    refused = CliRunner().invoke(main, ["pretrain", "quickstart", "--set", "learning_rate=-1"])
    assert refused.exit_code == 2 and "learning_rate" in refused.output  # the named recipe was loaded


def test_whole_numbers_show_as_integers_in_legends():
    from rltx.analysis.curves import _label
    from rltx.plotting.training import _group_label
    key = {"kind": "pretrain", "epochs": 60.0, "learning_rate": 0.05}
    assert _group_label(key, ["epochs", "learning_rate"]) == "pretrain, epochs=60, learning_rate=0.05"
    assert _label(key, ["epochs"]) == "pretrain, epochs=60"


def test_real_labels_without_real_classes_name_the_keys_and_the_fixes_work():
    import numpy as np
    import pytest

    from rltx.config import make_recipe
    from rltx.errors import UsageError
    from rltx.tasks import downstream_samples, open_recipe_source

    def samples(**changes):
        recipe = make_recipe({**TINY, **changes})
        return downstream_samples(recipe, open_recipe_source(recipe), np.arange(TINY["num_examples_upstream"]))
    with pytest.raises(UsageError) as refused:
        samples()
    assert str(refused.value) == ("gaussian has no real labels here (0 classes) but labels_downstream is real; set "
                                  "labels_downstream=random, or give gaussian data classes with gaussian_num_classes=10")
    assert samples(labels_downstream="random")["downstream_labels"].max() < 10
    assert set(samples(gaussian_num_classes=10)["downstream_labels"].tolist()) <= set(range(10))
    with pytest.raises(UsageError, match="gaussian has 10 real classes but num_classes_downstream is 4; set "
                                         r"num_classes_downstream=10 \(or labels_downstream=random\)"):
        samples(gaussian_num_classes=10, num_classes_downstream=4)


def test_a_missing_dataset_writes_nothing(tmp_path):
    recipe = {**TINY, "dataset": "npz", "data_path": str(tmp_path / "absent.npz")}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    missing = CliRunner().invoke(main, ["pretrain", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run")])
    assert missing.exit_code == 2 and "absent.npz" in missing.output
    assert not (tmp_path / "run").exists()


def test_a_verdicts_command_line_parses_back_to_the_same_run():
    """The `command:` line of a verdict (rltx.reproduce.command_line) is read back by a shell and
    click's own parser of `rltx reproduce`: the recipe, profile, seeds and every --set key come back
    as given, whatever YAML the values need (a path with a space, a list, a string YAML could take
    for a number, a colon, null, a non-ASCII character)."""
    import shlex
    from rltx.recipe_file import parse_overrides
    from rltx.reproduce import command_line
    from rltx.reproduce.command import reproduce
    import pytest
    from rltx.errors import UsageError
    for description in ("Fig. 8 — 64 units, # not a comment", "two\nlines", "a\x85next line", "a\u2028b", "\t"):
        overrides = {"data_path": "/data/my photos/set: a.npz", "checkpoint_steps": [1, 2, 5], "learning_rate": 0.012,
                     "natural_labels": "1e3", "epochs_downstream": None, "description": description,
                     "init_scale": 1e-05, "tensorboard": False}
        line = command_line("/recipes/my recipe.yaml", "quick", 24, 7, overrides)
        assert "\n" not in line  # one line of verdict.txt
        words = shlex.split(line)
        assert words[:2] == ["rltx", "reproduce"]
        parsed = reproduce.make_context("reproduce", words[2:]).params
        assert (parsed["name"], parsed["profile"], parsed["seeds"], parsed["groups"]) == \
               ("/recipes/my recipe.yaml", "quick", 24, 7)
        assert parse_overrides(parsed["overrides"]) == overrides
    assert command_line("fig5", None, None, None, {}) == "rltx reproduce fig5"
    long = parse_overrides(('description="' + "\t" * 40_000 + '"',))  # 40k tabs: accepted; printed as \t escapes
    assert long["description"] == "\t" * 40_000                        # they are 80k, past what a --set value holds
    with pytest.raises(UsageError, match="^--set description: its value cannot be written back as one line of YAML"):
        command_line("fig5", None, None, None, long)
