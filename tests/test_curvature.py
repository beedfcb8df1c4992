"""Curvature analyses (Liu et al. Fig. 3, 5, 6, 7): Lanczos against an explicit matrix, HVP against the
closed-form Hessian of a linear softmax, gradients against finite differences, filter normalisation,
and the three kinds end to end from the CLI on two tiny runs."""
import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from rltx.analysis.curvature import (Objective, filter_normalized_direction, gradient_projection,
                                     lanczos, loss_along_gradient)
from rltx.analysis.results import read_result
from rltx.cli import main
from rltx.errors import UsageError
from rltx.runs import examples, model_at, open_run


def invoke(*args, code=0):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


# --- Lanczos on an explicit symmetric matrix -------------------------------------------------

EPS = np.finfo(np.float64).eps  # float64 unit round-off is EPS / 2 (Higham, Sec. 2.1)


def test_lanczos_top_eigenvalues_of_a_known_spd_matrix():
    rng = np.random.default_rng(0)
    dim = 120
    spectrum = np.concatenate([[50.0, 40.0, 30.0, 20.0, 10.0], rng.uniform(0.0, 1.0, dim - 5)])
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    matrix = (q * spectrum) @ q.T
    found = lanczos(lambda v: matrix @ v, dim, 5, 30, seed=1)
    np.testing.assert_allclose(found.eigenvalues, [50, 40, 30, 20, 10], rtol=1e-6)
    assert np.all(found.residuals < 1e-5)
    # an exhausted Krylov space: iterations capped at the dimension, exact
    small = np.diag([3.0, 2.0, 1.0])
    # Lanczos with full reorthogonalisation is backward stable: T = Q^T (A + E) Q, ||E|| <= c d eps ||A||,
    # so by Weyl each Ritz value is within that of an eigenvalue (Higham Sec. 19; Golub-Van Loan 10.3)
    np.testing.assert_allclose(lanczos(lambda v: small @ v, 3, 2, 30).eigenvalues, [3.0, 2.0], rtol=0,
                               atol=4 * 3 * EPS * 3.0)
    with pytest.raises(UsageError, match="iterations"):
        lanczos(lambda v: matrix @ v, dim, 5, 3)


# --- a linear softmax in float64: exact Hessian and finite differences -----------------------

@pytest.fixture(scope="module")
def linear():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((2,), dtype="float64")
    model = keras.Model(inputs, keras.layers.Dense(3, dtype="float64", name="head")(inputs))
    model.layers[-1].bias.assign(np.array([0.1, -0.2, 0.3]))
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((10, 2)), rng.integers(0, 3, 10)
    return Objective(model, x, y, batch_size=4), x, y  # three batches of 4, 4, 2


def numpy_loss(w, b, x, y):
    z = x @ w + b
    z = z - z.max(axis=1, keepdims=True)
    return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]))


def test_hvp_equals_the_closed_form_hessian_of_a_linear_softmax(linear):
    objective, x, y = linear
    w, b = objective.get()
    z = x @ w + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    augmented = np.hstack([x, np.ones((len(x), 1))])  # flat order [W.ravel() (i-major), b] = kron order
    hessian = np.mean([np.kron(np.outer(a, a), np.diag(q) - np.outer(q, q)) for a, q in zip(augmented, p)], axis=0)
    columns = np.stack([objective.hvp(e) for e in np.eye(objective.dim)], axis=1)
    # a mean of n per-example terms, each O(d) rounded operations (softmax, products): absolute error
    # <= c (n + d) eps max|term| (Higham Sec. 3.1, 4.2); a wrong Hessian term is O(max|term|) off
    terms = [np.kron(np.outer(a, a), np.diag(q) - np.outer(q, q)) for a, q in zip(augmented, p)]
    np.testing.assert_allclose(columns, hessian, rtol=0, atol=4 * (len(x) + objective.dim) * EPS * np.abs(terms).max())
    found = lanczos(objective.hvp, objective.dim, 3, 9)
    # Weyl: eigenvalues move by at most ||HVP matrix - H||_2, plus the eigensolvers' d eps ||H|| each
    weyl = np.linalg.norm(columns - hessian, 2) + 2 * 4 * objective.dim * EPS * np.linalg.norm(hessian, 2)
    np.testing.assert_allclose(found.eigenvalues, np.linalg.eigvalsh(hessian)[::-1][:3], rtol=0, atol=weyl)


def test_gradient_equals_finite_differences_and_variation_at_zero_is_zero(linear):
    objective, x, y = linear
    w, b = objective.get()
    loss, g = objective.gradient()
    # mean of n log-sum-exps of K logits z: absolute error <= c (n + K) eps (max|z| + 1) either way
    # (Higham Sec. 4.2; log/exp are faithful); a wrong batch weight moves the loss by ~1e-2
    floor = 4 * (len(y) + 3) * EPS * (np.abs(x @ w + b).max() + 1)
    assert loss == pytest.approx(numpy_loss(w, b, x, y), rel=0, abs=floor)
    h = 1e-6
    for index in [(0, 1), (1, 2)]:  # two kernel coordinates, central differences
        plus, minus = w.copy(), w.copy()
        plus[index] += h
        minus[index] -= h
        fd = (numpy_loss(plus, b, x, y) - numpy_loss(minus, b, x, y)) / (2 * h)
        # central difference: round-off floor/h plus truncation h^2/6 |L'''|, |L'''| <= max|x|^3
        # (the softmax's third cumulant is <= 1); a wrong gradient entry is off by O(|g|) ~ 1e-1
        bound = 2 * (floor / h + h ** 2 / 6 * np.abs(x).max() ** 3)
        assert g[index[0] * 3 + index[1]] == pytest.approx(fd, rel=0, abs=bound)
    loss0, _, variation = loss_along_gradient(objective, [0.0, 1e-4, 0.5])
    # the same batches through another tf.function (loss vs loss-and-gradient): each within floor
    assert loss0 == pytest.approx(loss, rel=0, abs=2 * floor) and variation[0] == 0.0
    assert variation[1] == pytest.approx(-1e-4 * np.linalg.norm(g), rel=1e-3)  # first order: -eta ||g||
    np.testing.assert_array_equal(objective.get()[0], w)  # the weights are restored


def test_gradient_projection_on_its_own_singular_vectors():
    rng = np.random.default_rng(2)
    gradient, weights = rng.standard_normal((3, 3, 2, 4)), rng.standard_normal((3, 3, 2, 4))
    s, projection = gradient_projection(gradient, weights)
    u, s_ref, vt = np.linalg.svd(gradient.reshape(18, 4), full_matrices=False)
    np.testing.assert_array_equal(s, s_ref)  # the same LAPACK call on the same float64 buffer
    # u_i^T W v_i in another summation order: k eps |u_i|^T |W| |v_i|, k = 18 + 4 (Higham Sec. 3.5)
    w = weights.reshape(18, 4)
    np.testing.assert_allclose(projection, [abs(u[:, i] @ w @ vt[i]) for i in range(4)], rtol=0,
                               atol=2 * 22 * EPS * max(np.abs(u[:, i]) @ np.abs(w) @ np.abs(vt[i]) for i in range(4)))
    # W = G: the projections are the singular values themselves, to the SVD's backward error
    # c (m + n) eps ||G||_2 (Higham Sec. 20 / Demmel-Kahan) and the bilinear form's round-off
    np.testing.assert_allclose(gradient_projection(gradient, gradient)[1], s_ref, rtol=0,
                               atol=4 * 22 * EPS * s_ref[0])


def test_filter_normalisation_exact_norms_and_zero_biases():
    rng = np.random.default_rng(3)
    theta = [rng.standard_normal((3, 3, 2, 5)), rng.standard_normal(5), rng.standard_normal((7, 4)),
             rng.standard_normal(4)]
    d1 = filter_normalized_direction(theta, np.random.default_rng(0), [True] * 4)
    d2 = filter_normalized_direction(theta, np.random.default_rng(1), [True, True, False, False], orthogonal_to=d1)
    def rtol(k):  # ||r / ||r|| * ||t|| ||: three norms of k entries (k eps each, Higham Sec. 4.2), two roundings
        return 2 * (3 * k + 2) * EPS

    for d in (d1, d2):
        np.testing.assert_allclose(np.linalg.norm(d[0].reshape(-1, 5), axis=0),
                                   np.linalg.norm(theta[0].reshape(-1, 5), axis=0), rtol=rtol(18))
        assert not np.any(d[1]) and not np.any(d[3])
    np.testing.assert_allclose(np.linalg.norm(d1[2], axis=0), np.linalg.norm(theta[2], axis=0), rtol=rtol(7))
    assert not np.any(d2[2])  # outside the mask (another layer)
    with_biases = filter_normalized_direction(theta, np.random.default_rng(0), [True] * 4, include_biases=True)
    assert np.linalg.norm(with_biases[1]) == pytest.approx(np.linalg.norm(theta[1]), rel=rtol(5))


# --- two tiny runs, end to end from the CLI --------------------------------------------------

@pytest.fixture(scope="module")
def runs(paired_runs):
    """The shared pre-training runs of seeds 0 and 1 (conftest.py): 6 steps, checkpoints 0, 3, 6."""
    return [paired_runs / "pre0", paired_runs / "pre1"]


def independent_loss(run_dir, step, limit):
    """Oracle: model.predict and a numpy cross-entropy."""
    run = open_run(run_dir)
    x = examples(run, "train", limit)
    y = run.samples["upstream_labels"][:limit]
    z = model_at(run, step, x.shape[1:]).predict(x, verbose=0).astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]))


def test_landscape_cli_centre_equals_the_checkpoint_loss(runs, tmp_path):
    invoke("analyze", "landscape", *runs, "--points", "5", "--num-examples", "64", "-o", tmp_path / "l.h5")
    stored = read_result(tmp_path / "l.h5")
    assert stored.kind == "landscape" and stored.arrays["grid"].tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]
    for r, run in enumerate(runs):
        curve = stored.arrays[f"{r}/loss"]
        assert curve.shape == (5,)
        assert curve[2] == pytest.approx(independent_loss(run, 6, 64), rel=1e-5)
    result = invoke("analyze", "landscape", runs[0], "--two-d", "--points", "3", "--layer", "conv_0",
                    "--center", "init", "--num-examples", "64", "--json")
    printed = json.loads(result.output)
    assert np.array(printed["arrays"]["0/loss"]).shape == (3, 3) and printed["inputs"]["steps"] == [[0]]
    assert printed["arrays"]["0/loss"][1][1] == pytest.approx(independent_loss(runs[0], 0, 64), rel=1e-5)
    bad = invoke("analyze", "landscape", runs[0], "--layer", "nope", code=2)
    assert "no trainable layer 'nope'" in bad.output
    assert stored.arrays["0/num_examples"] == 64
    every = json.loads(invoke("analyze", "landscape", runs[0], "--points", "3", "--json").output)  # default 512
    assert every["inputs"]["options"]["num_examples"] == 512  # as asked; what was used, the run's whole set:
    assert every["arrays"]["0/num_examples"] == len(open_run(runs[0]).samples["upstream_labels"]) < 512


def test_hessian_cli_on_two_runs(runs, tmp_path):
    invoke("analyze", "hessian", *runs, "--top-k", "3", "--iterations", "10", "--num-examples", "64",
           "-o", tmp_path / "h.h5")
    stored = read_result(tmp_path / "h.h5")
    for r in range(2):
        values = stored.arrays[f"{r}/eigenvalues"]
        assert stored.arrays[f"{r}/steps"].tolist() == [6] and values.shape == (1, 3)
        assert np.all(np.diff(values, axis=1) <= 0) and np.all(values[:, 0] > 0)
        assert stored.arrays[f"{r}/loss"][-1] == pytest.approx(independent_loss(runs[r], 6, 64), rel=1e-5)
        assert stored.arrays[f"{r}/num_examples"] == 64


def test_gradient_cli_on_two_runs(runs, tmp_path):
    result = invoke("analyze", "gradient", *runs, "--all-steps", "--num-examples", "64", "--etas", "0.1,0.5",
                    "-o", tmp_path / "g.h5", "--json")
    printed = json.loads(result.output)
    stored = read_result(tmp_path / "g.h5")
    assert stored.arrays["etas"].tolist() == [0.0, 0.1, 0.5] == printed["arrays"]["etas"]
    for r in range(2):
        layers = list(stored.arrays[f"{r}/layers"])
        assert [n.decode() if isinstance(n, bytes) else n for n in layers] == ["conv_0", "dense_0", "head"]
        variation = stored.arrays[f"{r}/loss_variation"]
        assert variation.shape == (3, 3) and np.all(variation[:, 0] == 0) and stored.arrays[f"{r}/num_examples"] == 64
        norms = stored.arrays[f"{r}/layer_gradient_norm"]
        # sums of squares of the same n float64 entries in two groupings: relative n eps (Higham
        # Sec. 4.2), n = 820 parameters of the TINY model; a missing layer is off by > 1e-3
        np.testing.assert_allclose(np.sqrt(np.sum(norms ** 2, axis=1)), stored.arrays[f"{r}/gradient_norm"],
                                   rtol=2 * (820 + 4) * EPS)
        sv = stored.arrays[f"{r}/singular_values/conv_0"]
        assert sv.shape == (3, 8) and np.all(np.diff(sv, axis=1) <= 0)  # LAPACK sorts them: exact
        assert stored.arrays[f"{r}/projection/head"].shape == (3, 4)
    assert invoke("analyze", "gradient", runs[0], "--etas", "x", code=2).output.startswith("Error")
