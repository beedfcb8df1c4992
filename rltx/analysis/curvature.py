"""Curvature and local geometry of the training loss (Liu et al. 2020, "Towards Understanding the
Transferability of Deep Representations"): top Hessian eigenvalues (Fig. 3a), filter-normalised loss
landscapes (Fig. 3b-c, 5; Li et al. 2018), and the loss along the gradient, per-layer gradient scale
and the projection of weights on the gradient's singular vectors (Fig. 6, 7).

Definitions
-----------
- Objective: the mean softmax cross-entropy of the run's model (logits, `training=False`) on a FIXED
  subset of its training examples: the first `num_examples` of them in stored order, with the run's
  own labels (`upstream_labels` for pre-training, `downstream_labels` for transfer/scratch); all of them
  when the run has fewer (the count used is stored per run, `{r}/num_examples`). Liu et
  al. App. A: "The gradient is computed based on 256 fixed samples". Parameters theta are the model's
  trainable variables, flattened in `model.trainable_variables` order. Losses, gradients and
  Hessian-vector products are computed by TensorFlow in the variables' dtype over minibatches and
  summed in float64, each batch weighted by its share of the examples.
- Hessian (Liu et al. Fig. 3a, App. A "Computing the eigenvalue of Hessian ... Hessian-vector product
  and power methods"): H v = d/dtheta (grad L(theta) . v), by nested GradientTapes. The top-k
  eigenvalues (largest algebraic) come from Lanczos with full reorthogonalisation in float64 on the
  host (`lanczos`), started from a seeded Gaussian vector; `residual` is the Ritz residual bound
  |beta_m s_{m,i}| of each (small: converged).
- Landscape (Liu et al. Fig. 3b-c, 5, App. A "Visualization of loss landscapes"; Li et al. 2018,
  Sec. 4 "filter normalization"): L(theta + a d1 + b d2) on a grid of a, b in [-span, span]. d1, d2
  are Gaussian (seeded); d2 is first made orthogonal to d1 (Gram-Schmidt: Liu's "two random Gaussian
  orthogonal vectors"), then each is filter-normalised: every filter of d (a kernel's slice along its
  last, output axis: one conv filter or one dense neuron) is scaled to the norm of the same filter of
  theta, d_ij <- d_ij / ||d_ij|| * ||theta_ij||. One-dimensional variables (biases, normalisation
  gamma/beta) are zeroed in d (Li et al.: "we do not perturb bias and batch-norm parameters"), or with
  `include_biases` scaled as one filter each. `layer` restricts d to that layer's variables (Liu:
  "When we compute the loss landscape of one layer, the parameters of other layers are fixed"). The
  centre is the checkpoint (Fig. 3) or the run's step-0 weights (`center="init"`, Fig. 5).
- Loss along the gradient (Liu et al. Sec. 4, Fig. 6, App. A "Variation of loss function in the
  direction of gradient", after Santurkar et al. 2018 Sec. 3.2): with g = grad L(theta),
  `loss_variation`[eta] = L(theta - eta u) - L(theta), u = g / ||g|| (`direction="normalized"`:
  Liu App. B.2, a fixed step size along the gradient) or u = g (`direction="raw"`: Liu App. A,
  "the step size is set to the size of gradient"). `variation_range` = max - min over the grid
  (eta = 0 included) of L(theta - eta u), Santurkar's "variation (range) of the loss".
- Gradient scale per layer (Liu et al. Fig. 7d): ||g_l||, the L2 norm of the gradient of the layer's
  trainable variables (kernel and bias, and a normalisation layer's gamma/beta for layers that have them).
- Projection of weights on the gradient's singular vectors (Liu et al. Sec. 4, Fig. 7c: "we decompose
  the gradient into singular vectors and measure the projections of weight matrices in these principal
  directions"): for each layer with a kernel, G (gradient) and W (weights) reshaped to [fan_in, fan_out],
  G = sum_i s_i u_i v_i^T (singular values descending); `projection`_i = |u_i^T W v_i|, the component of
  W along the rank-one direction u_i v_i^T (the paper plots its magnitude against the index of the
  singular value; small values at the top indices mean the gradient's principal directions are shrunk
  in W).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from rltx import store
from rltx.errors import UsageError

DEFAULT_ETAS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


# --- the objective: loss, gradient, Hessian-vector product on a fixed subset -----------------

class Objective:
    """Mean softmax cross-entropy of `model` on (x, y), its gradient and Hessian-vector products,
    as flat float64 vectors over `model.trainable_variables`."""

    def __init__(self, model, x: np.ndarray, y: np.ndarray, batch_size: int = 256):
        import tensorflow as tf
        if len(x) == 0:
            raise UsageError("no examples to evaluate the loss on; use --num-examples > 0")
        self.model, self.tf = model, tf
        self.variables = list(model.trainable_variables)
        self.shapes = [tuple(v.shape) for v in self.variables]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.names = [v.path for v in self.variables]
        self.dim = int(sum(self.sizes))
        self.n = len(x)
        self.batches = [(x[i:i + batch_size], np.asarray(y[i:i + batch_size], np.int32))
                        for i in range(0, len(x), batch_size)]
        variables = self.variables

        def batch_loss(xb, yb):
            logits = model(xb, training=False)
            if logits.dtype in (tf.float16, tf.bfloat16):
                logits = tf.cast(logits, tf.float32)
            return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(yb, logits))

        @tf.function(reduce_retracing=True)
        def loss_fn(xb, yb):
            return batch_loss(xb, yb)

        @tf.function(reduce_retracing=True)
        def grad_fn(xb, yb):
            with tf.GradientTape() as tape:
                loss = batch_loss(xb, yb)
            return loss, tape.gradient(loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)

        @tf.function(reduce_retracing=True)
        def hvp_fn(xb, yb, vectors):
            with tf.GradientTape() as outer:
                with tf.GradientTape() as inner:
                    loss = batch_loss(xb, yb)
                grads = inner.gradient(loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
                dot = tf.add_n([tf.reduce_sum(g * v) for g, v in zip(grads, vectors)])
            return outer.gradient(dot, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)

        self._loss, self._grad, self._hvp = loss_fn, grad_fn, hvp_fn

    # flat <-> per-variable
    def split(self, flat: np.ndarray) -> list[np.ndarray]:
        parts = np.split(np.asarray(flat, np.float64), np.cumsum(self.sizes)[:-1])
        return [p.reshape(s) for p, s in zip(parts, self.shapes)]

    def flatten(self, arrays) -> np.ndarray:
        return np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])

    def get(self) -> list[np.ndarray]:
        return [np.asarray(v.numpy()) for v in self.variables]

    def assign(self, arrays) -> None:
        for variable, value in zip(self.variables, arrays):
            variable.assign(np.asarray(value).astype(variable.dtype))

    def _weight(self, xb) -> float:
        return len(xb) / self.n

    def loss(self) -> float:
        return float(sum(self._weight(xb) * float(self._loss(xb, yb)) for xb, yb in self.batches))

    def gradient(self) -> tuple[float, np.ndarray]:
        loss, total = 0.0, np.zeros(self.dim)
        for xb, yb in self.batches:
            value, grads = self._grad(xb, yb)
            loss += self._weight(xb) * float(value)
            total += self._weight(xb) * self.flatten([g.numpy() for g in grads])
        return loss, total

    def hvp(self, v: np.ndarray) -> np.ndarray:
        vectors = [self.tf.constant(p, dtype=var.dtype) for p, var in zip(self.split(v), self.variables)]
        total = np.zeros(self.dim)
        for xb, yb in self.batches:
            total += self._weight(xb) * self.flatten([h.numpy() for h in self._hvp(xb, yb, vectors)])
        return total

    def loss_at(self, base: list[np.ndarray], offset: list[np.ndarray]) -> float:
        """L(base + offset), the sum formed in float64 and cast to the variables' dtype."""
        self.assign([b.astype(np.float64) + o for b, o in zip(base, offset)])
        return self.loss()


# --- Lanczos ---------------------------------------------------------------------------------

@dataclass
class LanczosResult:
    eigenvalues: np.ndarray   # top k, descending
    residuals: np.ndarray     # Ritz residual bounds |beta_m s_mi|
    iterations: int


def lanczos(matvec: Callable[[np.ndarray], np.ndarray], dim: int, k: int, iterations: int,
            seed: int = 0) -> LanczosResult:
    """Top-k (largest algebraic) eigenvalues of a symmetric operator by Lanczos with full
    reorthogonalisation, in float64. `iterations` (capped at `dim`) must be >= k."""
    from scipy.linalg import eigh_tridiagonal
    m = min(int(iterations), int(dim))
    if k < 1 or m < k:
        raise UsageError(f"Lanczos needs at least top-k={k} iterations (got {iterations} for dimension {dim}); "
                         "raise --iterations")
    q = np.random.default_rng(seed).standard_normal(dim)
    q /= np.linalg.norm(q)
    basis = np.zeros((m, dim))
    alphas, betas = [], []
    beta = 0.0
    for j in range(m):
        basis[j] = q
        w = np.asarray(matvec(q), np.float64)
        alpha = float(q @ w)
        alphas.append(alpha)
        for _ in range(2):  # full reorthogonalisation, twice for stability
            w -= basis[:j + 1].T @ (basis[:j + 1] @ w)
        beta = float(np.linalg.norm(w))
        if j == m - 1 or beta <= 1e-12 * max(1.0, max(abs(a) for a in alphas)):
            break  # Krylov space exhausted (invariant subspace) or iterations done
        betas.append(beta)
        q = w / beta
    size = len(alphas)
    if size < k:
        raise UsageError(f"the Krylov space has dimension {size} < top-k={k}; lower --top-k")
    values, vectors = eigh_tridiagonal(np.array(alphas), np.array(betas[:size - 1]))
    order = np.argsort(values)[::-1][:k]
    last = beta if size == m else 0.0
    return LanczosResult(values[order], np.abs(last * vectors[-1, order]), size)


# --- filter-normalised directions ------------------------------------------------------------

def filter_normalized_direction(theta: list[np.ndarray], rng: np.random.Generator, mask: list[bool], *,
                                include_biases: bool = False, orthogonal_to: list[np.ndarray] | None = None
                                ) -> list[np.ndarray]:
    """A Gaussian direction, zero outside `mask`, orthogonalised against `orthogonal_to` (before
    normalisation), each filter (last-axis slice) scaled to the norm of theta's filter (Li et al. 2018
    Sec. 4); 1-D variables zeroed unless `include_biases` (then scaled as one filter)."""
    raw = [rng.standard_normal(t.shape) if keep else np.zeros(t.shape) for t, keep in zip(theta, mask)]
    for i, t in enumerate(theta):
        if t.ndim <= 1 and not include_biases:
            raw[i][...] = 0.0
    if orthogonal_to is not None:
        # orthogonal on the perturbed coordinates only (where raw is nonzero)
        support = [np.asarray(o, np.float64) * (r != 0) for r, o in zip(raw, orthogonal_to)]
        dot = sum(float(np.sum(r * o)) for r, o in zip(raw, support))
        sq = sum(float(np.sum(o * o)) for o in support)
        if sq > 0:
            raw = [r - dot / sq * o for r, o in zip(raw, support)]
    out = []
    for r, t in zip(raw, theta):
        t64 = np.asarray(t, np.float64)
        if t.ndim <= 1:
            norm = np.linalg.norm(r)
            out.append(r * (np.linalg.norm(t64) / norm) if norm > 0 else r)
            continue
        axes = tuple(range(t.ndim - 1))
        d_norm = np.sqrt(np.sum(r * r, axis=axes, keepdims=True))
        t_norm = np.sqrt(np.sum(t64 * t64, axis=axes, keepdims=True))
        out.append(np.where(d_norm > 0, r / np.where(d_norm > 0, d_norm, 1.0) * t_norm, 0.0))
    return out


# --- run plumbing ----------------------------------------------------------------------------

def training_labels(run) -> np.ndarray:
    return run.samples["upstream_labels" if run.kind == "pretrain" else "downstream_labels"]


def run_objective(run, step: int, num_examples: int, batch_size: int = 256) -> Objective:
    """The objective of a run at a checkpoint: its first `num_examples` training examples and labels."""
    from rltx.runs import examples, model_at
    if num_examples < 0:
        raise UsageError(f"--num-examples must be >= 0, got {num_examples}")
    x = examples(run, "train", num_examples)
    y = np.asarray(training_labels(run))[:len(x)]
    return Objective(model_at(run, step, tuple(x.shape[1:])), x, y, batch_size)


def _open(runs):
    from rltx.runs import open_run
    if not runs:
        raise UsageError("give at least one RUN directory")
    return [open_run(path) for path in runs]


# --- hessian ---------------------------------------------------------------------------------

def analyze_hessian(runs, *, step=None, all_steps=False, top_k=5, iterations=30, num_examples=512, seed=0,
                    batch_size=256):
    """Top-k Hessian eigenvalues of each run's loss at its checkpoints (Liu et al. Fig. 3a)."""
    from rltx.runs import select_steps
    from rltx.analysis.results import Result
    inputs = {"runs": [], "steps": [], "options": {"top_k": top_k, "iterations": iterations,
                                                  "num_examples": num_examples, "seed": seed}}
    arrays, table = {}, []
    for r, run in enumerate(_open(runs)):
        steps = select_steps(run, step, all_steps)
        values, residuals, losses = [], [], []
        for s in steps:
            objective = run_objective(run, s, num_examples, batch_size)
            found = lanczos(objective.hvp, objective.dim, top_k, iterations, seed)
            values.append(found.eigenvalues)
            residuals.append(found.residuals)
            losses.append(objective.loss())
            table.append({"run": run.run_dir.name, "step": s, "loss": losses[-1],
                          **{f"lambda_{i + 1}": float(v) for i, v in enumerate(found.eigenvalues)}})
        inputs["runs"].append(str(run.run_dir))
        inputs["steps"].append(steps)
        arrays.update({f"{r}/steps": np.array(steps), f"{r}/eigenvalues": np.array(values),
                       f"{r}/residuals": np.array(residuals), f"{r}/loss": np.array(losses),
                       f"{r}/num_examples": np.array(objective.n)})
    arrays["runs"] = store.string_array(inputs["runs"])
    return Result("hessian", inputs, arrays, table)


# --- landscape -------------------------------------------------------------------------------

def _layer_mask(objective: Objective, layer: str | None) -> list[bool]:
    if layer is None:
        return [True] * len(objective.names)
    mask = [name.split("/")[0] == layer for name in objective.names]
    if not any(mask):
        layers = sorted({name.split("/")[0] for name in objective.names})
        raise UsageError(f"the model has no trainable layer {layer!r}; layers: {', '.join(layers)}")
    return mask


def _grid(span: float, points: int) -> np.ndarray:
    if points < 2 or span <= 0:
        raise UsageError(f"the grid needs --points >= 2 and --span > 0 (got {points}, {span})")
    grid = np.linspace(-span, span, points)
    grid[np.abs(grid) < 1e-12 * span] = 0.0
    return grid


def analyze_landscape(runs, *, step=None, layer=None, two_d=False, span=1.0, points=21, seed=0,
                      num_examples=512, center="checkpoint", include_biases=False, batch_size=256):
    """Filter-normalised 1-D or 2-D loss slices around a checkpoint or the initialisation
    (Liu et al. Fig. 3b-c, 5; Li et al. 2018)."""
    from rltx.runs import select_steps
    from rltx.analysis.results import Result
    if center not in ("checkpoint", "init"):
        raise UsageError(f"--center must be checkpoint or init, got {center!r}")
    if center == "init" and step is not None:
        raise UsageError(f"--step {step} picks the checkpoint to centre on, but --center init centres on step 0; "
                         "drop one of them")
    grid = _grid(span, points)
    inputs = {"runs": [], "steps": [], "layer": layer,
              "options": {"two_d": two_d, "span": span, "points": points, "seed": seed,
                          "num_examples": num_examples, "center": center, "include_biases": include_biases}}
    arrays, table = {"grid": grid}, []
    for r, run in enumerate(_open(runs)):
        if center == "init":
            if 0 not in run.steps:
                raise UsageError(f"{run.run_dir} has no step-0 checkpoint to centre on; use --center checkpoint")
            steps = [0]
        else:
            steps = select_steps(run, step, False)
        objective = run_objective(run, steps[0], num_examples, batch_size)
        theta = objective.get()
        mask = _layer_mask(objective, layer)
        rng = np.random.default_rng(seed)
        d1 = filter_normalized_direction(theta, rng, mask, include_biases=include_biases)
        d2 = filter_normalized_direction(theta, rng, mask, include_biases=include_biases, orthogonal_to=d1) \
            if two_d else None
        if two_d:
            losses = np.array([[objective.loss_at(theta, [a * u + b * v for u, v in zip(d1, d2)]) for b in grid]
                               for a in grid])
        else:
            losses = np.array([objective.loss_at(theta, [a * u for u in d1]) for a in grid])
        objective.assign(theta)
        centre = float(losses[(points // 2,) * losses.ndim]) if points % 2 else objective.loss()
        inputs["runs"].append(str(run.run_dir))
        inputs["steps"].append(steps)
        arrays.update({f"{r}/loss": losses, f"{r}/center_loss": np.array(objective.loss()),
                       f"{r}/num_examples": np.array(objective.n),
                       f"{r}/direction_norms": np.array([objective.flatten(d1) @ objective.flatten(d1)] +
                                                        ([objective.flatten(d2) @ objective.flatten(d2)]
                                                         if two_d else [])) ** 0.5})
        table.append({"run": run.run_dir.name, "step": steps[0], "center_loss": centre,
                      "min_loss": float(losses.min()), "max_loss": float(losses.max())})
    arrays["runs"] = store.string_array(inputs["runs"])
    return Result("landscape", inputs, arrays, table)


# --- gradient --------------------------------------------------------------------------------

def kernel_layers(objective: Objective) -> list[str]:
    """Layers with a kernel, in the model's variable order."""
    seen = []
    for name, shape in zip(objective.names, objective.shapes):
        layer = name.rsplit("/", 1)[0]
        if name.endswith("/kernel") and len(shape) >= 2 and layer not in seen:
            seen.append(layer)
    return seen


def gradient_projection(gradient: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Singular values s_i of the gradient (reshaped [fan_in, fan_out]) and |u_i^T W v_i| (Fig. 7c)."""
    g = np.asarray(gradient, np.float64).reshape(-1, gradient.shape[-1])
    w = np.asarray(weights, np.float64).reshape(-1, weights.shape[-1])
    u, s, vt = np.linalg.svd(g, full_matrices=False)
    return s, np.abs(np.einsum("ki,kl,il->i", u, w, vt))


def loss_along_gradient(objective: Objective, etas, direction: str = "normalized"):
    """(L(theta), g, [L(theta - eta u) - L(theta) for eta]) with u = g/||g|| or g (Fig. 6)."""
    theta = objective.get()
    objective.assign(theta)
    loss, g = objective.gradient()
    norm = float(np.linalg.norm(g))
    u = g / norm if direction == "normalized" and norm > 0 else g
    parts = objective.split(u)
    variation = np.array([0.0 if eta == 0 else objective.loss_at(theta, [-eta * p for p in parts]) - loss
                          for eta in etas])
    objective.assign(theta)
    return loss, g, variation


def analyze_gradient(runs, *, step=None, all_steps=False, num_examples=512, etas=DEFAULT_ETAS,
                     direction="normalized", batch_size=256):
    """Loss along the gradient, per-layer gradient scale and weight projections on the gradient's
    singular vectors, per checkpoint (Liu et al. Fig. 6, 7)."""
    from rltx.runs import select_steps
    from rltx.analysis.results import Result
    if direction not in ("normalized", "raw"):
        raise UsageError(f"--direction must be normalized or raw, got {direction!r}")
    etas = np.asarray(sorted(set(float(e) for e in etas) | {0.0}), np.float64)
    if np.any(etas < 0):
        raise UsageError("step sizes (--etas) must be >= 0")
    inputs = {"runs": [], "steps": [], "layers": [],
              "options": {"num_examples": num_examples, "etas": etas.tolist(), "direction": direction}}
    arrays, table = {"etas": etas}, []
    for r, run in enumerate(_open(runs)):
        steps = select_steps(run, step, all_steps)
        rows = {"loss": [], "gradient_norm": [], "loss_variation": [], "variation_range": [],
                "layer_gradient_norm": []}
        spectra: dict[str, list] = {}
        layers: list[str] = []
        for s in steps:
            objective = run_objective(run, s, num_examples, batch_size)
            layers = kernel_layers(objective)
            loss, g, variation = loss_along_gradient(objective, etas, direction)
            parts = dict(zip(objective.names, objective.split(g)))
            weights = dict(zip(objective.names, objective.get()))
            rows["loss"].append(loss)
            rows["gradient_norm"].append(float(np.linalg.norm(g)))
            rows["loss_variation"].append(variation)
            rows["variation_range"].append(float(np.ptp(variation)))
            rows["layer_gradient_norm"].append([
                float(np.sqrt(sum(np.sum(p * p) for n, p in parts.items() if n.rsplit("/", 1)[0] == layer)))
                for layer in layers])
            for layer in layers:
                sv, projection = gradient_projection(parts[f"{layer}/kernel"], weights[f"{layer}/kernel"])
                spectra.setdefault(layer, []).append((sv, projection))
            table.append({"run": run.run_dir.name, "step": s, "loss": loss, "gradient_norm": rows["gradient_norm"][-1],
                          "variation_range": rows["variation_range"][-1]})
        inputs["runs"].append(str(run.run_dir))
        inputs["steps"].append(steps)
        inputs["layers"].append(layers)
        arrays.update({f"{r}/steps": np.array(steps), f"{r}/layers": store.string_array(layers),
                       f"{r}/num_examples": np.array(objective.n),
                       **{f"{r}/{k}": np.array(v, np.float64) for k, v in rows.items()}})
        for layer, pairs in spectra.items():
            arrays[f"{r}/singular_values/{layer}"] = np.array([p[0] for p in pairs])
            arrays[f"{r}/projection/{layer}"] = np.array([p[1] for p in pairs])
    arrays["runs"] = store.string_array(inputs["runs"])
    return Result("gradient", inputs, arrays, table)


__all__ = ["Objective", "lanczos", "filter_normalized_direction", "analyze_hessian", "analyze_landscape",
           "analyze_gradient"]
