"""`rltx plot curves|auc-scatter|table|activations` from tiny real runs and analysis files: the plotted
data equals the stored data, the images are non-trivial, bad inputs give one-line errors."""
import shutil

import h5py
import matplotlib.image
import numpy as np
import pytest
import yaml

from rltx import store
from rltx.errors import UsageError
from rltx.plotting.training import (draw_activations, draw_auc_scatter, draw_curves, draw_table,
                                    expand_runs, table_rows)
from tests_support import invoke_ok as invoke, invoke_plot, stored, text


@pytest.fixture(scope="module")
def files(tmp_path_factory, paired_runs):
    """Analysis files of the shared runs (conftest.py), and a construct-init table."""
    d, runs = tmp_path_factory.mktemp("plot_training"), paired_runs
    invoke("analyze", "curves", *sorted((runs / "sweep").iterdir()), "-o", d / "curves.h5")
    invoke("analyze", "activations", runs / "pre0", "--step", "0", "--num-examples", "64", "-o", d / "act_init.h5")
    invoke("analyze", "activations", runs / "pre0", runs / "sweep" / "t0", "--num-examples", "64", "-o", d / "act.h5")
    invoke("analyze", "activation-trajectory", runs / "pre0", runs / "sweep" / "t0", "--num-examples", "64",
           "-o", d / "traj.h5")
    recipe = yaml.safe_load((runs / "r.yaml").read_text())
    table = {**recipe, "table_layer_sets": [[], [1]], "table_iterations": [3, 6], "construct_num_examples": 128}
    (d / "t.yaml").write_text(yaml.safe_dump(table))
    invoke("construct-init", d / "t.yaml", "--table", d / "table")
    return d


def check_image(path):
    assert path.exists() and path.stat().st_size > 5000
    assert matplotlib.image.imread(path).std() > 0


def metric(run_dir, name):
    with h5py.File(run_dir / store.METRICS_FILE) as handle:
        return handle[name][()]


def test_curves_mean_and_band_equal_the_stored_metrics(paired_runs, tmp_path):
    sweep = paired_runs / "sweep"
    figure = draw_curves([sweep], band="minmax")  # a sweep directory expands to its runs
    ax = figure.axes[0]
    # groups in order of appearance (sorted children): transfer (t0, t1), then scratch
    groups = {"transfer": ["t0", "t1"], "scratch": ["t0-scratch", "t1-scratch"]}
    assert [line.get_label() for line in ax.lines[::2]] == list(groups)
    for g, runs in enumerate(groups.values()):
        steps = metric(sweep / runs[0], "step")
        for m, name in enumerate(("train_accuracy", "test_accuracy")):
            line = ax.lines[2 * g + m]
            values = np.stack([metric(sweep / run, name) for run in runs])
            np.testing.assert_array_equal(line.get_xdata(), steps)
            np.testing.assert_allclose(line.get_ydata(), values.mean(axis=0))
            assert line.get_linestyle() == ("-" if m == 0 else ":")
            band = ax.collections[2 * g + m].get_paths()[0].vertices
            # the band's vertices are the same float64 numbers (min/max over seeds): exact
            assert band[:, 1].min() == values.min() and band[:, 1].max() == values.max()
        assert ax.lines[2 * g].get_color() == ax.lines[2 * g + 1].get_color()
    assert ax.get_xlabel() == "step" and ax.get_ylabel() == "accuracy"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["transfer", "scratch", "train", "test"]

    epochs = draw_curves([sweep / "t0", sweep / "t1"], x="epoch", band="std", accuracy="train",
                         zoom=(0, 2, 0.1, 0.9), labels=["pre-trained"])
    ax = epochs.axes[0]
    assert len(ax.lines) == 1 and ax.get_xlabel() == "epoch" and ax.get_xlim() == (0, 2)
    np.testing.assert_allclose(ax.lines[0].get_xdata(), metric(sweep / "t0", "epoch"))
    values = np.stack([metric(sweep / r, "train_accuracy") for r in ("t0", "t1")])
    upper = ax.collections[0].get_paths()[0].vertices[:, 1].max()
    assert upper == np.max(values.mean(0) + values.std(0, ddof=1))  # the plot's own arithmetic: exact

    result = invoke_plot("curves", sweep, "--x", "epoch", "--band", "minmax", "--zoom", "0,5,0,1",
                         "-o", tmp_path / "c.png")
    assert result.exit_code == 0, result.output
    check_image(tmp_path / "c.png")


def test_long_group_labels_go_below_the_axes_and_leave_them_their_size(paired_runs, tmp_path):
    """Six automatic labels of 60-80 characters once covered the curves and squeezed the axes to nothing
    (matplotlib: "constrained_layout not applied"): they are drawn below the axes, which keep a usable height."""
    import warnings
    sweep = paired_runs / "sweep"
    long = ["transfer, from_step=[30], rescaling=l2, transfer_layers=conv", "scratch, rescaling=l2"]
    figure = draw_curves([sweep], labels=long)
    assert figure.axes[0].get_legend() is None
    assert [t.get_text() for t in figure.legends[0].get_texts()] == [*long, "train", "test"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the layout warning would fail here
        figure.savefig(tmp_path / "long.png")
    height = figure.axes[0].get_position().height * figure.get_figheight()
    assert height > 0.8  # inches of axes left in the 2.5-inch paper figure
    # labels of every key of a mixed folder are wrapped to the figure's width, which the saved image keeps, in
    # at most 3 lines; the figure grows by their lines, the axes keep their height
    huge = [", ".join(f"key_{i}=value_{i}" for i in range(count)) for count in (7, 40)]  # 110, 700 characters
    figure = draw_curves([sweep], labels=huge)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figure.savefig(tmp_path / "huge.png")
    whole, cut = [t.get_text() for t in figure.legends[0].get_texts()][:2]
    assert "\n" in whole and whole.replace("\n", " ") == huge[0]
    assert cut.count("\n") == 2 and cut.endswith(" ...") and huge[1].startswith(cut.replace("\n", " ")[:-4])
    assert figure.axes[0].get_position().height * figure.get_figheight() > 0.8
    pixels = matplotlib.image.imread(tmp_path / "huge.png").shape
    assert pixels[1] < 1.2 * 3.3 * 300  # at most a little wider than the 3.3-inch figure at 300 dpi


def test_auc_scatter_is_pretrained_on_x_scratch_on_y(files, tmp_path):
    path = files / "curves.h5"
    for which in ("train", "test"):
        ax = draw_auc_scatter([path], metric=which).axes[0]
        offsets = np.concatenate([c.get_offsets() for c in ax.collections])
        expected = np.stack([stored(path, f"pair_groups/pretrained_{which}_auc"),
                             stored(path, f"pair_groups/scratch_{which}_auc")], axis=1)
        np.testing.assert_allclose(offsets, expected)
        assert ax.get_xlabel().startswith("pre-trained AUC") and ax.get_ylabel().startswith("from-scratch AUC")
        diagonal = ax.lines[0]
        np.testing.assert_array_equal(diagonal.get_xdata(), diagonal.get_ydata())
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["x = y", "simple_cnn, transfer all"]
    pairs = np.concatenate([c.get_offsets() for c in draw_auc_scatter([path], dots="pair").axes[0].collections])
    np.testing.assert_allclose(np.sort(pairs[:, 0]), np.sort(stored(path, "pairs/pretrained_train_auc")))
    result = invoke_plot("auc-scatter", path, "--metric", "test", "-o", tmp_path / "a.png")
    assert result.exit_code == 0, result.output
    check_image(tmp_path / "a.png")


def test_tables_as_markdown_latex_and_image(files, tmp_path):
    path = files / "table" / "table.h5"
    accuracy, iterations = stored(path, "accuracy"), stored(path, "iterations")
    cells = draw_table([path], digits=3).axes[0].tables[0].get_celld()
    assert [cells[0, c].get_text().get_text() for c in range(4)] == ["iterations", "data", "{}", "{1}"]
    for i, step in enumerate(iterations):
        for j in range(2):
            row = 1 + 2 * i + j
            assert cells[row, 0].get_text().get_text() == str(step)
            shown = [float(cells[row, 2 + s].get_text().get_text()) for s in range(accuracy.shape[0])]
            np.testing.assert_allclose(shown, accuracy[:, i, j], atol=5e-4)

    result = invoke_plot("table", path, "-o", tmp_path / "t.md")
    assert result.exit_code == 0, result.output
    markdown = (tmp_path / "t.md").read_text()
    assert markdown in result.output and markdown.splitlines()[0] == "| iterations | data | {} | {1} |"
    assert markdown.splitlines()[2] == f"| 3 | train | {accuracy[0, 0, 0]:.2f} | {accuracy[1, 0, 0]:.2f} |"
    assert invoke_plot("table", path, "-o", tmp_path / "t.tex").exit_code == 0
    latex = (tmp_path / "t.tex").read_text()
    assert latex.startswith(r"\begin{tabular}{llrr}") and r"\{1\}" in latex and latex.count(r"\\") == 5

    curves = files / "curves.h5"
    header, rows = table_rows(curves, digits=3)
    assert header[:3] == ["group", "runs", "train AUC"]
    assert [r[0] for r in rows] == text(stored(curves, "groups/label"))
    assert rows[0][2] == (f"{stored(curves, 'groups/train_auc_mean')[0]:.3f} ± "
                          f"{stored(curves, 'groups/train_auc_std')[0]:.3f}")
    single = tmp_path / "single.h5"  # a group of one run: its AUC alone, no "± nan"
    shutil.copy(curves, single)
    with h5py.File(single, "r+") as handle:
        handle["groups/train_auc_std"][0] = np.nan
    assert table_rows(single, digits=3)[1][0][2] == f"{stored(curves, 'groups/train_auc_mean')[0]:.3f}"
    refused = invoke_plot("table", curves, "-o", tmp_path / "t.txt")
    assert refused.exit_code == 2 and "must end in .md, .tex, .png, .pdf, .svg" in refused.output
    for suffix in ("png", "pdf"):
        result = invoke_plot("table", curves, "-o", tmp_path / f"t.{suffix}")
        assert result.exit_code == 0, result.output
    check_image(tmp_path / "t.png")


def test_activation_histograms_overlay_results(files, tmp_path):
    init, act = files / "act_init.h5", files / "act.h5"
    figure = draw_activations([init, act])
    layers = figure.rltx_layers
    assert layers == ["conv_0", "dense_0"]
    axes = np.array(figure.axes).reshape(len(layers), 2)
    # curves: pre0 step 0 (init file), then pre0 step 6 and t0 step 6 (their last) (second file)
    sources = [(init, 0, 0), (act, 0, 0), (act, 1, 0)]
    assert [s[0] for s in figure.rltx_series] == ["pre0, step 0", "pre0, step 6", "t0, step 6"]
    edges = stored(act, "bin_edges")
    for row in range(len(layers)):
        for k, (path, r, s) in enumerate(sources):
            neurons = stored(path, f"{r}/neuron_histogram")[s, row] / stored(path, f"{r}/num_neurons")[row]
            examples = stored(path, f"{r}/example_histogram")[s, row] / stored(path, f"{r}/num_examples")
            for column, expected in enumerate((neurons, examples)):
                values, drawn_edges, _ = axes[row, column].patches[k].get_data()
                np.testing.assert_allclose(values, expected)
                np.testing.assert_allclose(drawn_edges, edges)
    selected = draw_activations([act], layers=["dense_0"], steps={6}, labels=["pre-trained", "fine-tuned"])
    assert selected.rltx_layers == ["dense_0"] and len(selected.axes) == 2
    assert [t.get_text() for t in selected.legends[0].get_texts()] == ["pre-trained", "fine-tuned"]
    result = invoke_plot("activations", init, act, "-o", tmp_path / "h.png")
    assert result.exit_code == 0, result.output
    check_image(tmp_path / "h.png")


def test_activation_trajectory_marks_the_switch(files, tmp_path):
    path = files / "traj.h5"
    ax = draw_activations([path]).axes[0]
    steps, activation = stored(path, "steps"), stored(path, "activation")
    for l in range(activation.shape[1]):
        np.testing.assert_array_equal(ax.lines[l].get_xdata(), steps)
        np.testing.assert_allclose(ax.lines[l].get_ydata(), activation[:, l])
    switch = ax.lines[activation.shape[1]]
    assert list(switch.get_xdata()) == [stored(path, "switch_step")] * 2
    result = invoke_plot("activations", path, "--layers", "conv_0", "-o", tmp_path / "tr.png")
    assert result.exit_code == 0, result.output
    check_image(tmp_path / "tr.png")


def test_auc_scatter_keeps_the_groups_fine_tuned_on_the_labels_asked_for(files, tmp_path):
    """Fig. 12-15 draw real- and random-label groups in separate rows: `downstream_labels` keeps the dots
    whose stored group key has those labels (the file's one transfer group is relabelled by hand)."""
    import json
    path, relabelled = files / "curves.h5", tmp_path / "relabelled.h5"
    every = np.concatenate([c.get_offsets() for c in draw_auc_scatter([path]).axes[0].collections])
    random = draw_auc_scatter([path], downstream_labels="random").axes[0]  # the shared runs' labels
    np.testing.assert_array_equal(np.concatenate([c.get_offsets() for c in random.collections]), every)
    assert random.get_xlabel() == "pre-trained AUC (train accuracy, random labels)"
    shutil.copy(path, relabelled)
    with h5py.File(relabelled, "a") as handle:
        keys = [json.loads(store.text(k)) for k in handle["groups/key"][()]]
        dot = int(handle["pair_groups/group"][0])
        keys[dot]["labels_downstream"] = "real"
        del handle["groups/key"]
        handle["groups/key"] = store.string_array(json.dumps(k, sort_keys=True) for k in keys)
    real = draw_auc_scatter([relabelled], downstream_labels="real").axes[0]
    np.testing.assert_array_equal(np.concatenate([c.get_offsets() for c in real.collections]), every[:1])
    with pytest.raises(UsageError, match="holds no group fine-tuned on random labels"):
        draw_auc_scatter([relabelled], downstream_labels="random")
    # as a user meets it: `rltx` in a subprocess, one line on stderr, exit 2, no figure written
    import os
    import subprocess
    import sys
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    figure = tmp_path / "real.png"
    result = subprocess.run([sys.executable, "-m", "rltx", "plot", "auc-scatter", str(path), "--downstream-labels",
                             "real", "-o", str(figure)], capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 2 and result.stderr.splitlines() == [
        f"Error: {path} holds no group fine-tuned on real labels; drop --downstream-labels or give the labels its "
        "runs were fine-tuned on"], result.stderr  # the shared runs were fine-tuned on random labels
    assert not figure.exists()


def test_bad_inputs_give_one_line_errors(files, paired_runs, tmp_path):
    cases = [
        (("curves", paired_runs / "r.yaml"), "not a run directory"),
        (("curves", tmp_path), "holds no run"),
        (("curves", paired_runs / "sweep", "--zoom", "0,1"), "--zoom takes 4"),
        (("curves", paired_runs / "sweep", "--labels", "a"), "--labels gives 1 label(s) for 2 group(s)"),
        (("auc-scatter", files / "act.h5"), "holds a activations result, not curves; produce one with `rltx analyze curves"),
        (("activations", files / "curves.h5"), "not activations; produce one with `rltx analyze activations"),
        (("activations", files / "act.h5", "--layers", "nope"), "no layer nope"),
        (("table", files / "traj.h5"), "not a table; produce one with `rltx construct-init"),
        (("curves", paired_runs / "sweep", "-o", tmp_path / "missing" / "x.png"), "cannot write"),
        (("table", files / "curves.h5", "-o", tmp_path / "missing" / "x.md"), "cannot write"),
    ]
    for args, message in cases:
        if "-o" not in args:
            args = (*args, "-o", tmp_path / ("x.md" if args[0] == "table" else "x.png"))
        result = invoke_plot(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    # a curves file without pairs: only scratch runs
    invoke("analyze", "curves", paired_runs / "sweep" / "t0-scratch", "-o", tmp_path / "scratch.h5")
    result = invoke_plot("auc-scatter", tmp_path / "scratch.h5", "-o", tmp_path / "x.png")
    assert result.exit_code == 2 and "--with-baseline" in result.output
    # a curves result lacking the pair arrays (an older or foreign file)
    with h5py.File(tmp_path / "scratch.h5", "a") as handle:
        del handle["pair_groups"]
    result = invoke_plot("auc-scatter", tmp_path / "scratch.h5", "-o", tmp_path / "x.png")
    assert result.exit_code == 2 and "lacks pair_groups/pretrained_train_auc" in result.output
    # pairs edited by hand: one pair array emptied, another made longer than the others
    edits = {"pair_groups/group": (lambda v: v[:0], "holds empty arrays (pair_groups/group)"),
             "pair_groups/scratch_train_auc": (lambda v: np.concatenate([v, v[:1]]), "holds pair arrays of different lengths")}
    for name, (change, message) in edits.items():
        edited = tmp_path / "edited.h5"
        shutil.copy(files / "curves.h5", edited)
        with h5py.File(edited, "a") as handle:
            values = change(handle[name][()])
            del handle[name]
            handle[name] = values
        result = invoke_plot("auc-scatter", edited, "-o", tmp_path / "x.png")
        assert result.exit_code == 2 and message in result.output, result.output


def test_a_folder_is_searched_for_runs_at_any_depth_as_rltx_runs_does(paired_runs):
    """A reproduction's --out keeps its runs two levels down (OUT/runs/VARIANT/sN): plot curves finds them."""
    found = expand_runs([paired_runs])
    assert paired_runs / "pre0" in found and paired_runs / "sweep" / "t0" in found
    assert found == sorted(found) and all((run / store.RUN_FILE).is_file() for run in found)


def test_auc_scatter_draws_a_dot_with_a_flagged_run_hollow(files, tmp_path):
    """A dot whose pair has a run stored as collapsed is drawn hollow (face alpha 0) with a legend entry
    saying so; the other dots stay filled, and nothing is hollow while every run is healthy."""
    path, flagged = files / "curves.h5", tmp_path / "flagged.h5"
    filled = draw_auc_scatter([path], dots="pair").axes[0]
    assert all(c.get_facecolors()[:, 3].min() == 1 for c in filled.collections)
    shutil.copy(path, flagged)
    with h5py.File(flagged, "a") as handle:
        scratch = store.text(handle["pairs/scratch_run"][0])
        health = [store.text(h) for h in handle["health"][()]]
        health[[store.text(r) for r in handle["runs"][()]].index(scratch)] = "collapsed: constant outputs from step 3"
        del handle["health"]
        handle["health"] = store.string_array(health)
    for dots in ("pair", "group"):
        ax = draw_auc_scatter([flagged], dots=dots).axes[0]
        alphas = np.concatenate([c.get_facecolors()[:, 3] for c in ax.collections if len(c.get_offsets())])
        assert (alphas == 0).sum() == 1, dots
        legend = ax.get_legend()
        assert "hollow: a run diverged or collapsed" in [t.get_text() for t in legend.get_texts()]
        assert legend.legend_handles[1].get_markerfacecolor() != "none"  # the category's marker stays filled
    with h5py.File(path) as handle:  # a verdict's uncounted pair (its pre-training flagged) is hollow too
        transfer = store.text(handle["pairs/transfer_run"][0])
    ax = draw_auc_scatter([path], dots="pair", excluded={transfer}).axes[0]
    assert (np.concatenate([c.get_facecolors()[:, 3] for c in ax.collections if len(c.get_offsets())]) == 0).sum() == 1
