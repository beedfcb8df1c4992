"""Whether a run that completed actually trained: runs that fail silently are flagged in their
record (run.h5 attribute `health`) and never counted as evidence by a verdict.

Judged on the whole-training-set metrics of the latest eval point (A.3: no mini-batch noise):
- diverged: the train loss ends more than DIVERGENCE_FACTOR times above its value at step 0. At
  initialisation the loss is about ln C; a run that learns anything, even random labels, lowers it,
  and SGD noise does not move a whole-set loss by a factor of 3 (the issue's Fig. 2 run: 2.49 ->
  15.2 after one step), so 3x means the optimisation blew up. Checked first: a run that blew up into
  constant outputs is reported as diverged.
- collapsed: constant outputs. A constant predictor gives one class to (nearly) every training
  example, scores the frequency of that class and has a loss of at least the entropy of the label
  marginal, about ln C for balanced labels; so a predicted class shared by at least
  CONSTANT_FRACTION of the training examples (`train_majority_fraction`), accuracy within the
  chance band (1/C + 3 binomial standard deviations over the training set) and a loss no more than
  COLLAPSE_LOSS_TOLERANCE (1%) below ln C is a model that predicts nothing (all units dead, the
  logits equal, or constant but unequal, which puts the loss above ln C), however the step-0 loss
  compared. A loss further below ln C means the outputs still depend on the input: learning. A model
  at chance that still spreads its predictions over several classes is slow, not collapsed, and counts. Measured (docs/calibration.md):
  Table 4's dead {1,2,3} runs (logits spread 9e-5 over the inputs) give one class to 99.8-100 % of
  the examples; Table 5's smallest-eigenvector runs, still learning, to 67-94 %; excluding those
  would hide the slowness the paper reports. Metric files written before the column existed are
  judged on accuracy and a loss within 1% of ln C on either side.
"""
from __future__ import annotations

import numpy as np

OK = "ok"
DIVERGENCE_FACTOR = 3.0
COLLAPSE_LOSS_TOLERANCE = 0.01
CHANCE_BAND_SD = 3.0
CONSTANT_FRACTION = 0.99


def judge(metrics: list[dict], num_classes: int, num_examples: int) -> str:
    """"ok", "diverged: ..." or "collapsed: ..." for metric rows (step, train_loss, train_accuracy)."""
    if not metrics or metrics[-1]["step"] == 0:  # an untrained model may well sit at ln C
        return OK
    first, last = metrics[0], metrics[-1]
    if not np.isfinite(last["train_loss"]):  # a NaN compares false with everything: not "ok"
        return f"diverged: loss {last['train_loss']} at step {last['step']}"
    if first["step"] == 0 and last["train_loss"] > DIVERGENCE_FACTOR * first["train_loss"]:
        ratio = last["train_loss"] / first["train_loss"]
        return (f"diverged: loss {last['train_loss']:.3g} at step {last['step']}, {ratio:.1f}x its initial "
                f"{first['train_loss']:.3g}")
    if _collapsed(last, num_classes, num_examples):
        start = last["step"]
        for row in reversed(metrics):
            if not _collapsed(row, num_classes, num_examples):
                break
            start = row["step"]
        return (f"collapsed: constant outputs from step {start} (train accuracy {last['train_accuracy']:.3f}, "
                f"loss {last['train_loss']:.3f}, ln {num_classes} = {np.log(num_classes):.3f})")
    return OK


def on_reading(health: str, last_loss: float | None, last_step: int | None) -> str:
    """The health the stored record of a completed run reports. One whose last whole-set loss is NaN or infinite was
    written by an rltx that neither stopped nor flagged such a run (before 2026-12-07, when the last update
    made the weights NaN; `judge` compared NaN > 3x, which is false): it diverged, whatever its record says,
    so no verdict may count it."""
    if is_flagged(health) or last_loss is None or np.isfinite(last_loss):
        return health
    return f"diverged: loss {last_loss} at step {last_step} (judged on reading; its record said {health})"


def change_line(run: str, before: str, after: str, last: dict) -> str | None:
    """The line a training run prints when its judgement goes from `before` to `after` at metric row
    `last`: a warning when it becomes diverged or collapsed (or turns from one into the other), a note
    when a flagged run is judged ok again, else none (only the numbers moved)."""
    if is_flagged(after) and health_kind(after) != health_kind(before):
        return f"warning: {run} {after}"
    if is_flagged(before) and not is_flagged(after):
        return f"note: {run} no longer {health_kind(before)}: loss {last['train_loss']:.3g} at step {last['step']}"
    return None


def health_kind(health: str) -> str:
    """"ok", "diverged", "collapsed" (or "unchecked" in older runs): a judgement without its numbers."""
    return health.split(":")[0]


def is_flagged(health: str) -> bool:
    return health_kind(health) in ("diverged", "collapsed")


def _collapsed(row: dict, num_classes: int, num_examples: int) -> bool:
    chance = 1.0 / num_classes
    band = chance + CHANCE_BAND_SD * np.sqrt(chance * (1 - chance) / max(1, num_examples))
    entropy = np.log(num_classes)
    at_chance = row["train_accuracy"] <= band
    if "train_majority_fraction" not in row:  # an older metric file: constant outputs cannot be told, only ln C
        return at_chance and abs(row["train_loss"] - entropy) <= COLLAPSE_LOSS_TOLERANCE * entropy
    return (row["train_majority_fraction"] >= CONSTANT_FRACTION and at_chance
            and row["train_loss"] >= (1 - COLLAPSE_LOSS_TOLERANCE) * entropy)
