"""Which of a sweep's sampled hyperparameters go with its transfer (App. B, "Experimental setup": the
groups differ in learning rate, initialisation scale, classes and examples upstream, pre-training
length and the Simple CNN's shape). Per panel of Fig. 12-15, one number per group (its pre-trained
minus from-scratch AUC difference) is rank-correlated with each sampled value.

- Spearman's rho, the Pearson correlation of the ranks (ties take their mean rank): invariant under
  any increasing transform of a value, so a log-uniform draw (learning rate) and its logarithm, or
  the units and their log, give the same rho. Two-sided p from scipy (t approximation, n - 2
  degrees of freedom).
- Several values are tested per panel, so the p-values are Holm-adjusted over them (Holm 1979, a
  step-down Bonferroni): a value "goes with" the difference when its adjusted p < FAMILY_LEVEL,
  which holds the chance of naming any value by accident at 5 % when none matters.
- Only values that are numbers and vary over the panel's groups are tested (a rank needs an order
  and a spread); a panel needs MIN_GROUPS groups.
"""
from __future__ import annotations

import dataclasses
import numbers

import numpy as np

FAMILY_LEVEL = 0.05  # family-wise error rate over one panel's values (Holm)
MIN_GROUPS = 3       # fewer leave Spearman's rho without a p-value


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
    Holm-adjusted over the keys tested (numbers that vary); none where the differences do not vary."""
    from scipy import stats
    differences = np.asarray(differences, float)
    if len(differences) < MIN_GROUPS or np.ptp(differences) == 0:
        return []
    tested = {}
    for key, column in values.items():
        if not all(isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) for v in column):
            continue
        column = np.asarray(column, float)
        if np.ptp(column) > 0:
            result = stats.spearmanr(column, differences)
            tested[key] = (float(result.statistic), float(result.pvalue))
    adjusted = holm_adjusted([p for _, p in tested.values()])
    return [Association(key, rho, p, float(holm), len(differences))
            for (key, (rho, p)), holm in zip(tested.items(), adjusted)]
