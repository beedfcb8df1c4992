"""The alignment analyses of Sec. 2 (Prop. 1, Def. 1-3) on stored runs.

Sigma_x is the covariance of the inputs a layer sees (its patches, `rltx.analysis.patches`) over the
run's training examples; Sigma_w the covariance of the layer's filters (Eq. (2), A.6; it is Prop. 1's
E[w w^T] when E[w] = 0), pooled over all given runs. Both use the (row, column, channel) order of the
patches. For the first layer Sigma_x does not depend on the weights and is computed once; for deeper
layers it is recomputed at every checkpoint, since the layer's input changes with training.
"""
from __future__ import annotations

import numpy as np

from rltx import store
from rltx.analysis import alignment
from rltx.analysis.patches import input_moments
from rltx.analysis.results import Result
from rltx.errors import UsageError
from rltx.filter_covariance import filter_covariance
from rltx.models import transferable_layers
from rltx.runs import (check_distinct, check_distinct_checkpoints, check_same_distribution, check_same_model, examples,
                       kernel_filters, model_at, open_run, select_steps)


class Setting:
    """The runs, layer, checkpoints and data sample an alignment analysis uses."""

    def __init__(self, paths, layer=None, step=None, all_steps=False, num_examples=0, centered=True):
        check_distinct(paths, "the RUN arguments")  # a run given twice would count twice in the pooled Sigma_w
        self.runs = [open_run(p) for p in paths]
        check_same_model(self.runs, "runs pooled into one Sigma_w")
        check_same_distribution(self.runs, "runs pooled into one Sigma_w")
        self.steps = select_steps(self.runs[0], step, all_steps)
        for run in self.runs[1:]:
            for s in self.steps:
                select_steps(run, s, False)
        if len(self.runs) > 1:  # so would a copy of a run
            check_distinct_checkpoints([(run.run_dir, store.checkpoint_sha256(run.run_dir, self.steps[-1]))
                                        for run in self.runs], "the RUN arguments")
        self.inputs = examples(self.runs[0], "train", num_examples)
        layers = transferable_layers(self._model(self.steps[0]))
        self.layer = layer or layers[0]
        self.first_layer = self.layer == layers[0]
        self.num_examples, self.centered = len(self.inputs), centered
        self.num_filters = sum(kernel_filters(run, self.steps[0], self.layer).shape[-1] for run in self.runs)
        self._sigma_x = {}

    def _model(self, step):
        return model_at(self.runs[0], step, self.inputs.shape[1:])

    def sigma_x(self, step: int) -> np.ndarray:
        key = self.steps[0] if self.first_layer else step
        if key not in self._sigma_x:
            moments = input_moments(self._model(key), self.layer, self.inputs)
            self._sigma_x[key] = moments.covariance(self.centered)
        return self._sigma_x[key]

    def sigma_w(self, step: int) -> np.ndarray:
        return filter_covariance([kernel_filters(run, step, self.layer) for run in self.runs])

    def record(self, **options) -> dict:
        return {"runs": [str(r.run_dir) for r in self.runs], "steps": self.steps, "layer": self.layer,
                "num_filters": self.num_filters, "num_examples": self.num_examples, "centered": self.centered,
                **options}


def _full_rank(sigma_w: np.ndarray, setting: Setting, step: int) -> np.ndarray:
    rank = np.linalg.matrix_rank(sigma_w)
    if rank < len(sigma_w):
        raise UsageError(f"Sigma_w of {setting.layer} at step {step} has rank {rank} < {len(sigma_w)} (n filters "
                         "give a covariance of rank at most n - 1); pool more runs or choose a layer with more filters")
    return sigma_w


def analyze_misalignment(paths, *, layer=None, step=None, all_steps=False, num_examples=0, centered=True,
                         tolerance=1e-6, seed=0) -> Result:
    """Def. 2 / Prop. 2.7 / A.6: M(Sigma_x, Sigma_w) per checkpoint, against the data eigenbasis
    (eigenspaces grouped within `tolerance`) and against a random orthonormal basis (Fig. 2)."""
    setting = Setting(paths, layer, step, all_steps, num_examples, centered)
    sigma_w = np.stack([_full_rank(setting.sigma_w(s), setting, s) for s in setting.steps])
    random_basis = alignment.random_orthonormal_basis(sigma_w.shape[-1], seed)
    data = [alignment.misalignment(setting.sigma_x(s), w, tolerance) for s, w in zip(setting.steps, sigma_w)]
    random = [alignment.misalignment_in_basis(random_basis, w) for w in sigma_w]
    sigma_x = np.stack([setting.sigma_x(s) for s in setting.steps])
    arrays = {"steps": np.array(setting.steps), "misalignment_data": np.array(data),
              "misalignment_random": np.array(random), "sigma_x": sigma_x, "sigma_w": sigma_w,
              "sigma_x_eigenvalues": np.stack([np.linalg.eigvalsh(x)[::-1] for x in sigma_x])}
    table = [{"step": s, "misalignment (data basis)": d, "misalignment (random basis)": r}
             for s, d, r in zip(setting.steps, data, random)]
    return Result("misalignment", setting.record(tolerance=tolerance, seed=seed), arrays, table)


def analyze_transfer_function(paths, *, layer=None, step=None, all_steps=False, num_examples=0, centered=True,
                              tolerance=1e-6) -> Result:
    """Def. 3 / Sec. 2.3 / A.8: sigma_i (sqrt of the eigenvalues of Sigma_x) and
    tau_i = sqrt(v_i^T Sigma_w v_i) per checkpoint; `tau` of a checkpoint is a tau curve for construct-init."""
    setting = Setting(paths, layer, step, all_steps, num_examples, centered)
    curves = [alignment.transfer_function(setting.sigma_x(s), setting.sigma_w(s), tolerance) for s in setting.steps]
    sigma, tau = np.stack([c[0] for c in curves]), np.stack([c[1] for c in curves])
    return Result("transfer-function", setting.record(tolerance=tolerance),
                  {"steps": np.array(setting.steps), "sigma": sigma, "tau": tau},
                  _tau_table(setting.steps, sigma[-1], tau))


def _tau_table(steps: list[int], sigma: np.ndarray, tau: np.ndarray, columns: int = 8) -> list[dict]:
    """Rows i: sigma_i and tau_i of up to `columns` checkpoints, evenly spread and always the last,
    each column named by its step."""
    shown = sorted(set(np.linspace(0, len(steps) - 1, min(len(steps), columns)).round().astype(int).tolist()))
    return [{"i": i + 1, "sigma": float(sigma[i]), **{f"tau step {steps[k]}": float(tau[k, i]) for k in shown}}
            for i in range(len(sigma))]


def analyze_eigenvectors(paths, *, layer=None, step=None, num_examples=0, centered=True, top_k=10,
                         threshold=0.4) -> Result:
    """Fig. 3 / A.7 / D.1: the top eigenvectors of Sigma_w, the data eigenvectors with
    |<v_x, v_w>| > threshold and their weighted combination, as rows reshaped to patches."""
    setting = Setting(paths, layer, step, False, num_examples, centered)
    found = alignment.aligned_eigenvectors(setting.sigma_x(setting.steps[0]), setting.sigma_w(setting.steps[0]),
                                           top_k, threshold)
    kernel_shape = setting._model(setting.steps[0]).get_layer(setting.layer).kernel.shape
    patch_shape = tuple(kernel_shape[:-1])
    matches = np.full(found["inner"].shape, -1)
    for row, indices in enumerate(found["matches"]):
        matches[row, :len(indices)] = indices
    arrays = {name: found[name] for name in ("w_values", "w_vectors", "x_values", "x_vectors", "inner",
                                             "combined", "captured")}
    arrays.update(matches=matches, patch_shape=np.array(patch_shape))
    table = [{"rank": i + 1, "eigenvalue of Sigma_w": float(found["w_values"][i]),
              "matching data eigenvectors": ", ".join(f"v{j + 1} ({found['inner'][i, j]:+.2f})" for j in indices),
              "captured": float(found["captured"][i])} for i, indices in enumerate(found["matches"])]
    return Result("eigenvectors", setting.record(top_k=top_k, threshold=threshold), arrays, table)


def analyze_eigen_stability(paths, *, layer=None, step=None, num_examples=0, centered=True, between="data",
                            relative_gap=0.05, seed=0) -> Result:
    """D.1: eigenvalues and |<e_i, e'_i>| of Sigma_x from two disjoint halves of the data
    (between='data'), or of Sigma_w from two disjoint groups of runs (between='runs': first half of
    the given runs vs the second half); near-equal pairs viewed as 2-D subspaces."""
    setting = Setting(paths, layer, step, False, num_examples, centered)
    at = setting.steps[0]
    if between == "runs":
        if len(setting.runs) < 2:
            raise UsageError("eigen-stability between runs needs at least two runs; give more RUN arguments")
        half = len(setting.runs) // 2
        groups = (setting.runs[:half], setting.runs[half:])
        cov_a, cov_b = (filter_covariance([kernel_filters(r, at, setting.layer) for r in g]) for g in groups)
    else:
        order = np.random.default_rng(seed).permutation(len(setting.inputs))
        halves = np.array_split(order, 2)
        model = setting._model(at)
        cov_a, cov_b = (input_moments(model, setting.layer, setting.inputs[np.sort(h)]).covariance(centered)
                        for h in halves)
    found = alignment.eigen_stability(cov_a, cov_b, relative_gap)
    arrays = {name: np.asarray(value) for name, value in found.items()}
    table = [{"i": i + 1, "eigenvalue A": float(a), "eigenvalue B": float(b), "|<e_i, e'_i>|": float(o)}
             for i, (a, b, o) in enumerate(zip(found["values_a"], found["values_b"], found["overlap"]))]
    return Result("eigen-stability", setting.record(between=between, relative_gap=relative_gap, seed=seed),
                  arrays, table)
