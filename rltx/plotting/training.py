"""Figures of training runs and of the analyses built on them (Maennel et al. 2020):

- `curves`: train (solid) and test (dotted) accuracy against step or epoch for groups of runs, the
  mean over seeds with a band of +-1 std or min/max (Fig. 1, 5, 6, 8, 9; App. Fig. 16-18);
- `auc-scatter`: pre-trained vs from-scratch AUC, one dot per group (App. B, Fig. 12-15);
- `table`: Table 1-7 style tables as Markdown, LaTeX or an image;
- `activations`: per-layer histograms of neuron / example activation fractions (Fig. 7, 10, 11) and
  the activation frequency over pre-training then fine-tuning (Fig. 24).

Groups of runs (`curves`): runs whose resolved recipes are equal apart from the seed (and the keys
that only say where the data lives, `rltx.analysis.curves.NOT_GROUPED`; an init file counts by what it holds),
with the same kind
(pretrain / transfer / scratch) and source step, as in `rltx analyze curves` (App. B). Runs of a
group that were evaluated at different points are put on the union of their x values by linear
interpolation, restricted to the range every run of the group covers (no extrapolation); runs with
equal eval points (the usual case: same recipe, different seed) are used as stored.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rltx import store
from rltx.config import format_value
from rltx.errors import UsageError
from rltx.plotting.figure import STYLES, new_figure, read_analysis, require

CURVES_PRODUCER = "rltx analyze curves RUN... -o FILE"
ACTIVATIONS_PRODUCER = "rltx analyze activations RUN... -o FILE"
TRAJECTORY_PRODUCER = "rltx analyze activation-trajectory PRETRAIN TRANSFER -o FILE"
TABLE_PRODUCER = "rltx construct-init RECIPE --table DIR` (DIR/table.h5) or `rltx analyze curves RUN... -o FILE"
TEXT_FORMATS = (".md", ".tex")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


# --- runs and groups --------------------------------------------------------------------------

def expand_runs(inputs) -> list[Path]:
    """Run directories from the inputs: a run directory (holding run.h5), its run.h5, or a folder with
    runs at any depth below it (a sweep, a reproduction's --out), as `rltx runs` finds them."""
    from rltx.inspect_runs import find_runs
    runs = []
    for path in map(Path, inputs):
        if path.name == store.RUN_FILE:
            path = path.parent
        if (path / store.RUN_FILE).exists():
            runs.append(path)
        elif path.is_dir():
            children = find_runs([path])
            if not children:
                raise UsageError(f"{path} holds no run (no run.h5 in it or its sub-directories); "
                                 "produce runs with `rltx pretrain` or `rltx transfer`")
            runs.extend(children)
        else:
            raise UsageError(f"{path} is not a run directory (no run.h5); produce one with `rltx pretrain` "
                             "or `rltx transfer`")
    return runs


def _group_label(key: dict, varying: list[str]) -> str:
    shown = [k for k in varying if k != "kind" and key.get(k) not in (None, [])]
    return ", ".join([str(key["kind"])] + [f"{k}={format_value(key[k])}" for k in shown])


def run_groups(run_dirs) -> list[dict]:
    """Runs grouped as in `rltx analyze curves` (all recipe keys but the seed, plus kind and source
    step), in order of first appearance: [{"label", "key", "runs": [(run_dir, metric rows)]}]."""
    from rltx.analysis.curves import auto_group_values, check_curve_rows, check_no_copies, metrics_fingerprint
    from rltx.runs import open_run
    groups: dict[str, dict] = {}
    for run_dir in run_dirs:
        run = open_run(run_dir)
        rows = store.read_metrics(run.run_dir)
        if not rows:
            raise UsageError(f"{run_dir} lacks metrics.h5 (no evaluation point yet); produce it with "
                             "`rltx pretrain` or `rltx transfer` (let the run reach its first eval point)")
        check_curve_rows(run.run_dir, rows)
        key = auto_group_values(run)
        text = json.dumps(key, sort_keys=True, default=str)
        group = groups.setdefault(text, {"key": key, "runs": []})
        if any(Path(d).resolve() == run.run_dir for d, _ in group["runs"]):
            raise UsageError(f"{run_dir} is given twice; pass each run once")
        group["runs"].append((run.run_dir, rows))
    check_no_copies((text, run_dir, metrics_fingerprint(rows)) for text, group in groups.items()
                    for run_dir, rows in group["runs"])
    keys = [g["key"] for g in groups.values()]
    varying = sorted({k for key in keys for k in key if any(other.get(k) != key[k] for other in keys)})
    for group in groups.values():
        group["label"] = _group_label(group["key"], varying)
    return list(groups.values())


def group_curve(runs, x: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """x values and the [runs, points] values of one metric for a group: as stored when the runs
    share their x values, else linearly interpolated onto the union of x values inside the range
    every run covers."""
    xs = [np.array([row[x] for row in rows], dtype=np.float64) for _, rows in runs]
    ys = [np.array([row[metric] for row in rows], dtype=np.float64) for _, rows in runs]
    if all(v.shape == xs[0].shape and np.array_equal(v, xs[0]) for v in xs):
        return xs[0], np.stack(ys)
    low, high = max(v[0] for v in xs), min(v[-1] for v in xs)
    grid = np.unique(np.concatenate(xs))
    grid = grid[(grid >= low) & (grid <= high)]
    if grid.size == 0:
        raise UsageError("the runs of a group cover no common range of " + x + "; plot them separately")
    return grid, np.stack([np.interp(grid, v, y) for v, y in zip(xs, ys)])


LEGEND_INSIDE_MAX, LEGEND_INSIDE_CHARACTERS = 6, 24  # a legend larger than this goes below the axes
LEGEND_LINES = 3  # lines of one label below the axes


def _legend_below(figure, handles, names: list[str], points: float) -> None:
    """Long or many group labels would cover the curves, or squeeze the axes to nothing: they go below
    the axes, each wrapped to the figure's width in at most LEGEND_LINES lines, and the figure grows by
    the legend's lines (labels listing every differing key of a mixed folder once made a figure 30 times
    wider than its axes; `--labels` names such groups)."""
    import textwrap
    width, height = figure.get_size_inches()
    columns = max(24, int((width * 72 - 3 * points) / (0.55 * points)))  # characters beside a legend handle
    wrapped = [textwrap.fill(name, columns, max_lines=LEGEND_LINES, placeholder=" ...") for name in names]
    lines = sum(name.count("\n") + 1 for name in wrapped)
    figure.set_size_inches(width, height + lines * 1.6 * points / 72)
    figure.legend(handles, wrapped, loc="outside lower center", frameon=False, fontsize=points)


def draw_curves(inputs, *, style="paper", x="step", band="std", zoom=None, accuracy="both", labels=None):
    """Mean train (solid) and test (dotted) accuracy of each group of runs against `x` ("step" or
    "epoch"), with a band of +-1 std (ddof=1) or the min/max over the group's seeds. `zoom`
    (x0, x1, y0, y1) sets the axes limits (Fig. 5 RIGHT); `labels` replaces the group labels."""
    from matplotlib.lines import Line2D
    if x not in ("step", "epoch"):
        raise UsageError(f"x must be step or epoch, not {x!r}")
    if band not in ("std", "minmax", "none"):
        raise UsageError(f"band must be std, minmax or none, not {band!r}")
    if accuracy not in ("both", "train", "test"):
        raise UsageError(f"accuracy must be both, train or test, not {accuracy!r}")
    groups = run_groups(expand_runs(inputs))
    if labels is not None and len(labels) != len(groups):
        raise UsageError(f"--labels gives {len(labels)} label(s) for {len(groups)} group(s): "
                         + "; ".join(g["label"] for g in groups))
    metrics = {"both": ("train", "test"), "train": ("train",), "test": ("test",)}[accuracy]
    figure, axes = new_figure(style)
    ax = axes[0, 0]
    colours = [f"C{i % 10}" for i in range(len(groups))]
    for index, group in enumerate(groups):
        label = labels[index] if labels is not None else group["label"]
        for metric in metrics:
            steps, values = group_curve(group["runs"], x, f"{metric}_accuracy")
            mean = values.mean(axis=0)
            ax.plot(steps, mean, color=colours[index], linestyle="-" if metric == "train" else ":",
                    label=label if metric == metrics[0] else "_nolegend_")
            if band != "none" and len(values) > 1:
                if band == "std":
                    spread = values.std(axis=0, ddof=1)
                    low, high = mean - spread, mean + spread
                else:
                    low, high = values.min(axis=0), values.max(axis=0)
                ax.fill_between(steps, low, high, color=colours[index], alpha=0.2, linewidth=0)
    ax.set_xlabel("step" if x == "step" else "epoch")
    ax.set_ylabel("accuracy")
    if zoom is not None:
        x0, x1, y0, y1 = zoom
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
    handles, names = ax.get_legend_handles_labels()
    if accuracy == "both":
        handles += [Line2D([], [], color="0.3", linestyle="-"), Line2D([], [], color="0.3", linestyle=":")]
        names += ["train", "test"]
    if len(names) > LEGEND_INSIDE_MAX or max(map(len, names), default=0) > LEGEND_INSIDE_CHARACTERS:
        _legend_below(figure, handles, names, STYLES[style]["legend.fontsize"])
    else:
        ax.legend(handles, names, loc="best", frameon=False)
    figure.rltx_groups = groups
    return figure


# --- AUC scatter (App. B, Fig. 12-15) ------------------------------------------------------------

def draw_auc_scatter(inputs, *, style="paper", metric="train", dots="group", downstream_labels=None,
                     excluded=frozenset()):
    """Pre-trained (x) vs from-scratch (y) AUC of the `metric` accuracy, one dot per group of pairs
    (`dots="group"`, the paper's "each dot corresponds to one group of experiments") or per pair
    (`"pair"`), with the x = y line: points below it are groups where the pre-trained models train
    faster (captions of Fig. 12-15). Marker per architecture, colour per transfer depth
    (`transfer_layers`), read from the stored group keys. `downstream_labels` ("real" / "random")
    keeps the groups fine-tuned on those labels: Fig. 12-15 draw them in separate rows. A dot with a
    run flagged as diverged or collapsed (rltx.health), or a pair whose transfer run is in `excluded`
    (a verdict's uncounted pairs: their pre-training was flagged), is hollow: drawn, but no evidence."""
    from matplotlib.lines import Line2D
    if metric not in ("train", "test"):
        raise UsageError(f"metric must be train or test, not {metric!r}")
    if dots not in ("group", "pair"):
        raise UsageError(f"dots must be group or pair, not {dots!r}")
    prefix = "pair_groups" if dots == "group" else "pairs"
    points: dict[tuple[str, str], list[tuple[float, float, bool]]] = {}  # x, y, flagged
    twice = store.first_repeated(inputs)
    if twice is not None:  # its dots would be drawn twice, as if from more groups
        raise UsageError(f"{twice} is given twice; give each curves result once")
    for path in map(Path, inputs):
        arrays = read_analysis(path, "curves", CURVES_PRODUCER).arrays
        names = (f"{prefix}/pretrained_{metric}_auc", f"{prefix}/scratch_{metric}_auc", f"{prefix}/group",
                 "groups/key")
        require(arrays, names, path, CURVES_PRODUCER, may_be_empty=names[:3])
        if all(np.size(arrays[name]) == 0 for name in names[:3]):
            raise UsageError(f"{path} holds no pre-trained / from-scratch pairs; produce them with `rltx transfer "
                             "... --with-baseline` and pass both runs to `rltx analyze curves`")
        require(arrays, names, path, CURVES_PRODUCER)  # some pair arrays empty, others not: edited by hand
        if len({np.size(arrays[name]) for name in names[:3]}) > 1:
            raise UsageError(f"{path} holds pair arrays of different lengths; produce it again with `{CURVES_PRODUCER}`")
        pretrained, scratch = arrays[names[0]], arrays[names[1]]
        keys = [json.loads(store.text(k)) for k in arrays["groups/key"]]
        flags = _flagged_dots(arrays, dots, excluded)
        for px, py, group, flagged in zip(pretrained, scratch, arrays[names[2]], flags):
            key = keys[int(group)]
            if downstream_labels is not None and key.get("labels_downstream") != downstream_labels:
                continue
            category = (str(key.get("architecture", "?")), str(key.get("transfer_layers", "?")))
            points.setdefault(category, []).append((float(px), float(py), bool(flagged)))
    if not points:
        raise UsageError(f"{', '.join(map(str, inputs))} holds no group fine-tuned on {downstream_labels} labels; "
                         "drop --downstream-labels or give the labels its runs were fine-tuned on")
    figure, axes = new_figure(style)
    ax = axes[0, 0]
    every = np.array([p[:2] for values in points.values() for p in values])
    low, high = every.min(), every.max()
    margin = max(0.02, 0.05 * (high - low))
    ax.plot([low - margin, high + margin], [low - margin, high + margin], color="C1", linewidth=1,
            label="x = y", zorder=1)
    architectures = sorted({a for a, _ in points})
    depths = sorted({d for _, d in points})
    handles = []
    for (architecture, depth), values in sorted(points.items()):
        values, colour = np.array(values), f"C{(depths.index(depth) + 2) % 10}"
        marker = MARKERS[architectures.index(architecture) % len(MARKERS)]
        ax.scatter(values[:, 0], values[:, 1], s=14, marker=marker, edgecolors=colour, zorder=2,
                   facecolors=["none" if flagged else colour for flagged in values[:, 2]])
        handles.append(Line2D([], [], linestyle="none", marker=marker, markersize=4, color=colour,
                              label=f"{architecture}, transfer {depth}"))  # filled, whatever its first dot is
    if any(p[2] for values in points.values() for p in values):
        handles.append(Line2D([], [], linestyle="none", marker="o", markersize=4, markerfacecolor="none",
                              markeredgecolor="0.4", label="hollow: a run diverged or collapsed"))
    what = f"{metric} accuracy" + (f", {downstream_labels} labels" if downstream_labels else "")
    ax.set_xlabel(f"pre-trained AUC ({what})")
    ax.set_ylabel(f"from-scratch AUC ({what})")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(handles=[*ax.get_legend_handles_labels()[0], *handles], loc="best", frameon=False)
    return figure


def _flagged_dots(arrays: dict, dots: str, excluded) -> np.ndarray:
    """Per dot: whether a run of it (a pair's transfer or scratch run; any pair of a group) is flagged
    in the stored health (results without health flag nothing), or its transfer run is `excluded`."""
    from rltx.health import is_flagged
    stored = all(name in arrays for name in ("health", "runs", "pairs/transfer_run", "pairs/scratch_run"))
    if not stored or len(arrays["pairs/transfer_run"]) == 0:
        return np.zeros(np.size(arrays["pair_groups/group" if dots == "group" else "pairs/group"]), dtype=bool)
    health = {store.text(run): store.text(h) for run, h in zip(arrays["runs"], arrays["health"])}
    flagged = np.array([store.text(t) in excluded or is_flagged(health.get(store.text(t), ""))
                        or is_flagged(health.get(store.text(s), ""))
                        for t, s in zip(arrays["pairs/transfer_run"], arrays["pairs/scratch_run"])], dtype=bool)
    if dots == "pair":
        return flagged
    return np.array([flagged[arrays["pairs/group"] == group].any() for group in arrays["pair_groups/group"]], dtype=bool)


# --- tables (Table 1-7) ---------------------------------------------------------------------------

def table_rows(path, *, digits: int = 2) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a table from a construct-table result (Table 1 layout: a row per
    iteration and train/test, a column per set of constructed layers) or a curves result (a row per
    group: runs, mean +- std of the train and test AUC, mean final accuracies)."""
    from rltx.analysis.results import read_result
    path = Path(path)
    result = read_result(path)

    def number(value) -> str:
        return "nan" if not np.isfinite(value) else f"{value:.{digits}f}"

    def mean_spread(mean, std) -> str:  # a group of one run has no spread: its value alone, not "± nan"
        return number(mean) if not np.isfinite(std) else f"{number(mean)} ± {number(std)}"

    arrays = result.arrays
    if result.kind == "construct-table":
        require(arrays, ("accuracy", "iterations", "layer_sets"), path, TABLE_PRODUCER)
        header = ["iterations", "data"] + [store.text(s) for s in arrays["layer_sets"]]
        rows = []
        for i, step in enumerate(arrays["iterations"]):
            for j, name in enumerate(("train", "test")):
                rows.append([str(int(step)), name] + [number(v) for v in arrays["accuracy"][:, i, j]])
        return header, rows
    if result.kind == "curves":
        names = ("groups/label", "groups/count", *(f"groups/{m}_{s}" for m in ("train_auc", "test_auc")
                                                    for s in ("mean", "std")),
                 "groups/final_train_accuracy_mean", "groups/final_test_accuracy_mean")
        require(arrays, names, path, CURVES_PRODUCER)
        header = ["group", "runs", "train AUC", "test AUC", "final train", "final test"]
        rows = []
        for g, label in enumerate(arrays["groups/label"]):
            auc = [mean_spread(arrays[f"groups/{m}_mean"][g], arrays[f"groups/{m}_std"][g])
                   for m in ("train_auc", "test_auc")]
            rows.append([store.text(label), str(int(arrays["groups/count"][g])), *auc,
                         number(arrays["groups/final_train_accuracy_mean"][g]),
                         number(arrays["groups/final_test_accuracy_mean"][g])])
        return header, rows
    raise UsageError(f"{path} holds a {result.kind} result, not a table; produce one with `{TABLE_PRODUCER}`")


def format_table(header, rows, suffix: str) -> str:
    """Markdown (.md) or LaTeX tabular (.tex) text."""
    if suffix == ".md":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines) + "\n"
    if suffix == ".tex":
        def escape(cell: str) -> str:
            cell = "".join({"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#",
                            "{": r"\{", "}": r"\}", "$": r"\$"}.get(c, c) for c in cell)
            return cell.replace("±", r"$\pm$")
        lines = [r"\begin{tabular}{" + "l" * 2 + "r" * (len(header) - 2) + "}", r"\toprule",
                 " & ".join(map(escape, header)) + r" \\", r"\midrule"]
        lines += [" & ".join(map(escape, row)) + r" \\" for row in rows]
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines) + "\n"
    raise UsageError(f"a table is written as {', '.join(TEXT_FORMATS)}, .png, .pdf or .svg, not {suffix!r}")


def write_text(text: str, output: Path) -> Path:
    """Write through a temporary file renamed over the output, which may replace only a table rltx wrote."""
    output = Path(output)
    store.check_output(output, _is_written_table, f"a {output.suffix.lower()[1:]} table written by rltx plot table")
    store.atomic_write_text(output, text)
    return output


def _is_written_table(path: Path) -> bool:
    """Whether the file holds nothing but a table of `format_table` (so notes or a paper are never replaced)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return False
    if path.suffix.lower() == ".md":
        return len(lines) >= 2 and all(line.startswith("|") and line.endswith("|") for line in lines)
    return len(lines) >= 2 and lines[0].startswith(r"\begin{tabular}") and lines[-1] == r"\end{tabular}"


def draw_table(inputs, *, style="paper", digits=2):
    """The table of `table_rows` as a matplotlib table (for .png / .pdf / .svg)."""
    if len(inputs) != 1:
        raise UsageError(f"a table is drawn from one result file, got {len(inputs)}")
    header, rows = table_rows(inputs[0], digits=digits)
    figure, axes = new_figure(style)
    ax = axes[0, 0]
    ax.axis("off")
    size = STYLES[style]["font.size"] - 1
    widths = np.array([max(len(cell) for cell in column) for column in zip(header, *rows)], dtype=float) + 2
    table = ax.table(cellText=rows, colLabels=header, cellLoc="center", colWidths=list(widths / widths.sum()),
                     bbox=[0, 0, 1, 1])
    table.auto_set_font_size(False)
    table.set_fontsize(size)
    for (row, _), cell in table.get_celld().items():
        cell.set_linewidth(0.5)
        if row == 0:
            cell.set_text_props(weight="bold")
            cell.set_facecolor("0.92")
    # about 0.6 em per character and 2 em per row
    figure.set_size_inches(widths.sum() * 0.6 * size / 72, (len(rows) + 1) * 2 * size / 72)
    return figure


# --- activations (Fig. 7, 10, 11, 24) --------------------------------------------------------------

def _select_layers(names: list[str], layers) -> list[str]:
    if not layers:
        return list(names)
    unknown = [name for name in layers if name not in names]
    if unknown:
        raise UsageError(f"no layer {', '.join(unknown)} in the result; layers: {', '.join(names)}")
    return list(layers)


def _run_name(run: str) -> str:
    return Path(run).name


def draw_activations(inputs, *, style="paper", layers=None, steps=None, labels=None):
    """From `activations` results: one row per ReLU layer, the histogram of the fraction of examples
    activating each neuron (left; share of the layer's neurons per bin) and of the fraction of
    neurons each example activates (right; share of examples per bin), one outline per (result, run,
    checkpoint) overlaid (e.g. init / after pre-training / after fine-tuning, Fig. 7, 10, 11).
    From one `activation_trajectory` result: the mean fraction of active neurons per layer against the
    step, the switch from pre-training to fine-tuning as a vertical line (Fig. 24)."""
    from rltx.analysis.results import read_result
    inputs = [Path(p) for p in inputs]
    first = read_result(inputs[0])
    if first.kind == "activation_trajectory":
        if len(inputs) != 1:
            raise UsageError("an activation trajectory is drawn from one result file; pass one")
        return _draw_trajectory(inputs[0], first, style=style, layers=layers)
    series = []  # (label, layer names, neuron hist [L, B], example hist [L, B], edges)
    for path in inputs:
        result = read_analysis(path, "activations", ACTIVATIONS_PRODUCER)
        arrays = result.arrays
        require(arrays, ("bin_edges",), path, ACTIVATIONS_PRODUCER, finite=("bin_edges",))
        for r, run in enumerate(result.inputs["runs"]):
            require(arrays, tuple(f"{r}/{n}" for n in ("steps", "neuron_histogram", "example_histogram",
                                                        "num_neurons", "num_examples")), path, ACTIVATIONS_PRODUCER)
            for s, step in enumerate(arrays[f"{r}/steps"]):
                if steps is not None and int(step) not in steps:
                    continue
                neurons = arrays[f"{r}/neuron_histogram"][s] / arrays[f"{r}/num_neurons"][:, None]
                examples = arrays[f"{r}/example_histogram"][s] / arrays[f"{r}/num_examples"]
                series.append((f"{_run_name(run)}, step {int(step)}", list(result.inputs["layers"][r]),
                               neurons, examples, arrays["bin_edges"]))
    if not series:
        raise UsageError(f"no checkpoint at step(s) {', '.join(map(str, steps or []))} in the results; "
                         f"produce them with `{ACTIVATIONS_PRODUCER} --step N`")
    if labels is not None:
        if len(labels) != len(series):
            raise UsageError(f"--labels gives {len(labels)} label(s) for {len(series)} curve(s): "
                             + "; ".join(s[0] for s in series))
        series = [(label, *rest) for label, (_, *rest) in zip(labels, series)]
    names = []
    for _, layer_names, *_ in series:
        names += [n for n in layer_names if n not in names]
    shown = _select_layers(names, layers)
    figure, axes = new_figure(style, len(shown), 2, sharex=True)
    for row, layer in enumerate(shown):
        for index, (label, layer_names, neurons, examples, edges) in enumerate(series):
            if layer not in layer_names:
                continue
            l = layer_names.index(layer)
            for column, values in enumerate((neurons[l], examples[l])):
                axes[row, column].stairs(values, edges, color=f"C{index % 10}", fill=False, linewidth=1,
                                         label=label if row == 0 and column == 0 else None)
        axes[row, 0].set_ylabel(f"{layer}\nshare of neurons")
        axes[row, 1].set_ylabel("share of examples")
    axes[-1, 0].set_xlabel("fraction of examples activating a neuron")
    axes[-1, 1].set_xlabel("fraction of neurons an example activates")
    figure.legend(loc="outside upper center", ncols=min(len(series), 3), frameon=False)
    figure.rltx_series = [(s[0], s[1]) for s in series]
    figure.rltx_layers = shown
    return figure


def _draw_trajectory(path, result, *, style, layers):
    arrays = result.arrays
    require(arrays, ("steps", "activation", "switch_step"), path, TRAJECTORY_PRODUCER)
    names = list(result.inputs.get("layers", [f"layer {i + 1}" for i in range(arrays["activation"].shape[1])]))
    shown = _select_layers(names, layers)
    figure, axes = new_figure(style)
    ax = axes[0, 0]
    for index, layer in enumerate(shown):
        ax.plot(arrays["steps"], arrays["activation"][:, names.index(layer)], color=f"C{index % 10}", label=layer)
    switch = float(arrays["switch_step"])
    ax.axvline(switch, color="0.3", linestyle="--", linewidth=1, label="switch to fine-tuning")
    ax.set_xlabel("step (pre-training, then fine-tuning)")
    ax.set_ylabel("fraction of active neurons")
    ax.legend(loc="best", frameon=False)
    figure.rltx_layers = shown
    return figure
