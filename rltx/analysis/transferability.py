"""Transferability against the pre-training step (Liu et al. 2021, "Towards understanding and
improving the transferability of pre-trained models", Sec. 5.2 "Choices of pretraining epochs",
Fig. 9: the downstream accuracy of a model fine-tuned from each stage of pre-training).

Definitions
-----------
- For each chosen stored checkpoint N of the pre-training run (default: all of them), the transfer
  recipe is fine-tuned from that checkpoint with `rltx.transfer.transfer(recipe, OUT/step_N, [run],
  from_step=N)`; a completed transfer run there is reused as is (transfer() returns it without
  training), an interrupted one is resumed.
- Per row: the downstream final train and test accuracy (the last row of the transfer run's
  metrics.h5), the area under its train/test accuracy curves (`rltx.analysis.curves.accuracy_auc`,
  App. B of Maennel et al.: the time-averaged accuracy), and the pre-training run's own train/test
  accuracy at step N when N is one of its eval points (NaN otherwise), the x axis of Liu et al.'s
  Fig. 9 being the pre-training epoch (`epoch` = N * batch_size / upstream examples).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rltx import store
from rltx.errors import UsageError
from rltx.runs import open_run


def analyze_transferability(pretrain_run, recipe, out_dir, *, steps=None):
    """Transfer from every chosen checkpoint of `pretrain_run` into `out_dir/step_N` and tabulate the
    downstream accuracies against N (Liu et al. Sec. 5.2; module docstring)."""
    from rltx.analysis.curves import accuracy_auc
    from rltx.analysis.results import Result
    from rltx.transfer import transfer
    run = open_run(pretrain_run)
    if run.kind != "pretrain":
        raise UsageError(f"{run.run_dir} is a {run.kind} run; give a pre-training run (rltx pretrain)")
    if steps is None:
        steps = list(run.steps)
    missing = [s for s in steps if s not in run.steps]
    if missing or not steps:
        raise UsageError(f"{run.run_dir} has no checkpoint at step(s) {missing or '(none given)'}; stored steps: "
                         f"{', '.join(map(str, run.steps)) or 'none'}")
    steps = sorted(set(int(s) for s in steps))
    out_dir = Path(out_dir)
    store.make_directory(out_dir)
    upstream = {int(row["step"]): row for row in store.read_metrics(run.run_dir)}
    columns = {name: [] for name in ("train_accuracy", "test_accuracy", "train_auc", "test_auc",
                                     "train_loss", "test_loss", "pretrain_train_accuracy", "pretrain_test_accuracy")}
    run_dirs, final_steps = [], []
    for step in steps:
        directory = out_dir / f"step_{step}"
        summary = transfer(recipe, directory, [run.run_dir], from_step=step)[0]
        if summary.status != "completed":
            raise UsageError(f"the transfer run {directory} ended {summary.status}; rerun the same command to resume")
        metrics = store.read_metrics(directory)
        x = np.array([row["step"] for row in metrics], dtype=np.float64)
        last = metrics[-1]
        run_dirs.append(str(directory.resolve()))
        final_steps.append(int(last["step"]))
        for which in ("train", "test"):
            columns[f"{which}_accuracy"].append(last[f"{which}_accuracy"])
            columns[f"{which}_loss"].append(last[f"{which}_loss"])
            columns[f"{which}_auc"].append(accuracy_auc(x, [row[f"{which}_accuracy"] for row in metrics]))
            columns[f"pretrain_{which}_accuracy"].append(upstream.get(step, {}).get(f"{which}_accuracy", np.nan))

    epochs = np.array(steps, dtype=np.float64) * run.recipe.batch_size / len(run.train_indices)
    arrays = {"pretrain_steps": np.array(steps, dtype=np.int64), "pretrain_epochs": epochs,
              "transfer_runs": store.string_array(run_dirs),
              "transfer_final_step": np.array(final_steps, dtype=np.int64),
              **{name: np.array(values, dtype=np.float64) for name, values in columns.items()}}
    table = [{"pretrain step": s, "epoch": float(epochs[i]),
              "pretrain test acc": float(arrays["pretrain_test_accuracy"][i]),
              "downstream train acc": float(arrays["train_accuracy"][i]),
              "downstream test acc": float(arrays["test_accuracy"][i]),
              "train AUC": float(arrays["train_auc"][i]), "test AUC": float(arrays["test_auc"][i])}
             for i, s in enumerate(steps)]
    inputs = {"runs": [str(run.run_dir)], "steps": steps, "transfer_runs": run_dirs, "out": str(out_dir.resolve()),
              "definition": "downstream accuracy after fine-tuning from each pre-training checkpoint "
                            "(Liu et al. 2021 Sec. 5.2, Fig. 9); AUC: rltx.analysis.curves.accuracy_auc"}
    return Result("transferability-curve", inputs, arrays, table)
