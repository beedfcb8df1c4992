"""Transfer (Sec. 1.1, 2.4; A.4, A.9, A.10): the fine-tuning model's initial weights are built from
one or more pre-trained runs, then the downstream task is trained with the shared loop.

- `weights` mode: the chosen layers are copied from the source checkpoint, each multiplied by the
  positive constant that gives it the norm it had at the source's initialisation (A.4); the head
  and every other layer are freshly initialised, independently of the source's initialisation
  (hyperrule.fresh_layers_seed).
- `covariance` mode (A.9, Sec. 2.4): the first layer's filters are drawn from N(0, Sigma_w) (A.9:
  "mean 0 and the covariance obtained from training"), Sigma_w the covariance of the first-layer
  filters of the sources (rltx.filter_covariance), pooled over all of them; its bias is zero and
  every other layer is fresh. `covariance_draw: centred` instead takes one source's filters less their mean
  filter, `rotation` those filters mixed by a random rotation: Sigma_w exactly, without a sample's noise, and
  `gaussian_with_mean` A.9's draw plus the sources' mean filter (diagnostics of Sec. 2.4's recovery).
- `scratch`: the same downstream task from a fresh initialisation (no source weights).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from rltx import hyperrule, loop, store
from rltx.config import Recipe
from rltx.data import input_range_warnings
from rltx.data.gaussian import random_orthogonal
from rltx.errors import UsageError
from rltx.filter_covariance import filter_covariance, mean_filter, sample_filters
from rltx.health import is_flagged
from rltx.loop import RunSummary, assign_weights, weights_of
from rltx.models import ARCHITECTURES, conv_layers, init_scale_mismatch, transferable_layers
from rltx.progress import Reporter
from rltx.runs import Checkpoint, check_distinct, check_distinct_checkpoints, open_checkpoint
from rltx.tasks import build_recipe_model, downstream_samples, load_examples, open_recipe_source


def check_compatible(recipe: Recipe, sources: list[Checkpoint]) -> None:
    """A transfer needs its sources' architecture (layer shapes) and training split (A.1)."""
    architecture_keys = ("architecture",) + ARCHITECTURES[recipe.architecture].options
    for source in sources:
        for keys, what in ((architecture_keys, "architecture"), (tuple(recipe.data.identity()), "data")):
            differ = [f"{k}={getattr(source.recipe, k)!r}" for k in keys if getattr(source.recipe, k) != getattr(recipe, k)]
            if differ:
                fix = f"use a recipe with the source's {what} keys"
                if what == "data" and "seed" in keys and source.recipe.seed != recipe.seed:  # the seed drew the data
                    fix += " (the same seed, or the data's own gaussian_seed / natural_seed in both)"
                raise UsageError(f"source {source.run_dir} has another {what} ({', '.join(differ[:3])}); {fix}")


def select_layers(model: keras.Model, spec) -> list[str]:
    """The layers to take from the source: all, conv (A.9 'pretrained conv'), the first k, or names."""
    layers = transferable_layers(model)
    if spec == "all":
        return layers
    if spec == "conv":
        return conv_layers(model)
    if isinstance(spec, int):
        if spec > len(layers):
            raise UsageError(f"transfer_layers {spec} exceeds the {len(layers)} transferable layers of this model")
        return layers[:spec]
    unknown = [name for name in spec if name not in layers]
    if unknown:
        raise UsageError(f"transfer_layers names unknown layer(s) {', '.join(unknown)}; valid: {', '.join(layers)}")
    return [name for name in layers if name in spec]


def rescaling_norm(recipe: Recipe) -> str:
    """A.4: l2 for Simple CNN and VGG16, none for ResNets, unless the recipe says otherwise."""
    return ARCHITECTURES[recipe.architecture].default_rescaling if recipe.rescaling == "default" else recipe.rescaling


def _variables_of(weights: dict[str, np.ndarray], layer: str) -> list[str]:
    return sorted(name for name in weights if name.startswith(f"{layer}/"))


def transferred_weights(fresh: dict[str, np.ndarray], source: Checkpoint, layers: list[str], norm: str,
                        zero_biases: bool) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """A.4: source layers times their rescaling factors, everything else as freshly initialised."""
    weights, factors = dict(fresh), {}
    for layer in layers:
        names = _variables_of(source.weights, layer)
        factors[layer] = hyperrule.rescale_factor([source.initial[n] for n in names],
                                                  [source.weights[n] for n in names], norm)
        for name in names:
            weights[name] = (source.weights[name] * factors[layer]).astype(fresh[name].dtype)
            if zero_biases and name.endswith("/bias"):
                weights[name] = np.zeros_like(fresh[name])
    return weights, factors


ONE_SOURCE_DRAWS = ("centred", "rotation")  # the draws that keep one source's own filters


def covariance_filters(kernels: list[np.ndarray], shape: tuple[int, ...], draw: str,
                       generator: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """First-layer filters whose second moment is the sources' Sigma_w, and Sigma_w (`covariance_draw`).

    `gaussian` (A.9): drawn from N(0, Sigma_w), "mean 0 and the covariance obtained from training".
    `centred`: W_c, the one source's filters less their mean filter, each kept whole: "pretrained conv, no
    bias" without the mean filter (A.9's covariance has mean 0).
    `rotation`: W_c Q, those filters mixed by a Haar-random orthogonal f x f matrix Q. Their second moment
    (W_c Q)(W_c Q)^T / f is Sigma_w exactly, where a Gaussian sample's is Sigma_w plus a Wishart error, and no
    source filter survives whole. So transfers from the source's filters, `centred`, `rotation` and `gaussian`
    split Sec. 2.4's recovery gap into what the mean filter, the individual filters beyond their second moment
    and a finite sample's noise each carry.
    `gaussian_with_mean`: the `gaussian` draw of the same generator plus mu_w, the sources' mean filter, pooled:
    N(mu_w, Sigma_w), the filters' first two moments, where A.9's draw keeps the second alone."""
    sigma_w = filter_covariance(kernels)
    if draw in ("gaussian", "gaussian_with_mean"):
        sampled = sample_filters(sigma_w, shape, generator)
        if draw == "gaussian_with_mean":
            sampled = sampled + mean_filter(kernels).reshape(shape[:-1] + (1,))
        return sampled, sigma_w
    check_single_source(len(kernels), "the covariance", draw)
    filters = kernels[0].reshape(-1, kernels[0].shape[-1]).astype(np.float64)
    if filters.shape != (int(np.prod(shape[:-1])), shape[-1]):
        raise UsageError(f"covariance_draw {draw} keeps the source's {filters.shape[1]} filters of dimension "
                         f"{filters.shape[0]}, but this layer has the shape {shape}; use a source of the same model")
    centred = filters - filters.mean(axis=1, keepdims=True)
    if draw == "centred":
        return centred.reshape(shape), sigma_w
    return (centred @ random_orthogonal(shape[-1], generator)).reshape(shape), sigma_w


def rescaled_to_initial(filters: np.ndarray, initial: dict[str, np.ndarray], layer: str,
                        norm: str) -> tuple[np.ndarray, float]:
    """`filters` times the factor that gives them the `norm` the source's `layer` had at initialisation
    (`initial`: its step-0 weights; A.4, Sec. 2.4), and that factor."""
    factor = hyperrule.rescale_factor([initial[name] for name in _variables_of(initial, layer)], [filters], norm)
    return filters * factor, factor


def check_single_source(count: int, option: str, draw: str) -> None:
    """`covariance_draw: centred` or `rotation` (ONE_SOURCE_DRAWS) takes the filters of one source run; the other
    draws pool any number."""
    if draw in ONE_SOURCE_DRAWS and count != 1:
        raise UsageError(f"covariance_draw {draw} takes the filters of one source run, but {option} gives {count}; "
                         f"give one, or use covariance_draw gaussian (or gaussian_with_mean) to pool them")


def covariance_weights(fresh: dict[str, np.ndarray], sources: list[Checkpoint], first_layer: str, recipe: Recipe,
                       ) -> tuple[dict[str, np.ndarray], dict[str, float], np.ndarray]:
    """A.9 'covariance': first-layer filters with the sources' Sigma_w (`covariance_filters`), bias zero,
    rescaled like a transferred layer; all other layers fresh."""
    kernel, bias = f"{first_layer}/kernel", f"{first_layer}/bias"
    drawn, sigma_w = covariance_filters([source.weights[kernel] for source in sources], fresh[kernel].shape,
                                        recipe.covariance_draw, hyperrule.rng(recipe.seed, hyperrule.STREAM_COVARIANCE))
    sampled, factor = rescaled_to_initial(drawn, sources[0].initial, first_layer, rescaling_norm(recipe))
    weights = dict(fresh)
    weights[kernel] = sampled.astype(fresh[kernel].dtype)
    if bias in weights:
        weights[bias] = np.zeros_like(fresh[bias])
    return weights, {first_layer: factor}, sigma_w


def initial_weights(model: keras.Model, recipe: Recipe, sources: list[Checkpoint]) -> tuple[dict, dict]:
    """The step-0 weights of a transfer run, and how they were built (stored in run.h5 /transfer)."""
    fresh, norm = weights_of(model.weights), rescaling_norm(recipe)
    details = {"mode": recipe.transfer_mode, "rescaling": norm}
    if recipe.transfer_mode == "covariance":
        first = transferable_layers(model)[0]
        weights, factors, sigma_w = covariance_weights(fresh, sources, first, recipe)
        details.update(layers=store.listed([first]), sigma_w=sigma_w, covariance_draw=recipe.covariance_draw,
                       sigma_w_filters=sum(s.weights[f"{first}/kernel"].shape[-1] for s in sources))
        if recipe.covariance_draw == "gaussian_with_mean":  # N(mu_w, Sigma_w): the record holds both parameters
            details["mu_w"] = mean_filter([source.weights[f"{first}/kernel"] for source in sources])
    else:
        if len(sources) > 1:
            raise UsageError("several --from runs are pooled only with transfer_mode: covariance; give one source")
        layers = select_layers(model, recipe.transfer_layers)
        weights, factors = transferred_weights(fresh, sources[0], layers, norm, recipe.zero_transferred_biases)
        details["layers"] = store.listed(layers)
    details.update({f"factor/{layer}": factor for layer, factor in factors.items()})
    return weights, details


# --- the command ------------------------------------------------------------------------

def transfer(recipe: Recipe, run_dir: Path, sources: list[Path], *, from_step: int | None = None,
             with_baseline: bool = False, resume: bool = True, reporter: Reporter | None = None) -> list[RunSummary]:
    """Fine-tune on the downstream task from `sources` (none: from scratch), into `run_dir`; with
    `with_baseline`, also the paired from-scratch run into `<run_dir>-scratch` (same data, seed and
    initialisation of the layers that are not transferred)."""
    run_dir, reporter = Path(run_dir), reporter or Reporter()
    check_distinct(sources, "--from")
    if sources and recipe.transfer_mode != "covariance" and recipe.transfer_layers in (0, []):
        # a transfer that takes nothing is a from-scratch run under another name (refused here, not in the
        # recipe's validation, so that runs stored with it still open)
        raise UsageError(f"transfer_layers {recipe.transfer_layers} transfers no layer; use 1 or more, all or "
                         "conv (a run from scratch is `rltx transfer --from scratch`)")
    if sources and recipe.covariance_draw != "gaussian":
        if recipe.transfer_mode != "covariance":
            raise UsageError(f"covariance_draw {recipe.covariance_draw} draws the first layer of transfer_mode "
                             f"covariance, but this transfer copies weights (transfer_mode {recipe.transfer_mode}); "
                             "drop covariance_draw or set transfer_mode covariance")
        check_single_source(len(sources), "--from", recipe.covariance_draw)
    source_runs = [open_checkpoint(path, from_step) for path in sources]
    check_distinct_checkpoints([(s.run_dir, s.digest) for s in source_runs], "--from")
    check_compatible(recipe, source_runs)
    for source in source_runs:
        mismatch = init_scale_mismatch(source.rltx_version, source.recipe.init_scale, recipe.init_scale)
        if mismatch:
            reporter.message(f"warning: source {source.run_dir} {mismatch}")
        if is_flagged(source.health):
            reporter.message(f"warning: source {source.run_dir} is {source.health}; its weights are used as they are")
    data = open_recipe_source(recipe)
    if recipe.init_file and source_runs:
        _check_init_beside_sources(recipe, data.input_shape, with_baseline, reporter)
    for warning in input_range_warnings(data):
        reporter.message(f"warning: {warning}")
    if source_runs:
        upstream = np.unique(np.concatenate([s.upstream_indices for s in source_runs]))
    else:  # the upstream set a pre-training run of this recipe and seed would use (A.1 step 1)
        upstream = hyperrule.sample_upstream(data.num_train, recipe.num_examples_upstream, recipe.seed)
    samples = downstream_samples(recipe, data, upstream)
    for source in source_runs:
        overlap = np.intersect1d(samples["downstream_indices"], source.upstream_indices)
        if overlap.size:
            raise UsageError(f"{overlap.size} downstream examples (e.g. {overlap[:3].tolist()}) are upstream "
                             f"examples of {source.run_dir}; downstream examples must be fresh (A.1)")
    examples = load_examples(data, samples["downstream_indices"], samples["downstream_labels"], samples)
    links = {**store.source_links([str(s.run_dir) for s in source_runs], [s.digest for s in source_runs],
                                  [s.step for s in source_runs]), **store.init_links(recipe.init_file)}
    runs = [("transfer", run_dir)] if source_runs else [("scratch", run_dir)]
    if source_runs and with_baseline:
        runs.append(("scratch", Path(f"{run_dir}-scratch")))
    checked = {directory: _recorded_links(directory, links) for _, directory in runs}
    for kind, directory in runs:  # every output checked before any of them trains (--with-baseline)
        loop.check_directory(directory, {**recipe.to_dict(), **checked[directory], "kind": kind}, resume)
    summaries = []
    for kind, directory in runs:
        paired = [str(d.resolve()) for k, d in runs if d != directory]
        identity = {**links, "kind": kind}
        fine_tuning = FineTuning(recipe, kind, source_runs, samples, examples, identity, paired)
        summaries.append(loop.run(directory, {**recipe.to_dict(), **checked[directory], "kind": kind},
                                  fine_tuning.prepare, resume=resume, reporter=reporter))
    return summaries


def _check_init_beside_sources(recipe: Recipe, input_shape: tuple[int, ...], with_baseline: bool,
                               reporter: Reporter) -> None:
    """An init file beside --from gives only the layers the sources do not give (and the from-scratch pair
    all of its layers); one that gives nothing is refused rather than ignored."""
    model = build_recipe_model(recipe, input_shape, recipe.num_classes_downstream)  # reads and checks the file
    layers = transferable_layers(model)
    taken = layers[:1] if recipe.transfer_mode == "covariance" else select_layers(model, recipe.transfer_layers)
    kept = [name for name in layers if name not in taken]
    if not kept and not with_baseline:
        raise UsageError(f"init_file {recipe.init_file} would do nothing: the transfer replaces every layer it holds "
                         f"({', '.join(taken)}); drop --init, transfer fewer layers, or add --with-baseline (its "
                         "scratch run starts from the file)")
    reporter.message(f"note: {recipe.init_file} initialises {', '.join(kept) or 'no layer'} of the transfer"
                     + (", and every layer of the from-scratch pair" if with_baseline else ""))


def _recorded_links(run_dir: Path, links: dict) -> dict:
    """The source links a rerun into `run_dir` is checked against (`loop.run`'s identity). A resumed transfer
    must start from the very checkpoints it recorded (their sha256): at the recorded paths with other bytes
    it is refused; at other paths with the recorded bytes and steps (runs moved or copied together, e.g. a
    reproduction's folder from a cluster to a laptop) they are the recorded sources. A record without
    digests (older rltx) cannot show that."""
    if not os.path.exists(run_dir / store.RUN_FILE):  # False also for a path the file system refuses
        return links
    identity = store.read_run_record(run_dir).identity
    if identity.get("from_step") != links["from_step"]:
        return links
    if identity.get("sources") == links["sources"] and \
            identity.get("source_digests", links["source_digests"]) != links["source_digests"]:
        raise UsageError(f"a source checkpoint of {run_dir} changed since that transfer began (its sha256 differs "
                         "from the recorded one); restore the original source run or choose another --out")
    if identity.get("source_digests") == links["source_digests"]:
        return {**links, "sources": identity.get("sources")}
    return links


@dataclass(frozen=True)
class FineTuning:
    """One downstream run of `transfer`: a transfer from `sources` (kind transfer) or its paired
    from-scratch baseline (kind scratch), on the same samples."""
    recipe: Recipe
    kind: str
    sources: list[Checkpoint]
    samples: dict
    examples: loop.Examples
    identity: dict  # the sources and the kind: with the recipe, what defines the run
    paired: list[str]

    def prepare(self, existing: store.RunRecord | None) -> loop.Training:
        """What `loop.run` trains (the samples were drawn before, for both runs of a pair)."""
        recipe, fresh_seed = self.recipe, hyperrule.fresh_layers_seed(self.recipe.seed)
        # A run begun before fresh layers had a seed of their own resumes from its stored weights: its record
        # must not claim a seed its initial weights were never drawn with.
        began_before = existing is not None and "fresh_layers_seed" not in existing.transfer
        record = store.RunRecord(recipe.to_yaml(), {}, self.samples, kind=self.kind, identity=self.identity,
                                 transfer={"paired_with": store.listed(self.paired),
                                           **({} if began_before else {"fresh_layers_seed": fresh_seed})})
        input_shape = tuple(self.examples.train_x.shape[1:])

        def make_model(policy):
            model = build_recipe_model(recipe, input_shape, recipe.num_classes_downstream, dtype_policy=policy,
                                       init_seed=fresh_seed)
            if self.kind == "transfer":
                weights, details = initial_weights(model, recipe, self.sources)
                assign_weights(model.weights, weights)
                record.transfer.update(details)
            return model

        return loop.Training(loop.TrainPlan.from_recipe(recipe, downstream=True), record, self.examples, make_model)
