"""Curves (Maennel et al. App. B AUC, groups, pre-trained/scratch pairs) and weights (Liu et al. Sec. 3
distance to the pretrained point, Neyshabur et al. B.3 per-module distances), against closed forms,
numpy, and the raw HDF5 files of tiny runs made with the CLI."""
import json
import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from rltx import store
from rltx.analysis.curves import accuracy_auc, analyze_curves, group_statistics
from rltx.analysis.results import read_result, write_result
from rltx.analysis.weights import analyze_weights
from rltx.cli import main
from rltx.errors import UsageError
from rltx.runs import open_run
from tests_support import PAIRED, PAIRED_SEEDS

SEEDS = PAIRED_SEEDS
STEPS = PAIRED["total_steps"]


# --- accuracy_auc: closed forms --------------------------------------------------------------

EPS = np.finfo(np.float64).eps  # float64 unit round-off is EPS / 2 (Higham, Sec. 2.1)


def trapezoid_floor(steps) -> float:
    """Relative round-off of a trapezoid sum over m segments of nonnegative terms, each term three
    rounded operations, then one division: (m + 4) EPS (recursive summation, Higham Sec. 4.2);
    doubled for a hand-computed oracle. A wrong segment or weight moves the AUC by > 1e-3."""
    return 2 * (len(steps) + 4) * EPS


@pytest.mark.parametrize("a", [0.0, 0.37, 1.0])
def test_auc_of_a_constant_is_the_constant(a):
    steps = [0, 1, 3, 10, 11, 40]
    # sum of m segments diff * a, each rounded once, then / horizon: (m + 1) EPS a (a = 0: exact)
    assert accuracy_auc(steps, [a] * len(steps)) == pytest.approx(a, rel=0, abs=(len(steps) + 1) * EPS * a)
    assert accuracy_auc(steps, [a] * len(steps), horizon=7) == pytest.approx(a, rel=0, abs=(len(steps) + 1) * EPS * a)


def test_auc_of_a_linear_ramp_is_one_half():
    steps = np.array([0, 1, 2, 5, 13, 50, 100])  # irregular: a line is exact under the trapezoid rule
    assert accuracy_auc(steps, steps / 100) == pytest.approx(0.5, rel=trapezoid_floor(steps))
    # up to a horizon h inside the run the ramp reaches h/100, so the mean is h/200
    assert accuracy_auc(steps, steps / 100, horizon=30) == pytest.approx(30 / 200, rel=trapezoid_floor(steps))


def test_auc_on_irregular_steps_is_the_hand_computed_trapezoid():
    steps, accuracy = [0, 1, 4, 10], [0.1, 0.5, 0.2, 0.9]
    area = 1 * (0.1 + 0.5) / 2 + 3 * (0.5 + 0.2) / 2 + 6 * (0.2 + 0.9) / 2  # = 4.65
    assert accuracy_auc(steps, accuracy) == pytest.approx(area / 10, rel=trapezoid_floor(steps))
    # horizon 7 cuts the last segment at 0.2 + (3/6) * 0.7 = 0.55
    cut = 1 * (0.1 + 0.5) / 2 + 3 * (0.5 + 0.2) / 2 + 3 * (0.2 + 0.55) / 2
    assert accuracy_auc(steps, accuracy, horizon=7) == pytest.approx(cut / 7, rel=trapezoid_floor(steps))
    # epochs are steps times a constant: the normalised AUC does not change
    assert accuracy_auc(np.array(steps) * 0.25, accuracy) == pytest.approx(area / 10, rel=trapezoid_floor(steps))
    with pytest.raises(ValueError, match="outside the curve"):
        accuracy_auc(steps, accuracy, horizon=11)
    with pytest.raises(ValueError, match="strictly increasing"):
        accuracy_auc([0, 2, 2], [0.1, 0.2, 0.3])


def test_group_statistics_against_numpy():
    values = np.array([0.61, 0.64, 0.70, 0.52, 0.55, 0.58, 0.90])
    groups = np.array([0, 0, 1, 2, 2, 2, 3])  # group 3 has one run
    stats = group_statistics(values, groups)
    for g in range(4):
        members = values[groups == g]
        assert stats["count"][g] == members.size
        # same arithmetic as numpy's (sum, / n; sqrt(sum((x - mean)^2) / (n - 1))): equal to the bit
        assert stats["mean"][g] == np.mean(members)
        assert stats["min"][g] == members.min() and stats["max"][g] == members.max()
        if members.size > 1:  # ddof=1: the sample standard deviation over seeds
            assert stats["std"][g] == np.std(members, ddof=1)
    # vs the exact mean 0.625: the computed mean is off by <= EPS * 0.64, a relative error of
    # EPS * 0.64 / 0.015 in each deviation, hence in the std (one sqrt and a few roundings more)
    assert stats["std"][0] == pytest.approx(np.sqrt(((0.61 - 0.625) ** 2 + (0.64 - 0.625) ** 2) / 1),
                                            rel=4 * EPS * 0.64 / 0.015)
    assert np.isnan(stats["std"][1]) and np.isnan(stats["std"][3])


# --- tiny real runs ---------------------------------------------------------------------

def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def runs(paired_runs):
    """pre<s>: pre-training; sweep/t<s>: transfer with its paired baseline sweep/t<s>-scratch (conftest.py)."""
    return paired_runs


def raw_curve(run_dir):
    """Oracle: steps and accuracies straight from metrics.h5, and the AUC by numpy's trapezoid."""
    with h5py.File(run_dir / "metrics.h5", "r") as handle:
        steps, train, test = handle["step"][()], handle["train_accuracy"][()], handle["test_accuracy"][()]
    trapezoid = getattr(np, "trapezoid", None) or np.trapz
    return {"train_auc": trapezoid(train, steps) / steps[-1], "test_auc": trapezoid(test, steps) / steps[-1],
            "final_train_accuracy": train[-1], "final_test_accuracy": test[-1]}



def test_every_transfer_variant_is_paired_with_the_scratch_run_on_the_same_data(runs, tmp_path):
    """Issue 14: a transfer run made without --with-baseline (another variant, e.g. another
    downstream learning rate) is paired with the scratch run of the same seed and data among the
    inputs, never with one of another seed (whose downstream sample differs)."""
    for seed in SEEDS:
        invoke("transfer", runs / "r.yaml", "--from", runs / f"pre{seed}", "--set", f"seed={seed}",
               "--set", "learning_rate_downstream=0.02", "--out", tmp_path / f"v{seed}", "--quiet")
    variants = [tmp_path / f"v{s}" for s in SEEDS]
    scratch = [runs / "sweep" / f"t{s}-scratch" for s in reversed(SEEDS)]  # order must not matter
    arrays = analyze_curves([*variants, *scratch, runs / "sweep" / "t0", runs / "sweep" / "t1"]).arrays
    partners = dict(zip(arrays["pairs/transfer_run"], arrays["pairs/scratch_run"]))
    for seed in SEEDS:
        expected = str((runs / "sweep" / f"t{seed}-scratch").resolve())
        assert partners[str((tmp_path / f"v{seed}").resolve())] == expected  # by seed and data
        assert partners[str((runs / "sweep" / f"t{seed}").resolve())] == expected      # by paired_with
    p = list(arrays["pairs/transfer_run"]).index(str((tmp_path / "v1").resolve()))
    assert arrays["pairs/scratch_train_auc"][p] == pytest.approx(raw_curve(runs / "sweep" / "t1-scratch")["train_auc"])
    assert arrays["pairs/pretrained_train_auc"][p] == pytest.approx(raw_curve(tmp_path / "v1")["train_auc"])
    # without a scratch run of its seed among the inputs, a variant has no pair
    lonely = analyze_curves([tmp_path / "v0", runs / "sweep" / "t1-scratch"]).arrays
    assert len(lonely["pairs/transfer_run"]) == 0

def raw_weights(run_dir, step):
    """Oracle: the checkpoint file read with h5py directly."""
    with h5py.File(run_dir / "checkpoints" / f"step_{step:08d}.h5", "r") as handle:
        group = handle["weights"]
        return {f"{layer}/{name}": group[layer][name][()].astype(np.float64)
                for layer in group for name in group[layer]}


def frobenius(a, b, layer):
    return np.sqrt(sum(np.sum((a[k] - b[k]) ** 2) for k in a if k.startswith(f"{layer}/")))


def test_curves_groups_and_pairs_on_real_runs(runs, tmp_path):
    names = [f"pre{s}" for s in SEEDS] + [f"sweep/t{s}" for s in SEEDS] + [f"sweep/t{s}-scratch"
                                                                          for s in SEEDS]
    result = analyze_curves([runs / n for n in names])
    arrays = result.arrays
    assert list(arrays["runs"]) == [str((runs / n).resolve()) for n in names]
    for i, name in enumerate(names):
        for metric, value in raw_curve(runs / name).items():
            # the same float64 trapezoid (diff * (y1 + y0) / 2, summed) as numpy's: equal to the bit
            assert arrays[metric][i] == value, (name, metric)
    # auto groups: same recipe apart from the seed, and the same kind
    assert arrays["group"].tolist() == [0, 0, 1, 1, 2, 2]
    assert list(arrays["groups/kind"]) == ["pretrain", "transfer", "scratch"]
    assert list(arrays["groups/label"]) == ["pretrain", f"transfer, from_step=[{STEPS}]", f"scratch, from_step=[{STEPS}]"]
    assert arrays["groups/count"].tolist() == [2, 2, 2]
    for g in range(3):
        members = arrays["test_auc"][arrays["group"] == g]
        # numpy's arithmetic for mean and std (see test_group_statistics_against_numpy): bit-equal
        assert arrays["groups/test_auc_mean"][g] == np.mean(members)
        assert arrays["groups/test_auc_std"][g] == np.std(members, ddof=1)
        assert arrays["groups/test_auc_min"][g] == members.min()
    # pairs through "paired_with": transfer t<s> with t<s>-scratch
    assert list(arrays["pairs/transfer_run"]) == [str((runs / "sweep" / f"t{s}").resolve()) for s in SEEDS]
    assert list(arrays["pairs/scratch_run"]) == [str((runs / "sweep" / f"t{s}-scratch").resolve()) for s in SEEDS]
    assert arrays["pairs/seed"].tolist() == list(SEEDS) and arrays["pairs/horizon"].tolist() == [STEPS, STEPS]
    depths = [str(open_run(runs / "sweep" / f"t{s}").recipe.transfer_layers) for s in SEEDS]
    assert [store.text(x) for x in arrays["pairs/transfer_layers"]] == depths  # Fig. 12-15's panels split on it
    for p, seed in enumerate(SEEDS):
        transfer, scratch = raw_curve(runs / "sweep" / f"t{seed}"), raw_curve(runs / "sweep" / f"t{seed}-scratch")
        assert arrays["pairs/pretrained_train_auc"][p] == pytest.approx(transfer["train_auc"])
        assert arrays["pairs/scratch_test_auc"][p] == pytest.approx(scratch["test_auc"])
    # one Fig. 12-15 dot for the group of transfer runs: the mean over its pairs
    assert arrays["pair_groups/group"].tolist() == [1] and arrays["pair_groups/count"].tolist() == [2]
    assert arrays["pair_groups/scratch_train_auc"][0] == pytest.approx(np.mean(arrays["pairs/scratch_train_auc"]))
    assert [row["runs"] for row in result.table] == [2, 2, 2]
    # the scratch partners are read from disk when only the transfer runs are given
    alone = analyze_curves([runs / "sweep" / "t0", runs / "sweep" / "t1"]).arrays
    np.testing.assert_array_equal(alone["pairs/scratch_test_auc"], arrays["pairs/scratch_test_auc"])
    # the result round-trips through HDF5 (string datasets included)
    write_result(result, tmp_path / "curves.h5")
    back = read_result(tmp_path / "curves.h5").arrays
    assert [s.decode() for s in back["pairs/scratch_run"]] == list(arrays["pairs/scratch_run"])
    np.testing.assert_array_equal(back["groups/train_auc_mean"], arrays["groups/train_auc_mean"])
    # an explicit key pools what it does not name (but never the kinds)
    by_lr = analyze_curves([runs / n for n in names], group_by="learning_rate").arrays
    assert by_lr["group"].tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(UsageError, match="unknown key"):
        analyze_curves([runs / "sweep" / "t0"], group_by="learning_rat")
    with pytest.raises(UsageError, match=r"group_by 'kind,' holds an empty key \(a comma too many\?\)"):
        analyze_curves([runs / "sweep" / "t0"], group_by=["kind", ""])  # `--group-by kind,`: "unknown key(s) (none)"


def test_distance_to_init_is_zero_at_step_0_and_numpy_at_the_last_step(runs):
    result = analyze_weights([runs / "sweep" / "t0", runs / "pre1"], all_steps=True)
    arrays = result.arrays
    layers = list(arrays["layers"])
    assert layers == ["conv_0", "dense_0", "head"]
    assert arrays["row_step"].tolist() == [0, 3, STEPS, 0, 3, STEPS] and arrays["row_run"].tolist() == [0] * 3 + [1] * 3
    assert np.all(arrays["distance"][arrays["row_step"] == 0] == 0)
    for r, name in enumerate(("sweep/t0", "pre1")):
        init, last = raw_weights(runs / name, 0), raw_weights(runs / name, STEPS)
        expected = np.array([frobenius(last, init, layer) for layer in layers])
        row = np.flatnonzero((arrays["row_run"] == r) & (arrays["row_step"] == STEPS))[0]
        # same float64 values and operations as frobenius() (sum over two variables commutes exactly)
        np.testing.assert_array_equal(arrays["distance"][row], expected)
        assert expected.min() > 0
        n = {"sweep/t0": 64, "pre1": 128}[name]  # Liu Sec. 3: divided by sqrt(number of training examples)
        assert arrays["num_examples"][r] == n
        assert arrays["distance_liu"][row] == expected.sum() / np.sqrt(n)  # same operations: bit-equal
        assert arrays["distance_total"][row] == np.sqrt(np.sum(expected ** 2))


def test_distance_to_source_and_rescaling_of_a_transfer_run(runs):
    arrays = analyze_weights([runs / "sweep" / "t1"], reference="source").arrays
    record = store.read_run_record(runs / "sweep" / "t1")
    from_step = json.loads(record.identity["from_step"])[0]
    source, transferred = raw_weights(runs / "pre1", from_step), raw_weights(runs / "sweep" / "t1", STEPS)
    # same float64 values and operations as frobenius(): bit-equal
    np.testing.assert_array_equal(arrays["distance"][0, :2], [frobenius(transferred, source, "conv_0"),
                                                             frobenius(transferred, source, "dense_0")])
    assert np.isnan(arrays["distance"][0, 2])  # the head is fresh: it has no source
    assert arrays["distance_total"][0] == np.sqrt(np.sum(arrays["distance"][0, :2] ** 2))  # same operations
    # A.4: the stored factors, and the norms they relate (l2 rescaling: back to the source's initial norm)
    factors = [record.transfer["factor/conv_0"], record.transfer["factor/dense_0"], np.nan]
    np.testing.assert_array_equal(arrays["rescaling/factor"][0], factors)
    np.testing.assert_allclose(arrays["rescaling/norm_ratio"][0, :2], factors[:2], rtol=1e-6)
    np.testing.assert_allclose(arrays["rescaling/transferred_norm"][0, :2],
                               arrays["rescaling/source_init_norm"][0, :2], rtol=1e-6)
    source_init = raw_weights(runs / "pre1", 0)
    # layer_norm: the same float64 sums of squares (two terms: addition commutes exactly)
    assert arrays["rescaling/source_init_norm"][0, 0] == \
        np.sqrt(sum(np.sum(source_init[f"conv_0/{v}"] ** 2) for v in ("kernel", "bias")))


def test_distance_to_a_source_moved_with_its_transfer(runs, tmp_path):
    """A transfer copied with its source (a sweep folder moved to another disk) still measures against
    it: the run of the recorded name next to it, when its checkpoint is the recorded bytes."""
    here = analyze_weights([runs / "sweep" / "t1"], reference="source").arrays
    moved = tmp_path / "moved"
    for name in ("sweep/t1", "pre1"):
        shutil.copytree(runs / name, moved / name.split("/")[-1])
    record = store.read_run_record(moved / "t1")  # as if written where the runs were before: a path now gone
    record.identity["sources"] = store.listed([str(tmp_path / "gone" / "pre1")])
    store.write_run_record(moved / "t1", record)
    there = analyze_weights([moved / "t1"], reference="source").arrays
    np.testing.assert_array_equal(there["distance"], here["distance"])
    np.testing.assert_array_equal(there["rescaling/source_init_norm"], here["rescaling/source_init_norm"])
    from_step = record.from_steps[0]
    weights = store.read_checkpoint(moved / "pre1", from_step)
    store.write_checkpoint(moved / "pre1", from_step, {k: v + 1 for k, v in weights.items()})
    with pytest.raises(UsageError, match=r"source run .*gone/pre1 of .*t1 is not found \(nor next to it\)"):
        analyze_weights([moved / "t1"], reference="source")


def test_distance_between_two_runs(runs):
    itself = analyze_weights([runs / "sweep" / "t0"], all_steps=True, other=runs / "sweep" / "t0").arrays
    assert np.all(itself["other_distance"] == 0) and np.all(itself["other_distance_total"] == 0)
    pair = analyze_weights([runs / "sweep" / "t0"], other=runs / "sweep" / "t0-scratch").arrays
    a, b = raw_weights(runs / "sweep" / "t0", STEPS), raw_weights(runs / "sweep" / "t0-scratch", STEPS)
    # same float64 values and operations as frobenius(): bit-equal
    np.testing.assert_array_equal(pair["other_distance"][0],
                                  [frobenius(a, b, l) for l in ("conv_0", "dense_0", "head")])
    assert pair["other_distance"][0, 0] > 0


def test_a_copied_run_is_refused_as_a_second_seed_by_curves_and_their_plot(runs, tmp_path):
    """A copy of a run beside it (a folder copied by hand) counted as a second seed of its group: the mean kept,
    the spread 0, the count 2. `analyze curves` and `plot curves` refuse it in one line, as a user meets it,
    and write nothing; another seed of the same group is no copy."""
    import subprocess
    import sys
    shutil.copytree(runs / "pre0", tmp_path / "pre0-copy")
    for command in ("analyze", "plot"):
        out = tmp_path / f"curves-{command}.{'h5' if command == 'analyze' else 'png'}"
        result = subprocess.run([sys.executable, "-m", "rltx", command, "curves", str(runs / "pre0"),
                                 str(tmp_path / "pre0-copy"), "-o", str(out)], capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 2 and result.stderr == (
            f"Error: {tmp_path / 'pre0-copy'} has the same metrics as {runs / 'pre0'} (a copy of that run): it would "
            "count twice in its group's statistics; give each run once\n"), result.stderr
        assert not out.exists()
    from rltx.analysis.curves import analyze_curves
    assert analyze_curves([runs / "pre0", runs / "pre1"]).arrays["groups/count"].tolist() == [2]


def test_a_metrics_file_edited_to_nan_or_disordered_steps_is_refused_in_one_line(runs, tmp_path):
    """rltx writes finite accuracies at increasing steps; a file edited by hand (a NaN accuracy, steps out of
    order) gave a traceback from `analyze curves` and numpy warnings from `plot curves`, which drew it anyway."""
    import subprocess
    import sys
    edited = {"nan": tmp_path / "nan", "order": tmp_path / "order"}
    for run in edited.values():
        shutil.copytree(runs / "pre0", run)
    with h5py.File(edited["nan"] / "metrics.h5", "r+") as handle:
        handle["train_accuracy"][-1] = np.nan
    with h5py.File(edited["order"] / "metrics.h5", "r+") as handle:
        steps = handle["step"][()]
        handle["step"][...] = steps[::-1]
    metrics = edited["nan"] / "metrics.h5"
    last = int(steps[-1])
    for command, run, line in (
            ("analyze", "nan", f"{metrics} holds a non-finite accuracy at step {last}; restore the file rltx wrote, "
                               "or leave the run out"),
            ("plot", "nan", f"{metrics} holds a non-finite accuracy at step {last}; restore the file rltx wrote, or "
                            "leave the run out"),
            ("analyze", "order", f"{edited['order'] / 'metrics.h5'} holds steps out of order (step {int(steps[-2])} "
                                 f"after step {last}); restore the file rltx wrote, or leave the run out"),
            ("plot", "order", f"{edited['order'] / 'metrics.h5'} holds steps out of order (step {int(steps[-2])} "
                              f"after step {last}); restore the file rltx wrote, or leave the run out")):
        out = tmp_path / f"{command}-{run}.{'h5' if command == 'analyze' else 'png'}"
        result = subprocess.run([sys.executable, "-m", "rltx", command, "curves", str(edited[run]), "-o", str(out)],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 2 and result.stderr == f"Error: {line}\n", result.stderr
        assert not out.exists()


def test_all_steps_of_a_run_without_checkpoints_is_refused_not_an_empty_or_borrowed_result(runs, tmp_path):
    """--all-steps on a run with no checkpoint gave an empty result, and a traceback once the curvature analyses
    stored the examples they used; a completed run without its checkpoints is damaged."""
    for status in ("interrupted", "completed"):
        run = tmp_path / status
        shutil.copytree(runs / "pre0", run)
        shutil.rmtree(run / store.CHECKPOINT_DIR)
        with h5py.File(run / store.RUN_FILE, "r+") as record:
            record.attrs["status"] = status
        for command in (("hessian", "--num-examples", "8", "--iterations", "2", "--top-k", "1"),
                        ("gradient", "--num-examples", "8")):
            result = CliRunner().invoke(main, ["analyze", command[0], str(run), "--all-steps", *command[1:]])
            assert result.exit_code == 2, result.output
            assert ("has no checkpoint yet" if status == "interrupted" else "the run is damaged") in result.output


def test_fixable_errors(runs, tmp_path):
    with pytest.raises(UsageError, match="--reference source needs a transfer run.*pretrain"):
        analyze_weights([runs / "pre0"], reference="source")
    with pytest.raises(UsageError, match="--reference source needs a transfer run.*scratch"):
        analyze_weights([runs / "sweep" / "t0-scratch"], reference="source")
    with pytest.raises(UsageError, match="layers differ between"):  # 4 upstream classes vs 3 downstream
        analyze_weights([runs / "sweep" / "t0"], other=runs / "pre0")
    renamed = tmp_path / "renamed"
    shutil.copytree(runs / "pre0", renamed)
    for step in store.checkpoint_steps_stored(renamed):
        weights = store.read_checkpoint(renamed, step)
        store.write_checkpoint(renamed, step, {k.replace("dense_0", "dense_9"): v for k, v in weights.items()})
    with pytest.raises(UsageError, match="layers differ between runs"):
        analyze_weights([runs / "pre0", renamed])
    with pytest.raises(UsageError, match="no checkpoint at step 5"):
        analyze_weights([runs / "pre0"], step=5)
    with pytest.raises(UsageError, match="reference must be one of"):
        analyze_weights([runs / "pre0"], reference="start")
