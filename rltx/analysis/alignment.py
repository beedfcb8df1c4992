"""Covariance alignment mathematics (Maennel et al. 2020, Sec. 2 and App. A.6-A.8, D.1-D.4); numpy only.

Conventions
-----------
- All matrices are converted to float64. Symmetric inputs are checked (to 1e-8 relative to their
  largest entry) and then symmetrised as (S + S^T) / 2.
- `sigma_x` is the data covariance, `sigma_w` the weight covariance. Prop. 1 states alignment for
  Sigma_w = E[w w^T] with E[w] = 0; Eq. (2) writes the centred E[(w - mu_w)(w - mu_w)^T], which
  rltx.filter_covariance computes for the analyses. These functions accept any symmetric positive
  definite (SPD) `sigma_w`.
- Vectors that are meant to be shown as filters (patch eigenvectors) are returned as ROWS of length d,
  so `row.reshape(kh, kw, C)` works when d was flattened in (row, column, channel) order.
- Eigenvectors have an arbitrary sign; where they are returned, the sign is fixed so that the
  entry of largest absolute value is positive (deterministic output, nothing else depends on it).
- Eigenspaces: eigenvalues sorted decreasingly; two neighbours belong to the same eigenspace when
  their gap is <= relative_tolerance * max|eigenvalue| (single linkage, so a chain of small gaps
  forms one eigenspace).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "Eigenspaces", "eigenspaces", "misalignment", "misalignment_in_basis", "random_orthonormal_basis",
    "shape_change", "isotropic_sampling_spread", "transfer_function", "aligned_eigenvectors", "eigen_stability",
    "fix_signs",
]

_SYMMETRY_TOLERANCE = 1e-8


def _symmetric(matrix, name: str) -> np.ndarray:
    """float64 copy of a square symmetric matrix, symmetrised; ValueError otherwise."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty square matrix, got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"{name} has non-finite entries")
    scale = np.max(np.abs(matrix))
    if np.max(np.abs(matrix - matrix.T)) > _SYMMETRY_TOLERANCE * max(scale, np.finfo(float).tiny):
        raise ValueError(f"{name} is not symmetric")
    return (matrix + matrix.T) / 2


def _cholesky(matrix: np.ndarray, name: str) -> np.ndarray:
    """Lower Cholesky factor of an SPD matrix; ValueError if it is not positive definite."""
    try:
        return np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        raise ValueError(f"{name} must be positive definite") from None


def _sorted_eigh(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues in decreasing order and the matching unit eigenvectors as columns."""
    values, vectors = np.linalg.eigh(matrix)
    return values[::-1].copy(), vectors[:, ::-1].copy()


def fix_signs(rows: np.ndarray) -> np.ndarray:
    """Flip each row so that its entry of largest absolute value is positive (an eigensolver returns
    either sign, and which one may change with the LAPACK build)."""
    rows = np.array(rows, dtype=np.float64, copy=True)
    if rows.size:
        peak = rows[np.arange(rows.shape[0]), np.argmax(np.abs(rows), axis=1)]
        rows *= np.where(peak < 0, -1.0, 1.0)[:, None]
    return rows


# --------------------------------------------------------------------------------------------------
# Eigenspaces (Definition 1: alignment is a statement about eigenspaces, not eigenvectors)
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Eigenspaces:
    """The orthogonal decomposition R^d = V_1 (+) ... (+) V_r into eigenspaces of a symmetric matrix.

    `values[i]` is the eigenvalue of V_i (mean of the numerically grouped eigenvalues), decreasing;
    `bases[i]` is an orthonormal basis of V_i as a [d, m_i] array (columns). The object behaves as the
    sequence of bases (`len`, indexing, iteration), so it can be used as `list[np.ndarray]`.
    """
    values: np.ndarray
    bases: tuple[np.ndarray, ...]

    @property
    def dims(self) -> tuple[int, ...]:
        """m_i = dim V_i."""
        return tuple(basis.shape[1] for basis in self.bases)

    def __len__(self) -> int:
        return len(self.bases)

    def __getitem__(self, index):
        return self.bases[index]

    def __iter__(self):
        return iter(self.bases)


def eigenspaces(sigma_x, relative_tolerance: float = 1e-6) -> Eigenspaces:
    """Eigenspaces of the symmetric matrix `sigma_x`, by decreasing eigenvalue (Def. 1, Prop. 2.7).

    Eigenvalues lambda_1 >= ... >= lambda_d from `eigh` are grouped into one eigenspace while
    consecutive gaps satisfy lambda_j - lambda_{j+1} <= relative_tolerance * max_k |lambda_k|.
    relative_tolerance = 0 groups only bit-identical eigenvalues (in practice: every eigenvector on
    its own).
    """
    if relative_tolerance < 0:
        raise ValueError("relative_tolerance must be >= 0")
    values, vectors = _sorted_eigh(_symmetric(sigma_x, "sigma_x"))
    threshold = relative_tolerance * np.max(np.abs(values))
    starts = [0] + [j + 1 for j in range(len(values) - 1) if values[j] - values[j + 1] > threshold]
    stops = starts[1:] + [len(values)]
    return Eigenspaces(
        values=np.array([values[a:b].mean() for a, b in zip(starts, stops)]),
        bases=tuple(vectors[:, a:b] for a, b in zip(starts, stops)),
    )


# --------------------------------------------------------------------------------------------------
# Misalignment (Sec. 2.2 Definition 2; App. D.2-D.4 Proposition 2; App. A.6)
# --------------------------------------------------------------------------------------------------

def misalignment(sigma_x, sigma_w, relative_tolerance: float = 1e-6) -> float:
    """Misalignment M(A, B) of B = `sigma_w` with respect to A = `sigma_x` (Def. 2, Prop. 2.7).

    Definition 2 (Sec. 2.2, restated in D.4), with d = dim:

        M(A, B) = inf over Sigma > 0 aligned with A of  tr(Sigma^{-1} B + B^{-1} Sigma) / 2 - d,

    the symmetrised Kullback-Leibler divergence between N(0, Sigma) and N(0, B) (D.4). "Sigma aligned
    with A" (Def. 1) means each eigenspace of A lies inside an eigenspace of Sigma, i.e.
    Sigma = sum_i s_i P_i with scalars s_i > 0 on A's eigenspaces V_i (projectors P_i). Minimising
    over each s_i (proof of Prop. 2.7, D.4) gives the closed form evaluated here:

        M(A, B) = sum_i sqrt( tr(B|V_i) * tr(B^{-1}|V_i) ) - d,

    where B|V_i = pr_i o B restricted to V_i, so with an orthonormal basis V_i (columns)
    tr(B|V_i) = tr(V_i^T B V_i) and tr(B^{-1}|V_i) = tr(V_i^T B^{-1} V_i) -- the trace of the
    restriction of B^{-1}, NOT of the inverse of the restriction. For 1-dimensional V_i = span(v) a
    term is sqrt((v^T B v)(v^T B^{-1} v)), as in A.6.

    Properties (Prop. 2): M >= 0 (up to rounding, ~1e-15 * d * cond(B)); M = 0 iff B is aligned with A,
    i.e. B is a multiple of the identity on every eigenspace of A (a non-scalar SPD block on a
    repeated eigenspace of A gives M > 0); M(U A U^T, U B U^T) = M(A, B) for orthogonal U;
    M(A, c B) = M(A, B) for c > 0; M depends on A only through its eigenspaces; M is continuous in B
    but not in A.

    `sigma_x` need only be symmetric (only its eigenspaces matter, Prop. 2.6), grouped as in
    `eigenspaces(sigma_x, relative_tolerance)`; `sigma_w` must be SPD.
    """
    spaces = eigenspaces(sigma_x, relative_tolerance)
    sigma_w = _symmetric(sigma_w, "sigma_w")
    if sigma_w.shape != (spaces[0].shape[0],) * 2:
        raise ValueError(f"sigma_x and sigma_w differ in shape: {spaces[0].shape[0]} vs {sigma_w.shape}")
    return _sum_sqrt_traces(spaces.bases, sigma_w)


def misalignment_in_basis(basis, sigma_w) -> float:
    """A.6's score of `sigma_w` = S against an orthonormal `basis` [d, d] (columns v_i):

        sum_i sqrt( (v_i^T S v_i) * (v_i^T S^{-1} v_i) ) - d.

    With the eigenbasis of sigma_x (distinct eigenvalues) this equals `misalignment(sigma_x, S)`;
    with `random_orthonormal_basis(d, seed)` it is Figure 2's baseline. Each term is >= 1 with
    equality iff v_i is an eigenvector of S, so the score is 0 iff the basis diagonalises S.
    """
    basis = np.asarray(basis, dtype=np.float64)
    sigma_w = _symmetric(sigma_w, "sigma_w")
    d = sigma_w.shape[0]
    if basis.shape != (d, d):
        raise ValueError(f"basis must be [{d}, {d}] (columns), got {basis.shape}")
    if np.max(np.abs(basis.T @ basis - np.eye(d))) > 1e-8:
        raise ValueError("basis columns must be orthonormal")
    return _sum_sqrt_traces([basis[:, [i]] for i in range(d)], sigma_w)


def _sum_sqrt_traces(bases, sigma_w: np.ndarray) -> float:
    """sum_i sqrt(tr(V_i^T B V_i) * tr(V_i^T B^{-1} V_i)) - d for orthonormal blocks V_i (D.4, Prop. 2.7).

    With B = L L^T: tr(V^T B V) = ||L^T V||_F^2 and tr(V^T B^{-1} V) = ||L^{-1} V||_F^2.
    """
    lower = _cholesky(sigma_w, "sigma_w")
    total = 0.0
    for basis in bases:
        trace_b = np.sum((lower.T @ basis) ** 2)
        trace_b_inverse = np.sum(np.linalg.solve(lower, basis) ** 2)
        total += np.sqrt(trace_b * trace_b_inverse)
    return float(total - sigma_w.shape[0])


# The random basis's own stream of `seed`. numpy's default_rng(s) is default_rng([s, 0]), the stream of the
# Gaussian source's rotation (rltx.data.gaussian, streams 0-5), so with default_rng(seed) the "random" basis of
# rotated Gaussian data of seed 0 was the data's own eigenbasis, and Fig. 2's baseline read as aligned.
RANDOM_BASIS_STREAM = 101


def random_orthonormal_basis(d: int, seed) -> np.ndarray:
    """A Haar-distributed orthogonal [d, d] matrix (columns = basis): QR of a standard Gaussian
    matrix with the signs of R's diagonal moved into Q (Mezzadri 2007). Figure 2 / A.6 baseline."""
    if int(d) < 1:
        raise ValueError("d must be >= 1")
    gaussian = np.random.default_rng([int(seed), RANDOM_BASIS_STREAM]).standard_normal((int(d), int(d)))
    q, r = np.linalg.qr(gaussian)
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)[None, :]


def shape_change(sigma_start, sigma_end) -> float:
    """||S1 / tr S1 - S0 / tr S0||_F / ||S0 / tr S0||_F: how far the shape of Sigma_w moved between two
    checkpoints. The trace normalisation makes a uniform growth or shrinkage of the filters no change,
    since it leaves every misalignment and the shape of f(sigma) as they were."""
    start, end = (_symmetric(m, name) for m, name in ((sigma_start, "sigma_start"), (sigma_end, "sigma_end")))
    start, end = start / np.trace(start), end / np.trace(end)
    return float(np.linalg.norm(end - start) / np.linalg.norm(start))


def isotropic_sampling_spread(d: int, num_filters: int) -> float:
    """The root-mean-square `shape_change(I, S)` of the covariance S (centred, as rltx.filter_covariance)
    of n = `num_filters` filters drawn i.i.d. from N(0, I_d), as random initial filters are:
    sqrt((d + 2)(d - 1) / (d (n - 1))), to first order in d / n (Wishart with n - 1 degrees of freedom,
    centring takes one: E||S - I||_F^2 = d (d + 1) / (n - 1), of which the trace part removes 2 / (n - 1)).

    A Sigma_w whose shape moved less than this during training is still dominated by the scatter of its
    random initialisation, so its misalignment or f(sigma) says nothing yet about what training did."""
    d, n = int(d), int(num_filters)
    return float(np.sqrt((d + 2) * (d - 1) / (d * (n - 1))))


# --------------------------------------------------------------------------------------------------
# Transfer function f(sigma) (Sec. 2.3 Eq. (2)-(3), Definition 3; App. A.8)
# --------------------------------------------------------------------------------------------------

def transfer_function(sigma_x, sigma_w, relative_tolerance: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """The transfer function f: sigma_i -> tau_i from `sigma_x` to `sigma_w` (Def. 3, Eq. (2)-(3)).

    Returns (sigma, tau), both [d], sorted by decreasing sigma, with sigma_i^2 the eigenvalues of
    sigma_x (unit eigenvectors v_i) and

        tau_i = f(sigma_i) = sqrt(v_i^T Sigma_w v_i)          (Eq. (3); tau_i^2 as in Eq. (2)),

    the standard deviation of the weights' projection on v_i. The curve of Figure 4 is (sigma, tau);
    A.8 describes the same pairs squared, (sigma_i^2, tau_i^2): square both if you want those.

    Def. 3 requires sigma_x to have distinct eigenvalues or sigma_w to be aligned with sigma_x. So that
    the result never depends on an arbitrary choice of eigenvectors, inside an eigenspace V of
    dimension m > 1 (grouped as in `eigenspaces`) every tau_i is the eigenspace mean
    tau^2 = tr(V^T Sigma_w V) / m; this equals Eq. (3) whenever Def. 3 applies. Tiny negative
    eigenvalues of sigma_x (>= -relative_tolerance * max|lambda|, rounding) give sigma = 0.
    """
    spaces = eigenspaces(sigma_x, relative_tolerance)
    sigma_w = _symmetric(sigma_w, "sigma_w")
    d = spaces[0].shape[0]
    if sigma_w.shape != (d, d):
        raise ValueError(f"sigma_x and sigma_w differ in shape: {d} vs {sigma_w.shape}")
    lowest = spaces.values[-1]
    if lowest < -relative_tolerance * np.max(np.abs(spaces.values)):
        raise ValueError(f"sigma_x must be positive semi-definite (eigenvalue {lowest:g})")
    sigma, tau_squared = [], []
    for value, basis in zip(spaces.values, spaces.bases):
        m = basis.shape[1]
        sigma += [np.sqrt(max(value, 0.0))] * m
        if m == 1:
            tau_squared.append(float(basis[:, 0] @ sigma_w @ basis[:, 0]))  # Eq. (2)
        else:
            tau_squared += [float(np.trace(basis.T @ sigma_w @ basis)) / m] * m
    return np.array(sigma), np.sqrt(np.maximum(np.array(tau_squared), 0.0))


# --------------------------------------------------------------------------------------------------
# Which data eigenvectors make up each weight eigenvector (Sec. 2.2 Figure 3; App. A.7, D.1)
# --------------------------------------------------------------------------------------------------

def aligned_eigenvectors(sigma_x, sigma_w, top_k: int = 10, threshold: float = 0.4) -> dict:
    """For the `top_k` eigenvectors v_w of `sigma_w` (largest eigenvalues first), the eigenvectors v_x
    of `sigma_x` with |<v_x, v_w>| > `threshold` and their weighted combination (Figure 3, D.1):

        bar v_x = sum_{j matched} <v_x_j, v_w> v_x_j,

    the projection of v_w on the span of the matched v_x (D.1: "e_5 = 0.86 e'_5 - 0.36 e'_6 + ...").
    If sigma_w is aligned with sigma_x, each v_w matches v_x's of one eigenspace and bar v_x = v_w
    (same sign, whatever the signs of the v_x). Figure 3 uses threshold 0.4 (written without |.|;
    the absolute value removes the arbitrary eigenvector sign).

    Returns a dict of numpy arrays (vectors as rows of length d, e.g. reshape to [k, k, C]):
      "w_values" [K], "w_vectors" [K, d]: top eigenpairs of sigma_w, K = min(top_k, d);
      "x_values" [d], "x_vectors" [d, d]: all eigenpairs of sigma_x, decreasing;
      "inner" [K, d]: inner[i, j] = <v_x_j, v_w_i>;
      "matches": list of K int arrays, the j with |inner[i, j]| > threshold, by decreasing |inner|;
      "match_inner": list of K float arrays, inner[i, matches[i]];
      "combined" [K, d]: bar v_x for each v_w (zeros where nothing matches);
      "captured" [K]: ||bar v_x||^2 = sum of matched inner^2, in [0, 1] (1: v_w lies in their span).
    """
    sigma_x = _symmetric(sigma_x, "sigma_x")
    sigma_w = _symmetric(sigma_w, "sigma_w")
    if sigma_x.shape != sigma_w.shape:
        raise ValueError(f"sigma_x and sigma_w differ in shape: {sigma_x.shape} vs {sigma_w.shape}")
    if int(top_k) < 1:
        raise ValueError("top_k must be >= 1")
    if not 0 <= threshold < 1:
        raise ValueError("threshold must be in [0, 1)")
    x_values, x_vectors = _sorted_eigh(sigma_x)
    w_values, w_vectors = _sorted_eigh(sigma_w)
    k = min(int(top_k), sigma_w.shape[0])
    x_rows = fix_signs(x_vectors.T)
    w_rows = fix_signs(w_vectors[:, :k].T)
    inner = w_rows @ x_rows.T
    matches, match_inner = [], []
    combined = np.zeros_like(w_rows)
    for i in range(k):
        chosen = np.flatnonzero(np.abs(inner[i]) > threshold)
        chosen = chosen[np.argsort(-np.abs(inner[i, chosen]), kind="stable")]
        matches.append(chosen)
        match_inner.append(inner[i, chosen])
        combined[i] = inner[i, chosen] @ x_rows[chosen]
    return {
        "w_values": w_values[:k], "w_vectors": w_rows, "x_values": x_values, "x_vectors": x_rows,
        "inner": inner, "matches": matches, "match_inner": match_inner, "combined": combined,
        "captured": np.sum(combined ** 2, axis=1),
    }


# --------------------------------------------------------------------------------------------------
# How well eigenvectors are measured (App. D.1)
# --------------------------------------------------------------------------------------------------

def eigen_stability(cov_a, cov_b, relative_gap: float = 0.05) -> dict:
    """Compare the eigenvectors of two estimates of one covariance (D.1's tables and 2-D example).

    Returns a dict:
      "values_a", "values_b" [d]: eigenvalues, decreasing;
      "overlap" [d]: |<e_i, e'_i>| for matching indices (D.1's tables);
      "pairs" [P, 2]: index pairs (i, i+1) whose eigenvalues are near-equal in either estimate,
          (lambda_i - lambda_{i+1}) / |lambda_i| < relative_gap; for them a single eigenvector is not
          measurable but their 2-D span is (D.1, D.3);
      "pair_inner" [P, 2, 2]: pair_inner[p, r, s] = <e_{i+r}, e'_{i+s}>, the expansion of
          e_i, e_{i+1} in the basis e'_i, e'_{i+1} (D.1: e_5 = 0.86 e'_5 - 0.36 e'_6 + ...), with the
          signs of the returned eigenvectors (largest entry positive);
      "pair_angles" [P, 2]: principal angles (radians, increasing) between span(e_i, e_{i+1}) and
          span(e'_i, e'_{i+1}): arccos of the singular values of pair_inner[p]; both ~0 when the 2-D
          space is stable even if the individual eigenvectors rotate within it;
      "vectors_a", "vectors_b" [d, d]: the eigenvectors as rows.
    """
    cov_a = _symmetric(cov_a, "cov_a")
    cov_b = _symmetric(cov_b, "cov_b")
    if cov_a.shape != cov_b.shape:
        raise ValueError(f"cov_a and cov_b differ in shape: {cov_a.shape} vs {cov_b.shape}")
    values_a, vectors_a = _sorted_eigh(cov_a)
    values_b, vectors_b = _sorted_eigh(cov_b)
    rows_a, rows_b = fix_signs(vectors_a.T), fix_signs(vectors_b.T)
    overlap = np.abs(np.sum(rows_a * rows_b, axis=1))

    def near_equal(values, i):
        return values[i] - values[i + 1] < relative_gap * abs(values[i])

    pairs = [(i, i + 1) for i in range(len(values_a) - 1) if near_equal(values_a, i) or near_equal(values_b, i)]
    pair_inner = np.array([rows_a[i:j + 1] @ rows_b[i:j + 1].T for i, j in pairs]).reshape(-1, 2, 2)
    cosines = np.array([np.linalg.svd(block, compute_uv=False) for block in pair_inner]).reshape(-1, 2)
    return {
        "values_a": values_a, "values_b": values_b, "overlap": overlap,
        "pairs": np.array(pairs, dtype=int).reshape(-1, 2), "pair_inner": pair_inner,
        "pair_angles": np.arccos(np.clip(cosines, -1.0, 1.0)),
        "vectors_a": rows_a, "vectors_b": rows_b,
    }
