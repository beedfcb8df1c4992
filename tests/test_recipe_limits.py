"""Hostile recipes (issue 15, items 3, 4, 6, 7): non-finite and out-of-range numbers, models that do
not fit their inputs, deep nesting, other encodings, alias bombs and duplicate keys. Each gives a
Recipe or one line naming the fix, quickly and in little memory; from the command line: exit 2, one
stderr line, no traceback, nothing written, and (where the recipe alone decides) before TensorFlow
loads."""
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from rltx.config import make_recipe
from rltx.recipe_file import load_recipe
from rltx.errors import UsageError
from tests_support import TINY

ROOT = Path(__file__).resolve().parents[1]
TINY_YAML = yaml.safe_dump(TINY).encode()
SECOND, MEMORY = 1.0, 4 * 2 ** 20  # CPU seconds and bytes (tracemalloc peak) one recipe may take


def read(data: bytes, directory: Path, overrides=()) -> str:
    """Load a recipe file holding `data` with `overrides`; returns "recipe" or the error message, and
    checks that it took under a second of CPU time and a few MB."""
    path = directory / "r.yaml"
    path.write_bytes(data)
    tracemalloc.start()
    started = time.process_time()
    try:
        load_recipe(path, tuple(overrides))
        outcome = "recipe"
    except UsageError as error:
        outcome = str(error)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert time.process_time() - started < SECOND
    assert peak < MEMORY, peak
    assert "\n" not in outcome and len(outcome) < 400 + len(str(path)), outcome
    return outcome


def nested(depth: int, style: str) -> str:
    return {"[": "[" * depth + "]" * depth, "{": "{a: " * depth + "1" + "}" * depth,
            "-": "- " * depth + "1"}[style]


def alias_chain(levels: int, fan_out: int) -> str:
    """A flow list whose k-th item holds fan_out aliases of the (k-1)-th: fan_out^levels numbers."""
    items = ["&a0 [" + ", ".join(["1.5"] * fan_out) + "]"]
    items += [f"&a{k} [" + ", ".join([f"*a{k - 1}"] * fan_out) + "]" for k in range(1, levels + 1)]
    return "[" + ", ".join(items) + "]"


# --- (a) the parser on arbitrary bytes, nesting and aliases ---------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_any_bytes_give_a_recipe_or_one_line(tmp_path_factory, data):
    read(data, tmp_path_factory.mktemp("bytes"))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(TINY_YAML)), st.binary(min_size=1, max_size=40), st.booleans())
def test_a_recipe_with_bytes_spliced_in_gives_a_recipe_or_one_line(tmp_path_factory, at, data, replace):
    """Mutations of a valid recipe reach validation more often than random bytes."""
    spliced = TINY_YAML[:at] + data + TINY_YAML[at + (len(data) if replace else 0):]
    read(spliced, tmp_path_factory.mktemp("splice"))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5000), st.sampled_from("[{-"), st.booleans())
def test_deep_nesting_gives_a_recipe_or_one_line(tmp_path_factory, depth, style, on_command_line):
    directory = tmp_path_factory.mktemp("deep")
    value = nested(depth, style)
    if on_command_line:
        read(TINY_YAML, directory, [f"gaussian_spectrum={value}"])
    else:
        read(TINY_YAML + f"construct_tau: {value}\n".encode(), directory)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(2, 12), st.booleans())
def test_alias_chains_give_a_recipe_or_one_line(tmp_path_factory, levels, fan_out, on_command_line):
    directory = tmp_path_factory.mktemp("alias")
    value = alias_chain(levels, fan_out)
    if on_command_line:
        outcome = read(TINY_YAML, directory, [f"gaussian_spectrum={value}"])
    else:
        outcome = read(TINY_YAML.replace(b"gaussian_spectrum:", b"gaussian_spectrum_old:")
                       + f"gaussian_spectrum: {value}\n".encode(), directory)
    assert outcome != "recipe"  # a nested list is never a spectrum


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(TINY) + ["hidden_units", "construct_tau", "checkpoint_steps", "gaussian_seed"]),
       st.one_of(st.text(max_size=60), st.integers().map(str), st.floats().map(repr),
                 st.lists(st.one_of(st.integers(), st.floats())).map(str)))
def test_any_set_value_gives_a_recipe_or_one_line(tmp_path_factory, name, value):
    read(TINY_YAML, tmp_path_factory.mktemp("set"), [f"{name}={value}"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["seed", "gaussian_seed", "natural_seed", "total_steps", "epochs",
                                        "learning_rate", "init_scale", "momentum", "batch_size",
                                        "num_eval_points", "checkpoint_every", "epochs_downstream",
                                        "learning_rate_downstream", "total_steps_downstream"]),
                       st.one_of(st.integers(min_value=-2 ** 70, max_value=2 ** 70), st.floats()), max_size=4))
def test_every_number_is_finite_and_in_range_or_refused(changes):
    try:
        recipe = make_recipe({**TINY, **changes, "total_steps": changes.get("total_steps", 40)}
                             if "epochs" not in changes else {**TINY, **changes, "total_steps": None})
    except UsageError as error:
        assert "\n" not in str(error)
        return
    for name, value in recipe.to_dict().items():
        if isinstance(value, float):
            assert value == value and abs(value) != float("inf"), name
        if isinstance(value, int) and "seed" in name:
            assert 0 <= value < 2 ** 32, name
    assert 1 <= recipe.steps < 2 ** 63 and 1 <= recipe.steps_downstream < 2 ** 63


@pytest.mark.parametrize("change, words", [
    ("learning_rate=.nan", "learning_rate is nan; give a finite number"),
    ("init_scale=.inf", "init_scale is inf"),
    ("epochs=.inf", "epochs is inf"),
    ("learning_rate_downstream=.nan", "learning_rate_downstream is nan"),
    ("epochs_downstream=-.inf", "epochs_downstream is -inf"),
    ("total_steps_downstream=9223372036854775808", "must fit in 64 bits"),
    ("construct_tau=[1, .inf]", "construct_tau holds a number that is inf"),
    ("gaussian_spectrum=[1, .nan, 2]", "gaussian_spectrum holds a number that is nan"),
    ("seed=4294967296", "seed is 4294967296; it must be <= 4294967295"),
    ("gaussian_seed=4294967296", "gaussian_seed is 4294967296"),
    ("natural_seed=4294967296", "natural_seed is 4294967296"),
    ("total_steps=9223372036854775808", "total_steps is 9223372036854775808; it must fit in 64 bits"),
    ("epochs_downstream=1.0e+30", "comes to more than 2^63 steps"),
    ("learning_rate=1.0e+39", "learning_rate is 1e+39; it must fit in float32"),  # a traceback in the event writer
    ("gaussian_class_separation=-1.0e+39", "gaussian_class_separation is -1e+39; it must fit in float32"),
    ("construct_tau=[1, 1.0e+39]", "construct_tau holds a number that is 1e+39; it must fit in float32"),
    ("checkpoint_steps=[10, -1]", "checkpoint_steps holds a number that is -1"),
    ("num_eval_points=10000000000", "must be <= 1000000"),
    ("hidden_units=[0]", "hidden_units holds a number that is 0; it must be >= 1"),
    ("kernel_size=9", "conv_0 (kernel_size 9, stride 3, padding valid) leaves nothing"),
    ("seed=0x" + "f" * 3000, "seed is <an integer of 12000 bits>"),
    ("seed=!!int many", "cannot read 'many' as int"),
    ("seed=2020-13-45", "cannot read '2020-13-45' as timestamp"),
    ("gaussian_spectrum='linspace(1, 2, 100000000000)'", "use 1 <= n <= 65536"),
    ("gaussian_spectrum=" + nested(3000, "["), "nesting deeper than 64 levels"),
    ("gaussian_spectrum=" + alias_chain(7, 9), "more than 10000 values with aliases expanded"),
    ("gaussian_spectrum=&a [*a]", "recursive alias"),
    ("x" * 10000 + "=1", "unknown recipe key 'xxx"),
    ("gaussian_spectrum=" + "1," * 200000, "a recipe value has at most"),
])
def test_each_reproduction_is_one_line(tmp_path, change, words):
    outcome = read(TINY_YAML, tmp_path, [change])
    assert words in outcome and len(outcome) < 300, outcome


@pytest.mark.parametrize("data, words", [
    ("description: caf\xe9\n".encode("latin-1") + TINY_YAML, "is not UTF-8 text (byte 0xe9 at offset 16)"),
    ("\ufeff".encode() + TINY_YAML, "recipe"),  # a BOM is fine
    (TINY_YAML + b"seed: 4\n", "found the key 'seed' twice"),
    (TINY_YAML + b"profiles:\n  quick:\n    seed: 1\n    seed: 2\n", "found the key 'seed' twice"),
    (TINY_YAML + b"profiles:\n  quick: {}\n  quick: {}\n", "found the key 'quick' twice"),
    (TINY_YAML + b"profiles:\n  quick:\n    offline_fallback: 5\n", "offline_fallback of profile 'quick' must be a mapping"),
    (TINY_YAML + b"description: a\x00b\n", "character #x0000"),
    (TINY_YAML + b'data_dir: "a\\0b"\n', "recipe key data_dir is 'a\\x00b', not a usable path"),
    (TINY_YAML + b'construct_tau: "x\\0.h5"\n', "recipe key construct_tau is 'x\\x00.h5', not a usable path"),
    (TINY_YAML + b"construct_tau: " + nested(3000, "[").encode() + b"\n", "nesting deeper than 64 levels"),
    (b"a:\n" + b"".join(b" " * i + b"b:\n" for i in range(1, 200)) + b" " * 200 + b"1\n", "nesting deeper than 64"),
    (TINY_YAML + b"# " + b"x" * 300_000 + b"\n", "a recipe has at most"),
])
def test_files_that_are_no_recipes_give_one_line(tmp_path, data, words):
    outcome = read(data, tmp_path)
    assert words in outcome, outcome


def test_yaml_merge_keys_still_work(tmp_path):
    """`<<: *base` may be overridden by a key of its own mapping: that is no duplicate."""
    data = TINY_YAML + b"profiles:\n  a: &a {seed: 1, num_units: 8}\n  b:\n    <<: *a\n    seed: 2\n"
    (tmp_path / "r.yaml").write_bytes(data)
    recipe = load_recipe(tmp_path / "r.yaml", profile="b")
    assert (recipe.seed, recipe.num_units) == (2, 8)


# --- the model fits its input: the arithmetic against Keras building the model --------------------

@settings(max_examples=40, deadline=None)
@given(side=st.integers(1, 10), layers=st.integers(1, 3), kernel=st.integers(1, 6), stride=st.integers(1, 3),
       padding=st.sampled_from(["same", "valid"]), pooling=st.sampled_from(["none", "max", "final"]),
       pool=st.integers(1, 4), pool_stride=st.integers(1, 3))
def test_model_fit_agrees_with_keras(side, layers, kernel, stride, padding, pooling, pool, pool_stride):
    from rltx.model_fit import check_fits
    from rltx.models import build_model
    options = dict(num_conv_layers=layers, num_filters=2, num_units=2, kernel_size=kernel, stride=stride,
                   padding=padding, pooling=pooling, pool_size=pool, pool_stride=pool_stride)
    recipe = make_recipe({**TINY, **options, "gaussian_patch_size": 0, "gaussian_image_size": 0,
                          "architecture": "mlp"})
    try:
        check_fits(type("R", (), {**recipe.to_dict(), "architecture": "simple_cnn"})(), (side, side, 3), "test")
        fits = True
    except UsageError:
        fits = False
    try:
        build_model("simple_cnn", (side, side, 3), 2, **options)
        builds = True
    except ValueError:
        builds = False
    assert fits == builds


@pytest.mark.parametrize("architecture, shape, change", [
    ("vgg16", (5,), {}), ("resnet18", (8, 8, 3), {"group_norm_groups": 3}),
    ("resnet18", (8, 8, 3), {"group_norm_groups": 4}), ("wrn28", (1, 1, 3), {"first_conv_kernel_size": 9}),
])
def test_model_fit_of_the_other_architectures_agrees_with_keras(architecture, shape, change):
    from rltx.model_fit import check_architecture, check_fits
    from rltx.models import ARCHITECTURES, build_model
    recipe = make_recipe({**TINY, "architecture": "mlp", "gaussian_patch_size": 0, "gaussian_image_size": 0, **change})
    options = {name: getattr(recipe, name) for name in ARCHITECTURES[architecture].options}
    fake = type("R", (), {**recipe.to_dict(), "architecture": architecture})()
    try:
        check_architecture(fake)
        check_fits(fake, shape, "test")
        fits = True
    except UsageError:
        fits = False
    try:
        build_model(architecture, shape, 2, **options)
        builds = True
    except ValueError:
        builds = False
    assert fits == builds


# --- (b) the command line: exit 2, one line, nothing written, before TensorFlow -----------------

NO_TENSORFLOW = "raise SystemExit('Error: rltx imported {} before validating the recipe')\n"


@pytest.fixture(scope="module")
def blocker(tmp_path_factory):
    """A folder whose tensorflow and keras packages refuse to be imported."""
    folder = tmp_path_factory.mktemp("blocker")
    for name in ("tensorflow", "keras"):
        (folder / name).mkdir()
        (folder / name / "__init__.py").write_text(NO_TENSORFLOW.format(name))
    return folder


def rltx(arguments, cwd, blocker=None):
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in (blocker, ROOT) if p)}
    return subprocess.run([sys.executable, "-m", "rltx", *arguments], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=300)


SETS = ["learning_rate=.nan", "init_scale=.inf", "epochs=.inf", "learning_rate_downstream=.nan",
        "epochs_downstream=.inf", "total_steps_downstream=9223372036854775808", "construct_tau=[.inf]",
        "seed=4294967296", "gaussian_seed=4294967296", "total_steps=9223372036854775808", "kernel_size=9",
        "hidden_units=[0]", "gaussian_spectrum=" + nested(3000, "["), "gaussian_spectrum=" + alias_chain(7, 9)]
FILES = {"latin1": "description: caf\xe9\n".encode("latin-1") + TINY_YAML,
         "deep": TINY_YAML + b"construct_tau: " + nested(3000, "[").encode() + b"\n",
         "duplicate": TINY_YAML + b"seed: 4\n"}
SECTION_FILES = {"unknown_set": TINY_YAML + b"table_layer_sets: [[], [1]]\n"
                                b"reproduce: {pipeline: construct-table, expect: better, expect_sets: [[1, 2]]}\n",
                 "no_baseline": TINY_YAML + b"table_layer_sets: [[1], [1, 2]]\n"
                                b"reproduce: {pipeline: construct-table, expect: better, expect_sets: [[1, 2]]}\n",
                 "bad_expect": TINY_YAML + b"reproduce: {pipeline: transfer, variants: [{name: a, baseline: b, "
                                b"expect: same}, {name: b, from: scratch}]}\n"}
COMMANDS = [["pretrain", "{recipe}", "--out", "new"], ["transfer", "{recipe}", "--from", "scratch", "--out", "new"],
            ["construct-init", "{recipe}", "--layers", "1", "-o", "new/init.h5"]]
CASES = ([(f"pretrain --set {s[:40]}", COMMANDS[0] + ["--set", s], "tiny") for s in SETS]
         + [(f"{c[0]} {name}", c, name) for name in FILES for c in COMMANDS]
         + [(f"{c[0]} hidden_units=[0]", c + ["--set", "architecture=mlp", "--set", "hidden_units=[0]"], "tiny")
            for c in COMMANDS[1:]]
         + [("sweep latin1", ["sweep", "{recipe}", "--out", "new", "--plan-only"], "latin1"),
            ("reproduce duplicate", ["reproduce", "{recipe}", "--out", "new"], "duplicate"),
            ("reproduce expect_sets", ["reproduce", "{recipe}", "--out", "new"], "unknown_set"),
            ("reproduce table without []", ["reproduce", "{recipe}", "--out", "new"], "no_baseline"),
            ("reproduce expect same", ["reproduce", "{recipe}", "--out", "new"], "bad_expect")])


@pytest.mark.slow
@pytest.mark.parametrize("name, arguments, recipe", CASES, ids=[c[0] for c in CASES])
def test_command_line_refuses_before_tensorflow_and_writes_nothing(tmp_path, blocker, name, arguments, recipe):
    (tmp_path / "r.yaml").write_bytes({**FILES, **SECTION_FILES}.get(recipe, TINY_YAML))
    before = sorted(tmp_path.rglob("*"))
    result = rltx([a.format(recipe="r.yaml") for a in arguments], tmp_path, blocker)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "imported" not in lines[0], result.stderr
    assert len(lines[0]) < 400
    assert sorted(tmp_path.rglob("*")) == before  # nothing written: no run directory, no lock


@pytest.mark.slow
def test_a_model_that_does_not_fit_npz_images_is_refused_when_they_are_opened(tmp_path):
    import numpy as np
    np.savez(tmp_path / "d.npz", x=np.zeros((600, 4, 4, 3), np.uint8), y=np.zeros(600, np.int64))
    (tmp_path / "r.yaml").write_bytes(TINY_YAML)
    result = rltx(["pretrain", "r.yaml", "--out", "new", "--set", "dataset=npz", "--set", "data_path=d.npz",
                   "--set", "kernel_size=5"], tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "conv_0 (kernel_size 5, stride 3, padding valid)" in lines[0], result.stderr
    assert not (tmp_path / "new" / "run.h5").exists()


# --- the recipe file's other sections ---------------------------------------------------------------

SWEEP = {"architectures": ["simple_cnn"], "groups": 1, "seeds": 1}


@pytest.mark.parametrize("change, words", [
    ({"seed": -1}, "sweep seed must be an integer from 0 to 4294967295"),
    ({"seed": float("nan")}, "sweep seed must be an integer"),
    ({"groups": 10 ** 7}, "sweep groups must be an integer from 1 to 10000"),
    ({"seeds": True}, "sweep seeds must be an integer"),
    ({"sample": 5}, "sweep sample must be a mapping"),
    ({"by_architecture": {"simple_cnn": 5}}, "sweep by_architecture: simple_cnn must be a mapping"),
    ({"transfer_layers": 5}, "sweep transfer_layers must be a list"),
    ({"sample": {"init_scale": {"log_uniform": [1, float("inf")]}}}, "with 0 < low <= high"),
    ({"sample": {"init_scale": {"log_uniform": [1, "x"]}}}, "with 0 < low <= high"),
    ({"seeds": 3, "seed_of_recipe": 2 ** 32 - 2}, "go beyond 4294967295"),
])
def test_sweep_sections_that_cannot_be_planned_give_one_line(tmp_path, change, words):
    from rltx.recipe_file import read_recipe_file
    from rltx.sweep.plan import expand
    seed = change.pop("seed_of_recipe", TINY["seed"])
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({**TINY, "seed": seed, "sweep": {**SWEEP, **change}}))
    with pytest.raises(UsageError, match=words.replace("(", r"\(")) as caught:
        expand(read_recipe_file(tmp_path / "r.yaml"), tmp_path / "out")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("section, words", [
    ({"pipeline": "transfer", "variants": 5}, "variants must be a list"),
    ({"pipeline": "transfer", "variants": [{"name": "a", "set": [1, 2]}]}, "has set: [1, 2]; give a mapping"),
    ({"pipeline": "transfer", "seeds": 2 ** 40, "variants": [{"name": "a"}]}, "seeds must be an integer from 1"),
    ({"pipeline": "alignment", "expect_ratio": float("nan")}, "expect_ratio must be a positive number"),
    ({"pipeline": "transfer", "variants": [{"name": "a", 1: 2}]}, "has unknown entries 1"),
    ({"pipeline": ["x"] * 10000}, "is not one of"),
    ({"pipeline": "construct-table", "expect_sets": [1, 2]}, "expect_sets must be a list of constructed layer sets"),
    ({"pipeline": "transfer", "variants": [{"name": "a", "expect": "same"}]}, "has expect: 'same'; use positive, negative or level"),
    ({"pipeline": "transfer", "variants": [{"name": "a", "from": "built"}]}, "use pretrained, scratch or constructed"),
    ({"pipeline": "transfer", "variants": [{"name": "a", "from": "constructed"}]}, "from: constructed needs the conv layers"),
    ({"pipeline": "transfer", "variants": [{"name": "a", "from": "constructed", "layers": [0]}]}, "has layers: [0]; from: constructed"),
    ({"pipeline": "transfer", "variants": [{"name": "a", "from": "constructed", "layers": 3}]}, "has layers: 3; from: constructed"),
    ({"pipeline": "transfer", "variants": [{"name": "a", "layers": [1]}]}, "only a variant from: constructed takes"),
])
def test_reproduce_sections_that_cannot_run_give_one_line(section, words):
    from rltx.reproduce.spec import ReproduceSpec
    with pytest.raises(UsageError, match=words.replace("(", r"\(").replace("[", r"\[")) as caught:
        ReproduceSpec.from_section(section, "r.yaml")
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300
