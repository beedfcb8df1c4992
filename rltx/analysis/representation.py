"""Representation alignment: how much of a label vector lies along the top singular directions of a
layer's representation (Imani, Hu, White, "Representation Alignment in Neural Networks", TMLR 2022).

Definitions
-----------
- Representation (Sec. 2): Phi [n, d], one row phi(x_i) per example. Here, per layer: the model
  inputs (scaled as in training, A.3), then the output of every transferable layer
  (`rltx.models.transferable_layers`: layers owning weights, head excluded), flattened in the
  layer's (row, column, channel) order, exactly as the model computes it (post-ReLU for the conv
  and dense layers, whose ReLU is inside the layer; for architectures with separate norm/ReLU
  layers, a conv's output is its pre-normalisation output and the norm layer is listed as well).
- Row normalisation (Sec. 4: "We assume ||x_i|| <= 1 for all i, which can be satisfied by
  normalization"; the experiments "normalized to length one", Fig. 2, Sec. 7.1, 7.3):
  `row_norm="unit"` (default) divides every row by its length (rows of length zero, e.g. all ReLUs
  off, stay zero); `row_norm="max"` divides all rows by the largest row length (keeps relative
  magnitudes). Either way every row has norm <= 1.
- Constant feature (Sec. 2: "we replace the bias unit with a constant feature in the matrix"):
  with `constant_feature=True` (default) a column of ones is appended *after* the row normalisation
  and the rows are divided by sqrt(2), so the feature stays constant (1/sqrt(2)) and every row
  still has norm <= 1 (= 1 under "unit" for a nonzero row). `constant_feature=False` omits it.
- Thin SVD (Sec. 2), in float64: Phi = U diag(sigma) V^T, sigma descending, k = min(n, d) of them.
- Alignment (Sec. 4, Eq. 2): Alignment(Phi, y, tau) = sum over {i : sigma_i >= tau} of (u_i^T y)^2.
  The paper's U is the full n x n basis with sigma_{d+1..n} = 0, so at tau = 0 exactly its sum is
  ||y||^2 for every representation (Sec. 4: "at a threshold of 0 ... the sum includes all terms").
  We sum over the rank(Phi) directions with sigma_i > 0 only (numerical rank: sigma_i > sigma_1 *
  max(n, d) * eps, numpy's matrix_rank rule), i.e. Alignment(tau) for every tau > 0 as in the
  paper, and at tau = 0 its limit from above, ||P y||^2, P the projection onto the column space of
  Phi (the part of y a linear model on Phi can fit). The paper's tau = 0 value is kept apart as
  `label_norm_sq` (= ||y||^2). Summing only nonzero sigma also makes the curve independent of the
  arbitrary basis a thin SVD picks for the null directions.
- Thresholds: `points` values tau = f * sigma_1 with f = linspace(0, 1, points) (the fraction of
  the largest singular value, shared by all layers and checkpoints; the absolute tau per layer and
  checkpoint is stored too). The last point, tau = sigma_1, keeps the top direction.
- Labels (Sec. 2: "y in {-1, +1}^n" in classification; Sec. 7.3 "given +-1 labels"): with 2
  classes one vector, y_i = +1 for class 1 and -1 for class 0 (K = 1). With C > 2 classes,
  one-vs-rest vectors y_c (+1 for class c, -1 otherwise), K = C, and `alignment` is the sum of the
  C curves (our extension; the paper treats binary tasks only; the per-class curves are stored).
  Note: a one-vs-rest vector has mean 2/C - 1, and the constant feature (or any near-constant
  direction) captures that part of it at a large singular value.
- Labels default to the analysed run's own (training labels `upstream_labels` / `downstream_labels`,
  held-out `test_labels`); `labels_from` takes another run's labels of the same examples (the same
  dataset and exactly the same example indices, else UsageError): source vs target task (Sec. 7,
  Fig. 10: the representation trained on the source task against the target task's labels).
  Before vs after training (Fig. 2 c-d, Fig. 10 "init" vs "transfer"): step 0 vs the last
  checkpoint (`all_steps`). The pretrained representation against the downstream labels on the
  downstream examples is the transfer run's step-0 checkpoint.

Result (kind "representation_alignment"); S checkpoints, L layers ("inputs" first, names in
`layers`), K label vectors, P thresholds, n examples, k_l = min(n, d_l [+ 1 with the constant]):

    steps                     [S]
    layers                    [L]         "inputs", then the transferable layers in model order
    num_features              [L]         d_l, the layer's flattened width (before the constant)
    indices                   [n]         example indices (in the run's split), labels [n] used
    fraction                  [P]         tau / sigma_1
    tau                       [S, L, P]   absolute thresholds
    alignment                 [S, L, P]   Eq. 2 summed over the K label vectors
    alignment_per_class       [S, L, K, P]
    projected_norm_sq         [S, L, K]   ||P y_c||^2 (= the curve at tau = 0)
    label_norm_sq             [K]         ||y_c||^2 = n (the paper's value at tau = 0 exactly)
    max_singular_value        [S, L]      sigma_1
    rank                      [S, L]
    singular_values/{layer}   [S, k_l]
    label_projection/{layer}  [S, K, k_l] (u_i^T y_c)^2 (Fig. 2's bars), over all k_l directions

Memory: all layers' activations of the n examples are held as float32, then one layer at a time in
float64 for its SVD (n * d_l * 8 bytes).
"""
from __future__ import annotations

import numpy as np

from rltx import store
from rltx.analysis.results import Result
from rltx.errors import UsageError
from rltx.runs import Run, examples, model_at, open_run, select_steps

ROW_NORMS = ("unit", "max")
WHICH = ("train", "test")
INPUT_LAYER = "inputs"


# ---------------------------------------------------------------- the mathematics (Sec. 2, 4)

def normalize_rows(phi: np.ndarray, row_norm: str = "unit", constant_feature: bool = True) -> np.ndarray:
    """Phi [n, d] in float64 with every row of norm <= 1 (Sec. 4), then optionally the constant
    feature of Sec. 2 (appended after normalising, rows divided by sqrt(2))."""
    if row_norm not in ROW_NORMS:
        raise ValueError(f"row_norm {row_norm!r} is not one of {', '.join(ROW_NORMS)}; choose one of them")
    phi = np.asarray(phi, dtype=np.float64).reshape(len(phi), -1)
    norms = np.linalg.norm(phi, axis=1)
    if row_norm == "unit":
        phi = phi / np.where(norms > 0, norms, 1.0)[:, None]
    elif norms.size and norms.max() > 0:
        phi = phi / norms.max()
    if constant_feature:
        phi = np.concatenate([phi, np.ones((len(phi), 1))], axis=1) / np.sqrt(2.0)
    return phi


def label_vectors(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """[K, n] +-1 label vectors: K = 1 (class 1 -> +1, class 0 -> -1) for 2 classes, else one-vs-rest."""
    labels = np.asarray(labels).astype(np.int64)
    if num_classes < 2:
        raise ValueError(f"alignment needs at least 2 classes, not {num_classes}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels outside 0..{num_classes - 1}; pass labels of a {num_classes}-class task")
    classes = [1] if num_classes == 2 else range(num_classes)
    return np.stack([np.where(labels == c, 1.0, -1.0) for c in classes])


def spectrum(phi: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Thin SVD of Phi in float64: singular values [k] (descending), (u_i^T y)^2 as [K, k] for the
    rows y of `targets` [K, n], and the numerical rank."""
    phi = np.asarray(phi, dtype=np.float64)
    targets = np.atleast_2d(np.asarray(targets, dtype=np.float64))
    if phi.shape[0] != targets.shape[1]:
        raise ValueError(f"Phi has {phi.shape[0]} rows but y has {targets.shape[1]} entries")
    u, sigma, _ = np.linalg.svd(phi, full_matrices=False)
    rank = int(np.sum(sigma > sigma[0] * max(phi.shape) * np.finfo(np.float64).eps)) if sigma.size else 0
    return sigma, np.square(targets @ u), rank


def alignment_from_spectrum(sigma: np.ndarray, projection: np.ndarray, rank: int, taus) -> np.ndarray:
    """Eq. 2: sum of projection[..., i] over the first `rank` i with sigma_i >= tau, for each tau
    (last axis of the result)."""
    taus = np.atleast_1d(np.asarray(taus, dtype=np.float64))
    cumulative = np.concatenate([np.zeros(projection.shape[:-1] + (1,)),
                                 np.cumsum(projection[..., :rank], axis=-1)], axis=-1)
    counts = np.sum(sigma[:rank][None, :] >= taus[:, None], axis=1)  # sigma descending: a prefix
    return cumulative[..., counts]


def alignment(phi: np.ndarray, y: np.ndarray, taus) -> np.ndarray:
    """Alignment(Phi, y, tau) of Eq. 2 for each tau, on Phi as given (no normalisation); y [n] or [K, n]."""
    sigma, projection, rank = spectrum(phi, y)
    result = alignment_from_spectrum(sigma, projection, rank, taus)
    return result[0] if np.ndim(y) == 1 else result


# ---------------------------------------------------------------- runs

def _split(run: Run, which: str, num_examples: int) -> tuple[np.ndarray, np.ndarray]:
    """Example indices and labels of the run's training or held-out set (first `num_examples`)."""
    if which == "train":
        indices = run.train_indices
        labels = run.samples["upstream_labels" if run.kind == "pretrain" else "downstream_labels"]
    else:
        indices, labels = run.samples["test_indices"], run.samples["test_labels"]
    if num_examples:
        indices, labels = indices[:num_examples], labels[:num_examples]
    return np.asarray(indices), np.asarray(labels)


def _data_identity(run: Run, which: str) -> tuple:
    identity = tuple(run.recipe.data.identity().values())
    if which == "test":
        identity += (bool(run.samples["test_from_train"]),)
    return identity


def _labels_from(run: Run, other_path, which: str, num_examples: int, indices: np.ndarray
                 ) -> tuple[np.ndarray, int, str]:
    other = open_run(other_path)
    other_indices, other_labels = _split(other, which, num_examples)
    if _data_identity(other, which) != _data_identity(run, which):
        raise UsageError(f"{other.run_dir} reads other data than {run.run_dir}; --labels-from needs a run "
                         "on the same dataset")
    if not np.array_equal(np.sort(other_indices), np.sort(indices)):
        raise UsageError(f"the {which} examples of {other.run_dir} ({len(other_indices)}) are not those of "
                         f"{run.run_dir} ({len(indices)}); --labels-from needs a run with the same {which} "
                         "example indices: use --examples test (a transfer's training examples are never its "
                         "source's, A.1), or a run of the same seed and kind")
    order = np.argsort(other_indices)[np.argsort(np.argsort(indices))]  # other's labels in our order
    return other_labels[order], other.num_classes, str(other.run_dir)


def layer_representations(model, inputs: np.ndarray, batch_size: int = 256) -> dict[str, np.ndarray]:
    """{"inputs": inputs, layer: outputs} flattened to [n, d] float32, for every transferable layer."""
    import keras
    import tensorflow as tf

    from rltx.models import transferable_layers
    names = transferable_layers(model)
    probe = keras.Model(model.inputs, [model.get_layer(name).output for name in names])
    outputs: list[list[np.ndarray]] = [[] for _ in names]
    for start in range(0, len(inputs), batch_size):
        batch = tf.convert_to_tensor(inputs[start:start + batch_size], dtype=model.inputs[0].dtype)
        values = probe(batch, training=False)
        values = values if isinstance(values, (list, tuple)) else [values]
        for i, value in enumerate(values):
            outputs[i].append(np.asarray(value, dtype=np.float32).reshape(len(batch), -1))
    result = {INPUT_LAYER: np.asarray(inputs, dtype=np.float32).reshape(len(inputs), -1)}
    result.update({name: np.concatenate(parts) for name, parts in zip(names, outputs)})
    return result


def analyze_representation_alignment(run_path, *, step: int | None = None, all_steps: bool = False,
                                     which: str = "train", num_examples: int = 1000, labels_from=None,
                                     points: int = 50, row_norm: str = "unit", constant_feature: bool = True,
                                     batch_size: int = 256) -> Result:
    """Eq. 2 alignment curves per layer (inputs first) of a run's checkpoint(s) on its first
    `num_examples` training (or held-out) examples, against its own labels or `labels_from`'s."""
    _check_options(which, num_examples, points, row_norm)
    run = open_run(run_path)
    steps = select_steps(run, step, all_steps)
    indices, labels = _split(run, which, num_examples)
    if len(indices) == 0:
        raise UsageError(f"{run.run_dir} has no {which} examples; use --examples train")
    num_classes, label_run = run.num_classes, str(run.run_dir)
    if labels_from is not None:
        labels, num_classes, label_run = _labels_from(run, labels_from, which, num_examples, indices)
    targets = label_vectors(labels, num_classes)
    inputs = examples(run, which, num_examples)
    fraction = np.linspace(0.0, 1.0, points)

    per_step: list[dict] = []
    layers: list[str] = []
    widths: list[int] = []
    table: list[dict] = []
    for s in steps:
        model = model_at(run, s, tuple(inputs.shape[1:]))
        representations = layer_representations(model, inputs, batch_size)
        layers, widths = list(representations), [r.shape[1] for r in representations.values()]
        rows = []
        for name, width in zip(layers, widths):
            row = _layer_alignment(normalize_rows(representations.pop(name), row_norm, constant_feature),
                                   targets, fraction)
            rows.append(row)
            table.append({"step": s, "layer": name, "d": width + int(constant_feature), "rank": row["rank"],
                          "smax": row["sigma_max"], "|y|^2": float(np.sum(targets ** 2)),
                          "A(0)": float(row["curves"][:, 0].sum()), "A(.1smax)": row["marks"][0],
                          "A(.5smax)": row["marks"][1]})
        per_step.append(rows)

    arrays: dict[str, np.ndarray] = {
        "steps": np.asarray(steps, dtype=np.int64),
        "layers": store.string_array(layers),
        "num_features": np.asarray(widths, dtype=np.int64),
        "indices": indices.astype(np.int64), "labels": np.asarray(labels).astype(np.int64),
        "fraction": fraction,
        "tau": np.array([[row["tau"] for row in rows] for rows in per_step]),
        "alignment_per_class": np.array([[row["curves"] for row in rows] for rows in per_step]),
        "projected_norm_sq": np.array([[row["curves"][:, 0] for row in rows] for rows in per_step]),
        "label_norm_sq": np.sum(targets ** 2, axis=1),
        "max_singular_value": np.array([[row["sigma_max"] for row in rows] for rows in per_step]),
        "rank": np.array([[row["rank"] for row in rows] for rows in per_step], dtype=np.int64),
    }
    arrays["alignment"] = arrays["alignment_per_class"].sum(axis=2)
    for l, name in enumerate(layers):
        arrays[f"singular_values/{name}"] = np.array([rows[l]["sigma"] for rows in per_step])
        arrays[f"label_projection/{name}"] = np.array([rows[l]["projection"] for rows in per_step])
    inputs_record = {"runs": [str(run.run_dir)], "kind": run.kind, "steps": list(map(int, steps)), "layers": layers,
                     "labels_from": label_run, "which": which, "num_examples": int(len(indices)),
                     "num_classes": int(num_classes), "label_vectors": int(len(targets)), "points": points,
                     "row_norm": row_norm, "constant_feature": constant_feature}
    return Result("representation_alignment", inputs_record, arrays, table)


def _check_options(which: str, num_examples: int, points: int, row_norm: str) -> None:
    if which not in WHICH:
        raise UsageError(f"examples {which!r} is not one of {', '.join(WHICH)}; choose one of them")
    if num_examples < 0:
        raise UsageError(f"num_examples {num_examples} is negative; pass 0 for all examples or a positive count")
    if points < 2:
        raise UsageError(f"points {points} must be at least 2 (tau = 0 and tau = sigma_1)")
    if row_norm not in ROW_NORMS:
        raise UsageError(f"row_norm {row_norm!r} is not one of {', '.join(ROW_NORMS)}; choose one of them")


def _layer_alignment(phi: np.ndarray, targets: np.ndarray, fraction: np.ndarray) -> dict:
    """One layer's spectrum, its per-class alignment curves at tau = fraction * sigma_1, and the
    alignment summed over classes at 0.1 and 0.5 sigma_1 (the table's marks)."""
    sigma, projection, rank = spectrum(phi, targets)
    sigma_max = float(sigma[0]) if sigma.size else 0.0
    taus = fraction * sigma_max
    marks = alignment_from_spectrum(sigma, projection, rank, [0.1 * sigma_max, 0.5 * sigma_max]).sum(0)
    return dict(sigma=sigma, projection=projection, rank=rank, tau=taus, sigma_max=sigma_max,
                curves=alignment_from_spectrum(sigma, projection, rank, taus), marks=[float(m) for m in marks])


# ---------------------------------------------------------------- CLI
