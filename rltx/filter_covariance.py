"""Filter second moments and Gaussian filters drawn from them (Sec. 2.4, A.9), in numpy alone, so
that transfer, construct-init and the alignment analyses share one implementation.

Sigma_w = E[(w - mu_w)(w - mu_w)^T] is the covariance of the filters, centred as Eq. (2) writes it and
as A.6 ("the covariance of the filters") and A.9 ("the covariance obtained from training") use it; it
equals Prop. 1's E[w w^T] when E[w] = 0, as Prop. 1 proves for its setting. The expectation is over w
drawn uniformly from the set of filters (Prop. 1), so the sum is divided by n, not n - 1. Flattened in
the (row, column, channel) order of the input patches.
"""
from __future__ import annotations

import numpy as np


def pooled_filters(kernels: list[np.ndarray]) -> np.ndarray:
    """The filters of all given kernels as the columns of one [kh*kw*c, filters] matrix (float64).

    A kernel [kh, kw, c, filters] holds one filter per column of its [kh*kw*c, filters] reshape, in
    the (row, column, channel) order of the input patches."""
    return np.concatenate([k.reshape(-1, k.shape[-1]).astype(np.float64) for k in kernels], axis=1)


def mean_filter(kernels: list[np.ndarray]) -> np.ndarray:
    """mu_w = E[w] over all filters of the given kernels, pooled (float64), flattened like a filter."""
    return pooled_filters(kernels).mean(axis=1)


def filter_covariance(kernels: list[np.ndarray]) -> np.ndarray:
    """Sigma_w = E[(w - mu_w)(w - mu_w)^T] over all filters of the given kernels, pooled (float64)."""
    filters = pooled_filters(kernels)
    centred = filters - filters.mean(axis=1, keepdims=True)
    return centred @ centred.T / filters.shape[1]


def null_space_tolerance(eigenvalues: np.ndarray) -> float:
    """Eigenvalues at or below this are round-off of an exact zero.

    A backward-stable symmetric eigensolver returns each eigenvalue with an absolute error of about
    d * eps * ||A||_2 (Golub & Van Loan, Thm. 8.1.2 with the solver's backward error), whatever the
    BLAS kernel: the null space of a rank-deficient Sigma_w comes out as values of that size, of
    either sign. This is numpy.linalg.matrix_rank's default threshold."""
    largest = float(np.max(np.abs(eigenvalues), initial=0.0))
    return len(eigenvalues) * np.finfo(np.float64).eps * largest


def psd_square_root(matrix: np.ndarray) -> np.ndarray:
    """R with R R^T = matrix for a symmetric positive semi-definite matrix (R = E diag(sqrt(lambda))),
    with eigenvalues below `null_space_tolerance` set to exactly zero, so that R's columns span
    exactly the range of `matrix` (the square root of a round-off eigenvalue of 1e-16 lambda_max
    would otherwise add a 1e-8 sqrt(lambda_max) component outside it)."""
    eigenvalues, eigenvectors = np.linalg.eigh(np.asarray(matrix, dtype=np.float64))
    kept = np.where(eigenvalues > null_space_tolerance(eigenvalues), eigenvalues, 0.0)
    return eigenvectors * np.sqrt(kept)


def sample_filters(sigma_w: np.ndarray, shape: tuple[int, ...], generator: np.random.Generator) -> np.ndarray:
    """Filters w ~ N(0, Sigma_w), one per output channel (the last axis of `shape`), by the
    symmetric square root of Sigma_w (valid for singular Sigma_w, e.g. fewer source filters than
    dimensions: the samples then lie in its range)."""
    normal = generator.standard_normal((sigma_w.shape[0], shape[-1]))
    return (psd_square_root(sigma_w) @ normal).reshape(shape)
