"""Figures of the companion diagnostics, drawn from `rltx analyze` result files (never recomputed):

- `cka`: layer x layer CKA heat-map between two runs (Neyshabur et al. 2020, App. B.3, Table 7);
- `barrier`: accuracy and loss along the straight line between two solutions over a in [-1, 2]
  (Neyshabur et al. App. B.4-B.8, Figs. 12-18);
- `spectrum`: whole-network histogram of singular values and counts below thresholds (Neyshabur et
  al. App. C, Figs. 31-33);
- `landscape`: 1-D loss curve or 2-D filled contours of a filter-normalised loss slice (Liu et al.
  2020, Figs. 3b-c, 5);
- `hessian`: top-k Hessian eigenvalues against the checkpoint step, or bars for one step (Liu et al.
  Fig. 3a).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rltx import store
from rltx.errors import UsageError
from rltx.plotting.figure import new_figure, require

PRODUCERS = {
    "cka": "rltx analyze cka RUN_A RUN_B -o FILE",
    "barrier": "rltx analyze barrier RUN_A [RUN_B] -o FILE",
    "spectrum": "rltx analyze spectrum RUN... -o FILE",
    "landscape": "rltx analyze landscape RUN... [--two-d] -o FILE",
    "hessian": "rltx analyze hessian RUN... [--all-steps] -o FILE",
}


# --- reading -----------------------------------------------------------------------------------

def _text(values) -> list[str]:
    return [store.text(v) for v in np.atleast_1d(values)]


def _read(path: Path, kind: str):
    """The result in `path`, which must be an analysis file of `kind` (one-line errors otherwise)."""
    from rltx.analysis.results import read_result
    path = Path(path)
    producer = PRODUCERS[kind]
    if not path.is_file():
        raise UsageError(f"{path} is not a file; produce it with `{producer}`")
    try:
        result = read_result(path)
    except KeyError:
        raise UsageError(f"{path} is not an rltx analysis file; produce one with `{producer}`") from None
    if result.kind != kind:
        raise UsageError(f"{path} holds a {result.kind} result, not {kind}; produce one with `{producer}`")
    return result


def _single(inputs, kind: str) -> Path:
    inputs = list(inputs)
    if len(inputs) != 1:
        raise UsageError(f"`rltx plot {kind}` takes one analysis file, got {len(inputs)}; "
                         f"produce it with `{PRODUCERS[kind]}`")
    return Path(inputs[0])


def _run_names(result, count: int) -> list[str]:
    runs = result.arrays["runs"] if "runs" in result.arrays else result.inputs.get("runs", [])
    names = [Path(r).name for r in _text(runs)] if len(np.atleast_1d(runs)) else []
    return names + [f"run {i}" for i in range(len(names), count)]


# --- cka ---------------------------------------------------------------------------------------

def draw_cka(inputs, *, style: str = "paper", annotate: bool | None = None, cmap: str = "viridis"):
    """Heat-map of cka[i, j] (layer i of run A, rows; layer j of run B, columns), colour bar 0..1,
    values written in the cells when there are at most 64 of them (or `annotate`)."""
    path = _single(inputs, "cka")
    result = _read(path, "cka")
    require(result.arrays, ("layers_a", "layers_b", "cka"), path, PRODUCERS["cka"])
    matrix = np.asarray(result.arrays["cka"], np.float64)
    layers_a, layers_b = _text(result.arrays["layers_a"]), _text(result.arrays["layers_b"])
    run_a, run_b = _run_names(result, 2)[:2]
    figure, axes = new_figure(style)
    ax = axes[0, 0]
    image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap=cmap, origin="upper", aspect="auto",
                      interpolation="nearest")
    ax.grid(False)
    ax.set_xticks(range(len(layers_b)), labels=layers_b, rotation=45 if len(layers_b) > 3 else 0,
                  ha="right" if len(layers_b) > 3 else "center")
    ax.set_yticks(range(len(layers_a)), labels=layers_a)
    ax.set_xlabel(f"layer of {run_b}")
    ax.set_ylabel(f"layer of {run_a}")
    kernel = result.inputs.get("options", {}).get("kernel", "linear")
    debiased = result.inputs.get("options", {}).get("debiased", False)
    figure.colorbar(image, ax=ax, label=f"CKA ({kernel}{', debiased' if debiased else ''})")
    if annotate or (annotate is None and matrix.size <= 64):
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                value = matrix[i, j]
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize="small",
                        color="black" if value > 0.6 else "white")
    return figure


# --- barrier -----------------------------------------------------------------------------------

BARRIER_ARRAYS = ("alphas", "train_accuracy", "test_accuracy", "train_loss", "test_loss")


def _barrier_label(result) -> str:
    runs = [Path(r).name for r in result.inputs.get("runs", [])]
    steps = result.inputs.get("steps", [])
    if result.inputs.get("single_run") and runs and len(steps) == 2:
        return f"{runs[0]} step {steps[0]} to {steps[1]}"
    if len(runs) == 2:
        return f"{runs[0]} to {runs[1]}"
    return "interpolation"


def draw_barrier(inputs, *, style: str = "paper", labels: list[str] | None = None, loss: bool = True):
    """Accuracy (and, in a second panel, loss) of (1 - a) theta_1 + a theta_2 against a: test solid,
    train dashed, one colour per input file; dotted vertical lines at a = 0 and a = 1."""
    paths = [Path(p) for p in inputs]
    if not paths:
        raise UsageError(f"give at least one barrier file; produce it with `{PRODUCERS['barrier']}`")
    if labels is not None and len(labels) != len(paths):
        raise UsageError(f"--labels has {len(labels)} names for {len(paths)} input files; give one per file")
    results = []
    for path in paths:
        result = _read(path, "barrier")
        require(result.arrays, BARRIER_ARRAYS, path, PRODUCERS["barrier"])
        results.append(result)
    labels = labels or [_barrier_label(r) for r in results]
    figure, axes = new_figure(style, 1, 2 if loss else 1)
    panels = [("accuracy", axes[0, 0])] + ([("loss", axes[0, 1])] if loss else [])
    for metric, ax in panels:
        for index, (result, label) in enumerate(zip(results, labels)):
            alphas = np.asarray(result.arrays["alphas"], np.float64)
            for which, linestyle in (("test", "-"), ("train", "--")):
                ax.plot(alphas, np.asarray(result.arrays[f"{which}_{metric}"], np.float64), linestyle=linestyle,
                        color=f"C{index % 10}", marker="o" if len(alphas) <= 16 else None, markersize=2.5,
                        label=f"{label} ({which})")
        for at in (0.0, 1.0):
            ax.axvline(at, color="0.4", linestyle=":", linewidth=0.8, zorder=0)
        ax.set_xlabel("interpolation coefficient $a$")
        ax.set_ylabel("accuracy" if metric == "accuracy" else "loss (cross-entropy)")
        if metric == "accuracy":
            ax.set_ylim(-0.02, 1.02)
    axes[0, 0].legend(loc="best")
    return figure


# --- spectrum ----------------------------------------------------------------------------------

SPECTRUM_ARRAYS = ("histogram", "bin_edges", "thresholds", "count_below", "row_run", "row_step")


def draw_spectrum(inputs, *, style: str = "paper", log: bool = False):
    """Left: the whole-network histogram of singular values, one step outline per (run, step) row;
    right: the number of singular values below each threshold, grouped bars per row, each labelled
    with its count (often 0 for a small trained network, Neyshabur et al. Fig. 33)."""
    path = _single(inputs, "spectrum")
    result = _read(path, "spectrum")
    require(result.arrays, SPECTRUM_ARRAYS, path, PRODUCERS["spectrum"], finite=("bin_edges",))
    arrays = result.arrays
    histogram, edges = np.asarray(arrays["histogram"]), np.asarray(arrays["bin_edges"], np.float64)
    thresholds, below = np.asarray(arrays["thresholds"], np.float64), np.asarray(arrays["count_below"])
    run_names = _run_names(result, int(np.max(arrays["row_run"], initial=-1)) + 1)
    rows = [f"{run_names[r]} step {s}" if len(run_names) > 1 else f"step {s}"
            for r, s in zip(arrays["row_run"].tolist(), arrays["row_step"].tolist())]
    figure, axes = new_figure(style, 1, 2)
    left, right = axes[0, 0], axes[0, 1]
    for i, label in enumerate(rows):
        left.stairs(histogram[i], edges, label=label, color=f"C{i % 10}")
    left.set_xlabel("singular value")
    left.set_ylabel("number of singular values")
    if log:
        left.set_yscale("log")
    x = np.arange(len(thresholds))
    width = 0.8 / max(len(rows), 1)
    for i, label in enumerate(rows):
        bars = right.bar(x - 0.4 + width * (i + 0.5), below[i], width, label=label, color=f"C{i % 10}")
        right.bar_label(bars, labels=[str(int(count)) for count in below[i]])  # a count of 0 has no bar to see
    right.set_ylim(0, max(1, float(np.max(below, initial=0))) * 1.15)
    right.set_xticks(x, labels=[f"< {t:g}" for t in thresholds])
    right.set_xlabel("threshold")
    right.set_ylabel("singular values below threshold")
    right.legend(loc="best")  # the colours of both panels: one per (run, step) row
    return figure


# --- landscape ---------------------------------------------------------------------------------

def _landscape_results(inputs):
    paths = [Path(p) for p in inputs]
    if not paths:
        raise UsageError(f"give at least one landscape file; produce it with `{PRODUCERS['landscape']}`")
    found = []  # (label, grid, loss, centre loss)
    for path in paths:
        result = _read(path, "landscape")
        require(result.arrays, ("grid", "runs"), path, PRODUCERS["landscape"])
        names = _run_names(result, 0)
        steps = result.inputs.get("steps", [])
        for r, name in enumerate(names):
            require(result.arrays, (f"{r}/loss",), path, PRODUCERS["landscape"])
            label = f"{name} step {steps[r][0]}" if r < len(steps) and steps[r] else name
            layer = result.inputs.get("layer")
            found.append((label + (f", {layer}" if layer else ""), np.asarray(result.arrays["grid"], np.float64),
                          np.asarray(result.arrays[f"{r}/loss"], np.float64),
                          float(result.arrays.get(f"{r}/center_loss", np.nan))))
    dims = {loss.ndim for _, _, loss, _ in found}
    if len(dims) != 1:
        raise UsageError("give only 1-D or only --two-d landscape files to one `rltx plot landscape`")
    return found, dims.pop()


def draw_landscape(inputs, *, style: str = "paper", levels: int = 20, log: bool = False):
    """1-D: loss along a, one line per run, the centre (a = 0) marked. 2-D: filled contours of the loss
    over (a, b) with contour lines, one panel per run, the centre marked with a star."""
    found, dims = _landscape_results(inputs)
    if dims == 1:
        figure, axes = new_figure(style)
        ax = axes[0, 0]
        for i, (label, grid, loss, centre) in enumerate(found):
            ax.plot(grid, loss, color=f"C{i % 10}", label=label)
            ax.plot([0.0], [centre], linestyle="none", marker="o", color=f"C{i % 10}", markersize=3.5)
        ax.set_xlabel("step $a$ along the filter-normalised direction")
        ax.set_ylabel("training loss (cross-entropy)")
        if log:
            ax.set_yscale("log")
        ax.legend(loc="best")
        return figure
    figure, axes = new_figure(style, 1, len(found))
    for (label, grid, loss, centre), ax in zip(found, axes[0]):
        values = np.log10(loss) if log else loss
        # loss[i, j] is at (a = grid[i], b = grid[j]); contourf wants Z[y, x]
        filled = ax.contourf(grid, grid, values.T, levels=levels, cmap="viridis")
        ax.contour(grid, grid, values.T, levels=filled.levels, colors="k", linewidths=0.3, alpha=0.6)
        ax.plot([0.0], [0.0], linestyle="none", marker="*", color="red", markersize=6, label="centre")
        ax.set_aspect("equal")
        ax.grid(False)
        ax.set_xlabel("$a$ (direction 1)")
        ax.set_ylabel("$b$ (direction 2)")
        ax.set_title(label)
        figure.colorbar(filled, ax=ax, label="log$_{10}$ loss" if log else "loss (cross-entropy)")
    return figure


# --- hessian -----------------------------------------------------------------------------------

def draw_hessian(inputs, *, style: str = "paper", log: bool = False):
    """Top-k Hessian eigenvalues: with several steps, one line per rank against the step (one line
    style per run); with one step per run, grouped bars per rank."""
    paths = [Path(p) for p in inputs]
    if not paths:
        raise UsageError(f"give at least one hessian file; produce it with `{PRODUCERS['hessian']}`")
    found = []  # (run name, steps, eigenvalues [steps, k])
    for path in paths:
        result = _read(path, "hessian")
        require(result.arrays, ("runs",), path, PRODUCERS["hessian"])
        for r, name in enumerate(_run_names(result, 0)):
            require(result.arrays, (f"{r}/steps", f"{r}/eigenvalues"), path, PRODUCERS["hessian"])
            found.append((name, np.asarray(result.arrays[f"{r}/steps"]),
                          np.atleast_2d(np.asarray(result.arrays[f"{r}/eigenvalues"], np.float64))))
    figure, axes = new_figure(style)
    ax = axes[0, 0]
    several = len(found) > 1
    if all(len(steps) == 1 for _, steps, _ in found):
        k = max(values.shape[1] for _, _, values in found)
        width = 0.8 / len(found)
        for i, (name, steps, values) in enumerate(found):
            ranks = np.arange(1, values.shape[1] + 1)
            ax.bar(ranks - 0.4 + width * (i + 0.5), values[0], width, color=f"C{i % 10}",
                   label=f"{name} step {steps[0]}")
        ax.set_xticks(np.arange(1, k + 1))
        ax.set_xlabel("eigenvalue rank")
    else:
        styles = ["-", "--", ":", "-."]
        for i, (name, steps, values) in enumerate(found):
            for rank in range(values.shape[1]):
                ax.plot(steps, values[:, rank], linestyle=styles[i % len(styles)], color=f"C{rank % 10}",
                        marker="o", markersize=2.5,
                        label=f"$\\lambda_{{{rank + 1}}}$" + (f" {name}" if several else ""))
        ax.set_xlabel("step")
    ax.set_ylabel("Hessian eigenvalue")
    if log:
        everything = np.concatenate([values.ravel() for _, _, values in found])
        if np.all(everything > 0):
            ax.set_yscale("log")
        else:  # top eigenvalues may be negative early on: symmetric log keeps them visible
            positive = np.abs(everything[everything != 0])
            ax.set_yscale("symlog", linthresh=float(positive.min()) if positive.size else 1.0)
    ax.legend(loc="best", ncols=2 if len(ax.get_legend_handles_labels()[0]) > 6 else 1)
    return figure


# --- CLI ---------------------------------------------------------------------------------------

__all__ = ["draw_cka", "draw_barrier", "draw_spectrum", "draw_landscape", "draw_hessian"]
