"""Loss landscape along straight lines in weight space (Neyshabur, Sedghi & Zhang 2020, "What is
being transferred in transfer learning?", App. B.4-B.9): performance and loss barriers between two
solutions, and module criticality (Chatterji, Neyshabur & Sedghi 2020).

Definitions
-----------
- Interpolation (Neyshabur et al. Sec. 3.3 and App. B.4-B.8): theta(a) = (1 - a) theta_1 + a theta_2,
  computed as theta_1 + a (theta_2 - theta_1) in float64 and cast back to the variable's dtype; at
  a = 0 and a = 1 the stored weights are used as they are, so the endpoints are exactly the two
  checkpoints. App. B.6 extends the grid from [0, 1] to [-1, 2] "to estimate the boundary of the
  basin"; the default grid is 31 points on [-1, 2] (0 and 1 always included). Every variable of the
  model is interpolated, normalisation statistics included; for a model with BatchNormalization
  (wrn28) the moving mean and variance are then recomputed at every point by one pass over the
  first run's training examples in training mode, each batch weighted equally (the cumulative
  mean of the batch statistics; Keras uses the biased batch variance). Models without
  BatchNormalization (simple_cnn, vgg16, mlp, resnet18 with GroupNorm) have no statistics to redo.
- Evaluation: accuracy and mean cross-entropy (the loss of training, A.3) on the training set and
  the held-out set of the FIRST run, with that run's own labels (`upstream_labels` for a
  pre-training run, `downstream_labels` for a transfer or scratch run; `test_labels`).
- Barrier height (App. B.4-B.8 plot the barriers but give no formula; we use the definition of
  Frankle et al. 2020, "Linear mode connectivity and the lottery ticket hypothesis", Sec. 2):
  height = max over the grid points a in [0, 1] of  m(theta(a)) - ((1 - a) m(theta_1) + a m(theta_2)),
  for m = loss (loss barrier, Fig. 13, 15, 17) and m = error = 1 - accuracy (performance barrier,
  Fig. 12, 14, 16). It is >= 0 (the endpoints contribute 0); 0 means no barrier on the grid.
- Module criticality (App. B.9, Fig. 30; definition of Chatterji et al. 2020, Def. of mu_{i,eps}):
  module i (one transferable layer, or the head) is rewound to theta_i(a) = (1 - a) theta_i^0 +
  a theta_i^F with every other module at theta^F, and Gaussian noise u ~ N(0, sigma^2 I) is added to
  each of its trainable weights (`--samples` draws per point, seeded). The training error and loss
  are averaged over the draws on a grid of (a, sigma) (sigma is the standard deviation; sigma = 0 is
  evaluated once, without noise).
    mu_i = min over grid points with sigma > 0 that are feasible of  a^2 ||theta_i^F - theta_i^0||_F^2 / sigma^2,
  where a point is feasible when its mean training error is at most the final checkpoint's
  training error + `tolerance` (Chatterji et al. bound the expected loss by eps; we take eps
  relative to the trained model, on the error scale of Fig. 30). mu_i = inf when no grid point with
  sigma > 0 is feasible; large mu_i = critical module. `min_alpha` is the smallest a whose
  sigma = 0 point is feasible (how far the module can be rewound without noise; 1 always is).
  Moving statistics of BatchNorm layers are not rewound (they are not trainable weights).
"""
from __future__ import annotations

import numpy as np

from rltx import store
from rltx.errors import UsageError
from rltx.loop import assign_weights
from rltx.runs import Run, check_same_model, examples, open_run, select_steps

EVAL_BATCH = 512


# --- evaluation ----------------------------------------------------------------------------------

def run_labels(run: Run, which: str, limit: int = 0) -> np.ndarray:
    """The run's own labels of its training set ('train') or held-out set ('test')."""
    if which == "train":
        labels = run.samples["upstream_labels" if run.kind == "pretrain" else "downstream_labels"]
    else:
        labels = run.samples["test_labels"]
    labels = np.asarray(labels, dtype=np.int64)
    return labels[:limit] if limit else labels


class Evaluator:
    """Mean cross-entropy and accuracy of a model on fixed examples, summed in float64 (as A.3)."""

    def __init__(self, model, x: np.ndarray, y: np.ndarray, batch_size: int = EVAL_BATCH):
        import tensorflow as tf
        self.model, self.x, self.y, self.batch_size = model, x, y, batch_size

        @tf.function
        def batch(images, labels):
            logits = tf.cast(model(images, training=False), tf.float32)
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
            hits = tf.cast(tf.equal(tf.argmax(logits, -1), labels), tf.float32)
            return tf.reduce_sum(tf.cast(losses, tf.float64)), tf.reduce_sum(tf.cast(hits, tf.float64))
        self._batch = batch

    def __call__(self) -> tuple[float, float]:
        loss = hits = 0.0
        for start in range(0, len(self.y), self.batch_size):
            l, h = self._batch(self.x[start:start + self.batch_size], self.y[start:start + self.batch_size])
            loss, hits = loss + float(l), hits + float(h)
        return loss / len(self.y), hits / len(self.y)


def batchnorm_layers(model) -> list:
    import keras
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def recompute_batchnorm(model, x: np.ndarray, batch_size: int = EVAL_BATCH) -> bool:
    """Reset the moving statistics of every BatchNormalization layer to the mean over batches of `x`
    of the batch statistics (one pass in training mode; momentum (k-1)/k at batch k). False if the
    model has none."""
    layers = batchnorm_layers(model)
    if not layers:
        return False
    momenta = [layer.momentum for layer in layers]
    try:
        for k, start in enumerate(range(0, len(x), batch_size), start=1):
            for layer in layers:
                layer.momentum = (k - 1) / k
            model(x[start:start + batch_size], training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return True


def interpolate(first: np.ndarray, second: np.ndarray, alpha: float) -> np.ndarray:
    """(1 - alpha) first + alpha second, exact at alpha = 0 and 1 (see the module docstring)."""
    if alpha == 0:
        return first
    if alpha == 1:
        return second
    a, b = first.astype(np.float64), second.astype(np.float64)
    return (a + alpha * (b - a)).astype(first.dtype)


def _check_same_shapes(a: dict, b: dict, what: str) -> None:
    if set(a) != set(b) or any(a[k].shape != b[k].shape for k in a):
        raise UsageError(f"{what} have different variables or shapes; interpolate runs of one architecture and "
                         "number of classes")


def _input_shape(x: np.ndarray) -> tuple[int, ...]:
    return tuple(x.shape[1:])


def _alpha_grid(low: float, high: float, points: int, include=(0.0, 1.0)) -> np.ndarray:
    if points < 2 or not low < high:
        raise UsageError(f"the alpha grid needs at least 2 points and min < max, got {points} points on "
                         f"[{low}, {high}]; e.g. --points 31 --alpha-min -1 --alpha-max 2")
    return np.unique(np.concatenate([np.round(np.linspace(low, high, points), 12), np.asarray(include, float)]))


def barrier_height(alphas: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """Frankle et al. 2020 barrier of a metric along [0, 1] (see the module docstring):
    (height, alpha where it is reached)."""
    alphas, values = np.asarray(alphas, float), np.asarray(values, float)
    start, end = values[alphas == 0][0], values[alphas == 1][0]
    inside = (alphas >= 0) & (alphas <= 1)
    excess = values[inside] - ((1 - alphas[inside]) * start + alphas[inside] * end)
    best = int(np.argmax(excess))
    return float(excess[best]), float(alphas[inside][best])


# --- barrier ---------------------------------------------------------------------------------------

def analyze_barrier(run_a, run_b=None, *, step_a=None, step_b=None, points=31, alpha_min=-1.0, alpha_max=2.0,
                    num_examples=0):
    """Accuracy and loss of theta(a) = (1 - a) theta_1 + a theta_2 on the first run's training and
    held-out sets, and the barrier heights (App. B.4-B.8; module docstring). With one run, theta_1 is
    its step-0 checkpoint (or `step_a`) and theta_2 its last (or `step_b`)."""
    from rltx.analysis.results import Result
    first = open_run(run_a)
    if run_b is None:
        second = first
        if step_a is None and 0 not in first.steps:
            raise UsageError(f"{first.run_dir} has no step-0 checkpoint; give --step-a")
        s_a = select_steps(first, 0 if step_a is None else step_a, False)[0]
        s_b = select_steps(first, step_b, False)[0]
    else:
        second = open_run(run_b)
        check_same_model([first, second], "the two ends of an interpolation")
        s_a = select_steps(first, step_a, False)[0]
        s_b = select_steps(second, step_b, False)[0]
    theta_1, theta_2 = store.read_checkpoint(first.run_dir, s_a), store.read_checkpoint(second.run_dir, s_b)
    _check_same_shapes(theta_1, theta_2, f"{first.run_dir} step {s_a} and {second.run_dir} step {s_b}")
    alphas = _alpha_grid(alpha_min, alpha_max, points)

    from rltx.tasks import build_recipe_model
    sets = {which: (examples(first, which, num_examples), run_labels(first, which, num_examples))
            for which in ("train", "test")}
    model = build_recipe_model(first.recipe, _input_shape(sets["train"][0]), first.num_classes, with_init_file=False)
    evaluators = {which: Evaluator(model, x, y) for which, (x, y) in sets.items()}
    has_bn = bool(batchnorm_layers(model))
    curves = {f"{w}_{m}": np.zeros(len(alphas)) for w in ("train", "test") for m in ("loss", "accuracy")}
    for i, alpha in enumerate(alphas):
        for variable in model.weights:
            variable.assign(interpolate(theta_1[variable.path], theta_2[variable.path], float(alpha)))
        if has_bn:
            recompute_batchnorm(model, sets["train"][0])
        for which, evaluate in evaluators.items():
            curves[f"{which}_loss"][i], curves[f"{which}_accuracy"][i] = evaluate()

    arrays = {"alphas": alphas, **curves}
    table = []
    for which in ("train", "test"):
        for metric, values in (("loss", curves[f"{which}_loss"]), ("error", 1 - curves[f"{which}_accuracy"])):
            height, where = barrier_height(alphas, values)
            arrays[f"barrier/{which}_{metric}"] = np.float64(height)
            arrays[f"barrier_alpha/{which}_{metric}"] = np.float64(where)
            table.append({"metric": f"{which} {metric}", "a=0": float(values[alphas == 0][0]),
                          "a=1": float(values[alphas == 1][0]),
                          "max on [0,1]": float(values[(alphas >= 0) & (alphas <= 1)].max()),
                          "barrier height": height, "at a": where})
    arrays["runs"] = store.string_array([first.run_dir, second.run_dir])
    arrays["steps"] = np.array([s_a, s_b], dtype=np.int64)
    inputs = {"runs": [str(first.run_dir), str(second.run_dir)], "steps": [s_a, s_b],
              "single_run": run_b is None,
              "options": {"points": points, "alpha_min": alpha_min, "alpha_max": alpha_max,
                          "num_examples": num_examples},
              "evaluated_on": f"train and test sets of {first.run_dir} with its own labels",
              "batchnorm_recomputed": has_bn,
              "barrier": "max over a in [0,1] of m(theta(a)) - ((1-a) m(theta_1) + a m(theta_2)), m = loss or "
                         "error (Frankle et al. 2020; Neyshabur et al. App. B.4-B.8)"}
    return Result("barrier", inputs, arrays, table)


# --- criticality -----------------------------------------------------------------------------------

def analyze_criticality(run_path, *, step=None, alphas=(0.0, 0.25, 0.5, 0.75, 1.0), sigmas=(0.0, 0.01, 0.05, 0.1),
                        samples=3, tolerance=0.01, num_examples=0, seed=0):
    """Module criticality (App. B.9; Chatterji et al. 2020; module docstring) of every transferable
    layer and the head of a run, on its training set."""
    from rltx.analysis.results import Result
    from rltx.models import HEAD, transferable_layers
    from rltx.tasks import build_recipe_model
    run = open_run(run_path)
    if 0 not in run.steps:
        raise UsageError(f"{run.run_dir} has no step-0 checkpoint (its initialisation); rerun it with rltx")
    final_step = select_steps(run, step, False)[0]
    alphas = np.unique(np.asarray(alphas, dtype=np.float64))
    sigmas = np.unique(np.asarray(sigmas, dtype=np.float64))
    if np.any(alphas < 0) or np.any(alphas > 1) or np.any(sigmas < 0) or samples < 1:
        raise UsageError("alphas must lie in [0, 1], sigmas be >= 0 and samples >= 1; e.g. --alphas 0,0.5,1 "
                         "--sigmas 0,0.05 --samples 3")
    initial, final = store.read_checkpoint(run.run_dir, 0), store.read_checkpoint(run.run_dir, final_step)
    x, y = examples(run, "train", num_examples), run_labels(run, "train", num_examples)
    model = build_recipe_model(run.recipe, _input_shape(x), run.num_classes, with_init_file=False)
    evaluate = Evaluator(model, x, y)
    modules = transferable_layers(model) + [HEAD]

    assign_weights(model.weights, final)
    final_loss, final_accuracy = evaluate()
    threshold = (1 - final_accuracy) + tolerance
    loss, accuracy, distance = _rewound_grid(model, modules, initial, final, evaluate,
                                             alphas=alphas, sigmas=sigmas, samples=samples, seed=seed)
    mean_loss, mean_accuracy = loss.mean(axis=3), accuracy.mean(axis=3)
    feasible = (1 - mean_accuracy) <= threshold + 1e-12
    criticality, min_alpha = _criticality(feasible, distance, alphas, sigmas)

    arrays = {"modules": store.string_array(modules), "alphas": alphas, "sigmas": sigmas,
              "train_loss": mean_loss, "train_accuracy": mean_accuracy,
              "train_loss_samples": loss, "train_accuracy_samples": accuracy,
              "feasible": feasible, "distance": distance, "criticality": criticality, "min_alpha": min_alpha,
              "final_train_loss": np.float64(final_loss), "final_train_accuracy": np.float64(final_accuracy),
              "threshold_error": np.float64(threshold)}
    table = [{"module": name, "||theta_F - theta_0||": float(distance[m]), "criticality": float(criticality[m]),
              "min alpha (sigma=0)": float(min_alpha[m]),
              "error at a=0, sigma=0": float(1 - mean_accuracy[m, 0, 0])}
             for m, name in enumerate(modules)]
    inputs = {"runs": [str(run.run_dir)], "steps": [0, final_step],
              "options": {"alphas": alphas.tolist(), "sigmas": sigmas.tolist(), "samples": samples,
                          "tolerance": tolerance, "num_examples": num_examples, "seed": seed},
              "criticality": "min over feasible (a, sigma > 0) of a^2 ||theta_F - theta_0||^2 / sigma^2; feasible: "
                             "mean train error <= final train error + tolerance (Chatterji et al. 2020; "
                             "Neyshabur et al. App. B.9)"}
    return Result("criticality", inputs, arrays, table)


def _rewound_grid(model, modules, initial, final, evaluate, *, alphas, sigmas, samples, seed):
    """Loss and accuracy [modules, alphas, sigmas, samples] with one module at (1 - a) theta_0 + a theta_F
    plus N(0, sigma^2) noise and the others final, and each module's ||theta_F - theta_0||."""
    shape = (len(modules), len(alphas), len(sigmas), samples)
    loss, accuracy = np.zeros(shape), np.zeros(shape)
    distance = np.zeros(len(modules))
    for m, name in enumerate(modules):
        variables = model.get_layer(name).trainable_weights
        distance[m] = np.sqrt(sum(np.sum((final[v.path].astype(np.float64) - initial[v.path]) ** 2)
                                  for v in variables))
        for i, alpha in enumerate(alphas):
            rewound = {v.path: interpolate(initial[v.path], final[v.path], float(alpha)) for v in variables}
            for j, sigma in enumerate(sigmas):
                for k in range(samples if sigma > 0 else 1):
                    generator = np.random.default_rng([seed, m, i, j, k])
                    for v in variables:
                        w = rewound[v.path]
                        if sigma > 0:
                            w = (w.astype(np.float64) + generator.normal(0.0, sigma, w.shape)).astype(w.dtype)
                        v.assign(w)
                    loss[m, i, j, k], accuracy[m, i, j, k] = evaluate()
                if sigma == 0:
                    loss[m, i, j, 1:], accuracy[m, i, j, 1:] = loss[m, i, j, 0], accuracy[m, i, j, 0]
        assign_weights(model.weights, final)
    return loss, accuracy, distance


def _criticality(feasible, distance, alphas, sigmas) -> tuple[np.ndarray, np.ndarray]:
    """Per module: min over feasible (a, sigma > 0) of a^2 ||theta_F - theta_0||^2 / sigma^2 (inf if
    none), and the smallest feasible a without noise (NaN if none)."""
    criticality, min_alpha = np.full(len(distance), np.inf), np.full(len(distance), np.nan)
    noisy = sigmas > 0
    for m in range(len(distance)):
        if noisy.any():
            ratio = (alphas[:, None] ** 2) * distance[m] ** 2 / np.where(noisy, sigmas, 1.0)[None, :] ** 2
            ok = feasible[m][:, noisy]
            if ok.any():
                criticality[m] = float(ratio[:, noisy][ok].min())
        if (sigmas == 0).any():
            ok_alphas = alphas[feasible[m][:, sigmas == 0][:, 0]]
            if ok_alphas.size:
                min_alpha[m] = float(ok_alphas.min())
    return criticality, min_alpha
