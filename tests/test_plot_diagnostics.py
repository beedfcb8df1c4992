"""`rltx plot cka|barrier|spectrum|landscape|hessian` from analysis files of tiny real runs: the plotted
data equals the stored data, the images are non-trivial, bad inputs give one-line errors."""
import h5py
import matplotlib.image
import numpy as np
import pytest

from rltx.plotting.diagnostics import (draw_barrier, draw_cka, draw_hessian, draw_landscape,
                                       draw_spectrum)
from tests_support import invoke_ok as invoke, invoke_plot, stored, text


@pytest.fixture(scope="module")
def files(tmp_path_factory, paired_runs):
    """Analysis files of the shared runs (conftest.py)."""
    d, runs = tmp_path_factory.mktemp("plotdiag"), paired_runs
    invoke("analyze", "cka", runs / "sweep" / "t0", runs / "sweep" / "t0-scratch", "--num-examples", "40",
           "-o", d / "cka.h5")
    invoke("analyze", "barrier", runs / "pre0", runs / "pre1", "--points", "7", "-o", d / "barrier2.h5")
    invoke("analyze", "barrier", runs / "pre0", "--points", "7", "-o", d / "barrier1.h5")
    invoke("analyze", "spectrum", runs / "pre0", runs / "pre1", "--all-steps", "--bins", "12",
           "--thresholds", "0.5,0.05", "-o", d / "spectrum.h5")
    invoke("analyze", "landscape", runs / "pre0", "--points", "5", "--num-examples", "64", "-o", d / "land1.h5")
    invoke("analyze", "landscape", runs / "pre0", "--two-d", "--points", "5", "--num-examples", "64",
           "-o", d / "land2.h5")
    invoke("analyze", "hessian", runs / "pre0", "--all-steps", "--top-k", "2", "--iterations", "6",
           "--num-examples", "64", "-o", d / "hessian.h5")
    invoke("analyze", "hessian", runs / "pre0", runs / "pre1", "--top-k", "2", "--iterations", "6",
           "--num-examples", "64", "-o", d / "hessian1.h5")
    return d


def check_image(result, path):
    assert result.exit_code == 0, result.output
    assert path.stat().st_size > 5000
    pixels = matplotlib.image.imread(path)
    assert pixels.std() > 0


def test_cka(files, tmp_path):
    figure = draw_cka([files / "cka.h5"])
    ax = figure.axes[0]
    matrix = stored(files / "cka.h5", "cka")
    np.testing.assert_array_equal(np.asarray(ax.images[0].get_array()), matrix)
    assert ax.images[0].get_clim() == (0.0, 1.0)
    assert [t.get_text() for t in ax.get_xticklabels()] == text(stored(files / "cka.h5", "layers_b"))
    assert [t.get_text() for t in ax.get_yticklabels()] == text(stored(files / "cka.h5", "layers_a"))
    assert [t.get_text() for t in ax.texts] == [f"{v:.2f}" for v in matrix.ravel()]
    check_image(invoke_plot("cka", files / "cka.h5", "-o", tmp_path / "cka.png", "--title", "CKA"),
                tmp_path / "cka.png")


def test_barrier_several_inputs(files, tmp_path):
    inputs = [files / "barrier2.h5", files / "barrier1.h5"]
    figure = draw_barrier(inputs, labels=["seeds", "init"])
    accuracy, loss = figure.axes[:2]
    for ax, metric in ((accuracy, "accuracy"), (loss, "loss")):
        lines = {line.get_label(): line for line in ax.lines}
        for path, label in zip(inputs, ["seeds", "init"]):
            for which in ("test", "train"):
                line = lines[f"{label} ({which})"]
                np.testing.assert_array_equal(line.get_xdata(), stored(path, "alphas"))
                np.testing.assert_array_equal(line.get_ydata(), stored(path, f"{which}_{metric}"))
        verticals = [line.get_xdata()[0] for line in ax.lines if line.get_label().startswith("_")]
        assert sorted(verticals) == [0.0, 1.0]
    assert stored(files / "barrier2.h5", "alphas").min() == -1.0 and stored(files / "barrier2.h5", "alphas").max() == 2
    check_image(invoke_plot("barrier", *inputs, "--labels", "seeds,init", "-o", tmp_path / "b.png"),
                tmp_path / "b.png")
    bad = invoke_plot("barrier", *inputs, "--labels", "one", "-o", tmp_path / "x.png")
    assert bad.exit_code == 2 and "--labels" in bad.output


def test_spectrum(files, tmp_path):
    path = files / "spectrum.h5"
    figure = draw_spectrum([path])
    left, right = figure.axes[:2]
    histogram, edges = stored(path, "histogram"), stored(path, "bin_edges")
    assert len(left.patches) == len(histogram) == 6  # 2 runs x steps 0, 3, 6
    for i, patch in enumerate(left.patches):
        values, patch_edges, _ = patch.get_data()
        np.testing.assert_array_equal(values, histogram[i])
        np.testing.assert_array_equal(patch_edges, edges)
    below = stored(path, "count_below")
    assert len(right.containers) == len(below)
    for i, bars in enumerate(right.containers):
        assert [bar.get_height() for bar in bars] == below[i].tolist()
    # every count is written on its bar, so counts of 0 (no visible bar) still show
    assert sorted(t.get_text() for t in right.texts) == sorted(str(int(c)) for c in below.ravel())
    assert right.get_ylim()[1] >= 1
    assert [t.get_text() for t in right.get_xticklabels()] == ["< 0.5", "< 0.05"]
    check_image(invoke_plot("spectrum", path, "--log", "-o", tmp_path / "s.png"), tmp_path / "s.png")


def test_landscape_1d_and_2d(files, tmp_path):
    figure = draw_landscape([files / "land1.h5"])
    ax = figure.axes[0]
    grid, loss = stored(files / "land1.h5", "grid"), stored(files / "land1.h5", "0/loss")
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), grid)
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), loss)
    assert ax.lines[1].get_ydata()[0] == stored(files / "land1.h5", "0/center_loss")
    check_image(invoke_plot("landscape", files / "land1.h5", "-o", tmp_path / "l1.png"), tmp_path / "l1.png")

    figure = draw_landscape([files / "land2.h5"])
    ax = figure.axes[0]
    surface = stored(files / "land2.h5", "0/loss")
    assert surface.shape == (5, 5)
    filled, lines = ax.collections[:2]
    assert filled.zmin == surface.min() and filled.zmax == surface.max()
    assert filled.levels[0] <= surface.min() and filled.levels[-1] >= surface.max()
    assert np.array_equal(lines.levels, filled.levels)
    vertices = np.concatenate([p.vertices for p in filled.get_paths() if len(p.vertices)])
    # contour vertices interpolate between grid points, x0 + t (x1 - x0): <= 2 roundings of |x| past it
    slack = 4 * np.finfo(np.float64).eps * np.abs(grid).max()
    assert vertices.min() >= grid.min() - slack and vertices.max() <= grid.max() + slack
    centre = [line for line in ax.lines if line.get_label() == "centre"][0]
    assert (centre.get_xdata()[0], centre.get_ydata()[0]) == (0.0, 0.0)
    check_image(invoke_plot("landscape", files / "land2.h5", "-o", tmp_path / "l2.png"), tmp_path / "l2.png")
    mixed = invoke_plot("landscape", files / "land1.h5", files / "land2.h5", "-o", tmp_path / "x.png")
    assert mixed.exit_code == 2 and "only 1-D or only --two-d" in mixed.output


def test_hessian_over_steps_and_bars(files, tmp_path):
    figure = draw_hessian([files / "hessian.h5"], log=True)
    ax = figure.axes[0]
    steps, values = stored(files / "hessian.h5", "0/steps"), stored(files / "hessian.h5", "0/eigenvalues")
    assert steps.tolist() == [0, 3, 6] and values.shape == (3, 2)
    assert len(ax.lines) == 2
    for rank, line in enumerate(ax.lines):
        np.testing.assert_array_equal(line.get_xdata(), steps)
        np.testing.assert_array_equal(line.get_ydata(), values[:, rank])
    assert ax.get_yscale() in ("log", "symlog")
    check_image(invoke_plot("hessian", files / "hessian.h5", "--log", "-o", tmp_path / "h.png"), tmp_path / "h.png")

    figure = draw_hessian([files / "hessian1.h5"])
    ax = figure.axes[0]
    assert len(ax.containers) == 2
    for r, bars in enumerate(ax.containers):
        assert [bar.get_height() for bar in bars] == stored(files / "hessian1.h5", f"{r}/eigenvalues")[0].tolist()
    check_image(invoke_plot("hessian", files / "hessian1.h5", "-o", tmp_path / "h1.png"), tmp_path / "h1.png")


def test_bad_inputs_exit_2_with_one_line(files, paired_runs, tmp_path):
    cases = [
        (["cka", files / "hessian.h5"], "holds a hessian result, not cka"),
        (["barrier", paired_runs / "pre0", "-o", tmp_path / "x.png"], "rltx analyze barrier"),
        (["spectrum", paired_runs / "pre0" / "run.h5"], "not an rltx analysis result"),
        (["landscape", tmp_path / "missing.h5"], "rltx analyze landscape"),
        (["cka", files / "cka.h5", files / "cka.h5"], "takes one analysis file"),
        (["hessian", files / "hessian.h5", "-o", tmp_path / "no" / "h.png"], "cannot write"),
    ]
    for args, message in cases:
        if "-o" not in args:
            args = args + ["-o", tmp_path / "x.png"]
        result = invoke_plot(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    # a file lacking an array the kind needs
    with h5py.File(files / "cka.h5") as source, h5py.File(tmp_path / "partial.h5", "w") as target:
        target.attrs.update(source.attrs)
        target["layers_a"] = source["layers_a"][()]
    result = invoke_plot("cka", tmp_path / "partial.h5", "-o", tmp_path / "x.png")
    assert result.exit_code == 2 and "lacks layers_b, cka; produce it with `rltx analyze cka" in result.output
