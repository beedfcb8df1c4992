"""The verdict rules of `rltx reproduce` against inputs whose answer is known by construction."""
import re

import numpy as np
import pytest

from rltx.reproduce import verdicts


def test_transfer_direction_finds_a_known_difference_of_means():
    generator = np.random.default_rng(0)
    faster, slower = generator.normal(0.60, 0.01, 12), generator.normal(0.55, 0.01, 12)
    assert verdicts.transfer_direction(faster, slower)[0] == "positive"
    assert verdicts.transfer_direction(slower, faster)[0] == "negative"
    direction, difference, error = verdicts.transfer_direction(faster, slower)
    assert difference == pytest.approx(faster.mean() - slower.mean())
    assert error == pytest.approx(np.sqrt(faster.var(ddof=1) / 12 + slower.var(ddof=1) / 12))


def test_transfer_direction_calls_a_direction_exactly_when_welchs_test_rejects():
    """Oracle: scipy.stats' Welch t test (ttest_ind, equal_var=False) at the rule's 5% level decides every
    call, for unequal seed counts and spreads (non-integer degrees of freedom)."""
    from scipy import stats
    generator = np.random.default_rng(3)
    for _ in range(300):
        n, m = generator.integers(2, 13, size=2)
        a, b = generator.normal(0.05, 0.05, n), generator.normal(0, generator.uniform(0.01, 0.1), m)
        direction = verdicts.transfer_direction(a, b)[0]
        rejected = stats.ttest_ind(a, b, equal_var=False).pvalue < verdicts.SIGNIFICANCE
        assert (direction in ("positive", "negative")) == rejected, (a, b, direction)
        if rejected:
            assert direction == ("positive" if a.mean() > b.mean() else "negative")


@pytest.mark.parametrize("seeds", [3, 12])
def test_transfer_direction_false_alarm_rate_is_the_nominal_level(seeds):
    """Equal means: 'positive' or 'negative' is called at Welch's 5% level whatever the number of
    seeds (a fixed 2-s.e. rule would call 3-seed noise ~12% of the time); 2000 trials put the rate
    within 2.5-8%."""
    generator = np.random.default_rng(1)
    calls = [verdicts.transfer_direction(generator.normal(0, 1, seeds), generator.normal(0, 1, seeds))[0]
             for _ in range(2000)]
    rate = np.mean([c in ("positive", "negative") for c in calls])
    assert 0.025 < rate < 0.08


def test_zero_effect_is_no_clear_difference_when_the_spread_resolves_the_tested_effect():
    """Zero effect, seeds' sd 0.005 over 12 seeds: s.e. of the difference 0.002, below the 0.01 the
    rule tests for, so a non-call is "no clear difference" (a researcher may read: no transfer
    of that size), and never "not resolved"."""
    generator = np.random.default_rng(2)
    calls = [verdicts.transfer_direction(generator.normal(0.5, 0.005, 12), generator.normal(0.5, 0.005, 12))[0]
             for _ in range(500)]
    assert "not resolved" not in calls and np.mean([c == "no clear difference" for c in calls]) > 0.92


@pytest.mark.parametrize("seeds, sd", [(3, 0.004), (12, 0.005)])
def test_no_clear_difference_is_an_equivalence_test_at_the_5_percent_level(seeds, sd):
    """A true effect of exactly MIN_AUC_EFFECT (0.01): "no clear difference" would wrongly deny it, which the
    two one-sided tests allow in at most 5% of the draws (2000 draws: under 7%). A standard error at or
    under 0.01 alone is no such test: with 3 seeds it called an effect of this size "no clear difference"
    in most draws."""
    generator = np.random.default_rng(6)
    calls = [verdicts.transfer_direction(generator.normal(0.51, sd, seeds), generator.normal(0.50, sd, seeds))[0]
             for _ in range(2000)]
    assert np.mean([c == "no clear difference" for c in calls]) < 0.07


def test_an_unresolved_effect_in_the_papers_direction_is_not_a_disagreement():
    """The review's case: {1} 0.300 +- 0.007 vs none 0.280 +- 0.006 over 3 seeds, +0.020 +- 0.009, Welch t 2.2
    (not significant): its 90% interval reaches +0.040, so there may well be an effect: not resolved."""
    none, one = 0.280 + np.array([-0.0104, 0.0, 0.0104]), 0.300 + np.array([-0.0121, 0.0, 0.0121])
    direction, difference, error = verdicts.transfer_direction(one, none)
    assert direction == "not resolved" and error < 0.01
    finding = verdicts.table_finding(["{}", "{1}"], np.stack([none, one], axis=1), 100, "better")
    assert finding.agrees is None and not finding.resolved


def test_zero_effect_with_a_huge_spread_is_not_resolved():
    """Zero effect, seeds' sd 0.1 over 3 seeds: s.e. ~0.08, far above the 0.01 tested for: the
    verdict is "not resolved", never "no clear difference" (which would claim there is no effect)."""
    generator = np.random.default_rng(3)
    calls = [verdicts.transfer_direction(generator.normal(0.5, 0.1, 3), generator.normal(0.5, 0.1, 3))[0]
             for _ in range(500)]
    assert "no clear difference" not in calls and np.mean([c == "not resolved" for c in calls]) > 0.9
    finding = verdicts.transfer_finding("pretrained", "from scratch", [0.4, 0.6, 0.5], [0.5, 0.7, 0.3], "positive")
    assert finding.agrees is None and not finding.resolved and "[not resolved" in finding.line()


def test_a_large_known_effect_agrees_or_differs_with_the_paper():
    """Effect 0.05 with sd 0.01 over 3 seeds (t ~ 6): the direction is found in nearly every draw,
    and the finding states both means with their standard errors over the seeds."""
    generator = np.random.default_rng(4)
    found = [verdicts.transfer_direction(generator.normal(0.60, 0.01, 3), generator.normal(0.55, 0.01, 3))[0]
             for _ in range(500)]
    assert np.mean([c == "positive" for c in found]) > 0.95
    faster, slower = np.array([0.60, 0.61, 0.59]), np.array([0.55, 0.56, 0.54])
    agree = verdicts.transfer_finding("pretrained", "from scratch", faster, slower, "positive")
    differ = verdicts.transfer_finding("pretrained", "from scratch", slower, faster, "positive")
    assert agree.agrees and agree.resolved and "[agree" in agree.line()
    assert differ.agrees is False and "[differ" in differ.line()
    assert "0.600 +- 0.006 vs 0.550 +- 0.006 (mean +- s.e., 3 vs 3 seeds)" in agree.text
    assert "difference +0.050 +- 0.008" in agree.text


def test_a_variant_the_paper_saw_level_with_its_baseline_agrees_only_on_no_clear_difference():
    """`expect: level` (Fig. 5: the covariance-sampled layer within measurement error of the pre-trained one):
    an equivalence shown agrees, a resolved lead either way differs, a spread too large for the 0.01 tested
    for is not resolved."""
    from rltx.reproduce.spec import ReproduceSpec
    spec = ReproduceSpec.from_section({"pipeline": "transfer", "variants": [
        {"name": "covariance", "baseline": "conv", "expect": "level"}, {"name": "conv"}]}, "r.yaml")
    level = spec.variants[0].expected_direction
    assert level == "no clear difference" and spec.variants[1].expected_direction is None
    steady = 0.5 + 0.002 * np.array([-1.0, 0.0, 1.0] * 4)  # 12 seeds, s.e. 0.0006: the interval well inside +-0.01
    behind = verdicts.transfer_finding("covariance", "conv", steady - 0.03, steady, level)
    same = verdicts.transfer_finding("covariance", "conv", steady + 0.001, steady, level)
    spread = verdicts.transfer_finding("covariance", "conv", [0.4, 0.6, 0.5], [0.5, 0.3, 0.7], level)
    assert same.agrees and "no clear difference" in same.text and "[agree" in same.line()
    assert behind.agrees is False and "negative transfer" in behind.text and "[differ" in behind.line()
    assert spread.agrees is None and not spread.resolved


def test_same_seed_pairs_are_counted_over_the_seeds_both_sides_kept():
    """The runs of one seed are paired; a seed excluded on one side (a flagged run) leaves its pair out,
    and the count is reported without changing the verdict, which compares the sides as wholes."""
    from rltx.reproduce.pipelines import transfer_findings
    from rltx.reproduce.spec import ReproduceSpec, Variant
    spec = ReproduceSpec("transfer", variants=(Variant("pretrained", "pretrained", {}, "from scratch", "positive"),
                                               Variant("from scratch", "scratch")))
    aucs = {"pretrained": {0: 0.61, 1: 0.58, 2: 0.60, 3: 0.62}, "from scratch": {0: 0.55, 1: 0.59, 3: 0.605}}
    finding, = transfer_findings(spec, aucs)
    # seed 2 has no partner; paired by position instead of seed, the count would be 1 of 3
    assert finding.text.endswith("; ahead in 2 of 3 same-seed pairs")
    whole = verdicts.transfer_finding("pretrained", "from scratch", [0.61, 0.58, 0.60, 0.62], [0.55, 0.59, 0.605],
                                      "positive")
    assert finding.text.startswith(whole.text) and (finding.agrees, finding.resolved) == (whole.agrees, whole.resolved)


def test_one_seed_is_not_resolved():
    direction, difference, error = verdicts.transfer_direction([0.6], [0.5])
    assert direction == "not resolved" and difference == pytest.approx(0.1) and np.isnan(error)
    finding = verdicts.transfer_finding("pretrained", "from scratch", [0.6], [0.5], "positive")
    assert finding.agrees is None and "one seed" in finding.text
    assert finding.line().endswith("[not resolved: one seed: no spread to judge]")


@pytest.mark.parametrize("curve, shape", [
    (lambda s: s * np.exp(-s), "rise-then-fall"),
    (lambda s: np.sqrt(s), "rising"),
    (lambda s: np.exp(-s), "falling"),
    (lambda s: np.ones_like(s), "flat"),
])
def test_f_sigma_shapes_of_known_curves(curve, shape):
    sigma = np.sqrt(np.linspace(0.1, 3.0, 30))[::-1]  # eigenvalue order: largest first
    assert verdicts.f_sigma_shape(sigma, curve(sigma)) == shape


def test_table_ordering_over_seeds():
    """Accuracies drawn around known means: constructed sets 5-10 points above none with sd 0.01
    over 3 seeds agree with "better"; reversed they differ; one seed, or sd 0.2, is not resolved;
    an excluded run (NaN) is left out of its set."""
    generator = np.random.default_rng(5)
    labels = ["{}", "{1}", "{1,2}"]
    means = np.array([0.30, 0.35, 0.40])
    better = verdicts.table_finding(labels, generator.normal(means, 0.01, (3, 3)), 100, "better")
    assert better.agrees and better.resolved and "all constructed sets beat none" in better.text
    assert "(mean +- s.e. over 3 seeds)" in better.text and re.search(r"\{1,2\} 0\.\d{3} \+- 0\.\d{3}", better.text)
    worse = verdicts.table_finding(labels, generator.normal(means[::-1], 0.01, (3, 3)), 100, "better")
    assert worse.agrees is False and "[differ" in worse.line()
    split = verdicts.table_finding(labels, np.array([[0.30, 0.30, 0.45], [0.31, 0.50, 0.46], [0.29, 0.20, 0.44]]), 100, "better")
    assert split.agrees is None and "against none: {1} not resolved, {1,2} positive" in split.text
    flat = verdicts.table_finding(labels, np.array([[0.300, 0.30, 0.300], [0.301, 0.50, 0.301], [0.299, 0.20, 0.299]]), 100, "better")
    assert flat.agrees is False and "{1} not resolved, {1,2} no clear difference" in flat.text
    one = verdicts.table_finding(labels, means[None], 100, "better")
    assert one.agrees is None and not one.resolved and "[not resolved: one seed: no spread to judge]" in one.line()
    noisy = [verdicts.table_finding(labels, generator.normal(means, 0.2, (3, 3)), 100, "better") for _ in range(200)]
    assert np.mean([finding.resolved for finding in noisy]) < 0.2  # s.e. ~0.16 >> 0.01: mostly not resolved
    excluded = generator.normal(means, 0.01, (3, 3))
    excluded[1, 2] = np.nan
    assert verdicts.table_finding(labels, excluded, 100, "better").agrees
    assert verdicts.table_finding(labels, excluded, 100, None).agrees is None
    training = verdicts.table_finding(labels, generator.normal(means, 0.01, (3, 3)), 100, "better", measured_on="training")
    assert training.agrees and training.text.startswith("training accuracy after 100 iterations")
    none_left = np.array([[0.30, np.nan, 0.45], [0.31, np.nan, 0.46], [0.29, np.nan, 0.44]])
    assert verdicts.table_finding(labels, none_left, 100, "better").line().endswith("[not resolved: no healthy run to judge]")


def test_table_judged_on_named_sets_passes_the_papers_own_table_2():
    """E.3's own Table 2 after 100 iterations ({} 0.31, {1} 0.29, {1,2} 0.37, {1,2,3} 0.43, test), with
    seed spread 0.01: judged on every set it reads "differ" ({1} behind), judged on {1,2} and {1,2,3},
    the sets the paper shows ahead there, it agrees; {1}'s direction is still reported."""
    labels = ["{}", "{1}", "{1,2}", "{1,2,3}"]
    paper = np.random.default_rng(2).normal([0.31, 0.29, 0.37, 0.43], 0.01, (3, 4))
    assert verdicts.table_finding(labels, paper, 100, "better").agrees is False
    judged = verdicts.table_finding(labels, paper, 100, "better", judged=[2, 3])
    assert judged.agrees and "{1} negative" in judged.text and "judged on {1,2}, {1,2,3}" in judged.text


SHAPED = verdicts.LayerShaping(moved=0.8, initial_scatter=0.12)


def test_alignment_ratio_against_expectation():
    finding = verdicts.alignment_finding(0.2, 4.4, 0.21, 0.2, 5, SHAPED)
    assert finding.agrees and "22.0x lower" in finding.text
    assert verdicts.alignment_finding(0.2, 4.4, 0.21, 0.2, 30, SHAPED).agrees is False


def test_a_finding_the_initialisation_already_gave_is_not_judged():
    """Sigma_w's shape moved less than random initial filters scatter and the finding already held at
    step 0: the initialisation set it, so it is no evidence either way (not resolved, with the numbers).
    A finding training changed from step 0 is judged however little the layer moved, and at the
    scatter itself the layer counts as shaped."""
    unshaped = verdicts.LayerShaping(moved=0.05, initial_scatter=0.19)
    for finding in (verdicts.alignment_finding(0.48, 0.47, 0.51, 0.50, 2, unshaped),
                    verdicts.shape_finding(np.arange(1.0, 6.0), np.ones(5), "rise-then-fall", unshaped, "flat")):
        assert not finding.resolved and finding.agrees is None
        assert finding.unresolved_because == verdicts.LAYER_NOT_SHAPED
        assert "moved 0.050, within the 0.190" in finding.line() and "not resolved: it held at step 0" in finding.line()
    rise_then_fall = np.array([0.27, 0.29, 0.31, 0.29, 0.27])
    assert verdicts.shape_finding(np.arange(1.0, 6.0), rise_then_fall, "rise-then-fall", unshaped, "flat").agrees
    assert verdicts.alignment_finding(0.1, 0.47, 0.51, 0.50, 2, unshaped).agrees
    at_edge = verdicts.LayerShaping(moved=0.19, initial_scatter=0.19)
    assert verdicts.alignment_finding(0.48, 0.47, 0.51, 0.50, 2, at_edge).agrees is False


def test_sweep_pairs_with_a_flagged_run_or_source_are_not_counted(tmp_path):
    """A sweep's scatter verdict counts a pair only when its transfer run, its scratch pair and the
    pre-training run it came from are all unflagged; each flagged run is listed as excluded once."""
    from rltx import store
    from rltx.reproduce.pipelines import Context
    from rltx.sweep.panels import counted_pairs
    from rltx.sweep.plan import Plan, PlannedRun
    health = {"s0-pretrain": "ok", "s1-pretrain": "diverged: loss 9 at step 5, 4.0x its initial 2.3",
              "s0-a": "ok", "s0-a-scratch": "ok", "s0-b": "ok", "s0-b-scratch": "collapsed: constant outputs from step 3",
              "s1-a": "ok", "s1-a-scratch": "ok"}
    for name, flag in health.items():
        (tmp_path / name).mkdir()
        store.write_run_record(tmp_path / name, store.RunRecord("recipe: x", {}, {}, status="completed", health=flag))
    runs = [PlannedRun(f"g/s{s}-pretrain", "pretrain", (), (str(tmp_path / f"s{s}-pretrain"),), (), 0) for s in (0, 1)]
    runs += [PlannedRun(f"g/s{s}-{v}", "transfer", (), (str(tmp_path / f"s{s}-{v}"), str(tmp_path / f"s{s}-{v}-scratch")),
                        (f"g/s{s}-pretrain",), 2) for s, v in ((0, "a"), (0, "b"), (1, "a"))]
    context = Context(None, None, tmp_path, None, print)
    pairs = [str(tmp_path / name) for name in ("s1-a", "s0-b", "s0-a")]
    np.testing.assert_array_equal(counted_pairs(Plan("r", str(tmp_path), (), tuple(runs)), pairs, context.counts),
                                  [False, False, True])
    assert sorted(line.split(":")[0] for line in context.excluded) == [str(tmp_path / "s0-b-scratch"),
                                                                      str(tmp_path / "s1-pretrain")]


def test_scatter_finding_calls_a_direction_exactly_when_a_one_sample_t_test_over_the_groups_rejects():
    """Oracle: scipy.stats' one-sample t test (ttest_1samp) of the groups' paired differences at the
    rule's 5% level decides every call; the dots below x = y are counted by hand."""
    from scipy import stats
    generator = np.random.default_rng(5)
    for _ in range(300):
        n = int(generator.integers(2, 13))
        scratch = generator.uniform(0.2, 0.8, n)  # groups differ widely; the pairing removes it
        pretrained = scratch + generator.normal(generator.uniform(-0.03, 0.03), generator.uniform(0.005, 0.05), n)
        finding = verdicts.scatter_finding("real labels downstream, all layers transferred", pretrained, scratch)
        rejected = stats.ttest_1samp(pretrained - scratch, 0).pvalue < verdicts.SIGNIFICANCE
        called = "positive transfer" in finding.text or "negative transfer" in finding.text
        assert called == rejected and finding.agrees is None, finding.text
        if rejected:
            wanted = "positive" if np.mean(pretrained - scratch) > 0 else "negative"
            assert f"{wanted} transfer" in finding.text
        assert f"in {int(np.sum(pretrained > scratch))} of {n} groups" in finding.text
        assert f"{np.mean(pretrained - scratch):+.3f}" in finding.text


def test_scatter_finding_of_one_group_or_none_is_not_resolved():
    one = verdicts.scatter_finding("real labels downstream, 1 layer transferred", [0.6], [0.5])
    assert not one.resolved and one.unresolved_because == verdicts.ONE_GROUP and "in 1 of 1 groups" in one.text
    none = verdicts.scatter_finding("real labels downstream, 1 layer transferred", [], [])
    assert not none.resolved and none.unresolved_because == verdicts.NO_HEALTHY_RUN


def test_sweep_findings_split_the_panels_and_average_each_groups_counted_pairs():
    """One finding per downstream labels x transfer depth, each over one dot per group (the mean of its
    counted pairs), as the Fig. 12-15 panels, then the real-label panels' test accuracy (their CENTER
    row); an uncounted pair moves neither its dot nor the count."""
    from rltx import store
    from rltx.reproduce.pipelines import scatter_findings
    #            group, labels,  depth, pretrained, scratch, counted
    pairs = [(0, "real", "1", 0.60, 0.50, True), (0, "real", "1", 0.70, 0.50, True),   # dot +0.15
             (1, "real", "1", 0.40, 0.45, True), (1, "real", "1", 0.10, 0.90, False),  # dot -0.05
             (2, "real", "all", 0.55, 0.50, True), (3, "random", "all", 0.30, 0.20, True)]
    arrays = {"pairs/group": np.array([p[0] for p in pairs]),
              "pairs/labels_downstream": store.string_array(p[1] for p in pairs),
              "pairs/transfer_layers": store.string_array(p[2] for p in pairs),
              "pairs/pretrained_train_auc": np.array([p[3] for p in pairs]),
              "pairs/scratch_train_auc": np.array([p[4] for p in pairs]),
              "pairs/pretrained_test_auc": np.array([p[3] for p in pairs]) - 0.1,  # test dots +0.15 - 0.1, -0.05 - 0.1
              "pairs/scratch_test_auc": np.array([p[4] for p in pairs]) - 0.1 + np.array([0.1, 0.1, 0.0, 0.0, 0.0, 0.0])}
    findings = scatter_findings(arrays, np.array([p[5] for p in pairs]))
    assert [f.text.split(":")[0] for f in findings] == ["real labels downstream, 1 layer transferred",
                                                       "real labels downstream, all layers transferred",
                                                       "random labels downstream, all layers transferred",
                                                       "real labels downstream, 1 layer transferred, test accuracy",
                                                       "real labels downstream, all layers transferred, test accuracy"]
    assert "in 1 of 2 groups" in findings[0].text and "+0.050 +- 0.100" in findings[0].text
    assert "in 1 of 1 groups" in findings[1].text and not findings[1].resolved
    assert "pre-trained ahead (below x = y) in 1 of 2 groups" in findings[3].text
    assert "test-accuracy AUC difference +0.000 +- 0.050" in findings[3].text  # dots +0.05 and -0.05


def test_fit_finding_states_the_range_reached_and_chance():
    finding = verdicts.fit_finding(np.array([0.93, 0.41, 0.99]), np.array([2, 100, 10]))
    assert "0.41-0.99 over 3 runs" in finding.text and "chance 1/classes: 0.01-0.50" in finding.text


def test_the_switch_finding_names_the_lowest_point_after_the_switch_and_the_end():
    # Fig. 24's shape by construction: flat 0.22 before, a dip to 0.11 at step 16, a partial recovery
    after = np.array([0.217, 0.186, 0.109, 0.142, 0.157])
    line = verdicts.switch_finding("dense_0", 0.222, after, np.array([1, 4, 16, 64, 320]), "random labels").line()
    assert line == ("dense_0: mean fraction of examples activating a neuron 0.222 at the switch, lowest 0.109 "
                    "16 steps into 'random labels' (of 320), 0.157 at its end")
