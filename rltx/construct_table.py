"""Table 1 (Sec. 2.5, E.3) and its variants (Tables 2-6): constructed initialisations, trained.

It sits above `construct` (which only builds init files) because it trains: for each set of
constructed layers it writes an init file, pre-trains from it and tabulates the accuracies.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from rltx import store
from rltx.analysis.results import Result
from rltx.config import Recipe
from rltx.construct import check_construction, construct_init
from rltx.errors import UsageError
from rltx.loop import Diverged
from rltx.pretrain import pretrain


def construct_table(recipe: Recipe, out_dir: Path, reporter=None):
    """Table 1 (Sec. 2.5, E.3) and its variants (Tables 2-6): for each set of constructed layers,
    build the init file, train on the recipe's task from it, and read train / test accuracy after
    each of `table_iterations` steps. The runs stop at the last of them; their learning-rate
    schedule is `schedule_steps` long when given (E.3 reads its 100-iteration row from a 1000-step
    run, at the undivided rate). Returns an analysis `Result` (kind construct-table)."""
    iterations = sorted(recipe.table_iterations)
    if recipe.schedule_steps is not None and recipe.schedule_steps < iterations[-1]:
        raise UsageError(f"schedule_steps {recipe.schedule_steps} is shorter than the table's {iterations[-1]} "
                         f"iterations; give at least {iterations[-1]}, or null")
    check_construction(recipe, recipe.table_layer_sets, "table_layer_sets entry")  # before the first set trains
    out_dir = Path(out_dir)
    store.check_outside_runs(out_dir / "table.h5", "--table")  # before the first init file is built
    store.make_directory(out_dir)
    rows, accuracy = [], np.zeros((len(recipe.table_layer_sets), len(iterations), 2))
    for column, layers in enumerate(recipe.table_layer_sets):
        label = "{" + ", ".join(map(str, layers)) + "}"
        name = "layers_" + ("_".join(map(str, layers)) or "none")
        init_file = None
        if layers:
            init_file = out_dir / f"{name}.h5"
            if not init_file.exists():
                store.write_init(init_file, recipe.to_yaml(), *construct_init(recipe, list(layers)))
        trained = dataclasses.replace(recipe, init_file=str(init_file) if init_file else None,
                                      total_steps=iterations[-1], epochs=None,
                                      checkpoint_steps=sorted(set(recipe.checkpoint_steps) | set(iterations)))
        try:
            pretrain(trained, out_dir / name, reporter=reporter)
        except Diverged:  # its run.h5 is flagged (rltx.loop); the table keeps NaN where the run has no value
            pass
        by_step = {row["step"]: row for row in store.read_metrics(out_dir / name)}
        for row_index, step in enumerate(iterations):
            reached = by_step.get(step, {"train_accuracy": np.nan, "test_accuracy": np.nan})
            accuracy[column, row_index] = reached["train_accuracy"], reached["test_accuracy"]
            rows.append({"layers constructed": label, "iterations": step,
                         "train accuracy": float(accuracy[column, row_index, 0]),
                         "test accuracy": float(accuracy[column, row_index, 1])})
    inputs = {"recipe": recipe.to_dict(), "runs": [str(out_dir / p) for p in sorted(
        p.name for p in out_dir.iterdir() if p.is_dir())]}
    labels = ["{" + ",".join(map(str, s)) + "}" for s in recipe.table_layer_sets]
    arrays = {"accuracy": accuracy, "iterations": np.array(iterations),  # accuracy [sets, iterations, train/test]
              "layer_sets": store.string_array(labels)}
    return Result("construct-table", inputs, arrays, rows)
