"""Which sampled hyperparameters go with a sweep's transfer (rltx.analysis.associations), checked
against Holm's procedure worked by hand, the family-wise error rate it promises under independent
null p-values (closed form), Spearman's rho as the Pearson correlation of ranks and its invariance
under increasing transforms, the categories' permutation test against the exact Mann-Whitney test
and against every assignment enumerated, and a planted relation carried through the sweep verdict."""
import numpy as np
import pytest
import yaml
from scipy import stats

from rltx.analysis.associations import FAMILY_LEVEL, holm_adjusted, kruskal_test, rank_associations


def test_holm_adjusted_p_values_match_the_procedure_worked_by_hand():
    """p = 0.01, 0.04, 0.03, 0.005 (m = 4): sorted 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06,
    0.04 x 1 = 0.04 -> 0.06 (never below the step before); back in the input order."""
    np.testing.assert_allclose(holm_adjusted([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm_adjusted([0.5, 0.9]), [1.0, 1.0])  # capped at 1
    assert holm_adjusted([]).shape == (0,)


def test_holm_names_any_value_by_accident_as_often_as_its_first_step_promises():
    """Under independent uniform p-values Holm rejects anything exactly when the smallest p is below
    alpha / m, which happens with probability 1 - (1 - alpha / m)^m (0.0489 for m = 8)."""
    generator = np.random.default_rng(0)
    families, count = 20000, 8
    anything = np.mean([holm_adjusted(generator.uniform(size=count)).min() < FAMILY_LEVEL for _ in range(families)])
    expected = 1 - (1 - FAMILY_LEVEL / count) ** count
    assert abs(anything - expected) < 4 * np.sqrt(expected * (1 - expected) / families)


def test_rho_is_the_correlation_of_ranks_and_ignores_increasing_transforms():
    generator = np.random.default_rng(1)
    units = generator.choice([64, 128, 256, 512, 1024], size=20)
    rate = np.exp(generator.uniform(np.log(0.008), np.log(0.0125), size=20))
    differences = 0.01 * np.log(units) + generator.normal(0, 0.01, size=20)
    found = {a.key: a for a in rank_associations(differences, {"num_units": list(units), "learning_rate": list(rate)})}
    by_ranks = np.corrcoef(stats.rankdata(units), stats.rankdata(differences))[0, 1]
    assert found["num_units"].statistic == pytest.approx(by_ranks)
    logged = rank_associations(differences, {"num_units": list(np.log(units))})[0]
    assert logged.statistic == pytest.approx(found["num_units"].statistic) and logged.p == pytest.approx(found["num_units"].p)
    flipped = rank_associations(-differences, {"num_units": list(units)})[0]
    assert flipped.statistic == pytest.approx(-found["num_units"].statistic)
    assert found["num_units"].goes_with and not found["learning_rate"].goes_with
    assert found["num_units"].holm_p == pytest.approx(min(1, 2 * found["num_units"].p))  # the smaller of m = 2


def test_permutation_p_is_the_share_of_orderings_at_least_as_extreme():
    """Up to 8 groups the p-value is exact: the share of all n! re-pairings whose |rho| reaches the
    observed one (Spearman's null law is symmetric), enumerated here by itertools."""
    import itertools
    x, y = np.array([1.0, 2, 3, 4, 5, 6]), np.array([0.1, 0.3, 0.2, 0.4, 0.6, 0.5])
    [found] = rank_associations(y, {"x": list(x)})
    observed = np.corrcoef(stats.rankdata(x), stats.rankdata(y))[0, 1]
    rhos = [np.corrcoef(order, stats.rankdata(y))[0, 1] for order in itertools.permutations(stats.rankdata(x))]
    assert found.statistic == pytest.approx(observed)
    assert found.p == pytest.approx(np.mean(np.abs(rhos) >= abs(observed) - 1e-12))
    assert found.p > stats.spearmanr(x, y).pvalue  # the t approximation's 0.0048 is too small here


def test_two_categories_give_the_exact_mann_whitney_p_value():
    """Oracle: with two categories and no ties the Kruskal-Wallis H is a function of |U - n1 n2 / 2|,
    so its permutation p is the exact two-sided Mann-Whitney p (scipy, by U's null distribution);
    8 and 12 groups are enumerated exactly (56-924 assignments). H is scipy's kruskal statistic."""
    generator = np.random.default_rng(3)
    for count, first_size in ((8, 4), (12, 6), (8, 3), (12, 4)):
        y = generator.normal(size=count) + np.r_[np.zeros(first_size), np.full(count - first_size, 0.8)]
        categories = ["he"] * first_size + ["orthogonal"] * (count - first_size)
        order = generator.permutation(count)
        y, categories = y[order], [categories[i] for i in order]
        h, p, highest = kruskal_test(categories, y)
        first = y[[c == "he" for c in categories]]
        second = y[[c == "orthogonal" for c in categories]]
        assert p == pytest.approx(stats.mannwhitneyu(first, second, method="exact").pvalue)
        assert h == pytest.approx(stats.kruskal(first, second).statistic)
        assert highest == ("orthogonal" if np.mean(stats.rankdata(y)[[c == "orthogonal" for c in categories]])
                           > (count + 1) / 2 else "he")


def test_beyond_the_enumerable_the_shuffled_p_value_is_the_exact_one_within_its_monte_carlo_error():
    """20 groups, 10 and 10 (184756 assignments > 40319): seeded shuffles estimate the exact Mann-Whitney
    p within 4 of its binomial standard errors; every difference equal tests nothing (p 1)."""
    generator = np.random.default_rng(11)
    categories = ["he", "orthogonal"] * 10
    y = generator.normal(size=20) + 0.5 * np.array([c == "orthogonal" for c in categories])
    _, p, _ = kruskal_test(categories, y)
    exact = stats.mannwhitneyu(y[0::2], y[1::2], method="exact").pvalue
    assert abs(p - exact) < 4 * np.sqrt(exact * (1 - exact) / 40319) + 1 / 40320
    assert kruskal_test(categories, np.zeros(20))[:2] == (0.0, 1.0)


def test_three_categories_with_ties_give_the_share_of_assignments_at_least_as_extreme():
    """Oracle: every assignment of the categories to 7 groups (7! / (2! 2! 3!) = 210), each H
    computed by scipy.stats.kruskal (tie-corrected): p is the share with H at least the observed."""
    import itertools
    y = np.array([0.30, 0.10, 0.30, 0.25, 0.05, 0.40, 0.10])  # two ties
    categories = ["a", "b", "a", "c", "b", "c", "c"]
    h, p, highest = kruskal_test(categories, y)

    def kruskal_h(assignment):
        return stats.kruskal(*(y[[c == name for c in assignment]] for name in "abc")).statistic

    assignments = set(itertools.permutations(categories))
    assert len(assignments) == 210
    every = np.array([kruskal_h(a) for a in assignments])
    assert h == pytest.approx(kruskal_h(categories))
    assert p == pytest.approx(np.mean(every >= h - 1e-12))
    assert highest == "a"  # ranks 5.5, 5.5 vs b 2.5, 1 and c 4, 7, 2.5


def test_a_planted_category_is_named_and_unrelated_categories_rarely():
    """Orthogonal groups 0.05 ahead (noise sd 0.02, 10 groups): named, with orthogonal highest; the
    same draws with the effect removed name a category in at most the 5 % Holm promises (300 tries,
    3 binomial sd of slack)."""
    generator = np.random.default_rng(7)
    init = ["he", "orthogonal"] * 5
    planted = generator.normal(0, 0.02, 10) + 0.05 * np.array([c == "orthogonal" for c in init])
    [found] = [a for a in rank_associations(planted, {"init_algorithm": init, "lr": list(generator.uniform(size=10))})
               if a.categorical]
    assert found.goes_with and found.highest == "orthogonal"
    named = 0
    for _ in range(300):
        values = {"init_algorithm": list(generator.permutation(init)), "bias": list(generator.integers(0, 2, 10) > 0)}
        named += any(a.goes_with for a in rank_associations(generator.normal(size=10), values))
    assert named / 300 <= FAMILY_LEVEL + 3 * np.sqrt(FAMILY_LEVEL * (1 - FAMILY_LEVEL) / 300)


@pytest.mark.parametrize("groups", [3, 4, 6])
def test_unrelated_values_are_named_at_most_as_often_as_holm_promises(groups):
    """Eight values drawn independently of the differences: a panel names any of them in at most 5 %
    of the tries (Holm over exact permutation p-values; the t approximation named one in 96 % of
    the tries with 3 groups, 50 % with 4 and 12 % with 6). 400 tries, 3 binomial sd of slack."""
    generator = np.random.default_rng(groups)
    named = 0
    for _ in range(400):
        values = {f"v{k}": list(generator.normal(size=groups)) for k in range(8)}
        named += any(a.goes_with for a in rank_associations(generator.normal(size=groups), values))
    assert named / 400 <= FAMILY_LEVEL + 3 * np.sqrt(FAMILY_LEVEL * (1 - FAMILY_LEVEL) / 400)


def test_only_values_that_vary_are_tested_and_too_few_groups_test_nothing():
    values = {"init": ["he", "glorot", "he"], "epochs": [5, 5, 5], "flag": [True, False, True], "lr": [0.1, 0.2, 0.3],
              "unique": ["a", "b", "c"], "mixed": ["he", 2, "he"], "missing": [None, 1, 2], "same": ["he"] * 3,
              "names and flags": ["True", True, "True"]}
    found = rank_associations([0.1, 0.3, 0.2], values)
    assert [(a.key, a.categorical) for a in found] == [("init", True), ("flag", True), ("lr", False)]
    assert rank_associations([0.1, 0.3], {"lr": [0.1, 0.2]}) == []
    assert rank_associations([0.2, 0.2, 0.2], {"lr": [0.1, 0.2, 0.3]}) == []  # no spread to rank
    [kept] = rank_associations([0.1, np.nan, 0.3, 0.2], {"lr": [0.1, 0.2, 0.3, 0.4]})  # a NaN group left out
    assert kept.groups == 3 and np.isfinite(kept.p)


def test_a_planted_relation_reaches_the_sweep_verdict_and_associations_file(tmp_path):
    """Six groups whose pairs' AUC difference increases with num_units and is unrelated to the
    learning rate: the panel's finding says it rises with num_units (rho exactly 1: a monotone
    relation), the stored file holds every tested value, and uncounted pairs are left out."""
    from rltx import store
    from rltx.analysis.results import read_result
    from rltx.reproduce.pipelines import Context, association_findings
    from rltx.sweep.plan import Plan, PlannedRun
    units, rates = [64, 1024, 128, 512, 256, 96], [0.01, 0.03, 0.02, 0.01, 0.03, 0.02]
    drawn = [{"num_units": u, "learning_rate": r, "init": ("he", "orthogonal")[g % 2]} for g, (u, r) in enumerate(zip(units, rates))]
    groups = tuple({"name": f"simple_cnn/g{g:02d}", "architecture": "simple_cnn", "values": values,
                    "yaml": yaml.safe_dump(values)} for g, values in enumerate(drawn))  # trained as drawn
    runs, pairs = [], []
    for g, u in enumerate(units):
        for seed in (0, 1):
            target = tmp_path / f"g{g:02d}" / f"s{seed}-layers_all-real"
            runs.append(PlannedRun(f"simple_cnn/g{g:02d}/s{seed}-layers_all-real", "transfer", (),
                                   (str(target), f"{target}-scratch"), (), 2))
            pairs.append((str(target), 0.5 + 0.001 * u + 0.0001 * seed, 0.5))
    pairs.append((str(tmp_path / "g00" / "s9-layers_all-real"), 9.0, 0.0))  # an uncounted pair, far off
    runs.append(PlannedRun("simple_cnn/g00/s9-layers_all-real", "transfer", (), (pairs[-1][0], "x"), (), 2))
    arrays = {"pairs/transfer_run": store.string_array(p[0] for p in pairs),
              "pairs/labels_downstream": store.string_array(["real"] * len(pairs)),
              "pairs/transfer_layers": store.string_array(["all"] * len(pairs)),
              "pairs/pretrained_train_auc": np.array([p[1] for p in pairs]),
              "pairs/scratch_train_auc": np.array([p[2] for p in pairs])}
    counted = np.array([True] * (len(pairs) - 1) + [False])
    context = Context(None, None, tmp_path, None, print)
    [finding] = association_findings(context, arrays, counted, Plan("r", str(tmp_path), groups, tuple(runs)))
    assert finding.line().startswith("real labels downstream, all layers transferred, simple_cnn groups: over 6 "
                                     "groups, the AUC difference rises with num_units (Spearman +1.00, p 0.0028")
    # exact: 2 of the 720 orderings are as extreme as a perfect one (rho = +-1)
    stored = read_result(tmp_path / "associations.h5").arrays
    assert [store.text(k) for k in stored["key"]] == ["init", "learning_rate", "num_units"]
    assert stored["spearman"][2] == pytest.approx(1.0) and list(stored["groups"]) == [6, 6, 6]
    assert np.isnan(stored["spearman"][0]) and np.isfinite(stored["kruskal_h"][0]) and np.isnan(stored["kruskal_h"][2])
    assert [store.text(h) for h in stored["highest"]] == ["orthogonal", "", ""]  # groups 1, 3, 5: 1024, 512, 96 units


def test_a_category_s_line_names_the_one_ranked_highest():
    from rltx.analysis.associations import Association
    from rltx.reproduce.verdicts import association_finding
    found = Association("init_algorithm", 6.82, 0.004, 0.012, 10, highest="orthogonal")
    weak = Association("init_algorithm", 0.27, 0.6, 1.0, 10, highest="he")
    number = Association("learning_rate", -0.3, 0.4, 0.8, 10)
    assert association_finding("panel", [found, number]).text == (
        "panel: over 10 groups, the AUC difference differs by init_algorithm, highest with orthogonal (Kruskal-Wallis H 6.82, "
        "p 0.004, Holm 0.012) (Holm 5 % over 2 sampled values)")
    assert association_finding("panel", [weak, number]).text.endswith(
        "(strongest: learning_rate, Spearman -0.30, p 0.4, Holm 0.8)")
    weak = Association("init_algorithm", 2.1, 0.15, 0.3, 10, highest="he")
    assert association_finding("panel", [weak, number]).text.endswith(
        "(strongest: init_algorithm (highest he), Kruskal-Wallis H 2.10, p 0.15, Holm 0.3)")
