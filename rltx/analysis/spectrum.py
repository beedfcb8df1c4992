"""Spectrum of the weights: all singular values of every layer's linear operator, the whole-network
histogram, counts below thresholds and the Frobenius/spectral ratio sum (Neyshabur, Sedghi, Zhang
2020, "What is being transferred in transfer learning?", Appendix C, Figs. 31-33).

Definitions
-----------
- Conv layer (App. C: "the algorithm derived in [Sedghi et al., 2019]"; Sedghi, Gupta, Long 2019,
  "The singular values of convolutional layers", Sec. 2): the layer's kernel K [kh, kw, c_in, c_out]
  (Keras Conv2D: cross-correlation) defines a linear map of an n x n x c_in input with *circular*
  padding and *stride 1*. Its singular values are the union over the n^2 frequencies (u, v) of the
  singular values of the c_in x c_out matrix FFT2(K zero-padded to n x n)[u, v] ("takes 2D-FFT of
  the kernel and then takes the union of singular values for different blocks", App. C). A kernel
  larger than n wraps around (taps at offsets a and a + n act on the same input pixel), so taps are
  summed modulo n first. Cross-correlation vs convolution and the padding offset change the
  per-frequency blocks only by conjugation, frequency reversal and unit phases, not the singular
  values. The layer's real stride and padding are NOT modelled (Sedghi et al.'s operator is the
  stride-1 circular one); n is the layer's input spatial size (the first two spatial dimensions'
  maximum if not square) unless `input_size` is given. n^2 * min(c_in, c_out) values per layer.
- Dense layer: the singular values of its kernel matrix [in, out] (min(in, out) values).
- Layers: every layer with a `<layer>/kernel` of rank 2 or 4 (conv and dense, the head included: the
  "whole network" of Fig. 31), in the model's order. Biases and normalisation layers are not operators
  and are left out.
- ||W||_F of an operator = sqrt(sum of its squared singular values) (for a conv layer this equals
  n * ||K||_F); ||W||_2 = its largest singular value. `ratio_sum` = sum over layers ||W||_F / ||W||_2
  (App. C: "we compare the term sum_i ||W_i||_F / ||W_i||_2 for two networks").
- Whole-network histogram (Fig. 31, 32): all singular values of all layers together, `bins` equal
  bins over [0, the largest singular value over every run and checkpoint analysed] (shared, so
  histograms are comparable), last bin closed as numpy.histogram.
- `count_below` (Fig. 33: "the number of singular values smaller than some threshold"): the number of
  values strictly below each threshold.

Result (kind "spectrum"); rows are the analysed (run, checkpoint) pairs, L layers, B bins, T thresholds:

    runs [R], layers [L], layer_type [L] ("conv" | "dense"), input_size [L] (n; 0 for dense)
    row_run [rows], row_step [rows]
    bin_edges [B+1], histogram [rows, B]
    thresholds [T], count_below [rows, T]
    frobenius [rows, L], spectral [rows, L], ratio [rows, L], ratio_sum [rows]
    num_values [rows, L]              singular values per layer
    values/{i} [V]                    row i's singular values, layer by layer, each layer descending
"""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from rltx import store
from rltx.errors import UsageError
from rltx.runs import examples, model_at, open_run, select_steps


def conv_singular_values(kernel: np.ndarray, n: int) -> np.ndarray:
    """All singular values [n*n*min(c_in, c_out)] of the stride-1, circularly padded n x n convolution
    with `kernel` [kh, kw, c_in, c_out] (Sedghi et al. 2019, Sec. 2: the FFT-then-SVD two-liner),
    sorted descending."""
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 4:
        raise ValueError(f"a conv kernel has 4 dimensions [kh, kw, c_in, c_out], got shape {kernel.shape}")
    if n < 1:
        raise ValueError(f"input size n must be at least 1, got {n}")
    kh, kw = kernel.shape[:2]
    folded = np.zeros((n, n) + kernel.shape[2:])
    for a in range(kh):        # taps beyond n wrap around the circular input
        for b in range(kw):
            folded[a % n, b % n] += kernel[a, b]
    transforms = np.fft.fft2(folded, axes=(0, 1))          # [n, n, c_in, c_out]
    values = np.linalg.svd(transforms, compute_uv=False)   # per frequency
    return np.sort(values.ravel())[::-1]


def dense_singular_values(kernel: np.ndarray) -> np.ndarray:
    return np.linalg.svd(np.asarray(kernel, dtype=np.float64), compute_uv=False)


def operator_layers(model: keras.Model, input_size: int = 0) -> list[tuple[str, str, int]]:
    """(name, "conv"|"dense", n) for every layer with a kernel of rank 4 or 2, in the model's order."""
    layers = []
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        if len(kernel.shape) == 4:
            shape = layer.input.shape
            n = input_size or int(max(shape[1], shape[2]))
            layers.append((layer.name, "conv", n))
        elif len(kernel.shape) == 2:
            layers.append((layer.name, "dense", 0))
    return layers


def layer_spectrum(kernel: np.ndarray, layer_type: str, n: int) -> np.ndarray:
    return conv_singular_values(kernel, n) if layer_type == "conv" else dense_singular_values(kernel)


def ratio_sum(spectra: list[np.ndarray]) -> float:
    """sum over layers of ||W||_F / ||W||_2 (App. C), from each layer's singular values."""
    return float(sum(np.sqrt(np.sum(s ** 2)) / s.max() for s in spectra))


def _parse_thresholds(thresholds) -> list[float]:
    if isinstance(thresholds, str):
        try:
            thresholds = [float(t) for t in thresholds.split(",") if t.strip()]
        except ValueError:
            raise UsageError(f"thresholds {thresholds!r} must be comma-separated numbers, e.g. 0.1,0.01") from None
    values = [float(t) for t in thresholds]
    if not values or not all(np.isfinite(values)):
        raise UsageError(f"thresholds must be one or more finite numbers, e.g. 0.1,0.01; got {values}")
    return values


def analyze_spectrum(run_paths, *, step=None, all_steps=False, thresholds=(0.1, 0.01), bins=50,
                     input_size=0):
    from rltx.analysis.results import Result
    run_paths = [run_paths] if isinstance(run_paths, (str, Path)) else list(run_paths)
    if not run_paths:
        raise UsageError("no run to analyse; pass at least one run directory")
    if bins < 1:
        raise UsageError(f"bins {bins} must be at least 1")
    if input_size < 0:
        raise UsageError(f"input_size {input_size} is negative; pass 0 for each layer's own input size")
    thresholds = _parse_thresholds(thresholds)
    runs = [open_run(p) for p in run_paths]
    layers_info, rows_run, rows_step, spectra_rows, steps_used = _spectra(runs, step, all_steps, input_size)
    top = max(float(np.max(v)) for row in spectra_rows for v in row)
    edges = np.linspace(0.0, top if top > 0 else 1.0, bins + 1)
    arrays = {
        "runs": store.string_array(r.run_dir for r in runs),
        "layers": store.string_array(i[0] for i in layers_info),
        "layer_type": store.string_array(i[1] for i in layers_info),
        "input_size": np.array([i[2] for i in layers_info], dtype=np.int64),
        "row_run": np.array(rows_run, dtype=np.int64), "row_step": np.array(rows_step, dtype=np.int64),
        "bin_edges": edges, "thresholds": np.array(thresholds, dtype=np.float64),
        **_row_arrays(spectra_rows, edges, thresholds, len(layers_info)),
    }
    arrays["ratio"] = arrays["frobenius"] / arrays["spectral"]
    table = []
    for i, (r, s) in enumerate(zip(rows_run, rows_step)):
        row = {"run": runs[r].run_dir.name, "step": s, "values": int(arrays["num_values"][i].sum()),
               "largest": float(arrays["spectral"][i].max()), "sum ||W||_F/||W||_2": float(arrays["ratio_sum"][i])}
        for t, c in zip(thresholds, arrays["count_below"][i]):
            row[f"< {t:g}"] = int(c)
        table.append(row)
    inputs = {"runs": [str(r.run_dir) for r in runs], "steps": steps_used, "layers": [i[0] for i in layers_info],
              "options": {"thresholds": thresholds, "bins": bins, "input_size": input_size},
              "operator": "stride-1 circular convolution on n x n inputs (Sedghi et al. 2019); dense: the kernel"}
    return Result("spectrum", inputs, arrays, table)


def _spectra(runs, step, all_steps, input_size):
    """The (name, kind, input size) of every conv and dense layer, shared by all runs, and one row of
    per-layer singular values per (run, step)."""
    layers_info = None
    rows_run, rows_step, spectra_rows, steps_used = [], [], [], {}
    for index, run in enumerate(runs):
        steps = select_steps(run, step, all_steps)
        steps_used[str(run.run_dir)] = steps
        sample = examples(run, "test", 1)
        if len(sample) == 0:
            sample = examples(run, "train", 1)
        info = operator_layers(model_at(run, steps[0], tuple(sample.shape[1:])), input_size)
        if layers_info is None:
            layers_info = info
        elif [i[:2] for i in info] != [i[:2] for i in layers_info]:
            raise UsageError(f"layers differ between {runs[0].run_dir} and {run.run_dir}; analyse runs of one "
                             "architecture together")
        if not info:
            raise UsageError(f"{run.run_dir} has no conv or dense layer; nothing to take the spectrum of")
        for s in steps:
            weights = store.read_checkpoint(run.run_dir, s)
            spectra_rows.append([layer_spectrum(weights[f"{name}/kernel"], kind, n) for name, kind, n in info])
            rows_run.append(index)
            rows_step.append(s)
    return layers_info, rows_run, rows_step, spectra_rows, steps_used


def _row_arrays(spectra_rows, edges, thresholds, num_layers) -> dict[str, np.ndarray]:
    """Per row: the whole network's histogram and counts below the thresholds, each layer's ||W||_F,
    ||W||_2 and number of singular values, and the sum over layers of ||W||_F / ||W||_2."""
    arrays, hist, below, frob, spec, nums, totals = {}, [], [], [], [], [], []
    for i, row in enumerate(spectra_rows):
        everything = np.concatenate(row)
        arrays[f"values/{i}"] = everything
        hist.append(np.histogram(everything, bins=edges)[0])
        below.append([int(np.sum(everything < t)) for t in thresholds])
        frob.append([np.sqrt(np.sum(v ** 2)) for v in row])
        spec.append([v.max() for v in row])
        nums.append([v.size for v in row])
        totals.append(ratio_sum(row))
    arrays.update({
        "histogram": np.array(hist, dtype=np.int64).reshape(-1, len(edges) - 1),
        "count_below": np.array(below, dtype=np.int64).reshape(-1, len(thresholds)),
        "frobenius": np.array(frob, dtype=np.float64).reshape(-1, num_layers),
        "spectral": np.array(spec, dtype=np.float64).reshape(-1, num_layers),
        "num_values": np.array(nums, dtype=np.int64).reshape(-1, num_layers),
        "ratio_sum": np.array(totals, dtype=np.float64),
    })
    return arrays
