"""Recipes: every invalid input is a one-line UsageError naming the problem and the fix."""
from pathlib import Path

import pytest
import yaml

from rltx.config import ARCHITECTURE_NAMES, FIELDS, describe_keys, make_recipe
from rltx.recipe_file import load_recipe
from rltx.errors import UsageError

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
BASE = {"dataset": "cifar10", "architecture": "vgg16", "num_examples_upstream": 20000,
        "learning_rate": 0.01, "epochs": 120}


def recipe_file(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def test_quickstart_loads_and_round_trips():
    recipe = load_recipe(RECIPES / "quickstart.yaml")
    assert recipe.dataset == "gaussian" and recipe.batch_size == 2000  # E.1: full-batch gradient descent
    assert make_recipe(yaml.safe_load(recipe.to_yaml())) == recipe


def test_paper_defaults():
    recipe = make_recipe(BASE)  # A.3: batch 256, momentum 0.9, He init, init_scale 1
    assert (recipe.batch_size, recipe.momentum, recipe.init_algorithm, recipe.init_scale) == (256, 0.9, "he", 1.0)
    assert recipe.steps == 9375  # 120 epochs x 20000 / 256


def test_overrides_are_yaml_typed(tmp_path):
    recipe = load_recipe(recipe_file(tmp_path, yaml.safe_dump(BASE)),
                         ("learning_rate=0.5", "checkpoint_steps=[1, 6240]", "epochs=null", "total_steps=100"))
    assert recipe.learning_rate == 0.5 and recipe.checkpoint_steps == [1, 6240] and recipe.steps == 100


def test_exponent_numbers_without_a_dot_are_numbers(tmp_path):
    """`1e-4` is a float in a recipe file and in --set (YAML 1.2; PyYAML's YAML 1.1 reads it as a string);
    text that only looks like one stays text."""
    text = yaml.safe_dump(BASE).replace("learning_rate: 0.01", "learning_rate: 3e-4")
    recipe = load_recipe(recipe_file(tmp_path, text), ("momentum=5E-1", "description=1e"))
    assert recipe.learning_rate == 3e-4 and recipe.momentum == 0.5 and recipe.description == "1e"


def test_paths_resolve_relative_to_the_recipe(tmp_path):
    recipe = load_recipe(recipe_file(tmp_path, yaml.safe_dump({**BASE, "data_dir": "data"})))
    assert recipe.data_dir == str(tmp_path / "data")


@pytest.mark.parametrize("change, words", [
    ({"learning_rat": 0.1}, "did you mean 'learning_rate'"),
    ({"learning_rate": 0}, "learning_rate is 0; it must be > 0"),
    ({"learning_rate": -1.0}, "must be > 0"),
    ({"learning_rate": "fast"}, "must be a number"),
    ({"num_classes_upstream": 1}, "must be >= 2"),
    ({"batch_size": 40000}, "larger than num_examples_upstream"),
    ({"batch_size": 2.5}, "must be an integer"),
    ({"architecture": "vgg19"}, "choose one of simple_cnn"),
    ({"total_steps": 10}, "exactly one of epochs and total_steps"),
    ({"schedule_steps": 1}, "schedule_steps 1 is shorter than the run's"),
    ({"momentum": 1.5}, "momentum is 1.5; it must be <= 1$"),
    ({"offline": "yes"}, "true or false"),
    ({"hidden_units": [1, -2]}, "holds a number that is -2; it must be >= 1"),
    ({"dataset": "npz"}, "needs data_path"),
    ({"dataset": "gaussian"}, "needs gaussian_spectrum"),
    ({"checkpoint_every": None}, "checkpoint_every cannot be null or empty; give it a value, or leave it out for its default 0$"),
])
def test_invalid_values(change, words):
    with pytest.raises(UsageError, match=words.replace("(", r"\(")) as caught:
        make_recipe({**BASE, **change})
    assert "\n" not in str(caught.value)


def test_missing_required_and_not_a_mapping(tmp_path):
    with pytest.raises(UsageError, match="missing required key.*architecture"):
        make_recipe({k: v for k, v in BASE.items() if k != "architecture"})
    with pytest.raises(UsageError, match="YAML mapping"):
        load_recipe(recipe_file(tmp_path, "- just\n- a list\n"))


def test_malformed_yaml_names_the_line(tmp_path):
    with pytest.raises(UsageError, match="line 2"):
        load_recipe(recipe_file(tmp_path, "dataset: cifar10\narchitecture: vgg16: x\n"))


def test_bad_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(UsageError, match="not key=value"):
        load_recipe(recipe_file(tmp_path, yaml.safe_dump(BASE)), ("learning_rate",))
    with pytest.raises(UsageError, match="cannot read recipe"):
        load_recipe(tmp_path / "absent.yaml")


def test_yaml_is_loaded_safely(tmp_path):
    with pytest.raises(UsageError):
        load_recipe(recipe_file(tmp_path, "dataset: !!python/object/apply:os.system ['true']\n"))


def test_every_key_documented_and_architectures_registered():
    from rltx.models import ARCHITECTURES
    assert set(ARCHITECTURE_NAMES) == set(ARCHITECTURES)
    rows = describe_keys()
    assert [r[0] for r in rows] == list(FIELDS) and all(r[3] for r in rows)
    for architecture in ARCHITECTURES.values():
        assert set(architecture.options) <= set(FIELDS)


def test_profile_replaces_keys_and_offline_fallback_applies_only_without_the_dataset(tmp_path):
    """A profile's keys replace the recipe's; its offline_fallback keys apply only when the dataset
    cannot be opened here (an npz path that does not exist), and the description says so."""
    import numpy as np
    npz = tmp_path / "data.npz"
    raw = {**BASE, "dataset": "npz", "data_path": "data.npz", "profiles": {"quick": {
        "num_examples_upstream": 300, "offline_fallback": {
            "dataset": "gaussian", "gaussian_spectrum": [1.0, 2.0], "data_path": None, "architecture": "mlp"}}}}
    path = recipe_file(tmp_path, yaml.safe_dump(raw))
    fallback = load_recipe(path, profile="quick")
    assert (fallback.dataset, fallback.num_examples_upstream) == ("gaussian", 300)
    assert "npz is not available here, so it runs on gaussian instead" in fallback.description
    np.savez(npz, x=np.zeros((400, 4, 4, 3), np.uint8), y=np.zeros(400, np.int64))
    present = load_recipe(path, profile="quick")
    assert (present.dataset, present.num_examples_upstream) == ("npz", 300)
    assert load_recipe(path).num_examples_upstream == BASE["num_examples_upstream"]
    with pytest.raises(UsageError, match="no profile 'slow'"):
        load_recipe(path, profile="slow")


def test_the_data_identity_holds_the_run_seed_exactly_where_it_draws_the_data():
    """gaussian, dead_leaves and photos draw their data from the run's seed unless their own seed key is set;
    a transfer must then use its source's seed (rltx.transfer.check_compatible compares these keys)."""
    from rltx.config import DataSpec
    for dataset, own_seed in (("gaussian", "gaussian_seed"), ("dead_leaves", "natural_seed"), ("photos", "natural_seed")):
        assert "seed" in DataSpec.of(dataset, seed=3).identity()
        assert "seed" not in DataSpec.of(dataset, seed=3, **{own_seed: 0}).identity()
    assert "seed" not in DataSpec.of("npz", data_path="x.npz", seed=3).identity()
    assert "seed" not in DataSpec.of("cifar10", seed=3).identity()
    # where a prepared dataset lies is not which data it is: a source prepared in another folder is the same data
    assert "data_dir" not in DataSpec.of("cifar10", seed=3, data_dir="/scratch/tfds").identity()
