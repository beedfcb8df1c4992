"""The paper's rules against what Appendix A says, and the sampling against its distribution."""
import numpy as np
import pytest
from scipy import stats

from rltx import hyperrule


@pytest.mark.parametrize("total", [9, 10, 7813, 10000])
def test_learning_rate_divided_by_three_after_one_and_two_thirds(total):
    # A.3: "divide it by 3 two times ... after 1/3 x total_steps and 2/3 x total_steps steps".
    first, second = int(np.floor(total / 3)), int(np.floor(2 * total / 3))
    assert hyperrule.learning_rate_at(0, 0.3, total) == 0.3
    assert hyperrule.learning_rate_at(first - 1, 0.3, total) == 0.3
    assert hyperrule.learning_rate_at(first, 0.3, total) == pytest.approx(0.1)
    assert hyperrule.learning_rate_at(second - 1, 0.3, total) == pytest.approx(0.1)
    assert hyperrule.learning_rate_at(second, 0.3, total) == pytest.approx(0.1 / 3)
    assert hyperrule.learning_rate_at(total - 1, 0.3, total) == pytest.approx(0.1 / 3)


def test_epochs_to_steps():
    # A.6: 40 epochs of 50000 examples at batch 256.
    assert hyperrule.total_steps_for_epochs(40, 50000, 256) == 7813
    assert hyperrule.total_steps_for_epochs(1, 256, 256) == 1


def test_upstream_and_downstream_disjoint_and_uniform():
    num_available, trials = 100, 4000
    up_counts, down_counts = np.zeros(num_available), np.zeros(num_available)
    for seed in range(trials):
        upstream = hyperrule.sample_upstream(num_available, 30, seed)
        downstream = hyperrule.sample_remainder(num_available, upstream, 20, seed, hyperrule.STREAM_DOWNSTREAM)
        assert len(upstream) == 30 == len(np.unique(upstream)) and len(downstream) == 20
        assert len(np.intersect1d(upstream, downstream)) == 0
        up_counts[upstream] += 1
        down_counts[downstream] += 1
    # Uniform sampling: every example lands upstream with probability 0.3, downstream 0.2.
    assert stats.chisquare(up_counts).pvalue > 1e-3 and stats.chisquare(down_counts).pvalue > 1e-3
    with pytest.raises(ValueError):
        hyperrule.sample_upstream(10, 11, 0)
    with pytest.raises(ValueError):
        hyperrule.sample_remainder(10, np.arange(6), 5, 0, hyperrule.STREAM_DOWNSTREAM)


def test_rescale_factor_matches_the_initial_norm():
    rng = np.random.default_rng(0)
    initial, trained = [rng.normal(size=(3, 3, 3, 8)), np.zeros(8)], [rng.normal(size=(3, 3, 3, 8)) * 7, rng.normal(size=8)]
    for norm, order in (("l2", 2), ("l1", 1)):
        factor = hyperrule.rescale_factor(initial, trained, norm)
        flat = lambda arrays: np.concatenate([a.ravel() for a in arrays])  # noqa: E731
        assert factor > 0
        assert np.linalg.norm(factor * flat(trained), ord=order) == pytest.approx(np.linalg.norm(flat(initial), ord=order))
    assert hyperrule.rescale_factor(initial, trained, "none") == 1.0


def test_random_labels_uniform_and_seeded():
    labels = hyperrule.random_labels(50000, 10, seed=3)
    assert labels.min() == 0 and labels.max() == 9
    assert stats.chisquare(np.bincount(labels, minlength=10)).pvalue > 1e-3
    np.testing.assert_array_equal(labels, hyperrule.random_labels(50000, 10, seed=3))
    assert not np.array_equal(labels, hyperrule.random_labels(50000, 10, seed=4))
    assert not np.array_equal(labels[:100], hyperrule.random_labels(100, 10, seed=3, salt=1))


def test_batch_order_is_a_function_of_the_step():
    whole = hyperrule.batch_order(50, 8, seed=1, first_step=0, num_steps=25)
    np.testing.assert_array_equal(whole[7:12], hyperrule.batch_order(50, 8, 1, first_step=7, num_steps=5))
    flat = whole.reshape(-1)
    for epoch in range(4):  # 25 * 8 = 200 = four full epochs, each a permutation
        assert sorted(flat[epoch * 50:(epoch + 1) * 50]) == list(range(50))
    assert not np.array_equal(flat[:50], flat[50:100])


def test_eval_steps_dense_early_with_both_ends():
    steps = hyperrule.eval_steps(10000, 50)
    assert steps[0] == 0 and steps[-1] == 10000
    assert len(steps) == 50
    assert np.sum(steps < 1000) > np.sum(steps >= 9000)
    assert list(hyperrule.eval_steps(3, 50)) == [0, 1, 2, 3]


def test_eval_steps_give_the_requested_count_for_short_runs_too():
    """Issue 14: 6 points over 150 steps gave 5 (0, 1, 12, 75, 150). Over many (points, steps)
    pairs: exactly the requested count of distinct steps, or every step when the run is shorter; both ends; at least as many points in the first half of the run as in the second."""
    for total in (1, 2, 5, 10, 37, 100, 150, 300, 1000, 4321, 100000):
        for points in (2, 3, 6, 8, 11, 20, 50, 200):
            steps = hyperrule.eval_steps(total, points)
            wanted = min(points, total + 1)
            assert len(steps) == wanted and len(set(steps)) == len(steps), (total, points)
            assert steps[0] == 0 and steps[-1] == total and np.all(np.diff(steps) > 0)
            assert np.sum(steps < total / 2) >= np.sum(steps > total / 2), (total, points)


def test_checkpoint_steps():
    assert list(hyperrule.checkpoint_steps(10, 0)) == [0, 10]
    assert list(hyperrule.checkpoint_steps(10, 4, (1, 99))) == [0, 1, 4, 8, 10]


def test_test_subset_is_the_whole_split_or_a_uniform_draw_across_classes():
    """A test split stored sorted by class (1000 examples of each of 10 classes): a subset of 1000 holds
    each class about 100 times (hypergeometric, sd 9.5; the first 1000 rows would all be class 0)."""
    np.testing.assert_array_equal(hyperrule.test_subset(500, 500), np.arange(500))
    subset = hyperrule.test_subset(10000, 1000)
    assert len(np.unique(subset)) == 1000 and np.all(np.diff(subset) > 0) and subset.max() < 10000
    counts = np.bincount(subset // 1000, minlength=10)
    assert counts.min() > 60 and counts.max() < 140, counts
    np.testing.assert_array_equal(subset, hyperrule.test_subset(10000, 1000))
    with pytest.raises(ValueError):
        hyperrule.test_subset(10, 11)


def test_every_seed_is_scored_on_the_same_test_examples():
    from rltx.config import make_recipe
    from rltx.data.files import ArraySource
    from rltx.tasks import held_out
    x = np.zeros((1000, 4, 4, 3), np.uint8)
    labels = np.repeat(np.arange(10), 100)  # sorted by class, as a user's npz may be
    source = ArraySource("sorted", x, labels, x, labels, 10)
    chosen = [held_out(make_recipe({"dataset": "npz", "data_path": "f.npz", "seed": seed, "num_examples_test": 200,
                                    "architecture": "simple_cnn", "num_examples_upstream": 300, "learning_rate": 0.01,
                                    "total_steps": 10}),
                       source, np.arange(300))[0] for seed in (0, 1)]
    np.testing.assert_array_equal(*chosen)
    assert set(labels[chosen[0]]) == set(range(10))


def test_fresh_layers_seed_is_a_fixed_draw_apart_from_the_run_seed():
    """A.4: fresh layers are a new draw; their seed is a function of the run's seed alone (a transfer and its
    scratch pair share it), never the seed itself, and distinct seeds give distinct ones."""
    seeds = range(200)
    fresh = [hyperrule.fresh_layers_seed(seed) for seed in seeds]
    assert fresh == [hyperrule.fresh_layers_seed(seed) for seed in seeds]
    assert all(value != seed and 0 <= value < 2 ** 31 for seed, value in zip(seeds, fresh))
    assert len(set(fresh)) == len(fresh) and not set(fresh) & set(seeds)
