"""Comparing two trained networks: feature similarity by CKA and common/uncommon mistakes
(Neyshabur, Sedghi, Zhang 2020, "What is being transferred in transfer learning?", App. B.2, B.3).

CKA (App. B.3, Table 7: "feature similarity using CKA Kornblith et al. [2019a] for output of
different layers"; Kornblith, Norouzi, Lee, Hinton 2019, "Similarity of neural network
representations revisited", Sec. 3-4):

- X [n, p], Y [n, q]: the outputs of one layer of each network on the same n examples, flattened.
  Gram matrices K = k(X), L = k(Y); linear kernel k(X) = X X^T; RBF kernel
  exp(-||x_i - x_j||^2 / (2 sigma^2)) with sigma = `rbf_fraction` * the median distance between
  examples (Kornblith et al. Sec. 4; as in their reference code, the median over all n^2 entries).
- Biased HSIC (Gretton et al. 2005; Kornblith eq. 3): tr(K H L H) / (n - 1)^2, H = I - 11^T/n.
- Debiased HSIC (Song et al. 2012, unbiased estimator; Kornblith App. / Nguyen et al. 2021): with
  K~, L~ the Gram matrices with zeroed diagonals, n > 3:
  [tr(K~ L~) + 1^T K~ 1 1^T L~ 1 / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n (n-3)).
- CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) (Kornblith eq. 4). Biased CKA lies in
  [0, 1]; debiased CKA may be slightly negative (it is ~0 for independent features).
- Minibatches: linear, biased CKA is accumulated over batches without Gram matrices, from the
  float64 sums sum x, sum y, X^T X, X^T Y, Y^T Y (`LinearCKAAccumulator`): with centred
  Xc = X - mean, Xc^T Yc = X^T Y - n mean_x mean_y^T, and tr(KHLH) = ||Xc^T Yc||_F^2 (Kornblith
  eq. 5); this is exact, so any batching gives the one-shot value. It holds p x q matrices, so it is
  used when every layer has at most `FEATURE_LIMIT` features; otherwise, and always for RBF or
  debiased CKA (which need the full n x n Gram matrices: the debiased estimator is not a sum over
  minibatches), the features of all n examples are kept and the n x n Gram matrices built.
- `analyze_cka`: the layer x layer matrix cka[i, j] between layer i of run A and layer j of run B
  (all `transferable_layers`, head excluded, in model order), on the first `num_examples` held-out
  examples of run A, both models at their chosen checkpoints.

Mistakes (App. B.2, Tables 3-6): for two models on the same labelled test set,
- g1 = examples only the first model classifies correctly, g2 = only the second ("g1, g2 refer to the
  number of data samples where only the first model is classifying correctly and only the second
  model is classifying correctly, respectively");
- common = examples both get wrong ("the number of common mistakes");
- r1, r2 = "ratio of uncommon to all mistakes for the first and second model": the first model's
  mistakes are common + g2, of which g2 are uncommon, so r1 = g2 / (g2 + common) and
  r2 = g1 / (g1 + common). This reading matches the text and Tables 3-5 (e.g. Table 3 class 1:
  832 / (832 + 3597) = 0.1878); Table 6's r1, r2 columns are the other way round.
  NaN when the model makes no mistake.
- Per class (Tables 3-5, over the examples whose true label is that class) and overall (Table 6).
  Both runs must share the held-out indices and labels.

Results: kind "cka": `layers_a` [La], `layers_b` [Lb], `cka` [La, Lb], `num_examples` [];
kind "mistakes": `classes` [C] then rows "per class" arrays [C] and overall scalars:
`num`, `accuracy_a`, `accuracy_b`, `g1`, `g2`, `common`, `both_correct`, `r1`, `r2` (per class) and
`overall/<same names>`.
"""
from __future__ import annotations

import numpy as np

from rltx import store
from rltx.errors import UsageError

KERNELS = ("linear", "rbf")
FEATURE_LIMIT = 4096          # max features per layer for the streamed feature-space linear CKA
GRAM_BYTES_LIMIT = 4 * 2**30  # features kept for the Gram route (float32)


# --- CKA (B.3; Kornblith et al. 2019) ---------------------------------------------------------

def linear_gram(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return x @ x.T


def rbf_gram(x: np.ndarray, fraction: float = 1.0) -> np.ndarray:
    """exp(-d_ij^2 / (2 sigma^2)), sigma = fraction * median distance (Kornblith et al. Sec. 4)."""
    gram = linear_gram(x)
    norms = np.diag(gram)
    squared = np.maximum(norms[:, None] + norms[None, :] - 2 * gram, 0.0)
    median = np.median(squared)
    if median <= 0:
        raise UsageError("the RBF bandwidth is zero (the median distance between examples is 0); use "
                         "--kernel linear or more distinct examples")
    return np.exp(-squared / (2 * fraction ** 2 * median))


def hsic_biased(k: np.ndarray, l: np.ndarray) -> float:
    """tr(K H L H) / (n-1)^2 (Gretton et al. 2005; Kornblith et al. eq. 3)."""
    n = len(k)
    h = np.eye(n) - 1.0 / n
    return float(np.sum((h @ k @ h) * l) / (n - 1) ** 2)


def hsic_debiased(k: np.ndarray, l: np.ndarray) -> float:
    """The unbiased HSIC estimator of Song et al. 2012 (needs n > 3)."""
    n = len(k)
    if n < 4:
        raise UsageError(f"debiased HSIC needs at least 4 examples, got {n}; use more examples")
    k = k.copy()
    l = l.copy()
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    ones_k, ones_l = k.sum(axis=0), l.sum(axis=0)
    value = (np.sum(k * l) + ones_k.sum() * ones_l.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * ones_k @ ones_l)
    return float(value / (n * (n - 3)))


def cka_from_grams(k: np.ndarray, l: np.ndarray, debiased: bool = False) -> float:
    """HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) (Kornblith et al. eq. 4)."""
    hsic = hsic_debiased if debiased else hsic_biased
    denominator = np.sqrt(hsic(k, k) * hsic(l, l))
    return float(hsic(k, l) / denominator) if denominator > 0 else float("nan")


def cka(x: np.ndarray, y: np.ndarray, *, kernel: str = "linear", debiased: bool = False,
        rbf_fraction: float = 1.0) -> float:
    """CKA between features x [n, ...] and y [n, ...] of the same n examples."""
    if kernel not in KERNELS:
        raise UsageError(f"kernel {kernel!r} is not one of {', '.join(KERNELS)}")
    gram = linear_gram if kernel == "linear" else (lambda a: rbf_gram(a, rbf_fraction))
    return cka_from_grams(gram(x), gram(y), debiased)


class LinearCKAAccumulator:
    """Biased linear CKA over minibatches from feature-space sums (no Gram matrix): exact for any
    batching, since Xc^T Yc = X^T Y - n mean_x mean_y^T and tr(K H L H) = ||Xc^T Yc||_F^2."""

    def __init__(self):
        self.n = 0
        self.sx = self.sy = self.xx = self.yy = self.xy = None

    def update(self, x: np.ndarray, y: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        if len(x) != len(y):
            raise ValueError("x and y must hold the same examples")
        if self.sx is None:
            self.sx, self.sy = np.zeros(x.shape[1]), np.zeros(y.shape[1])
            self.xx, self.yy = np.zeros((x.shape[1],) * 2), np.zeros((y.shape[1],) * 2)
            self.xy = np.zeros((x.shape[1], y.shape[1]))
        self.n += len(x)
        self.sx += x.sum(axis=0)
        self.sy += y.sum(axis=0)
        self.xx += x.T @ x
        self.yy += y.T @ y
        self.xy += x.T @ y

    def value(self) -> float:
        n = self.n
        mx, my = self.sx / n, self.sy / n
        cxy = self.xy - n * np.outer(mx, my)
        cxx = self.xx - n * np.outer(mx, mx)
        cyy = self.yy - n * np.outer(my, my)
        denominator = np.linalg.norm(cxx) * np.linalg.norm(cyy)
        return float(np.sum(cxy ** 2) / denominator) if denominator > 0 else float("nan")


def _check_same_held_out(run_a, run_b) -> None:
    for key in ("test_indices", "test_labels"):
        a, b = np.asarray(run_a.samples[key]), np.asarray(run_b.samples[key])
        if a.shape != b.shape or not np.array_equal(a, b):
            raise UsageError(f"{run_a.run_dir} and {run_b.run_dir} have different held-out {key.split('_')[1]}; "
                             "compare runs evaluated on the same test set (e.g. a transfer run and its "
                             "--with-baseline pair)")
    if bool(run_a.samples["test_from_train"]) != bool(run_b.samples["test_from_train"]):
        raise UsageError(f"{run_a.run_dir} and {run_b.run_dir} draw held-out examples from different splits; "
                         "compare runs evaluated on the same test set")


def _one_step(run, step):
    from rltx.runs import select_steps
    return select_steps(run, step, False)[0]


def analyze_cka(run_a, run_b, *, step_a=None, step_b=None, kernel="linear", debiased=False, num_examples=1000,
                rbf_fraction=1.0, batch_size=256):
    """Layer x layer CKA between two runs on run A's held-out examples (B.3, Table 7)."""
    from rltx.runs import examples, open_run
    from rltx.analysis.results import Result
    if kernel not in KERNELS:
        raise UsageError(f"kernel {kernel!r} is not one of {', '.join(KERNELS)}")
    if num_examples < 0:
        raise UsageError(f"num_examples {num_examples} is negative; pass 0 for all held-out examples")
    if rbf_fraction <= 0:
        raise UsageError(f"rbf_fraction {rbf_fraction} must be positive")
    runs = [open_run(run_a), open_run(run_b)]
    steps = [_one_step(runs[0], step_a), _one_step(runs[1], step_b)]
    inputs = examples(runs[0], "test", num_examples)
    n = len(inputs)
    if n < (4 if debiased else 2):
        raise UsageError(f"{runs[0].run_dir} has {n} held-out examples; CKA needs at least {4 if debiased else 2}")
    probes, names = _layer_probes(runs, steps, tuple(inputs.shape[1:]))
    widths = [[int(np.prod(o.shape[1:])) for o in p.outputs] for p in probes]
    streamed = kernel == "linear" and not debiased and max(max(w) for w in widths) <= FEATURE_LIMIT
    if not streamed and n * sum(sum(w) for w in widths) * 4 > GRAM_BYTES_LIMIT:
        raise UsageError(f"keeping the features of {n} examples needs more than {GRAM_BYTES_LIMIT >> 30} GiB; "
                         "pass a smaller --num-examples")
    features = _batched_features(probes, inputs, batch_size)
    if streamed:
        matrix = _streamed_linear_cka(features, len(names[0]), len(names[1]))
    else:
        gram = linear_gram if kernel == "linear" else (lambda a: rbf_gram(a, rbf_fraction))
        matrix = _gram_cka(features, len(names[0]), len(names[1]), gram, debiased)
    arrays = {"layers_a": store.string_array(names[0]), "layers_b": store.string_array(names[1]),
              "cka": matrix, "num_examples": np.array(n, dtype=np.int64)}
    table = [{"layer (A)": name, **{f"{other} (B)": float(matrix[i, j]) for j, other in enumerate(names[1])}}
             for i, name in enumerate(names[0])]
    record = {"runs": [str(r.run_dir) for r in runs], "steps": steps,
              "options": {"kernel": kernel, "debiased": debiased, "num_examples": num_examples,
                          "rbf_fraction": rbf_fraction},
              "examples": f"first {n} held-out examples of {runs[0].run_dir}",
              "method": "feature-space sums over minibatches" if streamed else "n x n Gram matrices"}
    return Result("cka", record, arrays, table)


def _layer_probes(runs, steps, input_shape) -> tuple[list, list[list[str]]]:
    """For each run at its step: a Keras model returning its transferable layers' outputs, and their names."""
    import keras
    from rltx.models import transferable_layers
    from rltx.runs import model_at
    probes, names = [], []
    for run, s in zip(runs, steps):
        model = model_at(run, s, input_shape)
        layers = transferable_layers(model)
        if not layers:
            raise UsageError(f"{run.run_dir} has no layer with weights but the head; nothing to compare")
        names.append(layers)
        probes.append(keras.Model(model.inputs[0], [model.get_layer(name).output for name in layers]))
    return probes, names


def _batched_features(probes, inputs: np.ndarray, batch_size: int):
    """Per minibatch: for each probe, its layers' outputs flattened to [batch, features] in float64."""
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start:start + batch_size]
        outs = []
        for probe in probes:
            out = probe(batch, training=False)
            out = out if isinstance(out, (list, tuple)) else [out]
            outs.append([np.asarray(o, dtype=np.float64).reshape(len(batch), -1) for o in out])
        yield outs


def _streamed_linear_cka(features, la: int, lb: int) -> np.ndarray:
    """Linear biased CKA from feature-space sums accumulated over minibatches (no n x n matrix)."""
    accumulators = [[LinearCKAAccumulator() for _ in range(lb)] for _ in range(la)]
    for outs in features:
        for i in range(la):
            for j in range(lb):
                accumulators[i][j].update(outs[0][i], outs[1][j])
    return np.array([[accumulators[i][j].value() for j in range(lb)] for i in range(la)], dtype=np.float64)


def _gram_cka(features, la: int, lb: int, gram, debiased: bool) -> np.ndarray:
    """CKA from n x n Gram matrices of the kept features (float32 while kept)."""
    kept = [[[] for _ in range(la)], [[] for _ in range(lb)]]
    for outs in features:
        for r in range(2):
            for i, o in enumerate(outs[r]):
                kept[r][i].append(o.astype(np.float32))
    matrix = np.zeros((la, lb))
    grams_b = [gram(np.concatenate(parts)) for parts in kept[1]]
    for i, parts in enumerate(kept[0]):
        k = gram(np.concatenate(parts))
        for j, l in enumerate(grams_b):
            matrix[i, j] = cka_from_grams(k, l, debiased)
    return matrix


# --- Mistakes (B.2, Tables 3-6) -------------------------------------------------------------

def mistake_counts(labels: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> dict[str, float]:
    """B.2 counts for one set of examples: num, accuracy_a/b, g1 (only A right), g2 (only B right),
    common (both wrong), both_correct, r1 = g2/(g2+common), r2 = g1/(g1+common)."""
    labels, pred_a, pred_b = (np.asarray(v).ravel() for v in (labels, pred_a, pred_b))
    if not labels.shape == pred_a.shape == pred_b.shape:
        raise ValueError("labels and both prediction vectors must have the same length")
    right_a, right_b = pred_a == labels, pred_b == labels
    g1 = int(np.sum(right_a & ~right_b))
    g2 = int(np.sum(~right_a & right_b))
    common = int(np.sum(~right_a & ~right_b))
    n = labels.size
    ratio = (lambda u: u / (u + common) if u + common else float("nan"))
    return {"num": n, "accuracy_a": float(right_a.mean()) if n else float("nan"),
            "accuracy_b": float(right_b.mean()) if n else float("nan"), "g1": g1, "g2": g2, "common": common,
            "both_correct": int(np.sum(right_a & right_b)), "r1": ratio(g2), "r2": ratio(g1)}


def mistakes_table(labels: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, num_classes: int):
    """Per class (examples of that true class) and overall B.2 counts."""
    labels = np.asarray(labels).ravel()
    per_class = [mistake_counts(labels[labels == c], np.asarray(pred_a)[labels == c],
                                np.asarray(pred_b)[labels == c]) for c in range(num_classes)]
    return per_class, mistake_counts(labels, pred_a, pred_b)


def _predictions(run, step, inputs, batch_size=256) -> np.ndarray:
    from rltx.runs import model_at
    model = model_at(run, step, tuple(inputs.shape[1:]))
    logits = [np.asarray(model(inputs[s:s + batch_size], training=False)) for s in range(0, len(inputs), batch_size)]
    return np.argmax(np.concatenate(logits), axis=1)


def analyze_mistakes(run_a, run_b, *, step_a=None, step_b=None):
    """Common and uncommon mistakes of two runs on run A's held-out set (B.2, Tables 3-6)."""
    from rltx.runs import examples, open_run
    from rltx.analysis.results import Result
    runs = [open_run(run_a), open_run(run_b)]
    _check_same_held_out(*runs)
    if runs[0].num_classes != runs[1].num_classes:
        raise UsageError(f"{runs[0].run_dir} has {runs[0].num_classes} classes, {runs[1].run_dir} "
                         f"{runs[1].num_classes}; compare runs of the same task")
    steps = [_one_step(runs[0], step_a), _one_step(runs[1], step_b)]
    inputs = examples(runs[0], "test")
    if len(inputs) == 0:
        raise UsageError(f"{runs[0].run_dir} has no held-out examples; mistakes need a test set")
    labels = np.asarray(runs[0].samples["test_labels"]).astype(np.int64)
    preds = [_predictions(run, s, inputs) for run, s in zip(runs, steps)]
    per_class, overall = mistakes_table(labels, preds[0], preds[1], runs[0].num_classes)
    arrays = {"classes": np.arange(runs[0].num_classes, dtype=np.int64)}
    for key in overall:
        dtype = np.float64 if key in ("accuracy_a", "accuracy_b", "r1", "r2") else np.int64
        arrays[key] = np.array([row[key] for row in per_class], dtype=dtype)
        arrays[f"overall/{key}"] = np.array(overall[key], dtype=dtype)
    arrays["predictions_a"], arrays["predictions_b"] = preds[0].astype(np.int64), preds[1].astype(np.int64)
    table = [{"class": str(c), **row} for c, row in enumerate(per_class)] + [{"class": "all", **overall}]
    record = {"runs": [str(r.run_dir) for r in runs], "steps": steps,
              "definitions": "g1: only A right; g2: only B right; common: both wrong; r1 = g2/(g2+common); "
                             "r2 = g1/(g1+common) (Neyshabur et al. B.2)"}
    return Result("mistakes", record, arrays, table)
