"""Which of a sweep's sampled hyperparameters go with its transfer (App. B, "Experimental setup": the
groups differ in learning rate, initialisation scale, classes and examples upstream, pre-training
length and the Simple CNN's shape). Per panel of Fig. 12-15, one number per group (its pre-trained
minus from-scratch AUC difference) is rank-correlated with each sampled value.

- Spearman's rho, the Pearson correlation of the ranks (ties take their mean rank): invariant under
  any increasing transform of a value, so a log-uniform draw (learning rate) and its logarithm, or
  the units and their log, give the same rho. Two-sided p by permutation (scipy.stats.permutation_test,
  the groups' differences re-paired with the values): exact over every ordering up to 8 groups,
  else from PERMUTATIONS random orderings, (count + 1) / (PERMUTATIONS + 1), with a fixed seed. The
  t approximation scipy's spearmanr uses gives p = 0 to any perfect ordering, which 3 groups reach
  by chance once in 3, so with 3-6 groups it named unrelated values far above the 5 % promised.
- Several values are tested per panel, so the p-values are Holm-adjusted over them (Holm 1979, a
  step-down Bonferroni): a value "goes with" the difference when its adjusted p < FAMILY_LEVEL,
  which holds the chance of naming any value by accident at 5 % when none matters.
- A value that names a category (B.2's init_algorithm: he / orthogonal; a flag) has no order, so
  it is tested with the Kruskal-Wallis H of the differences' ranks grouped by category (with two
  categories, the Mann-Whitney test), its p by permutation of the categories over the groups (exact
  while the distinct assignments number at most PERMUTATIONS), reported with the category whose
  differences rank highest (a description: with three or more categories H may come from a low
  one); it joins the same Holm family. A column mixing names and flags is not tested.
- Only values that vary over the panel's groups are tested (numbers, or categories with at least
  two groups in some category), over the groups whose difference is a finite number; a panel needs
  MIN_GROUPS. A key missing from some groups, or mixing numbers and names, is not tested.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import numbers

import numpy as np

FAMILY_LEVEL = 0.05  # family-wise error rate over one panel's values (Holm)
MIN_GROUPS = 3       # fewer leave Spearman's rho without a p-value
PERMUTATIONS = 40319  # 8! - 1: every ordering of up to 8 groups is enumerated; more groups draw this many
PERMUTATION_SEED = 0  # the Monte Carlo p-values repeat from run to run


@dataclasses.dataclass(frozen=True)
class Association:
    key: str         # the sampled recipe key
    statistic: float  # numbers: Spearman's rho with the groups' AUC differences; categories: Kruskal-Wallis H
    p: float         # two-sided (numbers) / H at least as large (categories), unadjusted
    holm_p: float    # Holm-adjusted over the panel's tested keys
    groups: int
    highest: str | None = None  # categories: the one whose differences rank highest (None: a number)

    @property
    def goes_with(self) -> bool:
        return self.holm_p < FAMILY_LEVEL

    @property
    def categorical(self) -> bool:
        return self.highest is not None


def holm_adjusted(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values: the i-th smallest of m times (m - i + 1), made
    non-decreasing in that order and capped at 1, in the input order."""
    pvalues = np.asarray(pvalues, float)
    order = np.argsort(pvalues, kind="stable")
    count = len(pvalues)
    stepped = np.minimum(1.0, np.maximum.accumulate(pvalues[order] * (count - np.arange(count))))
    adjusted = np.empty(count)
    adjusted[order] = stepped
    return adjusted


def rank_associations(differences, values: dict[str, list]) -> list[Association]:
    """Spearman's rho of `differences` (one per group) with each key's numbers over the same groups,
    or the Kruskal-Wallis H of its categories, permutation p-values Holm-adjusted over the keys
    tested (see the module docstring); groups whose difference is not finite are left out, and none
    is tested where the differences do not vary."""
    differences = np.asarray(differences, float)
    finite = np.isfinite(differences)
    differences = differences[finite]
    if len(differences) < MIN_GROUPS or np.ptp(differences) == 0:
        return []
    tested = {}
    for key, column in values.items():
        column = [value for value, keep in zip(column, finite) if keep]
        if all(_is_number(v) for v in column):
            if np.ptp(np.asarray(column, float)) > 0:
                tested[key] = (*spearman_test(np.asarray(column, float), differences), None)
        elif all(isinstance(v, str) for v in column) or all(isinstance(v, (bool, np.bool_)) for v in column):
            categories = [str(v) for v in column]
            if 1 < len(set(categories)) < len(categories):
                tested[key] = kruskal_test(categories, differences)
    adjusted = holm_adjusted([p for _, p, _ in tested.values()])
    return [Association(key, statistic, p, float(holm), len(differences), highest)
            for (key, (statistic, p, highest)), holm in zip(tested.items(), adjusted)]


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and bool(np.isfinite(value))


def spearman_test(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Spearman's rho of x and y and its two-sided permutation p-value (see the module docstring)."""
    from scipy import stats
    ranks_y = stats.rankdata(y)
    centred_y = ranks_y - ranks_y.mean()

    def rho(ranks_x, axis=-1):
        centred_x = ranks_x - ranks_x.mean(axis=axis, keepdims=True)
        return (centred_x * centred_y).sum(axis=axis) / np.sqrt((centred_x ** 2).sum(axis=axis) * (centred_y ** 2).sum())

    result = stats.permutation_test((stats.rankdata(x),), rho, permutation_type="pairings", vectorized=True,
                                    n_resamples=PERMUTATIONS, rng=np.random.default_rng(PERMUTATION_SEED))
    return float(result.statistic), float(result.pvalue)


def kruskal_test(categories: list[str], y: np.ndarray) -> tuple[float, float, str]:
    """Kruskal-Wallis H of y grouped by category (ties: mean ranks and the usual correction), its
    permutation p-value (the categories re-assigned to the groups: every distinct assignment up to
    PERMUTATIONS, else that many seeded shuffles, (count + 1) / (PERMUTATIONS + 1)) and the category
    whose y rank highest on average (see the module docstring)."""
    from scipy import stats
    names = sorted(set(categories))
    labels = np.array([names.index(c) for c in categories])
    ranks = stats.rankdata(y)
    count = len(ranks)
    _, ties = np.unique(ranks, return_counts=True)
    correction = 1 - (ties ** 3 - ties).sum() / (count ** 3 - count)
    if correction == 0:  # every y equal: no ranking, nothing to test
        return 0.0, 1.0, names[0]

    def h(assignments: np.ndarray) -> np.ndarray:  # one H per row of category indices
        spread = 0.0
        for index in range(len(names)):
            members = assignments == index
            size = members.sum(axis=-1)
            spread = spread + size * ((members * ranks).sum(axis=-1) / size - (count + 1) / 2) ** 2
        return 12 * spread / (count * (count + 1)) / correction

    observed = float(h(labels))
    sizes = np.bincount(labels)
    tolerance = 1e-12 * max(1.0, observed)
    if _assignment_count(sizes) <= PERMUTATIONS:
        p = float(np.mean(h(_every_assignment(sizes)) >= observed - tolerance))
    else:
        shuffled = np.random.default_rng(PERMUTATION_SEED).permuted(np.tile(labels, (PERMUTATIONS, 1)), axis=1)
        p = float((np.sum(h(shuffled) >= observed - tolerance) + 1) / (PERMUTATIONS + 1))
    highest = max(names, key=lambda name: (ranks[labels == names.index(name)].mean(), name))
    return observed, p, highest


def _assignment_count(sizes: np.ndarray) -> int:
    """The multinomial coefficient: distinct ways to give categories of these sizes to the groups."""
    total, remaining = 1, int(sizes.sum())
    for size in sizes:
        total *= math.comb(remaining, int(size))
        remaining -= int(size)
    return total


def _every_assignment(sizes: np.ndarray) -> np.ndarray:
    """Every distinct assignment (rows of category indices) of categories of these sizes."""
    rows = [np.full(int(sizes.sum()), -1)]
    for index, size in enumerate(sizes):
        grown = []
        for row in rows:
            free = np.flatnonzero(row < 0)
            for chosen in itertools.combinations(free, int(size)):
                filled = row.copy()
                filled[list(chosen)] = index
                grown.append(filled)
        rows = grown
    return np.array(rows)
