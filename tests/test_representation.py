"""Representation alignment (Imani, Hu, White 2022, Eq. 2): oracles on constructed spectra, then
`rltx analyze representation-alignment` end to end on tiny runs."""
import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from rltx.analysis.representation import alignment, alignment_from_spectrum, label_vectors, normalize_rows, spectrum
from rltx.analysis.results import read_result
from rltx.cli import main

def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def constructed(n=40, s=(3.0, 2.2, 1.5, 0.9, 0.4, 0.1), seed=0):
    """Phi = U diag(s) V^T with known SVD, scaled so that every row has norm <= 1 (Sec. 4)."""
    rng = np.random.default_rng(seed)
    u = np.linalg.qr(rng.normal(size=(n, len(s))))[0]
    v = np.linalg.qr(rng.normal(size=(len(s), len(s))))[0]
    phi = u @ np.diag(s) @ v.T
    scale = np.linalg.norm(phi, axis=1).max()
    return phi / scale, u, np.asarray(s) / scale


EPS = np.finfo(np.float64).eps  # float64 unit round-off is EPS / 2 (Higham, Sec. 2.1)


def projection_floor(sigma, y) -> float:
    """Absolute round-off of a sum of (u_i^T y)^2 over the singular vectors of Phi [m, .] kept at a
    tau: LAPACK's vectors are exact for Phi + E, ||E|| <= c m eps ||Phi|| (Higham Sec. 20), and turn
    towards dropped ones by ||E|| / gap (Wedin's sin-theta theorem); gap: the smallest one in `sigma`.
    A wrong direction or a wrong tau cut-off moves the sum by a whole (u_i^T y)^2 >= 1e-2 here."""
    return 4 * len(y) * EPS * float(y @ y) * (1 + sigma[0] / np.min(-np.diff(sigma)))


@pytest.mark.parametrize("k", [0, 2, 5])
def test_label_along_one_singular_vector_gives_a_step_at_its_singular_value(k):
    # Sec. 6.2 / Fig. 9: y equal to one left singular vector u_k (scaled to ||y||^2 = n like a +-1
    # vector): the curve is ||y||^2 up to tau = s_k and exactly 0 above it.
    phi, u, s = constructed()
    n = len(phi)
    # a norm of 6 entries (6 eps, Higham Sec. 4.2) after one rounded division per entry
    assert np.linalg.norm(phi, axis=1).max() <= 1 + 2 * (phi.shape[1] + 2) * EPS
    y = np.sqrt(n) * u[:, k]
    # probe offset either side of s_k: far above the computed s_k's error c m eps ||Phi|| ~ 1e-14
    # (Weyl) and far below the gaps (>= 0.1), so the cut falls on the intended side
    eps = 1e-9
    grid = np.linspace(0, s[k] - eps, 7)
    np.testing.assert_allclose(alignment(phi, y, grid), n, rtol=0, atol=projection_floor(s, y))
    np.testing.assert_allclose(alignment(phi, y, [s[k] - eps, s[k] + eps]), [n, 0], rtol=0,
                               atol=projection_floor(s, y))
    np.testing.assert_allclose(alignment(phi, y, [s[0] * 2]), [0.0])


def test_two_directions_drop_in_two_steps():
    # Sec. 6.2's y2: a weighted sum of two singular vectors drops by each weight^2 at each value.
    phi, u, s = constructed()
    y = 3.0 * u[:, 1] + 2.0 * u[:, 4]
    curve = alignment(phi, y, [0, s[4] + 1e-9, s[1] - 1e-9, s[1] + 1e-9])  # probes as in the test above
    np.testing.assert_allclose(curve, [13.0, 9.0, 9.0, 0.0], rtol=0, atol=projection_floor(s, y))


def test_alignment_at_zero_is_the_projection_onto_the_column_space():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(30, 6))
    phi = np.concatenate([base, base[:, :2] @ rng.normal(size=(2, 2))], axis=1)  # rank 6 of 8 columns
    phi /= np.linalg.norm(phi, axis=1).max()
    y = np.where(rng.random(30) < 0.5, 1.0, -1.0)
    w = np.linalg.lstsq(phi, y, rcond=None)[0]  # independent: least squares fit, P y = Phi w
    sigma, projection, rank = spectrum(phi, y)
    assert rank == 6
    # P y by thin SVD vs by least squares: the projector onto the rank-6 column space is off by
    # c m eps kappa, kappa = sigma_1 / sigma_6 (Wedin; Higham Sec. 20.1), so ||P y||^2 by 2 ||y||^2 that
    kappa = sigma[0] / sigma[rank - 1]
    np.testing.assert_allclose(alignment(phi, y, [0.0]), [np.sum((phi @ w) ** 2)], rtol=0,
                               atol=2 * 4 * len(y) * EPS * kappa * float(y @ y))
    assert alignment(phi, y, [0.0])[0] < 30  # y is not in the span: below the paper's ||y||^2 at tau = 0
    # for tau > 0 the thin-SVD sum equals the paper's full-U definition
    full_u, full_sigma, _ = np.linalg.svd(phi, full_matrices=True)
    full_sigma = np.concatenate([full_sigma, np.zeros(30 - len(full_sigma))])
    for tau in np.linspace(1e-6, full_sigma[0], 9):
        paper = np.sum((full_u.T @ y)[full_sigma >= tau] ** 2)
        # two SVDs of one Phi: each side within projection_floor (gaps of the nonzero values and to 0)
        np.testing.assert_allclose(alignment_from_spectrum(sigma, projection, rank, [tau])[0, 0], paper, rtol=0,
                                   atol=2 * projection_floor(sigma[:rank + 1], y))


def test_illustrative_example_labels_along_the_spread_align_better():
    # Sec. 4.1, Fig. 4: unit-length points around angles pi/4 and -3pi/4; labels splitting the two
    # clusters lie along u_1 (high alignment between sigma_2 and sigma_1), labels splitting each
    # cluster across its narrow direction lie along u_2 (low alignment there).
    rng = np.random.default_rng(2)
    angles = np.concatenate([np.pi / 4 + 0.3 * rng.normal(size=500), -3 * np.pi / 4 + 0.3 * rng.normal(size=500)])
    phi = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    sigma = np.linalg.svd(phi, compute_uv=False)
    good = np.where(np.arange(1000) < 500, 1.0, -1.0)
    bad = np.where(np.sin(angles - np.pi / 4) > 0, 1.0, -1.0)
    tau = (sigma[0] + sigma[1]) / 2
    assert alignment(phi, good, [tau])[0] > 0.9 * 1000 > 0.5 * 1000 > alignment(phi, bad, [tau])[0]


def test_rows_normalised_to_norm_at_most_one():
    rng = np.random.default_rng(3)
    phi = rng.normal(size=(20, 5)) * rng.uniform(0.01, 100, size=(20, 1))
    phi[4] = 0.0
    for row_norm in ("unit", "max"):
        for constant in (True, False):
            out = normalize_rows(phi, row_norm, constant)
            norms = np.linalg.norm(out, axis=1)
            assert out.dtype == np.float64 and out.shape == (20, 5 + constant)
            # a norm of <= 6 entries (6 eps, Higham Sec. 4.2) after <= 2 rounded divisions per entry
            assert np.all(norms <= 1 + 2 * (out.shape[1] + 2) * EPS)
            if constant:
                np.testing.assert_allclose(out[:, -1], 1 / np.sqrt(2))
    unit = normalize_rows(phi, "unit", False)
    np.testing.assert_allclose(np.delete(np.linalg.norm(unit, axis=1), 4), 1.0)
    assert np.all(unit[4] == 0)
    np.testing.assert_allclose(normalize_rows(phi, "max", False),
                               phi / np.linalg.norm(phi, axis=1).max())  # relative magnitudes kept
    with pytest.raises(ValueError, match="row_norm"):
        normalize_rows(phi, "l1")


def test_label_vectors():
    np.testing.assert_array_equal(label_vectors([0, 1, 1, 0], 2), [[-1, 1, 1, -1]])
    np.testing.assert_array_equal(label_vectors([0, 2, 1], 3), [[1, -1, -1], [-1, -1, 1], [-1, 1, -1]])
    with pytest.raises(ValueError, match="labels outside"):
        label_vectors([0, 3], 3)


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from tests_support import tiny_recipe_dict
    directory = tmp_path_factory.mktemp("representation")
    recipe = {**tiny_recipe_dict(), "total_steps": 10, "checkpoint_every": 5, "num_eval_points": 2}
    (directory / "r.yaml").write_text(yaml.safe_dump(recipe))
    for name, overrides in {"a": ["seed=0"], "binary": ["seed=0", "num_classes_upstream=2"],
                            "other": ["seed=0", "num_examples_upstream=256", "total_steps=1"]}.items():
        sets = [arg for value in overrides for arg in ("--set", value)]
        result = invoke("pretrain", directory / "r.yaml", *sets, "--out", directory / name, "--quiet")
        assert result.exit_code == 0, result.output
    return directory


def dense_outputs(run_dir, step, n):
    """Independent: the dense_0 activations of the first n training examples from a Keras model."""
    import keras

    from rltx.runs import examples, model_at, open_run
    run = open_run(run_dir)
    inputs = examples(run, "train", n)
    model = model_at(run, step, tuple(inputs.shape[1:]))
    return np.asarray(keras.Model(model.inputs, model.get_layer("dense_0").output)([inputs]), dtype=np.float64)


def test_curves_per_layer_over_all_checkpoints(runs, tmp_path):
    result = invoke("analyze", "representation-alignment", runs / "a", "--all-steps", "--num-examples", 100,
                    "--points", 11, "-o", tmp_path / "r.h5")
    assert result.exit_code == 0, result.output
    stored = read_result(tmp_path / "r.h5")
    arrays = stored.arrays
    assert stored.kind == "representation_alignment" and stored.inputs["steps"] == [0, 5, 10]
    assert [name.decode() for name in arrays["layers"]] == ["inputs", "conv_0", "dense_0"]
    assert list(arrays["num_features"]) == [108, 32, 16]
    assert arrays["alignment"].shape == (3, 3, 11) and arrays["alignment_per_class"].shape == (3, 3, 4, 11)
    np.testing.assert_allclose(arrays["fraction"], np.linspace(0, 1, 11))
    np.testing.assert_allclose(arrays["tau"], arrays["fraction"] * arrays["max_singular_value"][..., None])
    np.testing.assert_array_equal(arrays["label_norm_sq"], [100] * 4)
    curve = arrays["alignment"]
    # prefixes of one cumulative sum of squares: rounding is monotone, so non-increasing exactly
    assert np.all(np.diff(curve, axis=-1) <= 0) and np.all(curve[..., -1] > 0)  # keeps the top direction
    np.testing.assert_allclose(curve[..., 0], arrays["projected_norm_sq"].sum(-1))
    # ||P Y||^2 <= ||Y||^2 = 4 x 100, up to the sum of squares' m eps (m = 100 examples, Higham Sec. 4.2)
    assert np.all(curve[..., 0] <= 400 * (1 + 4 * 100 * EPS))
    # the inputs do not change with the checkpoint; the hidden layers do
    np.testing.assert_allclose(curve[:, 0], np.broadcast_to(curve[0, 0], (3, 11)))
    assert not np.allclose(curve[0, 2], curve[2, 2])
    assert arrays["singular_values/conv_0"].shape == (3, 33)
    assert arrays["label_projection/dense_0"].shape == (3, 4, 17)
    # independent: the paper's full-U definition on unit rows + constant feature, one-vs-rest labels
    phi = dense_outputs(runs / "a", 10, 100)
    norms = np.linalg.norm(phi, axis=1, keepdims=True)
    phi = np.concatenate([phi / np.where(norms > 0, norms, 1), np.ones((100, 1))], axis=1) / np.sqrt(2)
    u, sigma, _ = np.linalg.svd(phi, full_matrices=True)
    sigma = np.concatenate([sigma, np.zeros(100 - len(sigma))])
    labels = arrays["labels"]
    for p, tau in enumerate(arrays["tau"][2, 2][1:], start=1):
        paper = sum(np.sum((u.T @ np.where(labels == c, 1.0, -1.0))[sigma >= tau] ** 2) for c in range(4))
        np.testing.assert_allclose(curve[2, 2, p], paper, rtol=1e-4, atol=1e-3)


def test_labels_from_a_run_with_the_same_examples(runs, tmp_path):
    result = invoke("analyze", "representation-alignment", runs / "a", "--num-examples", 50, "--points", 5,
                    "--labels-from", runs / "binary", "--json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    arrays = {k: np.asarray(v) for k, v in printed["arrays"].items()}
    from rltx.runs import open_run
    binary = open_run(runs / "binary")
    assert printed["inputs"]["label_vectors"] == 1 and printed["inputs"]["labels_from"] == str(binary.run_dir)
    np.testing.assert_array_equal(arrays["labels"], binary.samples["upstream_labels"][:50])
    np.testing.assert_array_equal(arrays["indices"], open_run(runs / "a").samples["upstream_indices"][:50])
    assert arrays["alignment_per_class"].shape == (1, 3, 1, 5) and list(arrays["label_norm_sq"]) == [50]
    own = invoke("analyze", "representation-alignment", runs / "a", "--num-examples", 50, "--points", 5, "--json")
    assert not np.allclose(np.asarray(json.loads(own.output)["arrays"]["alignment"]), arrays["alignment"])


def test_labels_from_a_run_with_other_examples_is_refused(runs):
    result = CliRunner().invoke(main, ["analyze", "representation-alignment", str(runs / "a"), "--labels-from",
                                       str(runs / "other")])
    assert result.exit_code == 2
    assert "same train example indices: use --examples test" in result.output


def test_held_out_examples_options_and_bad_input(runs, tmp_path):
    result = invoke("analyze", "representation-alignment", runs / "a", "--step", 0, "--examples", "test",
                    "--num-examples", 40, "--points", 3, "--row-norm", "max", "--no-constant-feature",
                    "-o", tmp_path / "t.h5")
    assert result.exit_code == 0, result.output
    stored = read_result(tmp_path / "t.h5")
    assert stored.inputs["steps"] == [0] and stored.inputs["which"] == "test"
    assert stored.arrays["singular_values/inputs"].shape == (1, 40)
    assert stored.arrays["alignment"].shape == (1, 3, 3)
    bad = CliRunner().invoke(main, ["analyze", "representation-alignment", str(runs / "a"), "--points", "1"])
    assert bad.exit_code == 2 and "points" in bad.output
    missing = CliRunner().invoke(main, ["analyze", "representation-alignment", str(runs / "a"), "--step", "7"])
    assert missing.exit_code == 2 and "no checkpoint at step 7" in missing.output
