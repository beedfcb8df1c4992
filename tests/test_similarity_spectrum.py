"""Neyshabur et al. 2020 diagnostics: spectrum (App. C) against the explicit circular-convolution
matrix, CKA (B.3) against its invariances and estimator properties, mistakes (B.2) against
hand-counted vectors, and all three kinds end to end from the CLI on tiny runs."""
import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from rltx.analysis.results import read_result
from rltx.analysis.similarity import (LinearCKAAccumulator, cka, mistake_counts,
                                      mistakes_table)
from rltx.analysis.spectrum import conv_singular_values
from rltx.cli import main
from rltx.errors import UsageError
from tests_support import tiny_recipe_dict

def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


# --- spectrum: oracle is the explicit operator matrix ------------------------------------------

def circular_conv2d(x, kernel):
    """Keras Conv2D convention (cross-correlation, kernel [kh, kw, c_in, c_out]) with circular padding,
    stride 1: y[i, j, o] = sum_{a, b, c} K[a, b, c, o] x[(i + a) mod n, (j + b) mod n, c]."""
    y = np.zeros(x.shape[:2] + (kernel.shape[3],))
    for a in range(kernel.shape[0]):
        for b in range(kernel.shape[1]):
            shifted = np.roll(x, shift=(-a, -b), axis=(0, 1))
            y += shifted @ kernel[a, b]
    return y


def explicit_singular_values(kernel, n):
    c_in = kernel.shape[2]
    columns = []
    for index in range(n * n * c_in):
        basis = np.zeros(n * n * c_in)
        basis[index] = 1.0
        columns.append(circular_conv2d(basis.reshape(n, n, c_in), kernel).ravel())
    return np.sort(np.linalg.svd(np.array(columns).T, compute_uv=False))[::-1]


EPS = np.finfo(np.float64).eps  # float64 unit round-off is EPS / 2 (Higham, Sec. 2.1)


def svd_floor(kernel, n) -> float:
    """Absolute round-off of the singular values of the n^2 c x n^2 c circular-conv operator, by
    FFT (c log n eps ||K||) or by a dense SVD (backward stable: d eps ||A||, Higham Sec. 20); by
    Weyl each value moves by at most that. A wrong fold or transform is off by O(||K||)."""
    d = n * n * max(kernel.shape[2:])
    return 4 * d * EPS * n * np.abs(kernel).sum()  # n |K|_1 >= ||A||_2


def centring_amplification(x, kernel) -> float:
    """||K||_F / ||HKH||_F: the cancellation when centring the Gram (1 for centred features; for RBF
    times the relative error of the squared distances, max|x|^2 / median)."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    k = x @ x.T
    factor = 1.0
    if kernel == "rbf":
        squared = np.maximum(np.diag(k)[:, None] + np.diag(k)[None, :] - 2 * k, 0.0)
        factor = 1 + np.diag(k).max() / np.median(squared)
        k = np.exp(-squared / (2 * np.median(squared)))
    h = np.eye(len(x)) - 1 / len(x)
    return factor * np.linalg.norm(k) / np.linalg.norm(h @ k @ h)


def cka_floor(x, y, kernel="linear") -> float:
    """Relative round-off of one CKA(X, Y) of n examples of <= p features: Gram entries carry p eps
    |x||x|^T (Higham Sec. 3.5), centring and HSIC are sums of n terms per entry (n eps, Sec. 4.2),
    amplified by the cancellation in centring. Invariance bugs move CKA by > 1e-3."""
    p = max(np.prod(x.shape[1:]), np.prod(y.shape[1:]))
    return 4 * (p + 2 * len(x)) * EPS * (centring_amplification(x, kernel) + centring_amplification(y, kernel))


@pytest.mark.parametrize("shape,n", [((3, 3, 2, 3), 5), ((3, 3, 3, 2), 4), ((1, 1, 2, 2), 3), ((2, 3, 1, 4), 5),
                                     ((5, 5, 2, 2), 3)])
def test_fft_singular_values_equal_the_explicit_operator(shape, n):
    kernel = np.random.default_rng(sum(shape) + n).normal(size=shape)
    values = conv_singular_values(kernel, n)
    explicit = explicit_singular_values(kernel, n)[:values.size]  # the rest are zero (c_in > c_out)
    np.testing.assert_allclose(values, explicit, rtol=0, atol=2 * svd_floor(kernel, n))
    assert values.size == n * n * min(shape[2], shape[3])
    if shape[0] <= n:  # Frobenius norm of the operator: every tap acts n^2 times (no wrap-around)
        # each value within svd_floor, so the root of their sum of squares by sqrt(count) of that
        assert np.sqrt(np.sum(values ** 2)) == pytest.approx(n * np.linalg.norm(kernel), rel=0,
                                                            abs=np.sqrt(values.size) * svd_floor(kernel, n))


def test_explicit_conv_is_keras_conv2d():
    """The oracle's convention is Keras': on an interior (VALID) window it equals Conv2D."""
    import keras
    rng = np.random.default_rng(0)
    kernel, x = rng.normal(size=(3, 3, 2, 3)), rng.normal(size=(6, 6, 2))
    layer = keras.layers.Conv2D(3, 3, padding="valid", use_bias=False)
    layer.build((None, 6, 6, 2))
    layer.kernel.assign(kernel.astype("float32"))
    keras_out = np.asarray(layer(x[None].astype("float32")))[0]
    np.testing.assert_allclose(circular_conv2d(x, kernel)[:4, :4], keras_out, rtol=1e-4, atol=1e-4)


# --- CKA: oracles are invariances and estimator properties ---------------------------------------

def test_cka_identity_and_invariances():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 10)) @ rng.normal(size=(10, 10))
    y = np.tanh(x @ rng.normal(size=(10, 7)))
    q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    for kernel in ("linear", "rbf"):
        for debiased in (False, True):
            # h / sqrt(h * h) with one HSIC value h: sqrt(fl(h^2)) = |h| in round-to-nearest, <= 2 ulp
            assert cka(x, x, kernel=kernel, debiased=debiased) == pytest.approx(1.0, abs=2 * EPS)
            base = cka(x, y, kernel=kernel, debiased=debiased)
            # orthogonal transforms and isotropic scaling of X (Kornblith et al. Sec. 2.1)
            floor = 2 * cka_floor(x, y, kernel)  # two evaluations, each within cka_floor
            assert cka(x @ q, y, kernel=kernel, debiased=debiased) == pytest.approx(base, rel=floor)
            assert cka(3.7 * x, y, kernel=kernel, debiased=debiased) == pytest.approx(base, rel=floor)
    # linear CKA is also invariant to translation (centring)
    assert cka(x + 5.0, y) == pytest.approx(cka(x, y), rel=cka_floor(x + 5.0, y) + cka_floor(x, y))


def test_debiased_cka_removes_the_bias_of_independent_features():
    rng = np.random.default_rng(2)
    biased, debiased = {}, {}
    for n in (50, 800):
        b, d = [], []
        for _ in range(5):
            x, y = rng.normal(size=(n, 100)), rng.normal(size=(n, 100))
            b.append(cka(x, y))
            d.append(cka(x, y, debiased=True))
        biased[n], debiased[n] = np.mean(b), np.mean(d)
    assert biased[50] > 0.5 and biased[800] < biased[50] / 3  # positive bias shrinking with n
    assert abs(debiased[50]) < 0.05 and abs(debiased[800]) < 0.01


@pytest.mark.parametrize("batch", [1, 7, 32, 100])
def test_minibatch_linear_cka_equals_one_shot(batch):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(100, 12)) + 2.0
    y = x[:, :5] @ rng.normal(size=(5, 9)) + rng.normal(size=(100, 9))
    accumulator = LinearCKAAccumulator()
    for start in range(0, 100, batch):
        accumulator.update(x[start:start + batch], y[start:start + batch])
    # moments summed per batch, then centred (||X^T X||_F / ||Xc^T Xc||_F is the Gram's amplification)
    assert accumulator.value() == pytest.approx(cka(x, y), rel=2 * cka_floor(x, y))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(3, 30), st.integers(1, 8), st.integers(1, 8),
       st.sampled_from(["linear", "rbf"]))
def test_biased_cka_lies_in_the_unit_interval(seed, n, p, q, kernel):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, p)), rng.normal(size=(n, q))
    value = cka(x, y, kernel=kernel)
    floor = cka_floor(x, y, kernel)  # in [0, 1] exactly (PSD kernels, Cauchy-Schwarz); off by that
    assert -floor <= value <= 1 + floor


# --- mistakes: oracle is hand counting -------------------------------------------------------------

def test_mistake_counts_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    a = np.array([0, 0, 1, 1, 0, 0, 2, 1, 2, 0])  # right: 0 1 3 6 8
    b = np.array([0, 2, 0, 1, 1, 2, 0, 1, 1, 0])  # right: 0 2 3 4
    overall = mistake_counts(labels, a, b)
    # only a: 1 6 8 -> 3; only b: 2 4 -> 2; both wrong: 5 7 9 -> 3; both right: 0 3 -> 2
    assert (overall["g1"], overall["g2"], overall["common"], overall["both_correct"]) == (3, 2, 3, 2)
    assert overall["accuracy_a"] == 0.5 and overall["accuracy_b"] == 0.4
    assert overall["r1"] == pytest.approx(2 / 5) and overall["r2"] == pytest.approx(3 / 6)  # uncommon / all mistakes
    per_class, total = mistakes_table(labels, a, b, 4)
    assert total == overall
    assert [(c["g1"], c["g2"], c["common"]) for c in per_class] == [(1, 1, 0), (0, 1, 1), (2, 0, 2), (0, 0, 0)]
    assert np.isnan(per_class[3]["r1"]) and per_class[3]["num"] == 0


def test_r1_r2_reproduce_table_3_class_1():
    # Table 3, class 1: g1=645, g2=832, common=3597 -> r1=0.1878, r2=0.1520
    labels = np.zeros(645 + 832 + 3597, dtype=int)
    a = np.concatenate([np.zeros(645), np.ones(832), np.ones(3597)])
    b = np.concatenate([np.ones(645), np.zeros(832), np.ones(3597)])
    counts = mistake_counts(labels, a, b)
    assert counts["r1"] == pytest.approx(0.1878, abs=1e-4) and counts["r2"] == pytest.approx(0.1520, abs=1e-4)


# --- end to end on tiny runs ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("similarity")
    recipe = {**tiny_recipe_dict(), "labels_downstream": "random", "num_classes_downstream": 3, "total_steps": 4,
              "num_eval_points": 2, "checkpoint_every": 2, "gaussian_num_train": 256, "gaussian_num_test": 64,
              "num_examples_upstream": 128, "num_examples_downstream": 64, "batch_size": 32,
              "eval_batch_size": 64, "padding": "same", "stride": 1}
    (directory / "r.yaml").write_text(yaml.safe_dump(recipe))
    invoke("pretrain", directory / "r.yaml", "--out", directory / "pre", "--quiet")
    invoke("transfer", directory / "r.yaml", "--from", directory / "pre", "--with-baseline", "--out",
           directory / "t", "--quiet")
    return directory


def test_spectrum_cli(runs, tmp_path):
    invoke("analyze", "spectrum", runs / "t", runs / "t-scratch", "--all-steps", "--thresholds", "0.5,0.05",
           "--bins", "10", "-o", tmp_path / "s.h5")
    result = read_result(tmp_path / "s.h5")
    arrays = result.arrays
    assert [str(v, "utf-8") if isinstance(v, bytes) else v for v in arrays["layers"]] == ["conv_0", "dense_0", "head"]
    assert arrays["input_size"].tolist() == [6, 0, 0] and arrays["row_step"].tolist() == [0, 2, 4, 0, 2, 4]
    import h5py
    with h5py.File(runs / "t" / "checkpoints" / "step_00000004.h5") as handle:
        kernel = handle["weights/conv_0/kernel"][()].astype(np.float64)
        dense = handle["weights/dense_0/kernel"][()].astype(np.float64)
        head = handle["weights/head/kernel"][()].astype(np.float64)
    spectra = [explicit_singular_values(kernel, 6)[:36 * 3], np.linalg.svd(dense, compute_uv=False),
               np.linalg.svd(head, compute_uv=False)]
    everything = np.concatenate(spectra)
    # float32 weights read as float64 on both sides, then FFT vs dense SVD: within svd_floor (Weyl)
    np.testing.assert_allclose(np.sort(arrays["values/2"]), np.sort(everything), rtol=0,
                               atol=2 * max(svd_floor(kernel, 6), svd_floor(dense[None, None], 1),
                                            svd_floor(head[None, None], 1)))
    assert arrays["histogram"][2].sum() == everything.size
    assert arrays["count_below"][2].tolist() == [int(np.sum(everything < 0.5)), int(np.sum(everything < 0.05))]
    expected = sum(np.linalg.norm(s) / s.max() for s in spectra)
    assert arrays["ratio_sum"][2] == pytest.approx(expected, rel=1e-6)
    assert arrays["frobenius"][2, 0] == pytest.approx(6 * np.linalg.norm(kernel), rel=1e-6)


def test_cka_cli(runs, tmp_path):
    printed = json.loads(invoke("analyze", "cka", runs / "t", runs / "t", "--num-examples", "40", "--json").output)
    matrix = np.array(printed["arrays"]["cka"])
    assert matrix.shape == (2, 2) and np.allclose(np.diag(matrix), 1.0)
    assert printed["inputs"]["method"].startswith("feature-space")
    invoke("analyze", "cka", runs / "t", runs / "t-scratch", "--step-a", "4", "--num-examples", "40", "-o",
           tmp_path / "c.h5")
    streamed = read_result(tmp_path / "c.h5").arrays["cka"]
    # <= 1 exactly (Cauchy-Schwarz), up to cka_floor: (p + 2n) 4 eps < 1e-12 for n = 40, p <= 108,
    # times the centring amplification, so 1e-9 admits amplifications up to 5e3; a wrong norm is O(1)
    assert np.all((streamed >= 0) & (streamed <= 1 + 1e-9))
    # the Gram route (RBF / debiased) on the same features; linear via Grams must equal the stream
    from rltx.analysis import similarity
    limit = similarity.FEATURE_LIMIT
    similarity.FEATURE_LIMIT = 0
    try:
        gram = similarity.analyze_cka(runs / "t", runs / "t-scratch", num_examples=40).arrays["cka"]
    finally:
        similarity.FEATURE_LIMIT = limit
    np.testing.assert_allclose(gram, streamed, rtol=1e-5)
    debiased = json.loads(invoke("analyze", "cka", runs / "t", runs / "t-scratch", "--kernel", "rbf", "--debiased",
                                 "--num-examples", "40", "--json").output)
    assert np.array(debiased["arrays"]["cka"]).shape == (2, 2)


def test_mistakes_cli(runs, tmp_path):
    invoke("analyze", "mistakes", runs / "t", runs / "t-scratch", "-o", tmp_path / "m.h5")
    arrays = read_result(tmp_path / "m.h5").arrays
    from rltx.runs import open_run
    labels = open_run(runs / "t").samples["test_labels"]
    a, b = arrays["predictions_a"], arrays["predictions_b"]
    assert a.shape == labels.shape == (64,)
    assert arrays["overall/g1"] == np.sum((a == labels) & (b != labels))
    assert arrays["overall/common"] == np.sum((a != labels) & (b != labels))
    assert arrays["g2"].sum() == arrays["overall/g2"] and arrays["num"].sum() == 64
    # different held-out sets are refused
    with pytest.raises(UsageError, match="held-out"):
        from rltx.analysis.similarity import analyze_mistakes
        analyze_mistakes(runs / "t", runs / "pre")
