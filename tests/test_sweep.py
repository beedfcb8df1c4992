"""`rltx sweep`: expansion into App. B's grid, sampling inside the stated ranges, plan-only
commands, and a killed sweep finishing on rerun without redoing completed runs."""
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from scipy import stats
from tests_support import invoke_ok, tiny_recipe_dict

from rltx import hyperrule
from rltx.recipe_file import read_recipe_file
from rltx.sweep.plan import expand

SECTION = {"architectures": ["simple_cnn"], "groups": 2, "seeds": 1, "transfer_layers": ["all"],
           "labels_downstream": ["real"], "seed": 0,
           "sample": {"learning_rate": {"log_uniform": [0.03, 0.06]}, "num_classes_upstream": {"uniform": [2, 4]}}}


def sweep_file(tmp_path, section=SECTION, **keys):
    recipe = {**tiny_recipe_dict(), "gaussian_num_classes": 4, "num_classes_downstream": 4, "total_steps": 8, "total_steps_downstream": 8, "num_eval_points": 2,
              "checkpoint_every": 0, **keys, "sweep": section}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def reproduce_sweep_file(tmp_path, section=SECTION, **keys):
    """sweep_file with a reproduce: section, so that `rltx reproduce` runs it (App. B's sweep pipeline)."""
    return sweep_file(tmp_path, section, **keys, reproduce={"pipeline": "sweep", "paper": "App. B"})


def planned_by_reproduce(monkeypatch, recipe, out, echo=lambda line: None, **options):
    """The plan `rltx reproduce` makes of the sweep recipe `recipe`, captured before anything trains (`echo`
    gets the lines it prints until then)."""
    from rltx import sweep
    from rltx.reproduce import reproduce
    planned = []

    def capture(plan, workers, echo):
        planned.append(plan)
        raise KeyboardInterrupt  # stop before anything trains
    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):  # undone before the test goes on: a
        patch.setattr(sweep, "run_local", capture)  # `rltx sweep` imported later would bind the capture for good
        reproduce(str(recipe), out=out, reporter=lambda label: None, echo=echo, **options)
    return planned[0]


def test_log_uniform_is_uniform_in_the_log_and_uniform_choice_is_uniform():
    """App. B's 'random log_uniform(a, b)' against its definition: log(value) ~ U(log a, log b)
    (Kolmogorov-Smirnov), and 'random uniform([...])' hits every value equally (chi-square)."""
    generator = np.random.default_rng(0)
    draws = np.array([hyperrule.sample_hyperparameter({"log_uniform": [0.008, 0.0125]}, generator) for _ in range(4000)])
    assert draws.min() >= 0.008 and draws.max() <= 0.0125
    low, high = np.log(0.008), np.log(0.0125)
    assert stats.kstest(np.log(draws), stats.uniform(low, high - low).cdf).pvalue > 1e-3
    values = [2, 5, 10, 25, 50, 100]
    picks = [hyperrule.sample_hyperparameter({"uniform": values}, generator) for _ in range(6000)]
    assert stats.chisquare([picks.count(v) for v in values]).pvalue > 1e-3
    assert hyperrule.sample_hyperparameter(0.5, generator) == 0.5


def test_grid_counts_and_group_values_are_stable(tmp_path):
    section = {**SECTION, "architectures": ["simple_cnn", "mlp"], "groups": 3, "seeds": 2,
               "transfer_layers": [1, "all"], "labels_downstream": ["real", "random"]}
    plan = expand(read_recipe_file(sweep_file(tmp_path, section)), tmp_path / "out")
    assert plan.counts() == {"groups": 6, "experiments": 6 * 16, "pretrain_runs": 12, "transfer_commands": 48}
    fewer = expand(read_recipe_file(sweep_file(tmp_path, {**section, "groups": 2})), tmp_path / "out2")
    assert [g["values"] for g in fewer.groups[:2]] == [g["values"] for g in plan.groups[:2]]
    for group in plan.groups:
        assert 0.03 <= group["values"]["learning_rate"] <= 0.06
        assert group["values"]["num_classes_upstream"] in (2, 4)
    transfer = next(r for r in plan.runs if r.stage == "transfer")
    assert transfer.after == (plan.runs[0].name,) and transfer.run_dirs[1] == transfer.run_dirs[0] + "-scratch"


def test_plan_only_prints_one_command_per_run_by_stage(tmp_path):
    result = invoke_ok("sweep", sweep_file(tmp_path), "--out", tmp_path / "out", "--plan-only")
    commands = [line for line in result.stdout.splitlines() if line.startswith("rltx ")]
    assert [c.split()[1] for c in commands] == ["pretrain", "pretrain", "transfer", "transfer"]
    plan = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert plan["counts"]["experiments"] == 4 and len(plan["runs"]) == 4
    assert all((tmp_path / "out" / "simple_cnn" / f"g0{i}" / "recipe.yaml").exists() for i in range(2))


@pytest.mark.parametrize("section, message", [
    (None, "no sweep: section"),
    ({**SECTION, "group": 2}, "unknown sweep entries group"),
    ({**SECTION, "sample": {"learning_rate": {"log_uniform": [0.1, 0.01]}}}, "log_uniform"),
    ({**SECTION, "architectures": ["alexnet"]}, "architectures"),
])
def test_bad_sweep_sections_exit_2(tmp_path, section, message):
    from click.testing import CliRunner

    from rltx.cli import main
    result = CliRunner().invoke(main, ["sweep", str(sweep_file(tmp_path, section)), "--out", str(tmp_path / "o"),
                                       "--plan-only"])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_another_plan_in_the_same_directory_is_refused(tmp_path):
    from click.testing import CliRunner

    from rltx.cli import main
    invoke_ok("sweep", sweep_file(tmp_path), "--out", tmp_path / "out", "--plan-only")
    before = (tmp_path / "out" / "plan.json").read_text()
    result = CliRunner().invoke(main, ["sweep", str(sweep_file(tmp_path)), "--out", str(tmp_path / "out"),
                                       "--plan-only", "--set", "learning_rate=0.01"])
    assert result.exit_code == 2 and "holds another plan (group simple_cnn/g00's recipe had learning_rate" in result.output
    assert "now 0.01)" in result.output
    assert (tmp_path / "out" / "plan.json").read_text() == before


def test_the_same_recipe_elsewhere_is_the_same_plan_and_grows_it(tmp_path):
    """A recipe given by name lies where rltx is installed: the same file copied to another folder
    (an upgrade, another virtualenv) finishes and grows the stored plan; changed contents there do not."""
    from click.testing import CliRunner

    from rltx.cli import main
    invoke_ok("sweep", sweep_file(tmp_path), "--out", tmp_path / "out", "--plan-only")
    (tmp_path / "elsewhere").mkdir()
    moved = sweep_file(tmp_path / "elsewhere")
    invoke_ok("sweep", moved, "--out", tmp_path / "out", "--plan-only")
    invoke_ok("sweep", moved, "--out", tmp_path / "out", "--plan-only", "--groups", "3")
    assert len(json.loads((tmp_path / "out" / "plan.json").read_text())["groups"]) == 3
    changed = sweep_file(tmp_path / "elsewhere", {**SECTION, "groups": 3, "seed": 1})
    result = CliRunner().invoke(main, ["sweep", str(changed), "--out", str(tmp_path / "out"), "--plan-only"])
    assert result.exit_code == 2 and "holds another plan" in result.output


def test_a_plan_with_more_groups_and_seeds_extends_the_stored_one_and_a_smaller_one_is_refused(tmp_path):
    """A finished sweep can grow: the same recipe with more groups and seeds keeps every stored group
    and run unchanged and adds the others; going back to fewer would drop runs, so it is refused."""
    from click.testing import CliRunner

    from rltx.cli import main
    from rltx.sweep import read_plan
    invoke_ok("sweep", sweep_file(tmp_path), "--out", tmp_path / "out", "--plan-only")
    small = read_plan(tmp_path / "out" / "plan.json")
    invoke_ok("sweep", sweep_file(tmp_path, {**SECTION, "groups": 4, "seeds": 2}), "--out", tmp_path / "out", "--plan-only")
    large = read_plan(tmp_path / "out" / "plan.json")
    assert len(large.groups) == 2 * len(small.groups) and set(small.groups[0]) == set(large.groups[0])
    assert all(group in large.groups for group in small.groups) and set(small.runs) < set(large.runs)
    result = CliRunner().invoke(main, ["sweep", str(sweep_file(tmp_path)), "--out", str(tmp_path / "out"), "--plan-only"])
    assert result.exit_code == 2 and "(its group" in result.output and "is not in this plan: fewer groups)" in result.output
    assert read_plan(tmp_path / "out" / "plan.json") == large


@pytest.mark.parametrize("change", [
    {"labels_downstream": ["real", "random"]},                                    # other runs per group
    {"sample": {**SECTION["sample"], "num_classes_upstream": {"uniform": [2, 3, 4, 5]}}},  # another distribution
])
def test_more_groups_of_another_design_are_refused_even_where_the_old_groups_draw_alike(tmp_path, change):
    """Seed 4 draws num_classes_upstream 4, 4 for the first two groups from [2, 4] and from [2, 3, 4, 5]
    alike, so only the stored design (the sweep: section but its counts) tells the experiments apart."""
    from click.testing import CliRunner

    from rltx.cli import main
    section = {**SECTION, "seed": 4}
    invoke_ok("sweep", sweep_file(tmp_path, section), "--out", tmp_path / "out", "--plan-only")
    before = (tmp_path / "out" / "plan.json").read_text()
    grown = sweep_file(tmp_path, {**section, "groups": 4, **change})
    result = CliRunner().invoke(main, ["sweep", str(grown), "--out", str(tmp_path / "out"), "--plan-only"])
    assert result.exit_code == 2 and "holds another plan (sweep: " in result.output
    assert ("labels_downstream was" if "labels_downstream" in change else "sample was") in result.output
    assert (tmp_path / "out" / "plan.json").read_text() == before


def test_a_plan_whose_groups_are_not_a_list_is_damaged(tmp_path):
    from click.testing import CliRunner

    from rltx.cli import main
    invoke_ok("sweep", sweep_file(tmp_path), "--out", tmp_path / "out", "--plan-only")
    plan = json.loads((tmp_path / "out" / "plan.json").read_text())
    (tmp_path / "out" / "plan.json").write_text(json.dumps({**plan, "groups": None}))
    result = CliRunner().invoke(main, ["sweep", str(sweep_file(tmp_path)), "--out", str(tmp_path / "out"), "--plan-only"])
    assert result.exit_code == 2 and "is damaged (not a plan written by rltx sweep)" in result.output
    assert "Traceback" not in result.output


def _statuses(out):
    from rltx.store import read_status
    return {p.parent.relative_to(out).as_posix(): read_status(p.parent) for p in out.rglob("run.h5")}


@pytest.mark.slow
def test_killed_sweep_finishes_on_rerun_without_redoing_completed_runs(tmp_path):
    """SIGTERM the sweep once the first pre-training completed, run it again: the finished run is
    skipped (its files untouched), everything else completes, and the summary exists."""
    recipe, out = sweep_file(tmp_path, total_steps=30, total_steps_downstream=30), tmp_path / "out"
    command = [sys.executable, "-m", "rltx", "sweep", str(recipe), "--out", str(out), "--workers", "1"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    done_dir = out / "simple_cnn" / "g00" / "s3-pretrain"
    deadline = time.monotonic() + 180
    while _statuses(out).get("simple_cnn/g00/s3-pretrain") != "completed":
        assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()
        time.sleep(0.2)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=180) == 130
    mtimes = {name: os.stat(done_dir / name).st_mtime_ns for name in ("run.h5", "metrics.h5")}
    assert list(_statuses(out).values()).count("completed") < 6  # the kill left work to do

    second = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "1 skipped" in second.stdout or "skipped" in second.stdout
    assert {name: os.stat(done_dir / name).st_mtime_ns for name in mtimes} == mtimes
    statuses = _statuses(out)
    assert len(statuses) == 6 and set(statuses.values()) == {"completed"}  # 2 pretrain + 2 x (transfer, scratch)
    assert (out / "curves.h5").exists()


def test_reproduce_seeds_set_a_sweep_recipes_seeds_per_group(tmp_path, monkeypatch):
    """`rltx reproduce SWEEP --seeds 3` plans three consecutive seeds in every group (the sweep: section's
    count, which the pipeline reads; the recipe has 1); the planned runs are captured instead of trained."""
    plan = planned_by_reproduce(monkeypatch, reproduce_sweep_file(tmp_path), tmp_path / "out", seeds=3)
    runs = [run.name for run in plan.runs if run.stage == "pretrain"]
    per_group = [sorted(int(name.split("/s")[1].split("-")[0]) for name in runs if f"/g0{g}/" in name)
                 for g in range(2)]
    assert [len(seeds) for seeds in per_group] == [3, 3] and len(runs) == 6
    assert all(seeds == list(range(seeds[0], seeds[0] + 3)) for seeds in per_group)  # seed, seed + 1, seed + 2


def test_reproduce_groups_add_groups_that_keep_the_recipes_draws(tmp_path, monkeypatch):
    """`rltx reproduce SWEEP --groups 4` plans four groups where the recipe has two; the first two keep
    the values they are drawn with by default (each group's draw depends on its index only), so more
    groups add to a finished sweep instead of replacing it."""
    recipe = reproduce_sweep_file(tmp_path, {**SECTION, "sample": {"learning_rate": {"log_uniform": [0.01, 0.1]}}})
    default, more = ({group["name"]: group["values"] for group in
                      planned_by_reproduce(monkeypatch, recipe, tmp_path / out, groups=groups).groups}
                     for groups, out in ((None, "default"), (4, "more")))
    assert len(default) == 2 and len(more) == 4 and {name: more[name] for name in default} == default
    assert len({values["learning_rate"] for values in more.values()}) == 4  # each group its own draw


def test_reproduce_set_wins_over_the_values_a_sweep_draws_as_rltx_sweep_set_does(tmp_path, monkeypatch):
    """`rltx reproduce SWEEP --set learning_rate=0.05` trains every group at 0.05, as `rltx sweep --set` does
    (the pipeline used to drop the overrides, so each group kept its drawn rate while the verdict's command
    line listed the --set): the two plans' group recipes are the same."""
    recipe = reproduce_sweep_file(tmp_path, {**SECTION, "sample": {"learning_rate": {"log_uniform": [0.01, 0.1]}}})
    printed = []
    plan = planned_by_reproduce(monkeypatch, recipe, tmp_path / "out", echo=printed.append,
                                overrides=("learning_rate=0.05",))
    note = ("note: --set learning_rate=0.05 replaces the value each group draws (sweep: sample); every group trains "
            "with it, and plan.json keeps the draws")
    assert printed.count(note) == 1
    planned = [yaml.safe_load(group["yaml"]) for group in plan.groups]
    swept_output = invoke_ok("sweep", recipe, "--out", tmp_path / "swept", "--plan-only", "--set", "learning_rate=0.05")
    assert note in swept_output.output
    swept = [yaml.safe_load(group["yaml"]) for group in json.loads((tmp_path / "swept" / "plan.json").read_text())["groups"]]
    assert [group["learning_rate"] for group in planned] == [0.05, 0.05] and planned == swept
    # plan.json keeps each group's draw; the associations rank the value its runs trained with
    from rltx.sweep.plan import trained_values
    stored = json.loads((tmp_path / "swept" / "plan.json").read_text())["groups"]
    assert all(group["values"]["learning_rate"] != 0.05 for group in stored)
    assert [trained_values(group)["learning_rate"] for group in stored] == [0.05, 0.05]


def test_a_plan_written_before_plans_kept_their_design_reruns_and_gains_it(tmp_path):
    invoke_ok("sweep", sweep_file(tmp_path), "--out", tmp_path / "out", "--plan-only")
    plan = json.loads((tmp_path / "out" / "plan.json").read_text())
    design = plan.pop("design")
    (tmp_path / "out" / "plan.json").write_text(json.dumps(plan))
    invoke_ok("sweep", sweep_file(tmp_path), "--out", tmp_path / "out", "--plan-only")
    assert json.loads((tmp_path / "out" / "plan.json").read_text()) == {**plan, "design": design}


def test_a_plan_written_before_plans_kept_their_design_says_to_rerun_it_before_it_grows(tmp_path):
    """Without a stored design, more groups cannot be told from another experiment's: the refusal
    says to rerun at the plan's own size first (which adds the design), and that then grows."""
    from click.testing import CliRunner

    from rltx.cli import main
    invoke_ok("sweep", sweep_file(tmp_path), "--out", tmp_path / "out", "--plan-only")
    plan = json.loads((tmp_path / "out" / "plan.json").read_text())
    plan.pop("design")
    (tmp_path / "out" / "plan.json").write_text(json.dumps(plan))
    before = (tmp_path / "out" / "plan.json").read_text()
    grown = ["sweep", str(tmp_path / "sweep.yaml"), "--out", str(tmp_path / "out"), "--plan-only"]
    sweep_file(tmp_path, {**SECTION, "groups": 4})
    result = CliRunner().invoke(main, grown)
    assert result.exit_code == 2 and "was written before plans kept their design" in result.output
    assert "rerun it with its own groups and seeds first" in result.output
    assert (tmp_path / "out" / "plan.json").read_text() == before
    sweep_file(tmp_path, {**SECTION, "labels_downstream": ["real", "random"]})  # another experiment, not growth
    result = CliRunner().invoke(main, grown)
    assert result.exit_code == 2 and "holds another plan" in result.output
    invoke_ok("sweep", sweep_file(tmp_path), "--out", tmp_path / "out", "--plan-only")
    sweep_file(tmp_path, {**SECTION, "groups": 4})
    invoke_ok(*grown)
    assert len(json.loads((tmp_path / "out" / "plan.json").read_text())["groups"]) == 4


def test_reproduce_runs_a_sweep_to_its_verdict_with_the_panels_and_their_associations(tmp_path):
    """`rltx reproduce SWEEP` end to end (3 tiny groups, 1 seed): the verdict has the fit line, the
    panel's scatter lines and its association line, and associations.h5 holds the values that vary;
    then `rltx sweep` over the same folder, moved elsewhere and grown there to 4 groups, then to 5 with
    a run that fails."""
    from click.testing import CliRunner

    from rltx import store
    from rltx.analysis.results import read_result
    from rltx.cli import main
    reproduce_sweep_file(tmp_path, {**SECTION, "groups": 3})
    invoke_ok("reproduce", tmp_path / "sweep.yaml", "--out", tmp_path / "out", "--quiet")
    verdict = (tmp_path / "out" / "verdict.txt").read_text()
    panel = "real labels downstream, all layers transferred: "
    assert "pre-training fitted its random labels" in verdict and f"{panel}pre-trained trains faster" in verdict
    assert "real labels downstream, all layers transferred, test accuracy: pre-trained ahead (below x = y)" in verdict
    assert "real labels downstream, all layers transferred, simple_cnn groups: " in verdict  # 3 groups: exact p >= 1/3
    stored = read_result(tmp_path / "out" / "associations.h5").arrays
    assert sorted(store.text(k) for k in stored["key"]) == ["learning_rate", "num_classes_upstream"]

    # `rltx sweep` over the same runs (all skipped) says the same association line; grown by a group it
    # runs only that group's two runs; a pair is left out once one of its runs is flagged
    line = next(text for text in verdict.splitlines() if "simple_cnn groups: " in text).strip().removeprefix("- ")
    swept = invoke_ok("sweep", tmp_path / "sweep.yaml", "--out", tmp_path / "out" / "runs").output
    assert "over 3 of 3 pairs:" in swept and f"  {line}\n" in swept and "6 skipped" in swept
    assert read_result(tmp_path / "out" / "runs" / "associations.h5").arrays["key"].tolist() == stored["key"].tolist()

    # the sweep folder moved (as from a cluster's scratch disk) is the same sweep: it grows there by a group,
    # and the finished runs' pairs are found though their records name the old folder
    runs = tmp_path / "moved"
    shutil.move(tmp_path / "out" / "runs", runs)
    swept = invoke_ok("sweep", tmp_path / "sweep.yaml", "--out", runs, "--groups", "4").output
    assert "2 completed, 6 skipped, 0 failed, 0 blocked" in swept and "over 4 of 4 pairs:" in swept
    assert "simple_cnn groups: over 4 groups, the AUC difference" in swept
    assert all(str(tmp_path / "out") not in argument for run in json.loads((runs / "plan.json").read_text())["runs"]
               for argument in run["argv"])
    flagged = runs / "simple_cnn" / "g01" / "s3-pretrain"
    store.write_run_record(flagged, dataclasses.replace(store.read_run_record(flagged), health="diverged: planted"))
    swept = invoke_ok("sweep", tmp_path / "sweep.yaml", "--out", runs, "--groups", "4").output
    assert f"over 3 of 4 pairs (1 flagged run left out: rltx runs {runs}):" in swept
    assert "simple_cnn groups: over 3 groups, the AUC difference" in swept

    # a fifth group whose pre-training meets an orphaned metrics.h5 fails, its transfer is blocked: the
    # sweep prints the other groups' pairs, skips the association lines (a blocked run has no record to
    # check) and ends in one line naming the failed run and its log, exit 1
    (runs / "simple_cnn" / "g04" / "s3-pretrain").mkdir(parents=True)
    (runs / "simple_cnn" / "g04" / "s3-pretrain" / "metrics.h5").write_bytes(b"left by another run")
    failed = CliRunner().invoke(main, ["sweep", str(tmp_path / "sweep.yaml"), "--out", str(runs), "--groups", "5"])
    assert failed.exit_code == 1 and "0 completed, 8 skipped, 1 failed, 1 blocked" in failed.output, failed.output
    assert "simple_cnn/g03 " in failed.output and "sampled values and transfer" not in failed.output
    assert failed.output.strip().splitlines()[-1] == (
        f"Error: 1 run failed (first: simple_cnn/g04/s3-pretrain, log {runs / 'logs' / 'simple_cnn__g04__s3-pretrain.log'}"
        "); fix the cause and rerun the same command to finish the sweep")


def test_sweep_groups_and_seeds_options_set_the_sweep_section_and_grow_a_plan(tmp_path):
    """`rltx sweep --groups 4 --seeds 2` plans what the section with groups 4, seeds 2 plans, and grows
    the 2-group plan already in --out; past the section's limit it is refused in one line."""
    from click.testing import CliRunner

    from rltx.cli import main
    from rltx.sweep import read_plan
    invoke_ok("sweep", sweep_file(tmp_path), "--out", tmp_path / "out", "--plan-only")
    small = read_plan(tmp_path / "out" / "plan.json")
    invoke_ok("sweep", sweep_file(tmp_path), "--out", tmp_path / "out", "--plan-only", "--groups", "4", "--seeds", "2")
    grown = read_plan(tmp_path / "out" / "plan.json")
    invoke_ok("sweep", sweep_file(tmp_path, {**SECTION, "groups": 4, "seeds": 2}), "--out", tmp_path / "section",
              "--plan-only")
    by_section = read_plan(tmp_path / "section" / "plan.json")
    assert [g["values"] for g in grown.groups] == [g["values"] for g in by_section.groups] and len(grown.groups) == 4
    assert len(grown.runs) == len(by_section.runs) and all(group in grown.groups for group in small.groups)
    result = CliRunner().invoke(main, ["sweep", str(sweep_file(tmp_path)), "--out", str(tmp_path / "big"),
                                       "--plan-only", "--groups", "10001"])
    assert result.exit_code == 2 and "groups must be an integer from 1 to 10000" in result.output
    assert not (tmp_path / "big").exists()


def test_a_plan_from_an_rltx_without_a_newer_key_is_the_same_plan(tmp_path):
    """A stored group recipe that lacks a key added to rltx later (here construct_signs, at its default)
    is the same plan, so a sweep resumes after an upgrade; a changed value is still another plan."""
    from click.testing import CliRunner

    from rltx.cli import main
    invoke_ok("sweep", sweep_file(tmp_path), "--out", tmp_path / "out", "--plan-only")
    path = tmp_path / "out" / "plan.json"
    plan = json.loads(path.read_text())
    for group in plan["groups"]:
        keys = yaml.safe_load(group["yaml"])
        assert keys.pop("construct_signs") == "largest_positive"
        group["yaml"] = yaml.safe_dump(keys)
    path.write_text(json.dumps(plan))
    invoke_ok("sweep", sweep_file(tmp_path), "--out", tmp_path / "out", "--plan-only")
    assert "construct_signs" in json.loads(path.read_text())["groups"][0]["yaml"]  # rewritten as this rltx writes it
    plan = json.loads(path.read_text())
    plan["groups"][0]["yaml"] = plan["groups"][0]["yaml"].replace("momentum: 0.9", "momentum: 0.5")
    path.write_text(json.dumps(plan))
    result = CliRunner().invoke(main, ["sweep", str(sweep_file(tmp_path)), "--out", str(tmp_path / "out"), "--plan-only"])
    assert result.exit_code == 2 and "holds another plan" in result.output


def test_a_sweep_run_that_diverges_is_excluded_and_the_reproduction_reaches_its_verdict(tmp_path):
    """Two of three groups draw a learning rate of 1e12 and diverge (a NaN loss: the run fails, health diverged).
    A rerun would diverge again bit for bit, so `rltx reproduce` must not stop on them, as it did: the verdict
    lists them as excluded and is drawn from the group that trained. `--set architecture` (and the other keys a
    sweep: section sets per run) is refused in one line: the groups would have trained another model under
    their listed one: as a user meets it, `rltx` in a subprocess, stderr that one line, nothing written."""
    section = {**SECTION, "groups": 3, "sample": {"learning_rate": {"uniform": [0.05, 1.0e12]},
                                                  "num_classes_upstream": {"uniform": [2, 4]}}}
    reproduce_sweep_file(tmp_path, section)
    invoke_ok("reproduce", tmp_path / "sweep.yaml", "--out", tmp_path / "out", "--quiet")
    verdict = (tmp_path / "out" / "verdict.txt").read_text()
    excluded = verdict.split("excluded (diverged or collapsed, not counted as evidence):")[1]
    for group in ("g00", "g01"):
        assert f"simple_cnn/{group}/s3-pretrain: diverged: loss " in excluded
    assert "simple_cnn/g02" not in excluded and "(below x = y) in 0 of 1 groups" in verdict  # g02 alone counted
    for key, value, section_key in (("architecture", "mlp", "architectures"),
                                    ("labels_downstream", "random", "labels_downstream")):
        result = subprocess.run([sys.executable, "-m", "rltx", "reproduce", str(tmp_path / "sweep.yaml"), "--out",
                                 str(tmp_path / "o2"), "--set", f"{key}={value}"], capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 2 and result.stderr.splitlines() == [
            f"Error: --set {key} cannot change a sweep: its sweep: section sets {key} for every group or run "
            f"({section_key}); edit that section in a copy of the recipe instead"], result.stderr
        assert not (tmp_path / "o2").exists()  # the folder the refused reproduction made is removed
