"""Alignment figures: misalignment over training (Maennel et al. 2020 Fig. 2), eigenvectors of
Sigma_w and the data eigenvectors they match (Fig. 3), the transfer function f(sigma) (Fig. 4,
20-22) and the tau sequences of constructed filters (Fig. 23), and the representation alignment
curves of Imani et al. 2022 (Fig. 5-7, 10-14).

Every figure is drawn from `rltx analyze ... -o FILE` results; nothing is recomputed. The plotted
values are the stored ones, in stored order, so tests read them back from the artists.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from rltx import store
from rltx.errors import UsageError
from rltx.plotting.figure import STYLES, new_figure, read_analysis, require, style_context

PRODUCERS = {
    "misalignment": "rltx analyze misalignment RUN... --all-steps -o FILE.h5",
    "transfer-function": "rltx analyze transfer-function RUN... --all-steps -o FILE.h5",
    "eigenvectors": "rltx analyze eigenvectors RUN... -o FILE.h5",
    "representation_alignment": "rltx analyze representation-alignment RUN --all-steps -o FILE.h5",
}
MAX_MATCHES = 3  # data eigenvectors shown per weight eigenvector (Fig. 3, A.7, shows one or two)
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")


# ---------------------------------------------------------------- inputs

def _styled(draw):
    """Draw under the style's rc parameters, so legends, markers and texts added after
    `new_figure` follow it too."""
    @functools.wraps(draw)
    def wrapper(inputs, *, style: str = "paper", **options):
        with style_context(style):
            return draw(inputs, style=style, **options)
    return wrapper


def expand_inputs(inputs) -> list[Path]:
    """Analysis files; a directory stands for the .h5 files directly inside it (a sweep's results)."""
    files: list[Path] = []
    for path in map(Path, inputs):
        if path.is_dir():
            found = sorted(path.glob("*.h5"))
            if not found:
                raise UsageError(f"{path} is a directory without .h5 analysis files; "
                                 "give `rltx analyze ... -o FILE.h5` results")
            files += found
        elif not path.exists():
            raise UsageError(f"{path} does not exist; give an analysis file written by `rltx analyze ... -o FILE.h5`")
        else:
            files.append(path)
    return files


def _read(path: Path, kind: str, names: tuple[str, ...]):
    try:
        result = read_analysis(path, kind, PRODUCERS[kind])
    except (KeyError, ValueError):  # HDF5 without an rltx result's attributes: one line naming the producer
        raise UsageError(f"{path} is not an rltx analysis file; produce it with `{PRODUCERS[kind]}`") from None
    require(result.arrays, names, path, PRODUCERS[kind])
    return result


def _labels(labels, files: list[Path]) -> list[str]:
    if labels is None:
        return [f.stem for f in files]
    labels = list(labels)
    if len(labels) != len(files):
        raise UsageError(f"--labels gives {len(labels)} names for {len(files)} input files; give one per file")
    return labels


def _steps_per_epoch(result, path: Path) -> float:
    """Steps per epoch of the run an analysis read (metrics.h5 stores epoch = step * batch / n)."""
    runs = result.inputs.get("runs") or []
    rows = store.read_metrics(Path(runs[0])) if runs and Path(runs[0]).is_dir() else []
    rows = [r for r in rows if r.get("step", 0) > 0 and r.get("epoch", 0) > 0]
    if not rows:
        raise UsageError(f"the run of {path} ({runs[0] if runs else 'unknown'}) has no metrics.h5 with epochs; "
                         "plot with --x step or keep the run directory next to its analysis")
    return rows[-1]["step"] / rows[-1]["epoch"]


def _select(steps: np.ndarray, wanted: list[int] | None, path: Path, default_count: int) -> list[int]:
    """Row indices of the wanted checkpoints; by default up to `default_count` spread over the run
    (after step 0 when there are later checkpoints), always ending at the last."""
    steps = [int(s) for s in steps]
    if wanted is not None:
        missing = [s for s in wanted if s not in steps]
        if missing:
            raise UsageError(f"{path} has no checkpoint at step {', '.join(map(str, missing))}; "
                             f"stored steps: {', '.join(map(str, steps))}")
        return [steps.index(s) for s in wanted]
    candidates = [i for i, s in enumerate(steps) if s > 0] or list(range(len(steps)))
    if len(candidates) <= default_count:
        return candidates
    picks = np.unique(np.round(np.linspace(0, len(candidates) - 1, default_count)).astype(int))
    return [candidates[i] for i in picks]


# ---------------------------------------------------------------- misalignment (Fig. 2)

@_styled
def draw_misalignment(inputs, *, style: str = "paper", labels=None, x: str = "step", yscale: str = "log"):
    """M(Sigma_x, Sigma_w) over training per input file: data eigenbasis solid, random basis dashed.
    Lines per file, in order: data basis, random basis."""
    files = expand_inputs(inputs)
    names = _labels(labels, files)
    figure, axes = new_figure(style)
    ax = axes[0, 0]
    for index, (path, name) in enumerate(zip(files, names)):
        result = _read(path, "misalignment", ("steps", "misalignment_data", "misalignment_random"))
        steps = np.asarray(result.arrays["steps"], dtype=np.float64)
        position = steps / _steps_per_epoch(result, path) if x == "epoch" else steps
        colour = f"C{index % 10}"
        ax.plot(position, result.arrays["misalignment_data"], "-", marker="o", markersize=2.5, color=colour,
                label=f"{name}, data basis")
        ax.plot(position, result.arrays["misalignment_random"], "--", marker="o", markersize=2.5, color=colour,
                label=f"{name}, random basis")
    values = np.concatenate([line.get_ydata() for line in ax.lines])
    if yscale == "log" and np.all(values > 0) and values.max() > 10 * values.min():
        ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(r"misalignment $M(\Sigma_x, \Sigma_w)$")
    ax.legend()
    return figure


# ---------------------------------------------------------------- eigenvectors (Fig. 3)

def patch_image(vector, patch_shape) -> np.ndarray:
    """A vector as a patch [k, k, 3] (RGB) or [k, k] (grey), mapped to [0, 1] by v / (2 max|v|) + 0.5;
    other channel counts are laid out side by side in grey, [k, k * C]."""
    vector = np.asarray(vector, dtype=np.float64)
    scale = np.max(np.abs(vector))
    mapped = vector / (2 * scale) + 0.5 if scale > 0 else np.full_like(vector, 0.5)
    patch = mapped.reshape(tuple(int(n) for n in patch_shape))
    if patch.shape[-1] == 3:
        return patch
    if patch.shape[-1] == 1:
        return patch[..., 0]
    return np.concatenate([patch[..., c] for c in range(patch.shape[-1])], axis=1)


@_styled
def draw_eigenvectors(inputs, *, style: str = "paper", rows: int | None = None):
    """One row per top eigenvector v_w of Sigma_w: v_w, the matched data eigenvectors v_x (up to 3,
    <v_x, v_w> in the titles) and their weighted combination bar v_x, as colour patches.
    Axes [r, 0] = v_w, [r, 1..3] = v_x (empty cells switched off), [r, 4] = bar v_x."""
    files = expand_inputs(inputs)
    if len(files) != 1:
        raise UsageError(f"eigenvectors draws one result, not {len(files)}; give one `rltx analyze eigenvectors` file")
    path = files[0]
    arrays = _read(path, "eigenvectors", ("w_vectors", "w_values", "x_vectors", "inner", "matches", "combined",
                                          "captured", "patch_shape")).arrays
    stored = len(arrays["w_vectors"])
    count = stored if rows is None else int(rows)
    if count < 1:
        raise UsageError("--rows must be at least 1")
    if count > stored:  # drawing fewer rows than asked would pass for all of them
        raise UsageError(f"{path} stores {stored} eigenvectors, fewer than --rows {count}; give --rows {stored} or "
                         f"fewer, or rerun `rltx analyze eigenvectors` with --top-k {count}")
    shape = arrays["patch_shape"]
    columns = 2 + MAX_MATCHES
    figure, axes = new_figure(style, count, columns)
    width = STYLES[style]["figure.figsize"][0]
    figure.set_size_inches(width, width / columns * 1.25 * count + 0.3)
    grey = {"cmap": "gray", "vmin": 0.0, "vmax": 1.0}
    for r in range(count):
        for ax in axes[r]:
            ax.set_xticks([]), ax.set_yticks([]), ax.grid(False)
            for spine in ax.spines.values():
                spine.set_visible(False)
        matches = [int(j) for j in arrays["matches"][r] if j >= 0][:MAX_MATCHES]
        axes[r, 0].imshow(patch_image(arrays["w_vectors"][r], shape), **grey)
        axes[r, 0].set_title(f"#{r + 1} $v_w$", fontsize="small")
        for c in range(MAX_MATCHES):
            ax = axes[r, 1 + c]
            if c < len(matches):
                j = matches[c]
                ax.imshow(patch_image(arrays["x_vectors"][j], shape), **grey)
                ax.set_title(f"$v_x^{{{j + 1}}}$: {arrays['inner'][r, j]:+.2f}", fontsize="small")
            else:
                ax.axis("off")
        ax = axes[r, -1]
        if matches:
            ax.imshow(patch_image(arrays["combined"][r], shape), **grey)
            ax.set_title(rf"$\bar v_x$ ({arrays['captured'][r]:.2f})", fontsize="small")
        else:
            ax.axis("off")
            ax.text(0.5, 0.5, "no match", ha="center", va="center", fontsize="small", transform=ax.transAxes)
    return figure


# ---------------------------------------------------------------- f(sigma) (Fig. 4, 20-23)

@_styled
def draw_f_sigma(inputs, *, style: str = "paper", labels=None, steps=None, tau_curves: bool = False,
                 curves=("f1", "f2", "f3"), count: int = 16):
    """tau_i against sigma_i, one marker+line per file and selected checkpoint (legend by step).
    With `tau_curves`: tau_1..tau_count as grouped bars for the named curves of
    rltx.hyperrule.TAU_CURVES, then one marker+line per file (its last checkpoint or the first of
    `steps`), against the index i."""
    files = expand_inputs(inputs) if inputs else []
    names = _labels(labels, files)
    if not tau_curves and not files:
        raise UsageError("f-sigma needs transfer-function results (`rltx analyze transfer-function ... -o FILE.h5`), "
                         "or --tau-curves")
    results = [_read(p, "transfer-function", ("steps", "sigma", "tau")) for p in files]
    figure, axes = new_figure(style)
    ax = axes[0, 0]
    if tau_curves:
        from rltx.hyperrule import TAU_CURVES
        unknown = [c for c in curves if c not in TAU_CURVES]
        if unknown:
            raise UsageError(f"unknown tau curve {', '.join(unknown)}; choose from {', '.join(TAU_CURVES)}")
        if not curves and not files:
            raise UsageError("--tau-curves with --curves none needs transfer-function results to draw")
        index = np.arange(1, count + 1)
        width = 0.8 / max(len(curves), 1)
        for k, name in enumerate(curves):
            values = np.asarray(TAU_CURVES[name][:count], dtype=np.float64)
            ax.bar(index[:len(values)] - 0.4 + width * (k + 0.5), values, width, label=name, color=f"C{k}")
        for n, (path, result, name) in enumerate(zip(files, results, names)):
            row = _select(result.arrays["steps"], steps[:1], path, 1)[0] if steps else len(result.arrays["steps"]) - 1
            tau = result.arrays["tau"][row][:count]
            step = int(result.arrays["steps"][row])
            ax.plot(np.arange(1, len(tau) + 1), tau, "-", marker=MARKERS[n % len(MARKERS)], markersize=3,
                    color=f"C{(len(curves) + n) % 10}", label=f"{name} (step {step})")
        ax.set_xlabel(r"eigenvector index $i$ (decreasing $\sigma_i$)")
        ax.set_ylabel(r"$\tau_i$")
        ax.set_xticks(index[::max(1, count // 8)])
        top = max([np.max(c.datavalues) for c in ax.containers] + [np.max(line.get_ydata()) for line in ax.lines])
        ax.set_ylim(0, 1.45 * top)  # room for the legend above the bars
        ax.legend(ncol=2)
        return figure
    else:
        import matplotlib
        for n, (path, result, name) in enumerate(zip(files, results, names)):
            rows = _select(result.arrays["steps"], steps, path, 4)
            colours = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, len(rows)))
            for colour, row in zip(colours, rows):
                step = int(result.arrays["steps"][row])
                label = f"step {step}" if len(files) == 1 else f"{name}, step {step}"
                ax.plot(result.arrays["sigma"][row], result.arrays["tau"][row], LINESTYLES[n % len(LINESTYLES)],
                        marker=MARKERS[n % len(MARKERS)], markersize=2.5, color=colour, label=label)
        ax.set_xlabel(r"$\sigma$ (square root of an eigenvalue of $\Sigma_x$)")
        ax.set_ylabel(r"$\tau = f(\sigma)$")
    ax.legend()
    return figure


# ---------------------------------------------------------------- representation alignment (Imani)

@_styled
def draw_alignment_curve(inputs, *, style: str = "paper", labels=None, layers=None, step: int | None = None,
                         all_steps: bool = False, normalize: bool = False):
    """Alignment(Phi, y, tau) against tau / sigma_1, one line per layer (colour), per file (line
    style) and checkpoint: the chosen step (default the last) or all steps overlaid (later steps more
    opaque); divided by ||y||^2 (summed over the label vectors) with `normalize`. Lines in order:
    file, step, layer."""
    files = expand_inputs(inputs)
    names = _labels(labels, files)
    figure, axes = new_figure(style)
    ax = axes[0, 0]
    groups = []
    for path, name in zip(files, names):
        arrays = _read(path, "representation_alignment", ("steps", "layers", "fraction", "alignment",
                                                          "label_norm_sq")).arrays
        stored = [store.text(v) for v in arrays["layers"]]
        chosen = stored if layers is None else layers
        missing = [layer for layer in chosen if layer not in stored]
        if missing:
            raise UsageError(f"{path} has no layer {', '.join(missing)}; stored layers: {', '.join(stored)}")
        steps = [int(s) for s in arrays["steps"]]
        if all_steps:
            rows = list(range(len(steps)))
        elif step is None:
            rows = [len(steps) - 1]
        else:
            rows = _select(arrays["steps"], [step], path, 1)
        groups += [(name, arrays, steps[row], row, stored, chosen) for row in rows]
    several_files, several_steps = len(files) > 1, len({g[2] for g in groups}) > 1 or all_steps
    file_index = {name: k for k, name in enumerate(dict.fromkeys(g[0] for g in groups))}
    for name, arrays, step_value, row, stored, chosen in groups:
        scale = float(np.sum(arrays["label_norm_sq"])) if normalize else 1.0
        rows = len(arrays["steps"])
        # later checkpoints more opaque, the last one fully
        alpha = 1.0 if not all_steps or rows == 1 else 0.3 + 0.7 * row / (rows - 1)
        for layer in chosen:
            l = stored.index(layer)
            parts = ([name] if several_files else []) + [layer] + ([f"step {step_value}"] if several_steps else [])
            ax.plot(arrays["fraction"], arrays["alignment"][row, l] / scale,
                    LINESTYLES[file_index[name] % len(LINESTYLES)], color=f"C{l % 10}", alpha=alpha,
                    label=", ".join(parts))
    ax.set_xlabel(r"threshold $\tau / \sigma_1$")
    ax.set_ylabel(r"alignment / $\|y\|^2$" if normalize else "alignment")
    ax.legend()
    return figure


# ---------------------------------------------------------------- CLI
