"""`rltx plot misalignment|eigenvectors|f-sigma|alignment-curve`: the plotted data are the stored
analysis arrays (read back from the artists, compared with an independent h5py read), the images
are real, bad input is one line with exit 2."""
import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib import image

from rltx import store
from rltx.cli import Group, main
from rltx.errors import UsageError
from rltx.plotting import alignment as plots
from rltx.plotting.commands import plot

ROOT = Group(commands={"plot": plot})  # the CLI's error handling: UsageError -> one line, exit 2


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def draw(*args):
    return CliRunner().invoke(ROOT, ["plot", *map(str, args)])


@pytest.fixture(scope="module")
def files(tmp_path_factory, wide_runs):
    """Analysis files of the shared WIDE runs (conftest.py)."""
    directory = tmp_path_factory.mktemp("plot_alignment")
    (directory / "mis").mkdir()
    commands = [("misalignment", "run0", "--all-steps", "mis/m0.h5"),
                ("misalignment", "run1", "--all-steps", "mis/m1.h5"),
                ("transfer-function", "run0", "--all-steps", "f.h5"), ("eigenvectors", "run0", "--top-k", "4", "e.h5"),
                ("representation-alignment", "run0", "--all-steps", "--num-examples", "128", "--points", "11", "a.h5")]
    for kind, run, *options, output in commands:
        result = invoke("analyze", kind, wide_runs / run, *options, "-o", directory / output)
        assert result.exit_code == 0, result.output
    return directory


def stored(path):
    with h5py.File(path) as handle:
        return {name: handle[name][()] for name in handle if isinstance(handle[name], h5py.Dataset)}


def check_image(path):
    assert path.exists() and path.stat().st_size > 5000
    assert np.std(image.imread(path)[..., :3]) > 0


def test_misalignment_lines_are_the_stored_scores(files, wide_runs, tmp_path):
    m0, m1 = files / "mis" / "m0.h5", files / "mis" / "m1.h5"
    figure = plots.draw_misalignment([m0, m1], labels=["real", "other"])
    ax = figure.axes[0]
    assert len(ax.lines) == 4
    for k, path in enumerate((m0, m1)):
        arrays = stored(path)
        data, random = ax.lines[2 * k], ax.lines[2 * k + 1]
        np.testing.assert_array_equal(data.get_xdata(), arrays["steps"])
        np.testing.assert_array_equal(data.get_ydata(), arrays["misalignment_data"])
        np.testing.assert_array_equal(random.get_ydata(), arrays["misalignment_random"])
        assert data.get_linestyle() == "-" and random.get_linestyle() == "--"
        assert data.get_color() == random.get_color()
    assert [t.get_text() for t in ax.get_legend().get_texts()][0] == "real, data basis"
    assert ax.get_xlabel() == "step"
    # epochs from the run's metrics (epoch = step * batch / n)
    row = [r for r in store.read_metrics(wide_runs / "run0") if r["step"] > 0][0]
    by_epoch = plots.draw_misalignment([m0], x="epoch").axes[0]
    np.testing.assert_allclose(by_epoch.lines[0].get_xdata(), stored(m0)["steps"] * row["epoch"] / row["step"])
    assert by_epoch.get_xlabel() == "epoch"
    # a directory of results: its .h5 files, legend by file stem
    from_directory = plots.draw_misalignment([files / "mis"]).axes[0]
    assert [t.get_text() for t in from_directory.get_legend().get_texts()][::2] == ["m0, data basis", "m1, data basis"]
    result = draw("misalignment", m0, m1, "--labels", "real,other", "-o", tmp_path / "m.png", "--title", "Fig. 2")
    assert result.exit_code == 0, result.output
    check_image(tmp_path / "m.png")


def test_eigenvector_patches_are_the_stored_vectors(files, tmp_path):
    arrays = stored(files / "e.h5")
    shape = tuple(arrays["patch_shape"])
    assert shape == (3, 3, 3)

    def mapped(vector):
        return (vector / (2 * np.abs(vector).max()) + 0.5).reshape(shape)

    figure = plots.draw_eigenvectors([files / "e.h5"])
    axes = np.array(figure.axes).reshape(4, 5)
    for r in range(4):
        np.testing.assert_allclose(axes[r, 0].images[0].get_array(), mapped(arrays["w_vectors"][r]))
        matches = [j for j in arrays["matches"][r] if j >= 0][:3]
        for c in range(3):
            if c < len(matches):
                np.testing.assert_allclose(axes[r, 1 + c].images[0].get_array(),
                                           mapped(arrays["x_vectors"][matches[c]]))
                assert f"{arrays['inner'][r, matches[c]]:+.2f}" in axes[r, 1 + c].get_title()
            else:
                assert not axes[r, 1 + c].images and not axes[r, 1 + c].axison
        if matches:
            np.testing.assert_allclose(axes[r, 4].images[0].get_array(), mapped(arrays["combined"][r]))
        else:
            assert not axes[r, 4].images
    assert np.array(plots.draw_eigenvectors([files / "e.h5"], rows=2).axes).size == 10
    kept = len(arrays["w_vectors"])
    with pytest.raises(UsageError, match=f"stores {kept} eigenvectors, fewer than --rows {kept + 1}; give --rows "
                                         f"{kept} or fewer, or rerun `rltx analyze eigenvectors` with --top-k"):
        plots.draw_eigenvectors([files / "e.h5"], rows=kept + 1)  # fewer rows drawn than asked, without a word
    grey = plots.patch_image(np.array([-2.0, 0.0, 1.0, 2.0]), (2, 2, 1))
    np.testing.assert_allclose(grey, [[0.0, 0.5], [0.75, 1.0]])
    result = draw("eigenvectors", files / "e.h5", "-o", tmp_path / "e.png")
    assert result.exit_code == 0, result.output
    check_image(tmp_path / "e.png")


def test_f_sigma_curves_per_checkpoint_and_tau_curves(files, tmp_path):
    from rltx.hyperrule import TAU_CURVES
    arrays = stored(files / "f.h5")
    ax = plots.draw_f_sigma([files / "f.h5"]).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["step 5", "step 10", "step 15", "step 20"]
    for line, row in zip(ax.lines, (1, 2, 3, 4)):
        np.testing.assert_array_equal(line.get_xdata(), arrays["sigma"][row])
        np.testing.assert_array_equal(line.get_ydata(), arrays["tau"][row])
        assert line.get_marker() == "o" and line.get_linestyle() == "-"
    chosen = plots.draw_f_sigma([files / "f.h5"], steps=[0, 20]).axes[0]
    np.testing.assert_array_equal(chosen.lines[0].get_ydata(), arrays["tau"][0])
    assert len(chosen.lines) == 2

    ax = plots.draw_f_sigma([files / "f.h5"], tau_curves=True, labels=["measured"]).axes[0]
    heights = [[bar.get_height() for bar in container] for container in ax.containers]
    assert heights == [list(TAU_CURVES[name]) for name in ("f1", "f2", "f3")]
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), np.arange(1, 17))
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), arrays["tau"][-1][:16])
    only_named = plots.draw_f_sigma([], tau_curves=True, curves=["f2"]).axes[0]
    assert len(only_named.containers) == 1 and not only_named.lines

    for args, name in ((["--steps", "5,20"], "f.png"), (["--tau-curves"], "t.png")):
        result = draw("f-sigma", files / "f.h5", *args, "-o", tmp_path / name)
        assert result.exit_code == 0, result.output
        check_image(tmp_path / name)


def test_alignment_curve_per_layer(files, tmp_path):
    arrays = stored(files / "a.h5")
    layers = [name.decode() for name in arrays["layers"]]
    assert layers[0] == "inputs" and len(layers) == 3
    ax = plots.draw_alignment_curve([files / "a.h5"]).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == layers
    for l, line in enumerate(ax.lines):
        np.testing.assert_array_equal(line.get_xdata(), arrays["fraction"])
        np.testing.assert_array_equal(line.get_ydata(), arrays["alignment"][-1, l])
    normalized = plots.draw_alignment_curve([files / "a.h5"], normalize=True, step=0, layers=["conv_0"]).axes[0]
    assert len(normalized.lines) == 1
    np.testing.assert_allclose(normalized.lines[0].get_ydata(),
                               arrays["alignment"][0, 1] / arrays["label_norm_sq"].sum())
    assert normalized.get_ylabel() == r"alignment / $\|y\|^2$"
    overlaid = plots.draw_alignment_curve([files / "a.h5"], all_steps=True, layers=["conv_0", "dense_0"]).axes[0]
    assert len(overlaid.lines) == 2 * len(arrays["steps"])
    np.testing.assert_array_equal(overlaid.lines[3].get_ydata(), arrays["alignment"][1, 2])
    assert overlaid.lines[3].get_label() == f"dense_0, step {arrays['steps'][1]}"
    result = draw("alignment-curve", files / "a.h5", "--normalize", "--all-steps", "-o", tmp_path / "a.png")
    assert result.exit_code == 0, result.output
    check_image(tmp_path / "a.png")


def test_bad_input_is_one_line_with_exit_2(files, wide_runs, tmp_path):
    from rltx.analysis.results import Result, write_result
    partial = tmp_path / "partial.h5"
    write_result(Result("misalignment", {}, {"steps": np.arange(3), "misalignment_data": np.ones(3)}), partial)
    cases = [
        (["misalignment", partial], "lacks misalignment_random; produce it with `rltx analyze misalignment"),
        (["alignment-curve", files / "f.h5"], "holds a transfer-function result, not representation_alignment"),
        (["f-sigma", wide_runs / "r.yaml"], "not a readable HDF5"),
        (["f-sigma", tmp_path / "missing.h5"], "does not exist"),
        (["f-sigma"], "needs transfer-function results"),
        (["f-sigma", files / "f.h5", "--steps", "7"], "no checkpoint at step 7"),
        (["alignment-curve", files / "a.h5", "--layers", "conv_9"], "has no layer conv_9"),
        (["alignment-curve", files / "a.h5", "--step", "0", "--all-steps"], "give one of them"),
        (["misalignment", files / "mis" / "m0.h5", "--labels", "a,b"], "one per file"),
        (["eigenvectors", files / "e.h5", files / "e.h5"], "draws one result"),
    ]
    for args, message in cases:
        result = draw(*args, "-o", tmp_path / "x.png")
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    result = draw("misalignment", files / "mis" / "m0.h5", "-o", tmp_path / "absent" / "x.png")
    assert result.exit_code == 2 and "cannot write" in result.output
    assert not (tmp_path / "x.png").exists()
