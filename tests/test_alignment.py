"""Oracles for rltx.analysis.alignment (Maennel et al. 2020, Sec. 2, App. A.6-A.8, D.1-D.4).

The misalignment closed form (Prop. 2.7) is checked against a direct numerical minimisation of
Definition 2, whose "aligned with A" set is built from A by Lagrange-interpolation projectors
(independent of the module's eigen-decomposition and grouping).
"""
import numpy as np
import pytest
import scipy.optimize
from hypothesis import given, settings
from hypothesis import strategies as st

from rltx.analysis.alignment import (
    Eigenspaces, aligned_eigenvectors, eigen_stability, eigenspaces, isotropic_sampling_spread, misalignment,
    misalignment_in_basis, random_orthonormal_basis, shape_change, transfer_function,
)


def orthogonal(d, rng):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def spd(d, rng, spread=1.0):
    """A generic SPD matrix (no structure relative to any basis)."""
    g = rng.standard_normal((d, d)) * spread
    return g @ g.T + 0.3 * np.eye(d)


def with_spectrum(u, values):
    return u @ np.diag(values) @ u.T


EPS = np.finfo(np.float64).eps


def noise_floor(b) -> float:
    """Absolute round-off bound of misalignment(., B), whose exact value is a sum of d terms
    sqrt(tr(B|V) tr(B^{-1}|V)) that add up to about d, minus d.

    The Cholesky factor of B is exact for B + E with ||E|| <= c d eps ||B|| (Higham, Thm. 10.3);
    tr(B^{-1}|V) then carries a relative error <= kappa(B) d eps, so each term does too, and the sum
    of terms near d an absolute error <= d^2 kappa(B) eps. Any bug this suite guards against (a
    wrong eigenspace, a wrong inverse) moves the score by > 1e-3."""
    d = b.shape[0]
    return d * d * float(np.linalg.cond(b)) * EPS


def projectors(a, distinct_values):
    """Orthogonal projectors on A's eigenspaces, P_k = prod_{j != k} (A - l_j I) / (l_k - l_j)."""
    d = a.shape[0]
    result = []
    for k, lk in enumerate(distinct_values):
        p = np.eye(d)
        for j, lj in enumerate(distinct_values):
            if j != k:
                p = p @ (a - lj * np.eye(d)) / (lk - lj)
        result.append((p + p.T) / 2)
    return result


def definition_2(a, distinct_values, b, starts=4, seed=0):
    """Def. 2 (Sec. 2.2 Eq. (1), D.4) by numerical minimisation:
    inf over Sigma = sum_k exp(t_k) P_k (i.e. Sigma > 0 aligned with A, Def. 1) of
    tr(Sigma^{-1} B + B^{-1} Sigma) / 2 - d."""
    d = a.shape[0]
    proj = projectors(a, distinct_values)
    b_inverse = np.linalg.inv(b)

    def divergence(t):
        sigma = sum(np.exp(tk) * pk for tk, pk in zip(t, proj))
        return 0.5 * np.trace(np.linalg.inv(sigma) @ b + b_inverse @ sigma) - d

    rng = np.random.default_rng(seed)
    best = np.inf
    for _ in range(starts):
        start = rng.normal(0.0, 2.0, len(proj))
        res = scipy.optimize.minimize(divergence, start, method="BFGS", options={"gtol": 1e-10})
        best = min(best, res.fun)
    return best


# Spectra of A: (distinct eigenvalues, their multiplicities).
SPECTRA = [
    ((3.0, 1.0, 0.4), (1, 1, 1)),
    ((2.0, 1.5, 1.0, 0.5), (1, 1, 1, 1)),
    ((4.0, 1.0), (2, 3)),                    # a 2-D and a 3-D eigenspace
    ((5.0, 2.0, 0.7), (1, 2, 3)),
    ((1.0, 0.25), (3, 1)),
    ((2.0, 1.0, 0.5, 0.2), (1, 1, 2, 2)),
]


def build_a(values, multiplicities, rng):
    spectrum = np.repeat(values, multiplicities)
    u = orthogonal(len(spectrum), rng)
    return with_spectrum(u, spectrum), u, spectrum


# ---------------------------------------------------------------------------------------------- 1

@pytest.mark.parametrize("case", range(len(SPECTRA)))
def test_closed_form_equals_definition_2_minimum(case):
    rng = np.random.default_rng(100 + case)
    values, mult = SPECTRA[case]
    a, _, _ = build_a(values, mult, rng)
    for trial in range(2):
        b = spd(a.shape[0], rng, spread=0.5 + trial)
        closed = misalignment(a, b)
        numeric = definition_2(a, values, b, seed=case)
        assert closed > 1e-3
        assert abs(numeric - closed) <= 1e-6 * closed, (numeric, closed)


def test_closed_form_by_hand_for_a_repeated_eigenspace():
    """Prop. 2.7 with B|V the restriction: tr(B^{-1}|V) is the trace of the restricted inverse,
    not of the inverse of the restriction."""
    rng = np.random.default_rng(5)
    u = orthogonal(5, rng)
    a = with_spectrum(u, [3, 3, 1, 1, 1])
    b = spd(5, rng)
    v1, v2 = u[:, :2], u[:, 2:]
    b_inv = np.linalg.inv(b)
    expected = sum(np.sqrt(np.trace(v.T @ b @ v) * np.trace(v.T @ b_inv @ v)) for v in (v1, v2)) - 5
    # Same quantities, other arithmetic: relative round-off d kappa(B) eps (see noise_floor).
    assert misalignment(a, b) == pytest.approx(expected, abs=noise_floor(b))


# ---------------------------------------------------------------------------------------------- 2

@pytest.mark.parametrize("case", range(len(SPECTRA)))
def test_zero_when_b_is_aligned_with_a(case):
    rng = np.random.default_rng(200 + case)
    values, mult = SPECTRA[case]
    a, _, _ = build_a(values, mult, rng)
    spaces = [basis for basis in eigenspaces(a)]
    assert [s.shape[1] for s in spaces] == list(mult)
    # B: any positive scalar on each eigenspace of A, written in a basis rotated inside each
    # eigenspace (so B's eigenvectors are not those returned by eigh for A).
    blocks = []
    for basis in spaces:
        m = basis.shape[1]
        blocks.append(basis @ orthogonal(m, rng))
    w = np.concatenate(blocks, axis=1)
    scales = np.repeat(np.exp(rng.normal(0, 2, len(mult))), mult)
    b = with_spectrum(w, scales)
    assert abs(misalignment(a, b)) <= noise_floor(b)
    assert misalignment(a, spd(a.shape[0], rng)) > 1e-3


def test_nonscalar_block_on_repeated_eigenspace_is_misaligned():
    """Def. 1: B is aligned with A iff each eigenspace of A lies in one of B's, i.e. B is scalar on
    it. B with a non-scalar SPD block on A's 2-D eigenspace is NOT aligned (Prop. 2.2)."""
    rng = np.random.default_rng(7)
    u = orthogonal(4, rng)
    a = with_spectrum(u, [2.0, 2.0, 1.0, 0.5])
    block = np.array([[3.0, 1.0], [1.0, 2.0]])
    b = u @ np.block([[block, np.zeros((2, 2))], [np.zeros((2, 2)), np.diag([0.7, 5.0])]]) @ u.T
    expected = np.sqrt(np.trace(block) * np.trace(np.linalg.inv(block))) - 2
    assert misalignment(a, b) == pytest.approx(expected, abs=noise_floor(b))
    assert expected > 0.05
    assert definition_2(a, (2.0, 1.0, 0.5), b) == pytest.approx(expected, rel=1e-6)
    # With distinct eigenvalues in that plane, the same B is aligned.
    aligned = u @ np.block([[np.diag([4, 1.0]), np.zeros((2, 2))], [np.zeros((2, 2)), np.diag([0.7, 5.0])]]) @ u.T
    assert abs(misalignment(u @ np.diag([2.0, 1.9, 1.0, 0.5]) @ u.T, aligned)) <= noise_floor(aligned)


# ---------------------------------------------------------------------------------------------- 3

@pytest.mark.parametrize("case", range(len(SPECTRA)))
def test_equivariance_and_scale_invariance(case):
    """Prop. 2.4 (M(UAU^T, UBU^T) = M(A, B), U orthogonal), 2.5 (M(A, cB) = M(A, B)), 2.6 (only A's
    eigenspaces matter)."""
    rng = np.random.default_rng(300 + case)
    values, mult = SPECTRA[case]
    a, u, spectrum = build_a(values, mult, rng)
    b = spd(a.shape[0], rng)
    m = misalignment(a, b)
    rot = orthogonal(a.shape[0], rng)
    assert misalignment(rot @ a @ rot.T, rot @ b @ rot.T) == pytest.approx(m, rel=1e-9)
    for c in (1e-3, 0.37, 42.0):
        assert misalignment(a, c * b) == pytest.approx(m, rel=1e-9)
    relabelled = dict(zip(values, rng.permutation(np.arange(1.0, len(values) + 1))))
    a2 = with_spectrum(u, [relabelled[v] for v in spectrum])
    assert misalignment(a2, b) == pytest.approx(m, rel=1e-9)
    # A changes: M is not a function of B alone.
    assert abs(misalignment(rot @ a @ rot.T, b) - m) > 1e-6


def test_in_basis_equals_misalignment_with_distinct_eigenvalues():
    rng = np.random.default_rng(11)
    for d in (3, 6, 27):
        u = orthogonal(d, rng)
        a = with_spectrum(u, np.linspace(3.0, 0.1, d))
        b = spd(d, rng)
        assert misalignment_in_basis(u, b) == pytest.approx(misalignment(a, b), rel=1e-10)
        assert misalignment_in_basis(u[:, rng.permutation(d)] * rng.choice([-1, 1], d), b) == \
            pytest.approx(misalignment(a, b), rel=1e-10)
        # A.6 by hand, term by term.
        b_inv = np.linalg.inv(b)
        by_hand = sum(np.sqrt((v @ b @ v) * (v @ b_inv @ v)) for v in u.T) - d
        assert misalignment_in_basis(u, b) == pytest.approx(by_hand, rel=1e-10)


def test_figure_2_baseline_random_basis_is_misaligned():
    """B aligned with A's eigenbasis: 0 in that basis, clearly > 0 in a random orthonormal basis."""
    rng = np.random.default_rng(12)
    d = 27
    u = orthogonal(d, rng)
    b = with_spectrum(u, np.exp(rng.normal(0, 1, d)))
    assert abs(misalignment_in_basis(u, b)) <= noise_floor(b)
    assert misalignment_in_basis(random_orthonormal_basis(d, seed=1), b) > 1.0


def test_the_random_basis_does_not_diagonalise_rotated_gaussian_data_of_the_same_seed():
    """Fig. 2's baseline must be independent of the data: rotated Gaussian data of seed s has its covariance
    diagonal in its own rotation (misalignment 0 there); the random basis of the same seed must see it misaligned
    like any other (a numpy default_rng(s) basis was that very rotation for s = 0)."""
    from rltx.data.gaussian import GaussianSource
    for seed in range(3):
        data = GaussianSource(np.geomspace(10.0, 0.1, 27), num_train=4, num_test=4, seed=seed, rotate=True)
        assert abs(misalignment_in_basis(data.rotation, data.covariance)) <= noise_floor(data.covariance)
        assert misalignment_in_basis(random_orthonormal_basis(27, seed), data.covariance) > 1.0


def test_random_orthonormal_basis_is_haar():
    q = random_orthonormal_basis(7, seed=3)
    assert q.shape == (7, 7)
    np.testing.assert_allclose(q.T @ q, np.eye(7), atol=1e-12)
    np.testing.assert_array_equal(q, random_orthonormal_basis(7, seed=3))
    assert not np.allclose(q, random_orthonormal_basis(7, seed=4))
    # Haar: E[Q] = 0 (without the sign fix, Q[0, 0] has a fixed sign) and E[Q_ij^2] = 1/d.
    draws = np.array([random_orthonormal_basis(3, seed=s) for s in range(3000)])
    assert np.max(np.abs(draws.mean(axis=0))) < 0.05
    np.testing.assert_allclose((draws ** 2).mean(axis=0), 1 / 3, atol=0.03)


@pytest.mark.parametrize("d, n", [(27, 256), (27, 768), (30, 2048), (9, 64)])
def test_isotropic_sampling_spread_against_monte_carlo(d, n):
    """Oracle: the root-mean-square shape_change between I_d and the covariance (np.cov) of n filters
    drawn from N(0, I_d), over 400 draws, is the closed form within 5 % (its first-order error is ~d / n)."""
    rng = np.random.default_rng(d * n)
    changes = [shape_change(np.eye(d), np.cov(w, bias=True)) for w in rng.standard_normal((400, d, n))]
    assert np.sqrt(np.mean(np.square(changes))) == pytest.approx(isotropic_sampling_spread(d, n), rel=0.05)


def test_shape_change_ignores_scale_and_rotation_of_both():
    """A uniform rescaling of the filters is no change; conjugating both matrices by one rotation keeps
    the change (Frobenius norms are rotation invariant); a different shape is a change."""
    rng = np.random.default_rng(5)
    a, b, q = spd(6, rng), spd(6, rng), orthogonal(6, rng)
    assert shape_change(a, 7.5 * a) == pytest.approx(0.0, abs=1e-12)
    assert shape_change(q @ a @ q.T, q @ b @ q.T) == pytest.approx(shape_change(a, b), rel=1e-10)
    assert shape_change(a, b) > 0.1


# ---------------------------------------------------------------------------------------------- 4

SPECTRUM_CHOICES = st.lists(st.sampled_from([0.1, 0.5, 1.0, 2.0, 7.0]), min_size=2, max_size=6)


@settings(max_examples=40, deadline=None)
@given(spectrum=SPECTRUM_CHOICES, seed=st.integers(0, 2 ** 32 - 1),
       scale=st.floats(1e-4, 1e4), spread=st.floats(0.05, 5.0))
def test_property_nonnegative_and_scale_invariant(spectrum, seed, scale, spread):
    rng = np.random.default_rng(seed)
    d = len(spectrum)
    a = with_spectrum(orthogonal(d, rng), spectrum)
    b = spd(d, rng, spread)
    m = misalignment(a, b)
    assert m >= -noise_floor(b)
    assert misalignment(a, scale * b) == pytest.approx(m, rel=1e-8, abs=1e-10)
    # Grouping matters: treating each eigenvector alone never gives less than grouping them
    # (a coarser eigenspace decomposition has fewer aligned Sigma).
    assert misalignment_in_basis(np.linalg.eigh(a)[1], b) <= m + 1e-9


# ---------------------------------------------------------------------------------------------- 5

def test_transfer_function_recovers_g():
    rng = np.random.default_rng(21)
    d = 12
    u = orthogonal(d, rng)
    lam = rng.permutation(np.linspace(0.1, 3.0, d))          # unsorted on purpose

    def g(x):
        return x * np.exp(-x)                                # rises then falls, like Figure 4

    sigma, tau = transfer_function(with_spectrum(u, lam), with_spectrum(u, g(lam)))
    expected_sigma = np.sqrt(np.sort(lam)[::-1])
    np.testing.assert_allclose(sigma, expected_sigma, rtol=1e-12)
    assert np.all(np.diff(sigma) < 0)
    np.testing.assert_allclose(tau, np.sqrt(g(expected_sigma ** 2)), rtol=1e-10)


def test_transfer_function_repeated_eigenvalues_and_unaligned():
    rng = np.random.default_rng(22)
    u = orthogonal(5, rng)
    lam = np.array([2.0, 2.0, 1.0, 1.0, 1.0])
    sigma_x = with_spectrum(u, lam)
    sigma, tau = transfer_function(sigma_x, with_spectrum(u, [9.0, 9.0, 4.0, 4.0, 4.0]))
    np.testing.assert_allclose(sigma, np.sqrt(lam), rtol=1e-12)
    np.testing.assert_allclose(tau, [3, 3, 2, 2, 2], rtol=1e-12)
    # Not aligned: Eq. (2)-(3) per eigenvector for distinct eigenvalues; eigenspace mean otherwise.
    b = spd(5, rng)
    distinct = with_spectrum(u, [5.0, 4.0, 3.0, 2.0, 1.0])
    _, tau = transfer_function(distinct, b)
    np.testing.assert_allclose(tau ** 2, np.einsum("ij,ik,kj->j", u, b, u), rtol=1e-10)
    _, tau = transfer_function(sigma_x, b)
    np.testing.assert_allclose(tau[:2] ** 2, np.trace(u[:, :2].T @ b @ u[:, :2]) / 2, rtol=1e-10)
    np.testing.assert_allclose(tau[2:] ** 2, np.trace(u[:, 2:].T @ b @ u[:, 2:]) / 3, rtol=1e-10)


# ---------------------------------------------------------------------------------------------- 6

def test_eigen_stability_two_samples_and_random_rotation():
    """D.1: eigenvectors of two disjoint samples of one Gaussian agree when eigenvalues are well
    separated; a randomly rotated estimate does not."""
    rng = np.random.default_rng(31)
    d = 20
    u = orthogonal(d, rng)
    spectrum = 10.0 * 0.6 ** np.arange(d)
    chol = u * np.sqrt(spectrum)
    x1 = rng.standard_normal((20000, d)) @ chol.T
    x2 = rng.standard_normal((20000, d)) @ chol.T
    cov1, cov2 = x1.T @ x1 / len(x1), x2.T @ x2 / len(x2)
    result = eigen_stability(cov1, cov2)
    np.testing.assert_allclose(result["values_a"], spectrum, rtol=0.05)
    assert np.all(np.diff(result["values_b"]) <= 0)
    assert np.all(result["overlap"][:5] > 0.99)
    assert len(result["pairs"]) == 0
    rot = random_orthonormal_basis(d, seed=5)
    rotated = eigen_stability(cov1, rot @ cov2 @ rot.T)
    np.testing.assert_allclose(rotated["values_b"], result["values_b"], rtol=1e-10)
    assert rotated["overlap"][:5].max() < 0.7
    assert rotated["overlap"].mean() < 0.4


def test_eigen_stability_near_equal_pair_is_a_stable_plane():
    """D.1: e_5 = 0.86 e'_5 - 0.36 e'_6 + ...: individual eigenvectors rotate in the 2-D eigenspace
    of two close eigenvalues, but the plane is stable (principal angles ~ 0)."""
    rng = np.random.default_rng(32)
    u = orthogonal(5, rng)
    spectrum = [5.0, 2.0, 1.98, 0.7, 0.2]
    cov_a = with_spectrum(u, spectrum)
    angle = np.deg2rad(35)
    r = np.eye(5)
    r[1:3, 1:3] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    rotation = u @ r @ u.T                                   # rotates within span(u_2, u_3)
    result = eigen_stability(cov_a, rotation @ cov_a @ rotation.T)
    np.testing.assert_array_equal(result["pairs"], [[1, 2]])
    np.testing.assert_allclose(result["overlap"], [1, np.cos(angle), np.cos(angle), 1, 1], atol=1e-9)
    np.testing.assert_allclose(np.abs(result["pair_inner"][0]),
                               [[np.cos(angle), np.sin(angle)], [np.sin(angle), np.cos(angle)]], atol=1e-9)
    np.testing.assert_allclose(result["pair_angles"], [[0, 0]], atol=1e-6)
    # A plane that really moves: rotate e_2 towards e_4 instead; one principal angle is the rotation.
    r = np.eye(5)
    r[[1, 1, 3, 3], [1, 3, 1, 3]] = [np.cos(angle), -np.sin(angle), np.sin(angle), np.cos(angle)]
    rotation = u @ r @ u.T
    moved = eigen_stability(cov_a, rotation @ cov_a @ rotation.T)
    np.testing.assert_allclose(moved["pair_angles"], [[0, angle]], atol=1e-6)


# ---------------------------------------------------------------------------------------------- 7

def test_aligned_eigenvectors_one_match_each():
    rng = np.random.default_rng(41)
    k, channels = 3, 3
    d = k * k * channels
    u = orthogonal(d, rng)
    lam = np.linspace(3.0, 0.1, d)
    tau2 = lam * np.exp(-lam)                                # not monotone: orders differ
    result = aligned_eigenvectors(with_spectrum(u, lam), with_spectrum(u, tau2), top_k=10, threshold=0.4)
    assert result["w_vectors"].shape == (10, d) and result["combined"].shape == (10, d)
    assert result["w_vectors"][0].reshape(k, k, channels).shape == (k, k, channels)
    np.testing.assert_allclose(result["w_values"], np.sort(tau2)[::-1][:10], rtol=1e-10)
    expected_x = np.argsort(-tau2, kind="stable")[:10]       # x index i has eigenvalue lam[i]
    for i in range(10):
        assert result["matches"][i].tolist() == [expected_x[i]]
        assert abs(result["match_inner"][i][0]) == pytest.approx(1.0, abs=1e-10)
        np.testing.assert_allclose(result["combined"][i], result["w_vectors"][i], atol=1e-10)
        np.testing.assert_allclose(abs(result["w_vectors"][i] @ u[:, expected_x[i]]), 1.0, atol=1e-10)
    np.testing.assert_allclose(result["captured"], 1.0, atol=1e-10)


def test_aligned_eigenvectors_two_matches_weighted_combination():
    """Figure 3 RIGHT: a v_w at 45 degrees between two v_x is matched by both (0.71 > 0.4) and their
    weighted combination is v_w itself."""
    rng = np.random.default_rng(42)
    d = 6
    u = orthogonal(d, rng)
    sigma_x = with_spectrum(u, [6.0, 5.0, 3.0, 2.0, 1.0, 0.5])
    w = u.copy()
    w[:, 0], w[:, 1] = (u[:, 0] + u[:, 1]) / np.sqrt(2), (u[:, 0] - u[:, 1]) / np.sqrt(2)
    sigma_w = with_spectrum(w, [10.0, 8.0, 3.0, 2.0, 1.0, 0.5])
    result = aligned_eigenvectors(sigma_x, sigma_w, top_k=2, threshold=0.4)
    for i in range(2):
        assert sorted(result["matches"][i].tolist()) == [0, 1]
        np.testing.assert_allclose(np.abs(result["match_inner"][i]), 1 / np.sqrt(2), atol=1e-10)
        np.testing.assert_allclose(result["combined"][i], result["w_vectors"][i], atol=1e-10)
    single = aligned_eigenvectors(sigma_x, sigma_w, top_k=1, threshold=0.8)
    assert single["matches"][0].size == 0 and not single["combined"].any()


# ---------------------------------------------------------------------------------------------- misc

def test_eigenspaces_grouping():
    rng = np.random.default_rng(51)
    u = orthogonal(5, rng)
    a = with_spectrum(u, [0.5, 3.0, 1.0 + 1e-9, 1.0, 1.0 - 5e-7])
    spaces = eigenspaces(a)
    assert isinstance(spaces, Eigenspaces) and len(spaces) == 3
    assert spaces.dims == (1, 3, 1)
    np.testing.assert_allclose(spaces.values, [3.0, 1.0, 0.5], rtol=1e-6)
    np.testing.assert_allclose(spaces[1] @ spaces[1].T, u[:, 2:5] @ u[:, 2:5].T, atol=1e-6)
    assert len(eigenspaces(a, relative_tolerance=1e-8)) == 4   # 1e-9 * 3 grouped, 5e-7 split off
    assert len(eigenspaces(a, relative_tolerance=0.0)) == 5
    # The tolerance is relative to the largest |eigenvalue|: scaling A changes nothing.
    for scale in (1e-7, 1e7):
        assert eigenspaces(scale * a).dims == (1, 3, 1)
        assert eigenspaces(scale * a, relative_tolerance=1e-8).dims == (1, 2, 1, 1)
    stacked = np.concatenate(list(spaces), axis=1)
    np.testing.assert_allclose(stacked.T @ stacked, np.eye(5), atol=1e-12)


def test_input_validation():
    with pytest.raises(ValueError, match="positive definite"):
        misalignment(np.eye(3), np.diag([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="symmetric"):
        misalignment(np.eye(2), np.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="shape"):
        misalignment(np.eye(2), np.eye(3))
    with pytest.raises(ValueError, match="orthonormal"):
        misalignment_in_basis(2 * np.eye(3), np.eye(3))
