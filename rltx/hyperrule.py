"""The paper's rules, one small function each, so they can be checked against Appendix A.

Everything here is plain Python/numpy: no TensorFlow, no configuration objects.
Sections refer to Maennel et al. (NeurIPS 2020), appendices in shared/papers/000_*.
"""
from __future__ import annotations

import math

import numpy as np

# Independent random streams derived from the one `seed` of a recipe, so that changing
# how labels are drawn never changes which examples are sampled, and so on.
STREAM_SAMPLE, STREAM_LABELS, STREAM_ORDER, STREAM_DOWNSTREAM, STREAM_HELD_OUT, STREAM_COVARIANCE = 1, 2, 3, 5, 6, 7
STREAM_TEST_SUBSET = 8
STREAM_FRESH_LAYERS = 9
# The test subset is drawn with this seed, not the run's: every run on one data set is scored on the same examples.
TEST_SUBSET_SEED = 0


# E.3 / Fig. 23: tau_1..tau_16 weighting the 16 most significant eigenvectors. The paper gives f2
# exactly (all ones, Table 2) but f1 and f3 only in words: f1 "downweights the largest eigenvalue"
# (Table 1), f3 "downweights the largest eigenvalue less" (Table 3), with values "between 1 and 4".
# These are rltx's concrete choices; any list can be given instead.
TAU_CURVES = {
    "f1": (1.0, 2.0, 3.0) + (4.0,) * 13,
    "f2": (1.0,) * 16,
    "f3": (2.5, 3.25) + (4.0,) * 14,
}


def rng(seed: int, stream: int) -> np.random.Generator:
    """A numpy generator for one purpose (`STREAM_*`) of a run with this seed."""
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


def derived_seed(*entropy: int) -> int:
    """A well-spread 31-bit seed (what Keras initialisers take), a pure function of `entropy`."""
    return int(np.random.SeedSequence(list(entropy)).generate_state(1)[0]) & 0x7FFFFFFF


def fresh_layers_seed(seed: int) -> int:
    """A.4 / A.9: after pre-training "the head layer is re-initialized", and every layer a transfer does not
    take is fresh. Their initialisation seed is drawn from its own stream, so it is independent of the
    source's initialisation, which the run's `seed` draws. With `seed` itself, every fresh layer whose
    shape matches the source's would repeat the source's initial draw: the head whenever
    num_classes_upstream == num_classes_downstream. A trained head stays close to where it started
    (cosine 0.95 in ResNet18's quick profile with 10 random classes), so the "fresh" head read the
    source's random labels off the transferred features (docs/calibration.md, "Fresh layers").
    A transfer and its from-scratch pair share this seed, so they still share their fresh layers."""
    return derived_seed(seed, STREAM_FRESH_LAYERS)


def total_steps_for_epochs(epochs: float, num_examples: int, batch_size: int) -> int:
    """Number of SGD steps for `epochs` passes over `num_examples` (A.5-A.12 give epochs)."""
    return max(1, math.ceil(epochs * num_examples / batch_size))


def learning_rate_boundaries(total_steps: int) -> tuple[int, int]:
    """A.3: the learning rate is divided by 3 after 1/3 and after 2/3 of total_steps."""
    return total_steps // 3, (2 * total_steps) // 3


def learning_rate_at(step: int, base_learning_rate: float, total_steps: int) -> float:
    """A.3: learning rate used by the update with 0-based index `step`."""
    drops = sum(step >= boundary for boundary in learning_rate_boundaries(total_steps))
    return base_learning_rate / 3.0**drops


def sample_upstream(num_available: int, count: int, seed: int) -> np.ndarray:
    """A.1 step 1: `count` indices drawn uniformly without replacement from the training split."""
    if count > num_available:
        raise ValueError(f"asked for {count} examples, the split holds {num_available}")
    return np.sort(rng(seed, STREAM_SAMPLE).permutation(num_available)[:count])


def sample_remainder(num_available: int, exclude: np.ndarray, count: int, seed: int, stream: int) -> np.ndarray:
    """A.1 step 2: `count` indices drawn uniformly from the remainder of the split, i.e. never one
    of `exclude` (the upstream examples), so the two sets cannot intersect.

    The draw depends only on (seed, stream) and the remainder, so pre-training (which records the
    downstream set it reserves) and transfer with the same seed draw the same examples."""
    remainder = np.setdiff1d(np.arange(num_available), exclude)
    if count > len(remainder):
        raise ValueError(f"asked for {count} examples, {len(remainder)} remain outside the {len(exclude)} excluded")
    return np.sort(rng(seed, stream).permutation(remainder)[:count])


def test_subset(num_available: int, count: int) -> np.ndarray:
    """The test-split examples a run is scored on: the whole split (E.3: CIFAR10's 10k test images), or
    `count` of them drawn uniformly without replacement, the same draw for every seed. Not the first
    `count` rows: a user's test split stored sorted by class would then hold a few classes only."""
    if count > num_available:
        raise ValueError(f"asked for {count} examples, the split holds {num_available}")
    if count == num_available:
        return np.arange(num_available)
    return np.sort(rng(TEST_SUBSET_SEED, STREAM_TEST_SUBSET).permutation(num_available)[:count])


def random_labels(num_examples: int, num_classes: int, seed: int, salt: int = 0) -> np.ndarray:
    """A.1 steps 3-4: labels drawn uniformly and independently from {0, ..., num_classes-1}.

    `salt` separates the label draws of different sets (upstream training, held-out) of one run.
    """
    generator = np.random.default_rng(np.random.SeedSequence([seed, STREAM_LABELS, salt]))
    return generator.integers(0, num_classes, size=num_examples, dtype=np.int64)


def rescale_factor(initial: list[np.ndarray], trained: list[np.ndarray], norm: str) -> float:
    """A.4: the positive constant c such that c * (trained layer) has the norm of the layer at
    initialisation; norm is over all parameters of the layer (kernel and bias). 'none' gives 1."""
    if norm == "none":
        return 1.0
    order = {"l2": 2, "l1": 1}[norm]
    def layer_norm(arrays):
        return np.linalg.norm(np.concatenate([np.ravel(a).astype(np.float64) for a in arrays]), ord=order)
    return float(layer_norm(initial) / layer_norm(trained))


def eval_steps(total_steps: int, num_points: int) -> np.ndarray:
    """Steps at which metrics are computed: `num_points` distinct steps (all steps when the run is
    shorter), denser early, always 0 and the last.

    Half of the grid is spaced geometrically (the early phase moves fastest, e.g. the activation
    changes of App. F), half linearly. Rounding merges points of a short run's geometric half
    (150 steps: 1, 2, 3 ...), so the grid is refined until the distinct steps reach the count; a
    refinement that overshoots drops the interior points whose neighbours are closest together.
    """
    wanted = min(num_points, total_steps + 1)
    grid = num_points
    steps = _mixed_grid(total_steps, grid)
    while len(steps) < wanted:
        grid += 1
        steps = _mixed_grid(total_steps, grid)
    while len(steps) > wanted:
        merged = steps[2:] - steps[:-2]  # the gap left by dropping each interior point
        steps = np.delete(steps, 1 + int(np.argmin(merged)))
    return steps


def _mixed_grid(total_steps: int, num_points: int) -> np.ndarray:
    geometric = np.geomspace(1, max(1, total_steps), num=max(1, num_points // 2))
    linear = np.linspace(0, total_steps, num=max(2, num_points - num_points // 2))
    steps = np.round(np.concatenate([[0, total_steps], geometric, linear])).astype(np.int64)
    return np.unique(np.clip(steps, 0, total_steps))


def checkpoint_steps(total_steps: int, every: int, extra: tuple[int, ...] = ()) -> np.ndarray:
    """Steps whose weights are kept: the initial weights (needed for rescaling, A.4), every
    `every` steps (0: none in between), the `extra` steps asked for, and always the last."""
    regular = np.arange(0, total_steps, every) if every > 0 else np.array([], dtype=np.int64)
    steps = np.concatenate([[0, total_steps], regular, [s for s in extra if 0 <= s <= total_steps]])
    return np.unique(steps.astype(np.int64))


def batch_order(num_examples: int, batch_size: int, seed: int, first_step: int, num_steps: int) -> np.ndarray:
    """Example indices of the mini-batches `first_step .. first_step+num_steps-1`, shape [num_steps, batch_size].

    The examples are visited in a fresh uniform permutation each epoch; batches are consecutive
    slices of the concatenated permutations, so every batch is full and the order at any step is a
    pure function of (seed, step). That makes resuming at any step exact.
    """
    start, stop = first_step * batch_size, (first_step + num_steps) * batch_size
    first_epoch, last_epoch = start // num_examples, (stop - 1) // num_examples
    epochs = [_epoch_permutation(num_examples, seed, e) for e in range(first_epoch, last_epoch + 1)]
    flat = np.concatenate(epochs)[start - first_epoch * num_examples: stop - first_epoch * num_examples]
    return flat.reshape(num_steps, batch_size)


def _epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    generator = np.random.default_rng(np.random.SeedSequence([seed, STREAM_ORDER, epoch]))
    return generator.permutation(num_examples)


# --- App. B: experiment sweeps ---------------------------------------------------------------

def sample_hyperparameter(spec, generator: np.random.Generator):
    """App. B.1-B.4: one group's value of a swept hyper-parameter. `{log_uniform: [a, b]}` is
    "random log_uniform(a, b)", `{uniform: [v1, v2, ...]}` is "random uniform([v1, v2, ...])" (a
    uniform choice among the listed values); anything else is a fixed value."""
    if isinstance(spec, dict) and len(spec) == 1:
        (kind, values), = spec.items()
        if kind == "log_uniform":
            low, high = values
            return float(math.exp(generator.uniform(math.log(low), math.log(high))))
        if kind == "uniform":
            return values[int(generator.integers(len(values)))]
    return spec


def group_generator(sweep_seed: int, architecture_index: int, group: int) -> np.random.Generator:
    """The generator of one group's hyper-parameters: a group keeps its values when other groups or
    architectures are added to the sweep."""
    return np.random.default_rng(np.random.SeedSequence([sweep_seed, architecture_index, group]))


def experiments_per_group(seeds: int, transfer_depths: int, downstream_labels: int) -> int:
    """App. B: every combination of (a) seed, (b) pre-trained / from scratch, (c) transfer one /
    all layers, (d) real / random downstream labels; e.g. B.1: 2 x 2 x 2 x 2 = 16."""
    return seeds * 2 * transfer_depths * downstream_labels
