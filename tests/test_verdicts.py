"""The verdict rules of `rltx reproduce` against inputs whose answer is known by construction."""
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


def test_transfer_direction_false_alarm_rate_matches_the_two_standard_error_rule():
    """Equal means: 'positive' or 'negative' should be called about 5% of the time (|t| > 2 with
    11-22 degrees of freedom: 5-7%); 2000 trials put the rate within 2.5-9.5%."""
    generator = np.random.default_rng(1)
    calls = [verdicts.transfer_direction(generator.normal(0, 1, 12), generator.normal(0, 1, 12))[0]
             for _ in range(2000)]
    rate = np.mean([c != "no clear difference" for c in calls])
    assert 0.025 < rate < 0.095


def test_one_seed_decides_by_sign_without_error_bar():
    direction, difference, error = verdicts.transfer_direction([0.6], [0.5])
    assert direction == "positive" and np.isnan(error)
    finding = verdicts.transfer_finding("pretrained", "from scratch", [0.6], [0.5], "positive")
    assert finding.agrees and "no error bar" in finding.text


@pytest.mark.parametrize("curve, shape", [
    (lambda s: s * np.exp(-s), "rise-then-fall"),
    (lambda s: np.sqrt(s), "rising"),
    (lambda s: np.exp(-s), "falling"),
    (lambda s: np.ones_like(s), "flat"),
])
def test_f_sigma_shapes_of_known_curves(curve, shape):
    sigma = np.sqrt(np.linspace(0.1, 3.0, 30))[::-1]  # eigenvalue order: largest first
    assert verdicts.f_sigma_shape(sigma, curve(sigma)) == shape


def test_table_ordering():
    better = verdicts.table_finding(["{}", "{1}", "{1,2}"], np.array([0.3, 0.35, 0.4]), 100, "better")
    assert better.agrees and "all constructed sets beat none" in better.text
    worse = verdicts.table_finding(["{}", "{1}"], np.array([0.3, 0.2]), 100, "better")
    assert worse.agrees is False and "DIFFERS" in worse.line()


def test_alignment_ratio_against_expectation():
    finding = verdicts.alignment_finding(0.2, 4.4, 0.21, 0.2, 5)
    assert finding.agrees and "22.0x lower" in finding.text
    assert verdicts.alignment_finding(0.2, 4.4, 0.21, 0.2, 30).agrees is False
