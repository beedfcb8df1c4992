"""Prop. 1 observed end to end through the command line (Sec. 2.1-2.2, A.6, E.1).

A one-hidden-layer MLP trained with random labels on centred Gaussian input N(0, diag(0.1, ..., 3.0))
from an isotropic He initialisation ends with a first-layer Sigma_w = E[w w^T] aligned with Sigma_x:
its misalignment to the data eigenbasis is at least 10x smaller than to a random orthonormal basis.
At step 0 both are the same sampling-noise floor of n random filters in d dimensions (about
0.5 d^2 / n), so the contrast between the two steps is what training on random labels did.
"""
import json
from pathlib import Path

from click.testing import CliRunner

from rltx import store
from rltx.cli import main

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "prop1_gaussian.yaml"


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_prop1_first_layer_aligns_with_gaussian_data_under_random_labels(tmp_path):
    run = tmp_path / "prop1"
    invoke("pretrain", RECIPE, "--out", run, "--quiet")
    metrics = store.read_metrics(run)
    assert metrics[-1]["train_accuracy"] > 0.9  # the random labels were fitted: it was really trained

    printed = json.loads(invoke("analyze", "misalignment", run, "--all-steps", "--json"))
    assert printed["inputs"]["layer"] == "dense_0"
    rows = {row["step"]: (row["misalignment (data basis)"], row["misalignment (random basis)"])
            for row in printed["table"]}
    assert sorted(rows) == [0, metrics[-1]["step"]]  # the isotropic initialisation and the trained network
    data_0, random_0 = rows[0]
    data_end, random_end = rows[metrics[-1]["step"]]
    # Isotropic initialisation: no basis is special, the two scores are the same noise floor.
    assert max(data_0, random_0) / min(data_0, random_0) < 2, rows
    # After training: Sigma_w has become anisotropic in the data eigenbasis (Prop. 1).
    assert random_end >= 10 * data_end, rows
    assert random_end > 5 * random_0, rows  # the anisotropy was learned, not a noise artefact
