"""Pre-training (Maennel et al. 2020, A.1-A.3): sample and label the upstream set, build the
model, and train it with the shared loop (`rltx.loop`)."""
from __future__ import annotations

from pathlib import Path

from rltx import loop, store
from rltx.config import Recipe
from rltx.data import input_range_warnings
from rltx.loop import RunSummary
from rltx.progress import Reporter
from rltx.tasks import build_recipe_model, load_examples, open_recipe_source, upstream_samples


def pretrain(recipe: Recipe, run_dir: Path, *, resume: bool = True, reporter: Reporter | None = None) -> RunSummary:
    """Pre-train `recipe` into `run_dir`, resuming the run already there if it has the same recipe."""
    reporter = reporter or Reporter()
    init = store.init_links(recipe.init_file)

    def prepare(existing: store.RunRecord | None) -> loop.Training:
        source = open_recipe_source(recipe)
        for warning in input_range_warnings(source):
            reporter.message(f"warning: {warning}")
        samples = existing.samples if existing is not None else upstream_samples(recipe, source)
        examples = load_examples(source, samples["upstream_indices"], samples["upstream_labels"], samples)
        input_shape = tuple(examples.train_x.shape[1:])
        return loop.Training(loop.TrainPlan.from_recipe(recipe, downstream=False),
                             store.RunRecord(recipe.to_yaml(), {}, samples, kind="pretrain", identity=init),
                             examples,
                             lambda policy: build_recipe_model(recipe, input_shape, recipe.num_classes_upstream,
                                                               dtype_policy=policy))

    return loop.run(Path(run_dir), {**recipe.to_dict(), **init}, prepare, resume=resume, reporter=reporter)
