"""Sigma_w and filters sampled from it (Sec. 2.4, A.9): oracles are the definition (numpy's covariance
of the pooled filters, its invariance under a shared shift), the sampled distribution's known covariance (Wishart error), and the range of a
rank-deficient Sigma_w, under every OpenBLAS kernel."""
import os
import subprocess
import sys

import numpy as np
import pytest

from rltx.filter_covariance import filter_covariance, null_space_tolerance, psd_square_root, sample_filters

EPS = np.finfo(np.float64).eps


def test_sampled_filter_covariance_converges_to_sigma_w():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(27, 27)))[0]
    sigma_w = basis @ np.diag(np.linspace(0.1, 3.0, 27)) @ basis.T
    filters = np.concatenate([sample_filters(sigma_w, (3, 3, 3, 64), rng).reshape(27, 64) for _ in range(300)], axis=1)
    estimate, n = filters @ filters.T / filters.shape[1], filters.shape[1]
    # Wishart standard error of each entry: sqrt((S_ii S_jj + S_ij^2) / n); allow 5 of them.
    tolerance = 5 * np.sqrt((np.outer(np.diag(sigma_w), np.diag(sigma_w)) + sigma_w ** 2) / n)
    assert np.all(np.abs(estimate - sigma_w) <= tolerance)


def test_filter_covariance_is_the_covariance_of_all_filters_pooled():
    """Eq. (2) / A.6: the centred covariance over w drawn uniformly from the pooled filters (numpy's
    np.cov with bias=True is the oracle), unchanged by a filter mean shared by all filters, and equal to
    Prop. 1's mean outer product when the filters have mean zero."""
    rng = np.random.default_rng(1)
    kernels = [rng.normal(size=(3, 3, 2, 5)), rng.normal(size=(3, 3, 2, 7))]
    pooled = np.concatenate([k.reshape(18, -1) for k in kernels], axis=1)
    np.testing.assert_allclose(filter_covariance(kernels), np.cov(pooled, bias=True), rtol=1e-12)
    shift = rng.normal(size=(3, 3, 2, 1)) * 3
    np.testing.assert_allclose(filter_covariance([k + shift for k in kernels]), np.cov(pooled, bias=True), rtol=1e-10)
    centred = pooled - pooled.mean(axis=1, keepdims=True)
    outer = sum(np.outer(w, w) for w in centred.T) / 12
    np.testing.assert_allclose(filter_covariance([centred.reshape(3, 3, 2, 12)]), outer, rtol=1e-12)


def test_a_shared_filter_mean_does_not_misalign_filters_aligned_with_the_data():
    """Filters whose covariance is aligned with Sigma_x (Prop. 1's conclusion), plus a mean filter of 20 %
    of their RMS norm: Sigma_w is still aligned (misalignment ~0), where E[w w^T] would not be."""
    from rltx.analysis.alignment import misalignment
    rng = np.random.default_rng(2)
    basis = np.linalg.qr(rng.normal(size=(27, 27)))[0]
    sigma_x = basis @ np.diag(np.geomspace(1.0, 1e-3, 27)) @ basis.T
    filters = basis @ (np.sqrt(np.geomspace(2.0, 0.1, 27))[:, None] * rng.normal(size=(27, 200000)))
    mean = rng.normal(size=(27, 1))
    mean *= 0.2 * np.sqrt(np.mean(np.sum(filters ** 2, axis=0))) / np.linalg.norm(mean)
    kernel = (filters + mean).reshape(3, 3, 3, -1)
    assert misalignment(sigma_x, filter_covariance([kernel])) < 0.01
    raw = (filters + mean) @ (filters + mean).T / filters.shape[1]
    assert misalignment(sigma_x, raw) > 0.1


def span_residual(seed: int) -> tuple[float, float]:
    """Relative distance of filters sampled from a rank-4 Sigma_w (27-dimensional) to its range,
    and the bound it must stay under.

    Bound: Sigma_w = S S^T is formed and eigen-decomposed with backward error about d eps
    lambda_max, which tilts the computed 4-dimensional eigenspace by at most that over the gap to
    the null space, lambda_4 (Davis-Kahan sin-theta theorem); the orthonormal basis of range(S)
    from QR adds eps cond(S) (= eps sqrt(lambda_max / lambda_4)). A factor 10 covers the constants.
    Without zeroing the null-space eigenvalues the residual is sqrt(d eps) ~ 1e-7 instead."""
    rng = np.random.default_rng(seed)
    span = rng.normal(size=(27, 4))
    sigma_w = span @ span.T
    sampled = sample_filters(sigma_w, (3, 3, 3, 50), rng).reshape(27, 50)
    basis = np.linalg.qr(span)[0]
    residual = sampled - basis @ (basis.T @ sampled)
    values = np.linalg.eigvalsh(sigma_w)[::-1]
    bound = 10 * (27 * EPS * values[0] / values[3] + EPS * np.sqrt(values[0] / values[3]))
    return float(np.abs(residual).max() / np.abs(sampled).max()), float(bound)


def test_singular_sigma_w_samples_stay_in_its_range():
    for seed in range(5):
        residual, bound = span_residual(seed)
        assert residual < bound


@pytest.mark.parametrize("coretype", [None, "Haswell", "Prescott"])
def test_samples_stay_in_the_range_under_each_openblas_kernel(coretype):
    """OPENBLAS_CORETYPE picks the BLAS kernels (some machines set Haswell); the range property must
    not depend on which round-off they make. Run in a fresh interpreter, where the variable is read."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    code = ("from test_filter_covariance import span_residual\n"
            "print(all(r < b for r, b in map(span_residual, range(5))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                            cwd=os.path.dirname(__file__))
    assert result.stdout.strip() == "True", result.stderr


def test_square_root_of_a_singular_matrix_has_exactly_its_rank():
    rng = np.random.default_rng(3)
    span = rng.normal(size=(12, 3))
    root = psd_square_root(span @ span.T)
    assert np.count_nonzero(np.linalg.norm(root, axis=0)) == 3
    np.testing.assert_allclose(root @ root.T, span @ span.T, atol=12 * EPS * np.linalg.norm(span) ** 2 * 10)


def test_null_space_tolerance_is_matrix_rank_threshold():
    """The documented threshold of numpy.linalg.matrix_rank (Press et al.): d eps max|lambda|."""
    values = np.array([-1e-16, 1e-17, 2.0, 5.0])
    assert null_space_tolerance(values) == pytest.approx(4 * EPS * 5.0)
