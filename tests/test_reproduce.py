"""`rltx reproduce NAME --quick` end to end for the reproductions CI runs: quickstart (Prop. 1),
fig5, table1 and fig4_gaussian. Each must leave its figures, its analysis results and a verdict,
and the quantities must be the paper's (checked here on the stored results, not on the verdict's
wording)."""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from tests_support import TINY, file_digests, stored

from rltx import store
from rltx.analysis.results import read_result
from rltx.plotting.figure import STYLES
from rltx.recipe_file import read_recipe_file
from rltx.reproduce import pipelines
from rltx.cli import main

pytestmark = pytest.mark.slow  # subprocesses, end to end


def reproduce(name, out, *extra, profile="quick"):
    chosen = ["--quick"] if profile == "quick" else ["--profile", profile]
    result = CliRunner().invoke(main, ["reproduce", str(name), *chosen, "--quiet", "--out", str(out), *map(str, extra)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    verdict = (out / "verdict.txt").read_text()
    assert verdict in result.output and "observed:" in verdict
    return verdict


def test_quickstart_shows_prop1_alignment(tmp_path):
    """Prop. 1 (Sec. 2.1-2.2, A.6, E.1): random labels on N(0, diag(0.1..3.0)) from an isotropic
    He initialisation. At step 0 both misalignments are the same noise floor (about 0.5 d^2 / n);
    after training the data-basis one is at least 10x below the random-basis one."""
    out = tmp_path / "quickstart"
    verdict = reproduce("quickstart", out)
    assert (out / "misalignment.png").stat().st_size > 0 and (out / "f_sigma.png").stat().st_size > 0
    run = out / "runs" / "pretrain-s0"
    assert store.read_metrics(run)[-1]["train_accuracy"] > 0.9  # the random labels were fitted
    data, random = stored(out / "misalignment.h5", "misalignment_data"), stored(out / "misalignment.h5", "misalignment_random")
    assert list(stored(out / "misalignment.h5", "steps")) == list(range(0, 501, 50))
    assert max(data[0], random[0]) / min(data[0], random[0]) < 2  # isotropic: no basis is special
    assert random[-1] >= 10 * data[-1] and random[-1] > 5 * random[0]  # aligned, and learned
    assert "agrees with the paper" in verdict


def test_an_unmoved_first_layer_leaves_the_alignment_not_resolved(tmp_path):
    """quickstart at a learning rate that cannot move the weights in 50 steps: its Sigma_w keeps the shape
    of its 2048 random filters (scatter 0.12) and the misalignment ratio its step-0 value, so the
    alignment is not judged (the recipe expects no f(sigma) shape)."""
    out = tmp_path / "lazy"
    verdict = reproduce("quickstart", out, "--set", "learning_rate=1e-7", "--set", "total_steps=50")
    assert verdict.count("[not resolved: it held at step 0 already, and training has not moved") == 1
    assert "agrees" not in verdict and "DIFFERS" not in verdict
    assert read_result(out / "misalignment.h5").inputs["num_filters"] == 2048


def test_fig5_quick_compares_every_curve_with_from_scratch(tmp_path, monkeypatch):
    out = tmp_path / "fig5"
    drawn = []
    saving = pipelines.Context.figure
    monkeypatch.setattr(pipelines.Context, "figure", lambda self, figure, name: drawn.append(figure) or saving(self, figure, name))
    # the pipeline, not the science: the quick profile's schedule shortened (docs/calibration.md has its numbers)
    verdict = reproduce("fig5", out, "--seeds", "2", "--set", "total_steps=20", "--set", "total_steps_downstream=10")
    # drawn in the paper style, as `rltx plot curves` draws (its legend once came out at matplotlib's 10 pt)
    legend = drawn[0].axes[0].get_legend()
    assert {text.get_fontsize() for text in legend.get_texts()} == {STYLES["paper"]["legend.fontsize"]}
    assert "runs on dead_leaves instead" in verdict  # no CIFAR10 here: said so
    names = ["pretrained", "covariance", "from_scratch"]
    for name in names:
        for seed in (0, 1):
            assert store.read_status(out / "runs" / name / f"s{seed}") == "completed"
        assert not (out / "runs" / name / "s2").exists()  # --seeds 2 replaced the profile's 12
    assert (out / "curves.png").exists() and (out / "curves.h5").exists()
    assert verdict.count(" vs from scratch: train-accuracy AUC") == 2
    assert verdict.count(" of 2 same-seed pairs") == 2  # seeds 0 and 1 of each curve against from scratch
    # the covariance run's first layer was sampled, not copied: its record holds Sigma_w
    assert store.read_run_record(out / "runs" / "covariance" / "s0").transfer["mode"] == "covariance"


def test_fig5_all_curves_profile_compares_as_the_paper_does(tmp_path):
    """fig5's quick_all_curves profile: A.9's six curves on the quick schedule (shortened here), each compared with
    the curve Sec. 2.4 compares it with: no rescaling with pretrained, covariance with pretrained conv without
    bias (A.9's "fairest comparison"), expected level."""
    out = tmp_path / "fig5_all"
    verdict = reproduce("fig5", out, "--seeds", "1", "--set", "total_steps=20", "--set", "total_steps_downstream=10",
                        profile="quick_all_curves")
    for name in ("pretrained", "no_rescaling", "pretrained_conv", "pretrained_conv_no_bias", "covariance", "from_scratch"):
        assert store.read_status(out / "runs" / name / "s0") == "completed"
    for line in ("pretrained vs from scratch", "no rescaling vs pretrained", "pretrained conv vs from scratch",
                 "pretrained conv no bias vs from scratch", "covariance vs pretrained conv no bias"):
        assert verdict.count(f"  - {line}: train-accuracy AUC") == 1, line
    conv = store.read_run_record(out / "runs" / "pretrained_conv_no_bias" / "s0").transfer
    assert json.loads(conv["layers"]) == ["conv_0"]  # the dense layer re-initialised (A.9)


def test_table1_quick_tabulates_constructed_layers(tmp_path):
    out = tmp_path / "table1"
    verdict = reproduce("table1", out, "--seeds", "1")
    accuracy = stored(out / "table.h5", "accuracy")  # [layer sets, iterations, train/test]
    assert accuracy.shape == (4, 2, 2) and np.all((accuracy >= 0) & (accuracy <= 1))
    assert list(stored(out / "table.h5", "iterations")) == [20, 100]
    assert (out / "table.png").exists() and verdict.count("test accuracy after") == 2
    # the last row is judged on training accuracy too (Sec. 2.5: "both training and test accuracies")
    training = [line for line in verdict.splitlines() if "training accuracy after 100 iterations" in line]
    assert len(training) == 1 and f"{{}} {accuracy[0, 1, 0]:.3f}" in training[0]
    for layers in ("layers_1.h5", "layers_1_2.h5", "layers_1_2_3.h5"):
        assert (out / "table" / layers).exists()


def test_fig4_gaussian_quick_measures_f_sigma(tmp_path):
    out = tmp_path / "fig4"
    # the pipeline, not the science: 2 seeds of 300 steps (the profile's 4 of 1000 are in the README's table)
    verdict = reproduce("fig4_gaussian", out, "--seeds", "2", "--set", "total_steps=300")
    sigma, tau = stored(out / "transfer_function.h5", "sigma"), stored(out / "transfer_function.h5", "tau")
    assert sigma.shape == tau.shape and sigma.shape[1] == 30  # one tau per eigenvalue of Sigma_x (E.1: d = 30)
    # sigma_i are the square roots of Sigma_x's eigenvalues: 0.1..3.0 up to sampling error
    assert np.allclose(np.sort(sigma[-1] ** 2), np.linspace(0.1, 3.0, 30), atol=0.3)
    assert "f(sigma) is" in verdict and (out / "f_sigma.png").exists()


def _fallback_recipe(tmp_path):
    """A CIFAR10 recipe whose quick profile falls back to Gaussian images (with a fallback-only
    num_units), reproduced as one pre-trained / from-scratch pair of 4 steps."""
    import yaml
    base = {k: v for k, v in TINY.items() if not k.startswith("gaussian_")}
    base.update(dataset="cifar10", num_examples_upstream=24, num_examples_downstream=24, num_examples_test=16,
                batch_size=8, total_steps=4, num_eval_points=3, checkpoint_every=0, num_classes_downstream=10, seed=0)
    fallback = {"dataset": "gaussian", "num_units": 12, "gaussian_num_classes": 10,
                **{k: v for k, v in TINY.items() if k.startswith("gaussian_")}}
    base["profiles"] = {"quick": {"total_steps": 3, "offline_fallback": fallback}}
    base["reproduce"] = {"pipeline": "transfer", "seeds": 1, "variants": [
        {"name": "pretrained", "baseline": "from scratch"}, {"name": "from scratch", "from": "scratch"}]}
    path = tmp_path / "fallback.yaml"
    path.write_text(yaml.safe_dump(base))
    return path, fallback


def _stored_recipe(run_dir):
    from rltx.recipe_file import load_recipe
    return load_recipe(run_dir / store.RUN_FILE)


def test_fallback_is_decided_after_set_data_dir(tmp_path, monkeypatch):
    """Issue 14: `--set data_dir=DIR` with CIFAR10 prepared in DIR runs on CIFAR10, not the fallback
    (tfds's mock data stands in for CIFAR10, counted as prepared only when opened from under DIR)."""
    import tensorflow_datasets as tfds

    from rltx.data import tfds_source
    recipe, fallback = _fallback_recipe(tmp_path)
    prepared = tmp_path / "tfds"
    opened = tfds_source._builder

    def builder(dataset, data_dir):  # mock_data moves builder.data_dir: remember the one asked for
        made = opened(dataset, data_dir)
        made.prepared_in_test = str(data_dir).startswith(str(prepared))
        return made
    monkeypatch.setattr(tfds_source, "_builder", builder)
    monkeypatch.setattr(tfds_source, "is_prepared", lambda made: made.prepared_in_test)
    with tfds.testing.mock_data(num_examples=48):
        verdict = reproduce(recipe, tmp_path / "cifar", "--set", f"data_dir={prepared}")
    assert "instead" not in verdict
    used = _stored_recipe(tmp_path / "cifar" / "runs" / "pretrained" / "s0")
    assert (used.dataset, used.data_dir, used.total_steps, used.num_units) == ("cifar10", str(prepared), 3, TINY["num_units"])
    without = read_recipe_file(recipe).profile("quick", {"data_dir": str(tmp_path / "empty")}).keys
    assert without["dataset"] == "gaussian" and "cifar10 is not available here" in without["description"]


def test_set_dataset_npz_runs_on_the_file_without_fallback_keys(tmp_path):
    """Issue 14: `--set dataset=npz --set data_path=F` runs on F with none of the fallback's keys,
    and the description claims no fallback; `--set image_size=16` reads F's 32x32 images at 16x16."""
    from rltx.config import FIELDS
    from rltx.config import DataSpec
    from rltx.data import open_source
    from rltx.data.files import write_npz
    recipe, fallback = _fallback_recipe(tmp_path)
    data = write_npz(open_source(DataSpec.of("dead_leaves", natural_num_train=48, natural_num_test=16)), tmp_path / "leaves.npz")
    verdict = reproduce(recipe, tmp_path / "npz", "--set", "dataset=npz", "--set", f"data_path={data}",
                        "--set", "image_size=16")
    assert "instead" not in verdict and "not available" not in verdict
    assert f"command: rltx reproduce {recipe.resolve()} --profile quick --set dataset=npz --set data_path={data} " \
           "--set image_size=16\n" in verdict  # the file's absolute path, the --set keys as given
    for run in ("pretrain-s0", "pretrained/s0", "from_scratch/s0"):
        used = _stored_recipe(tmp_path / "npz" / "runs" / run)
        assert (used.dataset, used.data_path, used.num_units) == ("npz", str(data), TINY["num_units"])
        dense = store.read_checkpoint(tmp_path / "npz" / "runs" / run, 3)["dense_0/kernel"]
        assert dense.shape == (5 * 5 * TINY["num_filters"], TINY["num_units"])  # 16x16 through 3x3 stride 3
        assert "instead" not in used.description
        assert all(getattr(used, name) == FIELDS[name].default for name in fallback if name.startswith("gaussian_"))



def _pair_recipe(tmp_path, learning_rate: float):
    """One seed of pre-training at `learning_rate`, then pretrained vs from scratch on random labels."""
    import yaml
    recipe = {**TINY, "seed": 0, "total_steps": 12, "learning_rate": learning_rate, "learning_rate_downstream": 0.05,
              "labels_downstream": "random", "num_classes_downstream": 4, "num_eval_points": 4, "checkpoint_every": 0,
              "reproduce": {"pipeline": "transfer", "seeds": 1, "variants": [
                  {"name": "pretrained", "baseline": "from scratch", "expect": "positive"},
                  {"name": "from scratch", "from": "scratch"}]},
              "profiles": {"quick": {}}}
    path = tmp_path / "pair.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_flagged_runs_are_excluded_from_the_verdict(tmp_path):
    """A pre-training run forced to diverge (learning rate 20: loss 2.3 -> ~16 at step 12) is listed
    as excluded, and its transfer is not counted: the comparison is not resolved."""
    verdict = reproduce(_pair_recipe(tmp_path, learning_rate=20.0), tmp_path / "out")
    assert store.read_run_record(tmp_path / "out" / "runs" / "pretrain-s0").health.startswith("diverged")
    excluded = verdict.split("excluded (diverged or collapsed, not counted as evidence):")[1].split("figures:")[0]
    assert "pretrain-s0: diverged" in excluded
    assert "data: gaussian (not a fallback)" in verdict and "seeds: 0" in verdict
    assert "pretrained vs from scratch: no run left to compare" in verdict and "[not resolved: no healthy run to judge]" in verdict


def test_a_run_whose_loss_becomes_nan_is_left_out_and_the_reproduction_goes_on(tmp_path):
    """Learning rate 1e12: pre-training's loss becomes NaN in its first steps. The run is recorded as
    failed and flagged diverged, the transfer from it is skipped, from scratch still trains, and the
    verdict lists the run as excluded instead of the command stopping with an error."""
    verdict = reproduce(_pair_recipe(tmp_path, learning_rate=1e12), tmp_path / "out")
    record = store.read_run_record(tmp_path / "out" / "runs" / "pretrain-s0")
    assert record.status == "failed" and record.health.startswith("diverged: loss nan")
    assert not (tmp_path / "out" / "runs" / "pretrained" / "s0").exists()
    assert store.read_status(tmp_path / "out" / "runs" / "from_scratch" / "s0") == "completed"
    assert "pretrain-s0: diverged: loss nan" in verdict.split("excluded (diverged")[1]
    assert "pretrained vs from scratch: no run left to compare" in verdict


def test_a_reproduction_whose_every_run_diverged_stops_with_one_line(tmp_path):
    """Both rates at 1e12: every run's loss becomes NaN, so nothing is left to analyse. `rltx` in a subprocess
    stops with exit code 2 and one line naming the fix, and the flagged runs stay on disk for inspection."""
    import subprocess
    import sys
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "rltx", "reproduce", str(_pair_recipe(tmp_path, learning_rate=1e12)),
                             "--quick", "--quiet", "--set", "learning_rate_downstream=1e12", "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [f"Error: every run of this reproduction diverged (runs in {out / 'runs'}); "
                     "lower learning_rate or init_scale"], result.stderr
    for run in ("pretrain-s0", "from_scratch/s0"):
        assert store.read_run_record(out / "runs" / run).health.startswith("diverged: loss nan")
    assert not (out / "verdict.txt").exists()


def test_real_fine_tuning_labels_of_another_class_count_are_refused_before_pre_training(tmp_path):
    """The data has 4 real classes, a variant fine-tunes on 10: `rltx` in a subprocess stops with exit 2
    and the one line naming the key and its value before any run is written (it stopped after pre-training)."""
    import subprocess
    import sys
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "rltx", "reproduce", str(_pair_recipe(tmp_path, learning_rate=0.05)),
                             "--quick", "--quiet", "--set", "gaussian_num_classes=4", "--set", "labels_downstream=real",
                             "--set", "num_classes_downstream=10", "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "Error: gaussian has 4 real classes but num_classes_downstream is 10; set num_classes_downstream=4 "
        "(or labels_downstream=random)"], result.stderr
    assert not (out / "runs").exists()


def test_a_table_column_whose_run_becomes_nan_is_excluded(tmp_path):
    """construct-table at learning rate 1e12: every column's run fails with a NaN loss; the table keeps
    NaN there, the runs are listed as excluded and the verdict has no healthy run to judge."""
    import yaml
    recipe = {**TINY, "seed": 0, "learning_rate": 1e12, "total_steps": 4, "num_eval_points": 3, "checkpoint_every": 0,
              "table_layer_sets": [[], [1]], "table_iterations": [2, 4],
              "reproduce": {"pipeline": "construct-table", "seeds": 1, "expect": "better"},
              "profiles": {"quick": {}}}
    path = tmp_path / "table.yaml"
    path.write_text(yaml.safe_dump(recipe))
    verdict = reproduce(path, tmp_path / "out")
    assert np.isnan(read_result(tmp_path / "out" / "table.h5").arrays["accuracy"]).any()
    assert "layers_none: diverged: loss nan" in verdict.split("excluded (diverged")[1]
    assert "[not resolved: no healthy run to judge]" in verdict


def test_the_activation_trajectory_reports_the_switch_from_the_stored_series(tmp_path):
    """Fig. 24's pipeline on a tiny pair of runs: the verdict's switch line holds the active fraction
    at the switch, the lowest value in the downstream run (and its step) and the last one, read here
    from the stored trajectory.h5 by its arrays, not from the verdict's own code."""
    import yaml
    recipe = {**TINY, "seed": 0, "total_steps": 12, "checkpoint_every": 4, "num_eval_points": 3,
              "labels_downstream": "random", "num_classes_downstream": 4,
              "reproduce": {"pipeline": "activations", "seeds": 1, "trajectory": True,
                            "variants": [{"name": "random labels", "from": "pretrained"}]},
              "profiles": {"quick": {}}}
    path = tmp_path / "switch.yaml"
    path.write_text(yaml.safe_dump(recipe))
    verdict = reproduce(path, tmp_path / "out")
    trajectory = read_result(tmp_path / "out" / "trajectory.h5")
    series, phase = trajectory.arrays["activation"][:, -1], trajectory.arrays["phase"]
    after, steps = series[phase == 1], trajectory.arrays["run_steps"][phase == 1]
    assert list(steps) == [4, 8, 12]
    lowest = int(np.argmin(after))
    assert trajectory.inputs["layers"][-1] == "dense_0"  # the column read above is the dense layer's
    assert (f"dense_0: mean fraction of examples activating a neuron {series[phase == 0][-1]:.3f} at the switch, lowest {after[lowest]:.3f} {steps[lowest]} steps into "
            f"'random labels' (of 12), {after[-1]:.3f} at its end") in verdict


def _constructed_recipe(tmp_path, **changes):
    """TINY's one-conv network on Gaussian patches whose covariance has a gap after its 8th eigenvalue (randomly
    rotated): the span of its top 8 eigenvectors is the oracle a constructed first layer must span (E.3)."""
    import yaml
    recipe = {**TINY, "seed": 0, "gaussian_spectrum": [10.0] * 8 + [1.0] * 19, "gaussian_num_train": 4096,
              "num_examples_upstream": 3000, "num_examples_downstream": 512, "total_steps": 6,
              "total_steps_downstream": 6, "checkpoint_every": 3, "num_eval_points": 3,
              "labels_downstream": "random", "num_classes_downstream": 4,
              "construct_tau": "f2", "construct_rescale": "none", **changes,
              "reproduce": {"pipeline": "transfer", "seeds": 1, "variants": [
                  {"name": "transfer {1}", "set": {"transfer_layers": 1}, "baseline": "scratch {}", "expect": "positive"},
                  {"name": "constructed {1}", "from": "constructed", "layers": [1], "baseline": "transfer {1}",
                   "expect": "level"},
                  {"name": "scratch {}", "from": "scratch"}]},
              "profiles": {"quick": {}}}
    path = tmp_path / "constructed.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_a_constructed_variant_starts_from_the_datas_top_eigenvectors_beside_shared_fresh_layers(tmp_path):
    """Sec. 2.5 / Table 7's caption compare layers constructed from the data with transferred ones. A `from:
    constructed` variant starts from conv layer 1 built from the images its seed's pre-training read (the init
    file's sample is that run's upstream sample), spanning the top-8 eigenspace of the generator's covariance (its
    known parameter), and from the very fresh dense layer and head of its from-scratch and transfer pairs."""
    from scipy.linalg import subspace_angles

    from rltx.config import make_recipe
    from rltx.tasks import open_recipe_source
    out, path = tmp_path / "out", _constructed_recipe(tmp_path)
    verdict = reproduce(path, out, "--seeds", "2")
    runs = out / "runs"
    assert "  - constructed {1} vs transfer {1}: train-accuracy AUC" in verdict and "of 2 same-seed pairs" in verdict
    # each seed has an init file of its own, yet the seeds of a variant are one group (by what the file holds)
    assert list(stored(out / "curves.h5", "groups/count")) == [2, 2, 2]
    init = runs / "constructed_1" / "init-1-s0.h5"
    assert store.read_run_record(runs / "constructed_1" / "s0").config["init_file"] == str(init.resolve())
    start = {name: store.read_checkpoint(runs / name / "s0", 0) for name in ("constructed_1", "scratch", "transfer_1")}
    kernel = start["constructed_1"]["conv_0/kernel"].reshape(27, 8).astype(np.float64)
    pretraining = store.read_run_record(runs / "pretrain-s0")
    truth = np.linalg.eigh(open_recipe_source(make_recipe(pretraining.config)).covariance)[1][:, -8:]
    np.testing.assert_array_equal(stored(init, "sample_indices"), pretraining.samples["upstream_indices"])
    assert np.max(subspace_angles(kernel, truth)) < 0.05  # radians; 12000 patches of a gap of 10x
    assert np.max(subspace_angles(start["scratch"]["conv_0/kernel"].reshape(27, 8).astype(np.float64), truth)) > 0.5
    for name in ("dense_0/kernel", "dense_0/bias", "head/kernel", "head/bias"):
        np.testing.assert_array_equal(start["constructed_1"][name], start["scratch"][name], err_msg=name)
        np.testing.assert_array_equal(start["constructed_1"][name], start["transfer_1"][name], err_msg=name)
    # the same command again trains nothing and leaves the init file as it was; a changed construction leaves the
    # file of the run that recorded it alone (the transfer then refuses that run)
    before = init.stat().st_mtime_ns
    assert reproduce(path, out, "--seeds", "2") == verdict and init.stat().st_mtime_ns == before
    changed = make_recipe({**pretraining.config, "construct_tau": "f1", "seed": 0})
    assert pipelines.constructed_start(changed, (1,), runs / "constructed_1" / "s0").init_file == str(init.resolve())
    assert init.stat().st_mtime_ns == before
    # moved to another folder, the reproduction trains nothing again: each run knows its init file by its sha256,
    # and the seeds of the constructed variant stay one group
    import shutil
    shutil.move(out, tmp_path / "moved")
    digests = file_digests(tmp_path / "moved" / "runs")
    moved = reproduce(path, tmp_path / "moved", "--seeds", "2")
    assert moved.replace(str(tmp_path / "moved"), str(out)) == verdict
    assert file_digests(tmp_path / "moved" / "runs") == digests
    assert list(stored(tmp_path / "moved" / "curves.h5", "groups/count")) == [2, 2, 2]
    # renamed (another description, as a renamed profile gives), the runs and their init files are the same
    renamed = _constructed_recipe(tmp_path / "moved", description="renamed")
    reproduce(renamed, tmp_path / "moved", "--seeds", "2")
    assert file_digests(tmp_path / "moved" / "runs") == digests


def test_a_list_valued_data_key_does_not_stop_the_check_of_real_fine_tuning_labels(tmp_path):
    """The check of every variant's real labels before pre-training kept the opened sources by their data keys,
    and a list-valued key (gaussian_spectrum as a list) stopped it with a traceback. It runs now."""
    import yaml
    recipe = {**TINY, "seed": 0, "gaussian_spectrum": [2.0] * 27, "gaussian_num_classes": 4,
              "labels_downstream": "real", "num_classes_downstream": 4, "total_steps": 2, "num_eval_points": 2,
              "checkpoint_every": 0,
              "reproduce": {"pipeline": "transfer", "seeds": 1, "variants": [
                  {"name": "pretrained", "baseline": "from scratch"}, {"name": "from scratch", "from": "scratch"}]},
              "profiles": {"quick": {}}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    assert "pretrained vs from scratch: train-accuracy AUC" in reproduce(tmp_path / "r.yaml", tmp_path / "out")


def test_constructed_layers_the_model_lacks_are_refused_before_pre_training(tmp_path):
    """TINY has one conv layer; a variant constructing layer 2: `rltx` in a subprocess stops with exit 2 and one
    line naming the variant, its layers and the model's conv layers before any run is written."""
    import subprocess
    import sys

    import yaml
    path = _constructed_recipe(tmp_path)
    recipe = yaml.safe_load(path.read_text())
    recipe["reproduce"]["variants"][1]["layers"] = [1, 2]
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "rltx", "reproduce", str(path), "--quick", "--quiet", "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "Error: variant constructed {1}: layers 1,2 must be increasing numbers among 1..1 (the model's conv layers: "
        "conv_0)"], result.stderr
    assert not (out / "runs").exists()
    # a choice of eigenvectors the layer's 27-dimensional input cannot give: refused before pre-training too
    recipe["reproduce"]["variants"][1]["layers"] = [1]
    path.write_text(yaml.safe_dump(recipe))
    result = subprocess.run([sys.executable, "-m", "rltx", "reproduce", str(path), "--quick", "--quiet", "--out", str(out),
                             "--set", "construct_eigenvectors=e25..e32"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "Error: eigenvectors 'e25..e32' do not fit a layer input of dimension 27; choose at most 27, a range within "
        "e1..e27"], result.stderr
    assert not (out / "runs").exists()
    # an init file given to every run would be replaced in the constructed one: refused, not ignored
    result = subprocess.run([sys.executable, "-m", "rltx", "reproduce", str(path), "--quick", "--quiet", "--out", str(out),
                             "--set", "init_file=mine.h5"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"Error: init_file {tmp_path / 'mine.h5'} would be replaced in variant constructed {{1}}, which builds its own "
        "(from: constructed); drop init_file"], result.stderr
    assert not (out / "runs").exists()


@pytest.mark.parametrize("command", ["reproduce", "construct-init --table"])
def test_a_signal_stops_a_reproduction_or_table_in_one_line_with_exit_130(tmp_path, command):
    """As for pretrain and transfer (README): SIGINT saves the run's state and says, in one line and with exit
    code 130, how to resume; no traceback."""
    import signal
    import subprocess
    import sys

    import yaml
    from tests_support import wait_for_rows
    recipe = {**TINY, "seed": 0, "total_steps": 100000, "num_eval_points": 2000, "checkpoint_every": 0,
              "table_layer_sets": [[]], "table_iterations": [100000],
              "reproduce": {"pipeline": "construct-table", "seeds": 1, "expect": "better"}}
    (tmp_path / "long.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp_path / "out"
    args = (["reproduce", str(tmp_path / "long.yaml"), "--out", str(out)] if command == "reproduce" else
            ["construct-init", str(tmp_path / "long.yaml"), "--table", str(out)])
    process = subprocess.Popen([sys.executable, "-m", "rltx", *args, "--quiet"], stderr=subprocess.PIPE, text=True)
    run = (out / "table" if command == "reproduce" else out) / "layers_none"  # one seed: no s0 folder
    wait_for_rows(run, 3, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    lines = stderr.splitlines()  # rltx's line only: TensorFlow's native log lines are diverted
    assert len(lines) == 1 and lines[0].startswith("interrupted at step ") and \
        lines[0].endswith(f"state saved in {run}. Rerun the same command to resume"), stderr
    assert store.read_run_record(run).status == "interrupted"


def test_an_alignment_reproduction_whose_seeds_draw_other_covariances_is_refused_before_training(tmp_path):
    """Rotated Gaussian data without gaussian_seed: each seed would draw its own covariance, while the pipeline pools
    the seeds' filters against one. One line, exit 2, before any run trains (as a user meets it)."""
    import subprocess
    import sys

    import yaml
    recipe = {**TINY, "seed": 0, "total_steps": 4, "reproduce": {"pipeline": "alignment", "seeds": 1}}
    (tmp_path / "rotated.yaml").write_text(yaml.safe_dump(recipe))
    result = subprocess.run([sys.executable, "-m", "rltx", "reproduce", str(tmp_path / "rotated.yaml"), "--seeds", "2",
                             "--out", str(tmp_path / "out"), "--quiet"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "Error: the 2 seeds would each draw their own gaussian covariance, and their filters are pooled against one: "
        "set gaussian_seed (e.g. --set gaussian_seed=0, into another --out), or give --seeds 1"]
    assert not (tmp_path / "out" / "runs").exists()
