"""The recipes of recipes/: every one is a valid recipe, with and without each of its profiles, has a
valid reproduce: section, runs on this machine (quick profile on Gaussian or dead-leaves images when the real
dataset is absent), and the App. B sweeps expand to exactly the paper's experiment counts with every
drawn value inside its stated range. Pure configuration checks: nothing is trained."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from rltx.config import make_recipe
from rltx.recipe_file import FALLBACK, read_recipe_file
from rltx.reproduce.spec import ReproduceSpec
from rltx.sweep import plan as sweep_plan

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
ALL = sorted(RECIPES.glob("*.yaml"))
NAMES = [p.stem for p in ALL]
SWEEPS = ["cifar10_a", "cifar10_b", "imagenet_a", "imagenet_b"]

# App. B.1-B.4 as printed: (architectures x groups x experiments per group), the shared keys and the
# per-group draws. The recipes must say exactly this.
PAPER_SWEEPS = {
    "cifar10_a": dict(  # B.1
        experiments=3 * 20 * 16, groups=20, seeds=2, transfer_layers=[1, "all"],
        shared=dict(dataset="cifar10", num_examples_downstream=25000, epochs_downstream=200, init_algorithm="he"),
        sample=dict(init_scale={"log_uniform": [0.5, 1.35]}, learning_rate={"log_uniform": [0.008, 0.0125]},
                    num_examples_upstream={"uniform": [5000, 10000, 15000, 20000, 25000]},
                    num_classes_upstream={"uniform": [2, 5, 10, 25, 50, 100]},
                    epochs={"uniform": [20, 40, 80, 100, 120, 150, 200]}),
        simple_cnn=dict(num_conv_layers={"uniform": [1, 2, 3, 4, 5]}, num_units={"uniform": [64, 128, 256, 512, 1024]},
                        num_filters={"uniform": [16, 32]})),
    "cifar10_b": dict(  # B.2
        experiments=3 * 20 * 16, groups=20, seeds=2, transfer_layers=[1, "all"],
        shared=dict(dataset="cifar10", num_examples_downstream=25000, epochs_downstream=200),
        sample=dict(init_algorithm={"uniform": ["he", "orthogonal"]}, init_scale={"log_uniform": [0.5, 2.0]},
                    learning_rate={"log_uniform": [0.005, 0.02]},
                    num_examples_upstream={"uniform": [5000, 10000, 15000, 20000, 25000]},
                    num_classes_upstream={"uniform": [2, 5, 10, 25, 50, 100]},
                    epochs={"uniform": [20, 40, 80, 100, 120, 150, 200]}),
        simple_cnn=dict(num_conv_layers={"uniform": [1, 2, 3, 4, 5]}, num_units={"uniform": [512, 1024, 2048]},
                        num_filters={"uniform": [16, 32]})),
    "imagenet_a": dict(  # B.3
        experiments=3 * 10 * 20, groups=10, seeds=5, transfer_layers=["all"],
        shared=dict(dataset="imagenet2012", image_size=224, num_examples_downstream=200000, epochs_downstream=100,
                    epochs=100, num_classes_upstream=1000, init_algorithm="he"),
        sample=dict(init_scale={"log_uniform": [0.5, 1.5]}, learning_rate={"log_uniform": [0.008, 0.0125]},
                    num_examples_upstream={"uniform": [50000, 100000]}),
        simple_cnn=dict(num_conv_layers={"uniform": [1, 2, 3]}, num_units={"uniform": [32, 64, 128, 256, 512, 1024]},
                        num_filters={"uniform": [16, 32, 64]})),
    "imagenet_b": dict(  # B.4
        experiments=3 * 10 * 20, groups=10, seeds=5, transfer_layers=["all"],
        shared=dict(dataset="imagenet2012", image_size=224, num_examples_downstream=50000, epochs_downstream=100,
                    epochs=100, num_classes_upstream=1000, init_algorithm="he"),
        sample=dict(init_scale={"log_uniform": [0.5, 1.5]}, learning_rate={"log_uniform": [0.008, 0.0125]},
                    num_examples_upstream={"uniform": [25000, 50000]}),
        simple_cnn=dict(num_conv_layers={"uniform": [1, 2, 3]}, num_units={"uniform": [32, 64, 128, 256, 512, 1024]},
                        num_filters={"uniform": [16, 32, 64]})),
}


def _spec(file) -> ReproduceSpec:
    return ReproduceSpec.from_section(file.reproduce, str(file.path))


def _check_file(file) -> None:
    """The recipe, its reproduce: section, and (transfer / activations) every variant's recipe."""
    recipe = make_recipe(dict(file.keys))
    spec = _spec(file)
    if file.sweep:
        assert spec.pipeline == "sweep", f"{file.path}: a sweep recipe reproduces with pipeline sweep"
        sweep_plan.SweepSpec.from_section(file.sweep, str(file.path))
    else:
        assert spec.pipeline != "sweep", f"{file.path}: pipeline sweep needs a sweep: section"
    for variant in spec.variants:
        make_recipe({**file.keys, **variant.keys})
    if spec.pipeline == "construct-table":
        assert recipe.table_iterations and max(recipe.table_iterations) <= recipe.steps
    for step in recipe.checkpoint_steps:
        assert 0 <= step <= recipe.steps, f"{file.path}: checkpoint step {step} beyond the {recipe.steps} steps"


@pytest.mark.parametrize("name", NAMES)
def test_recipe_and_reproduce_section_validate(name):
    file = read_recipe_file(RECIPES / f"{name}.yaml")
    _check_file(file)


@pytest.mark.parametrize("name", NAMES)
def test_every_named_profile_validates(name):
    """Every profile, not only quick (fig5's quick_second_order, quick_two_moments, ...): its keys, its reproduce:
    section and each variant's recipe, so a mistyped key fails here, not after the first pre-training."""
    file = read_recipe_file(RECIPES / f"{name}.yaml")
    for profile in file.profiles:
        _check_file(file.profile(profile))


@pytest.mark.parametrize("name", NAMES)
def test_quick_profile_validates(name):
    file = read_recipe_file(RECIPES / f"{name}.yaml")
    assert "quick" in file.profiles, f"{name}.yaml has no profiles: quick: (minutes on a 2-core CPU)"
    _check_file(file.profile("quick"))
    quick = dict(file.profiles["quick"])
    fallback = quick.pop(FALLBACK, None)
    quick.pop("sweep", None)
    quick.pop("reproduce", None)
    if fallback is not None:  # both sides of the fallback are valid, whatever data this machine has
        make_recipe({**file.keys, **quick})
        make_recipe({**file.keys, **quick, **fallback})


@pytest.mark.parametrize("name", NAMES)
def test_quick_profile_runs_here(name):
    """The quick profile's data is embedded (gaussian) or has an offline fallback (Gaussian or dead-leaves
    images), and that source holds the examples the runs draw: upstream + downstream from its training split."""
    file = read_recipe_file(RECIPES / f"{name}.yaml")
    quick = file.profiles.get("quick", {})
    keys = {**file.keys, **quick}
    assert keys["dataset"] == "gaussian" or FALLBACK in quick, \
        f"{name}.yaml: the quick profile needs dataset gaussian or an offline_fallback"
    keys = {**keys, **quick.get(FALLBACK, {})}
    keys = {k: v for k, v in keys.items() if k not in (FALLBACK, "sweep", "reproduce")}
    upstream = [keys["num_examples_upstream"]]
    sweep = {**file.sweep, **quick.get("sweep", {})}
    if sweep:  # every group draws its upstream set size (the recipe's own value is a placeholder)
        upstream = [max(d["uniform"]) if isinstance(d, dict) and "uniform" in d else d for d in
                    (values["num_examples_upstream"] for values in [sweep.get("sample", {}),
                     *sweep.get("by_architecture", {}).values()] if "num_examples_upstream" in values)] or upstream
    recipe = make_recipe(keys)
    assert recipe.dataset in ("gaussian", "dead_leaves"), "offline data: embedded Gaussian or dead-leaves images"
    num_train, num_test = ((recipe.gaussian_num_train, recipe.gaussian_num_test) if recipe.dataset == "gaussian"
                           else (recipe.natural_num_train, recipe.natural_num_test))
    assert max(upstream) + recipe.num_examples_downstream <= num_train
    assert recipe.num_examples_test <= num_test
    if recipe.architecture != "mlp" and recipe.dataset == "gaussian":
        assert recipe.gaussian_patch_size and recipe.gaussian_image_size, "image models need Gaussian images"
    spec = _spec(file.profile("quick"))
    # a budget guard: Tables 1-6 run 6 seeds of four 100-step trainings (about 3.5 minutes here); Fig. 5 alone runs
    # A.9's 12 seeds, at 12x12 (about 6 minutes)
    most = 12 if name == "fig5" else 6
    assert spec.seeds <= most, f"{name}.yaml: the quick profile runs too many seeds for its budget"


@pytest.mark.parametrize("name", [n for n in NAMES
                                  if read_recipe_file(RECIPES / f"{n}.yaml").profiles.get("quick", {})
                                  .get(FALLBACK, {}).get("dataset") == "dead_leaves"])
def test_quick_profile_reads_any_images_at_its_calibrated_size(name):
    """Issue 14: a quick schedule calibrated on 16x16 (or 12x12) images runs at that size on any image set,
    not only on its dead-leaves fallback: an npz of 32x32 images (a CIFAR-sized cross-check set) is read
    at the fallback's size, so it keeps the schedule's learning rate and the 6-minute budget."""
    file = read_recipe_file(RECIPES / f"{name}.yaml")
    offline = file.profile("quick", {"dataset": "dead_leaves"}).keys["image_size"]
    on_npz = file.profile("quick", {"dataset": "npz", "data_path": "cross_check.npz"}).keys
    assert offline in (12, 16) and on_npz.get("image_size") == offline
    assert "image_size" not in file.profiles["quick"][FALLBACK], "one size for every source, set beside the fallback"


def test_every_figure_and_table_has_a_recipe():
    expected = {"fig1_exp12", "fig1_exp34", "fig2", "fig3", "fig4_cifar", "fig6_simple_cnn", "fig6_vgg16",
                "fig6_resnet18", "fig7_negative", "fig7_positive", "fig8_units64", "fig8_units128",
                "fig8_units1024", "fig24", "fig24_deep", "table2", "table3", "table4", "table5", "table6",
                "table7", *SWEEPS}
    assert expected <= set(NAMES), f"missing recipes: {sorted(expected - set(NAMES))}"


def _in_range(value, distribution) -> bool:
    (kind, values), = distribution.items()
    if kind == "log_uniform":
        low, high = values
        return low <= value <= high
    return value in values


@pytest.mark.parametrize("name", SWEEPS)
def test_sweep_is_the_papers(name, tmp_path):
    """App. B: the recipe's shared keys and draws are the paper's, the expansion gives exactly its
    counts, every drawn value lies in its stated range, and every group's recipe is valid."""
    paper = PAPER_SWEEPS[name]
    file = read_recipe_file(RECIPES / f"{name}.yaml")
    for key, value in paper["shared"].items():
        assert file.keys[key] == value, f"{name}: {key}"
    assert file.sweep["sample"] == paper["sample"]
    assert file.sweep["by_architecture"] == {"simple_cnn": paper["simple_cnn"]}
    assert file.sweep["architectures"] == ["simple_cnn", "vgg16", "resnet18"]
    assert (file.sweep["groups"], file.sweep["seeds"], file.sweep["transfer_layers"]) == \
        (paper["groups"], paper["seeds"], paper["transfer_layers"])
    assert file.sweep["labels_downstream"] == ["real", "random"]

    plan = sweep_plan.expand(file, tmp_path)
    counts = plan.counts()
    assert counts["experiments"] == paper["experiments"]
    assert counts["groups"] == 3 * paper["groups"]
    assert counts["pretrain_runs"] == 3 * paper["groups"] * paper["seeds"]
    drawn = {key: set() for key in paper["sample"]}
    for group in plan.groups:
        distributions = {**paper["sample"], **(paper["simple_cnn"] if group["architecture"] == "simple_cnn" else {})}
        assert set(group["values"]) == set(distributions)
        for key, value in group["values"].items():
            assert _in_range(value, distributions[key]), f"{group['name']}: {key}={value!r} outside {distributions[key]}"
            drawn.setdefault(key, set()).add(value)
    for key, distribution in paper["sample"].items():  # the draws vary over the 30-60 groups
        if "log_uniform" in distribution or len(distribution["uniform"]) > 1:
            assert len(drawn[key]) > 1, f"{name}: {key} never varies"
    for key in ("init_scale", "learning_rate"):
        low, high = paper["sample"][key]["log_uniform"]
        logs = [math.log(v) for v in drawn[key]]
        assert min(logs) < math.log(low) + 0.5 * math.log(high / low) < max(logs)


@pytest.mark.parametrize("name", SWEEPS)
def test_quick_sweep_is_small(name, tmp_path):
    plan = sweep_plan.expand(read_recipe_file(RECIPES / f"{name}.yaml").profile("quick"), tmp_path)
    counts = plan.counts()
    assert counts["groups"] <= 2 and counts["pretrain_runs"] <= 2 and counts["experiments"] <= 16
    for group in plan.groups:
        recipe = make_recipe(read_recipe_file(RECIPES / f"{name}.yaml").profile("quick").keys | group["values"]
                             | {"architecture": group["architecture"]})
        assert recipe.steps <= 100 and recipe.steps_downstream <= 100


@pytest.mark.parametrize("name", ["cifar10_a", "cifar10_b"])
def test_natural_app_b_profile_is_the_papers_with_smaller_sets_on_dead_leaves(tmp_path, name):
    """A CIFAR10 sweep's quick_natural: B.1's (B.2's) draws and shared keys as printed but for the set sizes
    (the paper's / 25), on dead-leaves images offline with room for disjoint up- and downstream sets; every
    group's recipe is valid and its model builds on the 12x12 images."""
    import numpy as np

    from rltx.models import ARCHITECTURES, build_model
    file = read_recipe_file(RECIPES / f"{name}.yaml")
    profile, paper = dict(file.profiles["quick_natural"]), PAPER_SWEEPS[name]
    scaled = {"uniform": [n // 25 for n in paper["sample"]["num_examples_upstream"]["uniform"]]}
    assert profile["sweep"]["sample"] == {**paper["sample"], "num_examples_upstream": scaled}
    assert profile["sweep"]["by_architecture"] == {"simple_cnn": paper["simple_cnn"]}
    assert profile["num_examples_downstream"] == paper["shared"]["num_examples_downstream"] // 25
    keys = {k: v for k, v in {**file.keys, **profile, **profile[FALLBACK]}.items() if k not in (FALLBACK, "sweep")}
    recipe = make_recipe(keys)
    assert recipe.dataset == "dead_leaves"
    assert recipe.init_algorithm == paper["shared"].get("init_algorithm", recipe.init_algorithm)  # B.2 draws it
    assert max(scaled["uniform"]) + recipe.num_examples_downstream <= recipe.natural_num_train
    plan = sweep_plan.expand(dataclasses.replace(file, keys=keys, sweep={**file.sweep, **profile["sweep"]}), tmp_path)
    assert plan.counts()["groups"] == 6 and {g["architecture"] for g in plan.groups} == {"simple_cnn"}
    for group in plan.groups:
        grouped = make_recipe(keys | group["values"])
        options = {name: getattr(grouped, name) for name in ARCHITECTURES["simple_cnn"].options}
        model = build_model("simple_cnn", (12, 12, 3), 10, **options)
        assert tuple(model(np.zeros((2, 12, 12, 3), np.float32)).shape) == (2, 10), group["name"]


def test_quick_models_build_on_their_offline_images():
    """Every quick profile's model builds on its offline input and maps a batch to logits (VGG16's five
    max-pools and ResNet18's stem are SAME-padded, so 12x12 images reach a 1x1 map, A.2)."""
    import numpy as np

    from rltx.models import ARCHITECTURES, build_model
    built = {}
    for path in ALL:
        file = read_recipe_file(path)
        quick = file.profiles.get("quick", {})
        keys = {k: v for k, v in {**file.keys, **quick, **quick.get(FALLBACK, {})}.items()
                if k not in (FALLBACK, "sweep", "reproduce")}
        sweep = {**file.sweep, **quick.get("sweep", {})}
        for architecture in sweep.get("architectures") or [keys["architecture"]]:
            recipe = make_recipe({**keys, "architecture": architecture})
            if recipe.architecture == "mlp":
                continue
            options = {name: getattr(recipe, name) for name in ARCHITECTURES[architecture].options}
            side = recipe.gaussian_image_size if recipe.dataset == "gaussian" else recipe.image_size or 32
            built.setdefault((architecture, side, tuple(sorted(options.items()))), (path.stem, options))
    for (architecture, side, _), (name, options) in built.items():
        model = build_model(architecture, (side, side, 3), 10, **options)
        logits = model(np.zeros((2, side, side, 3), np.float32))
        assert tuple(logits.shape) == (2, 10), f"{name}: {architecture} on {side}x{side}"


def test_every_pipeline_a_recipe_may_name_has_its_function():
    """spec.PIPELINES (what a recipe may name) against what `rltx reproduce` dispatches to."""
    from rltx.reproduce import pipelines, spec
    assert set(spec.PIPELINES) == {*pipelines.PIPELINES, "sweep"} and all(map(callable, pipelines.PIPELINES.values()))


def test_fig5_random_labels_profile_is_the_six_curves_fine_tuned_on_random_labels():
    """`fig5 --profile quick_random_labels` (Fig. 5 MIDDLE / RIGHT) must run exactly what `--profile
    quick_all_curves --set labels_downstream=random` runs, which its measured verdicts were taken with: the same
    keys, seeds and comparisons; only the claim it states is the right panel's."""
    recipe_file = read_recipe_file(RECIPES / "fig5.yaml")
    named = recipe_file.profile("quick_random_labels")
    by_hand = recipe_file.profile("quick_all_curves", {"labels_downstream": "random"})
    assert {k: v for k, v in named.keys.items() if k != "description"} == \
           {k: v for k, v in by_hand.keys.items() if k != "description"}
    assert {k: v for k, v in named.reproduce.items() if k != "paper"} == \
           {k: v for k, v in by_hand.reproduce.items() if k != "paper"}
    assert named.keys["labels_downstream"] == "random" and "MIDDLE / RIGHT" in named.reproduce["paper"]
