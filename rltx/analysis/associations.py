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
- Only values that are numbers and vary over the panel's groups are tested (a rank needs an order
  and a spread), over the groups whose difference is a finite number; a panel needs MIN_GROUPS.
"""
from __future__ import annotations

import dataclasses
import numbers

import numpy as np

FAMILY_LEVEL = 0.05  # family-wise error rate over one panel's values (Holm)
MIN_GROUPS = 3       # fewer leave Spearman's rho without a p-value
PERMUTATIONS = 40319  # 8! - 1: every ordering of up to 8 groups is enumerated; more groups draw this many
PERMUTATION_SEED = 0  # the Monte Carlo p-values repeat from run to run


@dataclasses.dataclass(frozen=True)
class Association:
    key: str         # the sampled recipe key
    rho: float       # Spearman's rank correlation with the groups' AUC differences
    p: float         # two-sided, unadjusted
    holm_p: float    # Holm-adjusted over the panel's tested keys
    groups: int

    @property
    def goes_with(self) -> bool:
        return self.holm_p < FAMILY_LEVEL


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
    """Spearman's rho of `differences` (one per group) with each key's values over the same groups,
    permutation p-values Holm-adjusted over the keys tested (numbers that vary); groups whose
    difference is not finite are left out, and none is tested where the differences do not vary."""
    differences = np.asarray(differences, float)
    finite = np.isfinite(differences)
    differences = differences[finite]
    if len(differences) < MIN_GROUPS or np.ptp(differences) == 0:
        return []
    tested = {}
    for key, column in values.items():
        column = [value for value, keep in zip(column, finite) if keep]
        if not all(isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) and np.isfinite(v)
                   for v in column):
            continue
        column = np.asarray(column, float)
        if np.ptp(column) > 0:
            tested[key] = spearman_test(column, differences)
    adjusted = holm_adjusted([p for _, p in tested.values()])
    return [Association(key, rho, p, float(holm), len(differences))
            for (key, (rho, p)), holm in zip(tested.items(), adjusted)]


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
