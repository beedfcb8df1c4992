"""Measured training throughput per device, and the training time a sweep plan needs on each.

rltx/measurements/ holds one JSON file per measured device: its name, the date, where the numbers
come from, the batch size and image side they were measured at, and the training images/s per
architecture (`python bench/gpu.py --full --save FILE` writes one). An estimate is the plan's
training images (steps x batch) divided by that rate: evaluation passes, start-up and the gain of
running several runs at once are left out, and a run at another batch size or image side than
measured gets no estimate.
"""
from __future__ import annotations

import collections
import dataclasses
import json
from pathlib import Path

import yaml

from rltx.config import make_recipe

MEASUREMENTS = Path(__file__).parent / "measurements"


@dataclasses.dataclass(frozen=True)
class Measurement:
    device: str
    date: str
    batch_size: int
    image_size: int
    rates: dict  # architecture -> training images/s


def read_measurements(directory: Path = MEASUREMENTS) -> list[Measurement]:
    measurements = []
    for path in sorted(Path(directory).glob("*.json")):
        raw = json.loads(path.read_text())
        measurements.append(Measurement(raw["device"], raw["date"], raw["batch_size"], raw["image_size"],
                                        raw["train_images_per_second"]))
    return measurements


@dataclasses.dataclass(frozen=True)
class Work:
    """The SGD steps of one architecture's runs in a plan, with the batch size and image side they use."""
    steps: int
    shapes: frozenset  # (batch_size, image side; 0: the dataset's own)


def plan_work(plan) -> dict[str, Work]:
    """Per architecture: SGD steps of every pre-training run, and of both runs (pre-trained and from
    scratch) of every transfer command."""
    steps, shapes = collections.Counter(), collections.defaultdict(set)
    recipes = {group["name"]: make_recipe(yaml.safe_load(group["yaml"])) for group in plan.groups}
    for run in plan.runs:
        group = run.name.rsplit("/", 1)[0]
        recipe = recipes[group]
        architecture = recipe.architecture
        steps[architecture] += recipe.steps if run.stage == "pretrain" else 2 * recipe.steps_downstream
        side = recipe.gaussian_image_size if recipe.dataset == "gaussian" else recipe.image_size
        shapes[architecture].add((recipe.batch_size, side))
    return {a: Work(steps[a], frozenset(shapes[a])) for a in steps}


def estimate_hours(work: Work, measurement: Measurement, architecture: str) -> float | None:
    """Training hours on the measured device, None when it was not measured for these runs. An image
    side of 0 (the dataset's own) counts as measured: CIFAR's 32x32, the size of every measurement here."""
    rate = measurement.rates.get(architecture)
    if rate is None or any(batch != measurement.batch_size or side not in (0, measurement.image_size)
                           for batch, side in work.shapes):
        return None
    return work.steps * measurement.batch_size / rate / 3600


def summary_lines(plan, measurements: list[Measurement] | None = None) -> list[str]:
    """The sweep's plan summary: steps per architecture, then the estimated hours on each device measured."""
    measurements = read_measurements() if measurements is None else measurements
    work = plan_work(plan)
    lines = ["training steps (pre-training, and both runs of each transfer): "
             + ", ".join(f"{a} {w.steps:,}" for a, w in work.items())]
    for m in measurements:
        hours = {a: estimate_hours(w, m, a) for a, w in work.items()}
        cells = [f"{a} {_duration(h)}" if h is not None else f"{a} not measured" if a not in m.rates
                 else f"{a} not estimated (other batch size or image side)" for a, h in hours.items()]
        known = [h for h in hours.values() if h is not None]
        total = f"; {_duration(sum(known))} in all, one run at a time" if known else ""
        lines.append(f"estimated training time on {m.device} (measured {m.date}, batch {m.batch_size}, "
                     f"{m.image_size}x{m.image_size}, evaluation passes not counted): {', '.join(cells)}{total}")
    return lines


def _duration(hours: float) -> str:
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.0f} days"
