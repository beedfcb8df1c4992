"""What a run trains and evaluates on (A.1): the sampled example sets, their labels, the model.

Upstream (pre-training) and downstream (fine-tuning) tasks are drawn from the same training split
with the rules of `rltx.hyperrule`, so that they never intersect.
"""
from __future__ import annotations

import keras
import numpy as np

from rltx import hyperrule, model_fit, store
from rltx.config import Recipe, input_shape_from_keys
from rltx.data import open_source
from rltx.errors import UsageError
from rltx.loop import Examples
from rltx.models import ARCHITECTURES, HEAD, build_model, transferable_layers

# Separate label draws for each labelled set of a run (`hyperrule.random_labels` salt).
UPSTREAM, UPSTREAM_TEST, DOWNSTREAM, DOWNSTREAM_TEST = 0, 1, 2, 3


def open_recipe_source(recipe: Recipe):
    """The recipe's data source, once its input shape is known to fit the recipe's model (for
    datasets whose shape the keys do not decide, e.g. npz; the others are checked with the recipe)."""
    source = open_source(recipe.data)
    model_fit.check_fits(recipe, source.input_shape, f"dataset {recipe.dataset}")
    return source


def build_recipe_model(recipe: Recipe, input_shape: tuple[int, ...], num_classes: int,
                       with_init_file: bool = True, dtype_policy: str = "float32",
                       init_seed: int | None = None) -> keras.Model:
    """The recipe's model, freshly initialised (A.3) with `init_seed` (default: the recipe's seed), then,
    if the recipe names an `init_file`, with every layer but the head taken from it (the head always
    keeps the standard initialisation).

    It computes in float32 unless told otherwise: only training takes the recipe's
    `mixed_precision`, so analyses never depend on the precision a run was trained in."""
    options = {name: getattr(recipe, name) for name in ARCHITECTURES[recipe.architecture].options}
    model = build_model(recipe.architecture, input_shape, num_classes, init_algorithm=recipe.init_algorithm,
                        init_scale=recipe.init_scale, seed=recipe.seed if init_seed is None else init_seed,
                        dtype_policy=dtype_policy, **options)
    if with_init_file and recipe.init_file:
        stored = store.read_init_weights(recipe.init_file)
        for variable in model.weights:
            if variable.path.startswith(f"{HEAD}/"):
                continue
            if variable.path not in stored or stored[variable.path].shape != tuple(variable.shape):
                raise UsageError(f"{recipe.init_file} does not fit this model ({variable.path}); build it with "
                                 "`rltx construct-init` from a recipe of the same architecture")
            if not np.all(np.isfinite(stored[variable.path])):
                raise UsageError(f"{recipe.init_file} holds non-finite values in {variable.path}; build it again "
                                 "with `rltx construct-init`")
            variable.assign(stored[variable.path])
    return model


def transferable_count(recipe: Recipe) -> int | None:
    """How many layers the recipe's model can transfer (`transfer_layers: k` takes the first k), or None
    where only the opened data decides the input shape. Channels do not change the layers."""
    shape = input_shape_from_keys(recipe)
    if shape is None:
        return None
    channels = (3,) if len(shape) == 3 and shape[-1] == 0 else ()
    model = build_recipe_model(recipe, shape[:-1] + channels if channels else shape, recipe.num_classes_upstream,
                               with_init_file=False)
    return len(transferable_layers(model))


def upstream_samples(recipe: Recipe, source) -> dict[str, np.ndarray]:
    """A.1 steps 1-3: the upstream indices and labels, the reserved downstream indices (step 2),
    and the held-out set."""
    needed = recipe.num_examples_upstream + recipe.num_examples_downstream
    if needed > source.num_train:
        raise UsageError(f"num_examples_upstream {recipe.num_examples_upstream} + num_examples_downstream "
                         f"{recipe.num_examples_downstream} exceed the {source.num_train} examples of the training "
                         f"split; lower them (at most {source.num_train} in all)")
    upstream = hyperrule.sample_upstream(source.num_train, recipe.num_examples_upstream, recipe.seed)
    downstream = _remainder(source, upstream, recipe.num_examples_downstream, recipe.seed, "downstream")
    test, from_train = held_out(recipe, source, np.union1d(upstream, downstream))
    labels, classes = recipe.labels_upstream, recipe.num_classes_upstream
    return {"upstream_indices": upstream, "downstream_indices": downstream, "test_indices": test,
            "test_from_train": np.array(from_train),
            "upstream_labels": task_labels(recipe, source, upstream, True, labels, classes, UPSTREAM),
            "test_labels": task_labels(recipe, source, test, from_train, labels, classes, UPSTREAM_TEST)}


def downstream_samples(recipe: Recipe, source, upstream: np.ndarray) -> dict[str, np.ndarray]:
    """A.1 steps 2 and 4: the downstream set drawn from what remains after the upstream examples
    (of every source run), its labels, and the held-out set."""
    recipe.check_downstream()
    downstream = _remainder(source, upstream, recipe.num_examples_downstream, recipe.seed, "downstream")
    test, from_train = held_out(recipe, source, np.union1d(upstream, downstream))
    labels, classes = recipe.labels_downstream, recipe.num_classes_downstream
    return {"downstream_indices": downstream, "test_indices": test, "test_from_train": np.array(from_train),
            "excluded_upstream_indices": upstream,
            "downstream_labels": task_labels(recipe, source, downstream, True, labels, classes, DOWNSTREAM),
            "test_labels": task_labels(recipe, source, test, from_train, labels, classes, DOWNSTREAM_TEST)}


def _remainder(source, exclude: np.ndarray, count: int, seed: int, what: str) -> np.ndarray:
    stream = hyperrule.STREAM_DOWNSTREAM if what == "downstream" else hyperrule.STREAM_HELD_OUT
    try:
        return hyperrule.sample_remainder(source.num_train, exclude, count, seed, stream)
    except ValueError:
        left = source.num_train - len(exclude)
        raise UsageError(f"{count} {what} examples would overlap the {len(exclude)} upstream examples: only "
                         f"{left} of the {source.num_train} training examples remain; ask for at most {left}") from None


def held_out(recipe: Recipe, source, exclude: np.ndarray) -> tuple[np.ndarray, bool]:
    """The test split (all of it, or num_examples_test of its examples drawn uniformly, the same for every
    seed), or, for sources without one, num_examples_test further training examples outside `exclude`."""
    if source.num_test == 0:
        if recipe.num_examples_test == 0:
            raise UsageError(f"dataset {recipe.dataset} has no test split; set num_examples_test to carve "
                             "a held-out set from the training split")
        return _remainder(source, exclude, recipe.num_examples_test, recipe.seed, "held-out"), True
    count = recipe.num_examples_test or source.num_test
    if count > source.num_test:
        raise UsageError(f"num_examples_test {count} exceeds the {source.num_test} held-out examples; "
                         f"set num_examples_test={source.num_test} (or less)")
    return hyperrule.test_subset(source.num_test, count), False


def task_labels(recipe: Recipe, source, indices: np.ndarray, from_train: bool, kind: str, num_classes: int,
                salt: int) -> np.ndarray:
    """A.1 steps 3-4: uniform random labels, or the dataset's own."""
    if kind == "random":
        return hyperrule.random_labels(len(indices), num_classes, recipe.seed, salt)
    check_real_classes(recipe, source, "upstream" if salt in (UPSTREAM, UPSTREAM_TEST) else "downstream")
    return (source.train if from_train else source.test)(indices).y.astype(np.int64)


def check_real_classes(recipe: Recipe, source, stage: str) -> None:
    """Refuse real `stage` labels ("upstream" / "downstream") of another class count than the data's,
    before anything trains (a reproduction checks its fine-tuning variants before pre-training)."""
    asked = getattr(recipe, f"num_classes_{stage}")
    if getattr(recipe, f"labels_{stage}") == "real" and source.num_classes != asked:
        raise UsageError(_class_mismatch(recipe.dataset, source.num_classes, asked, stage))


def _class_mismatch(dataset: str, real: int, asked: int, stage: str) -> str:
    """Real labels need as many classes as the data has: name the keys and a fix that works."""
    if real == 0:
        extra = f", or give gaussian data classes with gaussian_num_classes={asked}" if dataset == "gaussian" else ""
        return (f"{dataset} has no real labels here (0 classes) but labels_{stage} is real; set "
                f"labels_{stage}=random{extra}")
    if real == 1:  # num_classes_* must be >= 2: "set it to 1" would be refused next
        return (f"{dataset} has 1 real class, and a task needs 2 or more; give the data more classes, or set "
                f"labels_{stage}=random")
    return (f"{dataset} has {real} real classes but num_classes_{stage} is {asked}; set num_classes_{stage}={real} "
            f"(or labels_{stage}=random)")


def load_examples(source, train_indices: np.ndarray, train_labels: np.ndarray, samples: dict) -> Examples:
    """The inputs of the sampled sets; labels always come from the samples, never from the source."""
    test_split = source.train if bool(samples["test_from_train"]) else source.test
    return Examples(source.train(train_indices).x, train_labels, test_split(samples["test_indices"]).x,
                    samples["test_labels"])
