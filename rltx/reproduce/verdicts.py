"""What a reproduction observed, in the paper's terms: pure functions of analysis numbers.

Thresholds are rltx's, stated here once:
- transfer: the difference of mean train-accuracy AUCs (pre-trained minus baseline) is "positive"
  or "negative" when Welch's t test rejects equal means at the two-sided 5% level (standard error
  with ddof=1 per side, Welch-Satterthwaite degrees of freedom: 2.78 standard errors for 3 seeds
  per side, 2.07 for 12), so that a zero effect is called in 5% of the cases whatever the seeds.
  Otherwise it is "no clear difference" when an equivalence test shows the difference smaller than
  MIN_AUC_EFFECT, the effect the rule tests for: two one-sided t tests at the 5% level (TOST), i.e. the
  90% confidence interval of the difference lies inside +-MIN_AUC_EFFECT. It is "not resolved" when
  neither test decides (the seeds' spread could hide an effect of that size), as with a single seed,
  which has no spread at all. The runs of one
  seed share their data, its order and the fresh layers' initialisation, so the finding also says in
  how many of these same-seed pairs the variant is ahead; that count is reported, not judged. The
  direction the paper saw may be "no clear difference" too (a recipe's `expect: level`).
- sweep (App. B, Fig. 12-15): per downstream labels and transfer depth, the groups' dots below x = y
  are counted and their mean paired AUC difference is judged by the transfer rule, the groups being
  the replicates; described, not held against the paper, which gives no share. Beside each panel, the
  sampled values that go with the groups' differences, per architecture (Spearman, permutation p,
  Holm-adjusted at 5 %, rltx.analysis.associations): a description too, as App. B names no such relation.
- alignment and f(sigma) must come from training, not from the initialisation: a finding that already
  held at the first checkpoint, of a layer whose trace-normalised Sigma_w (pooled filters) moved less
  from the first checkpoint to the last than random initial filters scatter around isotropy
  (`alignment.isotropic_sampling_spread`), is "not resolved": the initial scatter set it.
- f(sigma) shape: tau against sigma, smoothed by a running mean of 3; the curve "rises" when its
  peak exceeds the value at the smallest sigma by more than 5% of the peak, and "falls" when it
  exceeds the value at the largest sigma by that much (Fig. 4: "up and then down", E.2).
"""
from __future__ import annotations

import dataclasses

import numpy as np
from scipy.special import stdtrit  # Student's t quantile (scipy.stats costs `rltx reproduce --help` 0.5 s)

from rltx.analysis.associations import MIN_GROUPS

SHAPE_MARGIN = 0.05  # fraction of the peak a rise or fall must exceed
SIGNIFICANCE = 0.05  # two-sided level of the transfer rule's t test
# The smallest AUC difference the transfer rule tests for. The paper states no effect size: its AUC
# (App. B) is the time-averaged accuracy, and its Fig. 1 / Fig. 5 curves (accuracy axes 0-1) show
# pre-trained / from-scratch gaps of several points early in training; rltx takes one percentage
# point of time-averaged accuracy as the least effect worth calling: "no clear difference" must rule
# out a transfer of that size (equivalence test), not merely fail to find one.
MIN_AUC_EFFECT = 0.01
NOT_RESOLVED = "not resolved"
# why a finding is not resolved (Finding.line)
SPREAD_TOO_LARGE = "the spread is larger than the effect tested for"
ONE_SEED = "one seed: no spread to judge"
ONE_GROUP = "one group: no spread to judge"
NO_HEALTHY_RUN = "no healthy run to judge"
LAYER_NOT_SHAPED = ("it held at step 0 already, and training has not moved the layer's filters beyond the scatter "
                    "of their random initialisation")


@dataclasses.dataclass(frozen=True)
class Finding:
    text: str                   # one line: what was observed, with numbers
    agrees: bool | None = None  # with the paper, when the recipe says what the paper saw and it was resolved
    resolved: bool = True       # False: no verdict; unresolved_because says why
    unresolved_because: str = SPREAD_TOO_LARGE

    def line(self) -> str:
        mark = {True: "agree: agrees with the paper", False: "differ: DIFFERS from the paper", None: ""}[self.agrees]
        if not self.resolved:
            mark = f"not resolved: {self.unresolved_because}"
        return f"{self.text}{'  [' + mark + ']' if mark else ''}"


def mean_and_error(values) -> tuple[float, float]:
    """Mean and standard error of the mean over seeds (ddof=1; nan for a single seed)."""
    values = np.asarray(values, float)
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def transfer_direction(pretrained: np.ndarray, baseline: np.ndarray) -> tuple[str, float, float]:
    """("positive" | "negative" | "no clear difference" | "not resolved", difference of means, its
    standard error); see the module docstring."""
    pretrained, baseline = np.asarray(pretrained, float), np.asarray(baseline, float)
    difference = float(pretrained.mean() - baseline.mean())
    if min(len(pretrained), len(baseline)) < 2:
        return NOT_RESOLVED, difference, float("nan")
    shares = pretrained.var(ddof=1) / len(pretrained), baseline.var(ddof=1) / len(baseline)
    error = float(np.sqrt(sum(shares)))
    if error == 0:  # no spread on either side: the sign is certain
        return ("positive" if difference > 0 else "negative" if difference < 0 else "no clear difference"), difference, error
    freedom = sum(shares) ** 2 / sum(share ** 2 / (len(side) - 1) for share, side in zip(shares, (pretrained, baseline)))
    critical = float(stdtrit(freedom, 1 - SIGNIFICANCE / 2))
    if difference > critical * error:
        return "positive", difference, error
    if difference < -critical * error:
        return "negative", difference, error
    one_sided = float(stdtrit(freedom, 1 - SIGNIFICANCE))  # TOST: the 90% interval inside +-MIN_AUC_EFFECT
    equivalent = abs(difference) + one_sided * error < MIN_AUC_EFFECT
    return ("no clear difference" if equivalent else NOT_RESOLVED), difference, error


def transfer_finding(name: str, baseline: str, pretrained_auc, baseline_auc, expect: str | None,
                     ahead: tuple[int, int] | None = None) -> Finding:
    """`ahead`: (same-seed pairs in which `name` leads, pairs), reported in the text only."""
    if min(len(pretrained_auc), len(baseline_auc)) == 0:
        return Finding(f"{name} vs {baseline}: no run left to compare (the others were excluded)", resolved=False,
                       unresolved_because=NO_HEALTHY_RUN)
    direction, difference, error = transfer_direction(pretrained_auc, baseline_auc)
    seeds = f"{len(pretrained_auc)} vs {len(baseline_auc)} seeds"
    sides = [_plus_minus(*mean_and_error(values)) for values in (pretrained_auc, baseline_auc)]
    outcome = _outcome(direction, error, "one seed")
    text = (f"{name} vs {baseline}: train-accuracy AUC {sides[0]} vs {sides[1]} (mean +- s.e., {seeds}), "
            f"difference {_plus_minus(difference, error, signed=True)}: {outcome}")
    if ahead is not None and ahead[1]:
        text += f"; ahead in {ahead[0]} of {ahead[1]} same-seed pairs"
    resolved = direction != NOT_RESOLVED
    return Finding(text, None if expect is None or not resolved else direction == expect, resolved,
                   ONE_SEED if np.isnan(error) else SPREAD_TOO_LARGE)


def _outcome(direction: str, error: float, replicate: str) -> str:
    """A transfer_direction call in words; an unresolved one says why (`replicate`: what one of means)."""
    outcome = {"positive": "positive transfer", "negative": "negative transfer"}.get(direction, direction)
    if direction == NOT_RESOLVED:
        outcome += f" (its 90% interval reaches past the +-{MIN_AUC_EFFECT} tested for)" if not np.isnan(error) \
            else f" ({replicate}: no spread)"
    return outcome


def _plus_minus(mean: float, error: float, signed: bool = False) -> str:
    value = f"{mean:+.3f}" if signed else f"{mean:.3f}"
    return value if np.isnan(error) else f"{value} +- {error:.3f}"


def f_sigma_shape(sigma: np.ndarray, tau: np.ndarray) -> str:
    """rise-then-fall, rising, falling or flat, for tau(sigma) (see the module docstring)."""
    order = np.argsort(sigma)
    values = np.asarray(tau, float)[order]
    if len(values) >= 3:
        values = np.convolve(np.pad(values, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    peak = values.max()
    rises = peak - values[0] > SHAPE_MARGIN * peak
    falls = peak - values[-1] > SHAPE_MARGIN * peak
    if rises and falls:
        return "rise-then-fall"
    if rises:
        return "rising"
    if falls:
        return "falling"
    return "flat"


@dataclasses.dataclass(frozen=True)
class LayerShaping:
    """How far training moved the shape of the layer's Sigma_w (`alignment.shape_change`, first to last
    checkpoint) against the scatter of random initial filters (`alignment.isotropic_sampling_spread`)."""
    moved: float
    initial_scatter: float

    @property
    def shaped(self) -> bool:
        return self.moved >= self.initial_scatter

    def judged(self, text: str, agrees: bool, agreed_at_start: bool) -> Finding:
        """The finding, or "not resolved" when it already held at step 0 and the layer is not shaped."""
        if self.shaped or agrees != agreed_at_start:
            return Finding(text, agrees)
        return Finding(f"{text}; Sigma_w's shape moved {self.moved:.3f}, within the {self.initial_scatter:.3f} "
                       "its random initial filters scatter by", resolved=False, unresolved_because=LAYER_NOT_SHAPED)


def alignment_finding(data_end: float, random_end: float, data_start: float, random_start: float,
                      expect_ratio: float | None, shaping: LayerShaping) -> Finding:
    ratio = random_end / data_end
    text = (f"first-layer misalignment at the end {data_end:.3g} in the data eigenbasis vs {random_end:.3g} in a "
            f"random basis: {ratio:.1f}x lower (at step 0: {data_start:.3g} vs {random_start:.3g}, "
            f"{random_start / data_start:.1f}x)")
    if expect_ratio is None:
        return Finding(text)
    return shaping.judged(text, ratio >= expect_ratio, random_start / data_start >= expect_ratio)


def shape_finding(sigma: np.ndarray, tau: np.ndarray, expect: str | None, shaping: LayerShaping,
                  shape_at_start: str) -> Finding:
    """`shape_at_start`: f_sigma_shape at the first checkpoint."""
    shape = f_sigma_shape(sigma, tau)
    peak = float(np.asarray(sigma)[np.argmax(tau)])
    text = f"f(sigma) is {shape}: tau from {tau[np.argmin(sigma)]:.3g} (smallest sigma) to a peak {np.max(tau):.3g} " \
           f"at sigma {peak:.3g} to {tau[np.argmax(sigma)]:.3g} (largest sigma)"
    if expect is None:
        return Finding(text)
    return shaping.judged(text, shape == expect, shape_at_start == expect)


def table_finding(labels: list[str], accuracy: np.ndarray, iterations: int, expect: str | None,
                  judged: list[int] | None = None, measured_on: str = "test") -> Finding:
    """Constructed layer sets vs none (the first column) at one row of the table, over seeds:
    accuracy [seeds, sets] on the `measured_on` set ("test" or "training"; NaN: an excluded run).
    Each set is compared with none by the transfer rule (Welch t at 5%, MIN_AUC_EFFECT: accuracy
    and time-averaged accuracy share the scale); the ordering holds when every judged set (the
    columns `judged`, default all constructed ones) wins (loses), is refuted when one goes the
    other way or shows no clear difference, and is not resolved otherwise. Every set's direction
    is reported."""
    accuracy = np.atleast_2d(np.asarray(accuracy, float))
    columns = [column[~np.isnan(column)] for column in accuracy.T]
    seeds = accuracy.shape[0]
    parts = [f"{label} {_plus_minus(*mean_and_error(column)) if len(column) else 'excluded'}"
             for label, column in zip(labels, columns)]
    directions = [transfer_direction(column, columns[0])[0] if len(column) and len(columns[0]) else NOT_RESOLVED
                  for column in columns[1:]]
    ordering = ("all constructed sets beat none" if all(d == "positive" for d in directions) else
                "all constructed sets lose to none" if all(d == "negative" for d in directions) else
                "against none: " + ", ".join(f"{label} {d}" for label, d in zip(labels[1:], directions)))
    text = (f"{measured_on} accuracy after {iterations} iterations (mean +- s.e. over {seeds} seed{'s' * (seeds > 1)}): "
            f"{', '.join(parts)}: {ordering}")
    wanted = {"better": "positive", "worse": "negative"}.get(expect)
    if wanted is None:
        return Finding(text)
    if judged is not None:
        text += f" (judged on {', '.join(labels[k] for k in judged)}, the sets the paper shows {expect} here)"
        directions = [directions[k - 1] for k in judged]
        columns = [columns[0]] + [columns[k] for k in judged]
    if all(d == wanted for d in directions):
        return Finding(text, True)
    if any(d not in (wanted, NOT_RESOLVED) for d in directions):
        return Finding(text, False)
    fewest = min(len(column) for column in columns)
    why = NO_HEALTHY_RUN if fewest == 0 else ONE_SEED if fewest == 1 else SPREAD_TOO_LARGE
    return Finding(text, None, resolved=False, unresolved_because=why)


def activation_finding(layer: str, start: float, end: float, what: str) -> Finding:
    change = "drops" if end < start else "rises"
    return Finding(f"{layer}: mean fraction of examples activating a neuron {change} from {start:.3f} to {end:.3f} {what}")


def switch_finding(layer: str, at_switch: float, after: np.ndarray, steps_after: np.ndarray, variant: str) -> Finding:
    """Fig. 24 (App. F): the active fraction at the switch, its lowest value in the downstream run and
    when, and its value at the end, so "abruptly and permanently" can be read off; a description, not
    a verdict (one run per curve, as App. F)."""
    lowest = int(np.argmin(after))
    return Finding(f"{layer}: mean fraction of examples activating a neuron {at_switch:.3f} at the switch, lowest "
                   f"{after[lowest]:.3f} {int(steps_after[lowest])} steps into '{variant}' (of "
                   f"{int(steps_after[-1])}), {after[-1]:.3f} at its end")


def scatter_finding(cell: str, pretrained: np.ndarray, scratch: np.ndarray, metric: str = "train") -> Finding:
    """One cell of a Fig. 12-15 scatter plot (downstream labels x transfer depth), one dot per group
    (the mean of its seeds' pairs) of train- or test-accuracy AUCs: how many dots lie below x = y,
    and the mean paired difference judged by the transfer rule with the groups as the replicates (a
    one-sample t test, n - 1 degrees of freedom). A description, not a verdict: App. B says positive
    transfer is "frequently observed", not in which share of the groups."""
    pretrained, scratch = np.asarray(pretrained, float), np.asarray(scratch, float)
    ahead = int(np.sum(pretrained > scratch))
    heading = f"{cell}: pre-trained trains faster" if metric == "train" else f"{cell}, test accuracy: pre-trained ahead"
    text = f"{heading} (below x = y) in {ahead} of {len(pretrained)} groups"
    if len(pretrained) == 0:
        return Finding(text, resolved=False, unresolved_because=NO_HEALTHY_RUN)
    differences = pretrained - scratch
    direction, difference, error = transfer_direction(differences, np.zeros_like(differences))
    text += (f"; {metric}-accuracy AUC difference {_plus_minus(difference, error, signed=True)} (mean +- s.e. over the "
             f"groups): {_outcome(direction, error, 'one group')}")
    resolved = direction != NOT_RESOLVED
    return Finding(text, None, resolved, ONE_GROUP if np.isnan(error) else SPREAD_TOO_LARGE)


def fit_finding(accuracies: np.ndarray, classes: np.ndarray) -> Finding:
    """How far pre-training fitted its random labels (issue 14 asks for it): final train accuracy
    over the entire upstream set, min-max over the runs, beside chance for their class counts."""
    return Finding(f"pre-training fitted its random labels to train accuracy {np.min(accuracies):.2f}-"
                   f"{np.max(accuracies):.2f} over {len(accuracies)} runs (chance 1/classes: "
                   f"{1 / np.max(classes):.2f}-{1 / np.min(classes):.2f})")


def association_finding(cell: str, associations) -> Finding:
    """Which sampled values go with a panel's per-group AUC differences (rltx.analysis.associations),
    strongest first; where none does, the strongest tested. A description, not a verdict."""
    if not associations:
        return Finding(f"{cell}: no sampled value to rank against the groups' AUC differences (fewer than "
                       f"{MIN_GROUPS} groups, differences all equal, or no value that varies)")
    ranked = sorted(associations, key=lambda a: a.p)
    found = [a for a in ranked if a.goes_with]
    heading = f"{cell}: over {ranked[0].groups} groups, the AUC difference "
    if found:
        return Finding(heading + "; ".join(_association_phrase(a) for a in found) +
                       f" (Holm 5 % over {len(ranked)} sampled values)")
    strongest = ranked[0]
    name = strongest.key + (f" (highest {strongest.highest})" if strongest.categorical else "")
    return Finding(heading + f"goes with none of {len(ranked)} sampled values at Holm 5 % (strongest: {name}, "
                             f"{_association_numbers(strongest)})")


def panel_association_findings(panels) -> list[Finding]:
    """One association finding per panel and architecture (rltx.sweep.panels.PanelAssociations)."""
    return [association_finding(f"{panel.panel}, {panel.architecture} groups", panel.tested) for panel in panels]


def _association_phrase(association) -> str:
    if association.categorical:
        return (f"differs by {association.key}, highest with {association.highest} "
                f"({_association_numbers(association)})")
    direction = "rises" if association.statistic > 0 else "falls"
    return f"{direction} with {association.key} ({_association_numbers(association)})"


def _association_numbers(association) -> str:
    statistic = (f"Kruskal-Wallis H {association.statistic:.2f}" if association.categorical
                 else f"Spearman {association.statistic:+.2f}")
    return f"{statistic}, p {association.p:.2g}, Holm {association.holm_p:.2g}"
