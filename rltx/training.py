"""Pre-training (Maennel et al. 2020, A.1-A.3): sample and label the upstream set, build the
model, and train it with the shared loop (`rltx.loop`)."""
from __future__ import annotations

import contextlib
from pathlib import Path

import keras
import numpy as np

from rltx import hyperrule, loop, store
from rltx.config import Recipe
from rltx.data import open_source
from rltx.distribute import is_chief
from rltx.errors import UsageError
from rltx.loop import RunSummary
from rltx.models import ARCHITECTURES, build_model
from rltx.progress import Reporter


# --- A.1: what the run trains and evaluates on --------------------------------------------

def draw_samples(recipe: Recipe, source) -> dict[str, np.ndarray]:
    """A.1 steps 1-4: disjoint upstream / downstream indices of the training split, upstream labels,
    and the held-out set (the test split, or a further disjoint part of the training split)."""
    held_out_from_train = source.num_test == 0
    if held_out_from_train and recipe.num_examples_test == 0:
        raise UsageError(f"dataset {recipe.dataset} has no test split; set num_examples_test to carve "
                         "a held-out set from the training split")
    sizes = (recipe.num_examples_upstream, recipe.num_examples_downstream)
    sizes += (recipe.num_examples_test,) if held_out_from_train else ()
    if sum(sizes) > source.num_train:
        raise UsageError(f"upstream + downstream{' + test' if held_out_from_train else ''} examples "
                         f"({sum(sizes)}) exceed the {source.num_train} of the training split; sample fewer")
    drawn = hyperrule.sample_disjoint(source.num_train, sizes, recipe.seed)
    if held_out_from_train:
        test_indices = drawn[2]
    else:
        test_count = recipe.num_examples_test or source.num_test
        if test_count > source.num_test:
            raise UsageError(f"num_examples_test {test_count} exceeds the {source.num_test} held-out examples; lower it")
        test_indices = np.arange(test_count)
    return {"upstream_indices": drawn[0], "downstream_indices": drawn[1], "test_indices": test_indices,
            "test_from_train": np.array(held_out_from_train),
            "upstream_labels": _labels(recipe, source, drawn[0], is_train=True, salt=0),
            "test_labels": _labels(recipe, source, test_indices, is_train=held_out_from_train, salt=1)}


def _labels(recipe: Recipe, source, indices: np.ndarray, *, is_train: bool, salt: int) -> np.ndarray:
    if recipe.labels_upstream == "random":
        return hyperrule.random_labels(len(indices), recipe.num_classes_upstream, recipe.seed, salt)
    if source.num_classes != recipe.num_classes_upstream:
        raise UsageError(f"{recipe.dataset} has {source.num_classes} real classes; set "
                         f"num_classes_upstream: {source.num_classes} for labels_upstream: real")
    return (source.train if is_train else source.test)(indices).y.astype(np.int64)


def load_examples(source, samples: dict) -> dict[str, np.ndarray]:
    """The images of the sampled sets (labels come from `samples`, never from the source)."""
    test_split = source.train if bool(samples["test_from_train"]) else source.test
    return {"upstream": source.train(samples["upstream_indices"]).x, "test": test_split(samples["test_indices"]).x}


def open_recipe_source(recipe: Recipe):
    return open_source(recipe.dataset, data_dir=recipe.data_dir, manual_dir=recipe.manual_dir,
                       offline=recipe.offline, data_path=recipe.data_path, image_size=recipe.image_size or None,
                       seed=recipe.seed, gaussian_spectrum=recipe.gaussian_spectrum,
                       gaussian_patch_size=recipe.gaussian_patch_size, gaussian_image_size=recipe.gaussian_image_size,
                       gaussian_rotate=recipe.gaussian_rotate, gaussian_num_train=recipe.gaussian_num_train,
                       gaussian_num_test=recipe.gaussian_num_test)


def build_recipe_model(recipe: Recipe, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    options = {name: getattr(recipe, name) for name in ARCHITECTURES[recipe.architecture].options}
    return build_model(recipe.architecture, input_shape, num_classes, init_algorithm=recipe.init_algorithm,
                       init_scale=recipe.init_scale, seed=recipe.seed, **options)


def pretrain(recipe: Recipe, run_dir: Path, *, resume: bool = True, reporter: Reporter | None = None) -> RunSummary:
    """Pre-train `recipe` into `run_dir`, resuming the run already there if it has the same recipe."""
    run_dir, reporter = Path(run_dir), reporter or Reporter()
    run_dir.mkdir(parents=True, exist_ok=True)
    writer = is_chief()
    with (store.RunLock(run_dir) if writer else contextlib.nullcontext()):
        existing = loop.start(run_dir, recipe.to_dict(), resume)
        if existing is not None and existing.status == "completed":
            return loop.completed_summary(run_dir, reporter)
        source = open_recipe_source(recipe)
        samples = existing.samples if existing is not None else draw_samples(recipe, source)
        loaded = load_examples(source, samples)
        examples = loop.Examples(loaded["upstream"], samples["upstream_labels"], loaded["test"], samples["test_labels"])
        record = store.RunRecord(recipe.to_yaml(), {}, samples, kind="pretrain")
        if existing is not None:
            record.created = existing.created
        input_shape = tuple(loaded["upstream"].shape[1:])
        return loop.train(loop.TrainPlan.from_recipe(recipe, downstream=False), run_dir, record, examples,
                          lambda: build_recipe_model(recipe, input_shape, recipe.num_classes_upstream),
                          reporter, writer)
