"""Pre-training (Maennel et al. 2020, A.1-A.3): sample and label the upstream set, build the
model, and train it with the shared loop (`rltx.loop`)."""
from __future__ import annotations

import contextlib
from pathlib import Path

from rltx import loop, store
from rltx.config import Recipe
from rltx.distribute import is_chief
from rltx.loop import RunSummary
from rltx.progress import Reporter
from rltx.tasks import build_recipe_model, load_examples, open_recipe_source, upstream_samples


def pretrain(recipe: Recipe, run_dir: Path, *, resume: bool = True, reporter: Reporter | None = None) -> RunSummary:
    """Pre-train `recipe` into `run_dir`, resuming the run already there if it has the same recipe."""
    run_dir, reporter = Path(run_dir), reporter or Reporter()
    writer = is_chief()  # several workers (TF_CONFIG) share run_dir; only the chief writes there
    source = open_recipe_source(recipe)  # a missing dataset is reported before anything is written
    if writer:
        run_dir.mkdir(parents=True, exist_ok=True)
    with (store.RunLock(run_dir) if writer else contextlib.nullcontext()):
        existing = loop.start(run_dir, recipe.to_dict(), resume)
        if existing is not None and existing.status == "completed":
            return loop.completed_summary(run_dir, reporter)
        samples = existing.samples if existing is not None else upstream_samples(recipe, source)
        examples = load_examples(source, samples["upstream_indices"], samples["upstream_labels"], samples)
        record = store.RunRecord(recipe.to_yaml(), {}, samples, kind="pretrain")
        if existing is not None:
            record.created = existing.created
        input_shape = tuple(examples.train_x.shape[1:])
        return loop.train(loop.TrainPlan.from_recipe(recipe, downstream=False), run_dir, record, examples,
                          lambda policy: build_recipe_model(recipe, input_shape, recipe.num_classes_upstream,
                                                            dtype_policy=policy),
                          reporter, writer)
