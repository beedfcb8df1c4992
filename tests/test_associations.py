"""Which sampled hyperparameters go with a sweep's transfer (rltx.analysis.associations), checked
against Holm's procedure worked by hand, the family-wise error rate it promises under independent
null p-values (closed form), Spearman's rho as the Pearson correlation of ranks and its invariance
under increasing transforms, and a planted relation carried through the sweep verdict."""
import numpy as np
import pytest
from scipy import stats

from rltx.analysis.associations import FAMILY_LEVEL, holm_adjusted, rank_associations


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
    assert found["num_units"].rho == pytest.approx(by_ranks)
    logged = rank_associations(differences, {"num_units": list(np.log(units))})[0]
    assert logged.rho == pytest.approx(found["num_units"].rho) and logged.p == pytest.approx(found["num_units"].p)
    flipped = rank_associations(-differences, {"num_units": list(units)})[0]
    assert flipped.rho == pytest.approx(-found["num_units"].rho)
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
    assert found.rho == pytest.approx(observed)
    assert found.p == pytest.approx(np.mean(np.abs(rhos) >= abs(observed) - 1e-12))
    assert found.p > stats.spearmanr(x, y).pvalue  # the t approximation's 0.0048 is too small here


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


def test_only_numbers_that_vary_are_tested_and_too_few_groups_test_nothing():
    values = {"init": ["he", "glorot", "he"], "epochs": [5, 5, 5], "flag": [True, False, True], "lr": [0.1, 0.2, 0.3]}
    assert [a.key for a in rank_associations([0.1, 0.3, 0.2], values)] == ["lr"]
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
    groups = tuple({"name": f"simple_cnn/g{g:02d}", "architecture": "simple_cnn",
                    "values": {"num_units": u, "learning_rate": r, "init": "he"}} for g, (u, r) in enumerate(zip(units, rates)))
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
    assert [store.text(k) for k in stored["key"]] == ["learning_rate", "num_units"]
    assert stored["spearman"][1] == pytest.approx(1.0) and list(stored["groups"]) == [6, 6]
