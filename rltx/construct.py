"""Initialisations computed from the data alone (Sec. 2.5, Appendix E.3).

For each selected convolutional layer, in order: the covariance of the layer's input patches (the
outputs of the layers already constructed) over the training images, its eigenvectors e_i, a
choice of them and weights tau_i; the filters are tau_i e_i (`direct`, E.3's Table 1), or samples
of N(0, sum_i tau_i^2 e_i e_i^T) (`sample`, E.3's Table 4), or a random rotation of the direct
filters scaled so that their second moment is exactly that matrix (`rotate`: sampling without its
sampling noise, to tell the mixing of the e_i from the noise). E.3 fixes no sign of an e_i: each
has its largest entry positive, or, for direct filters, a fair coin's sign (`construct_signs`).
Alternatively the first layer is
sampled from Sigma_w learned by trained runs (Sec. 2.4). Biases of constructed layers are zero;
all other layers (dense layers, the head) keep the standard initialisation (A.3).
"""
from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np

from rltx import hyperrule, store
from rltx.analysis.alignment import fix_signs
from rltx.analysis.patches import input_moments
from rltx.config import Recipe
from rltx.data import to_model_input
from rltx.data.gaussian import random_orthogonal
from rltx.distribute import configure_gpus
from rltx.errors import UsageError, shorten
from rltx.health import is_flagged
from rltx.loop import weights_of
from rltx.models import conv_layers, init_scale_mismatch
from rltx.progress import Reporter
from rltx.runs import (check_distinct, check_distinct_checkpoints, check_final_checkpoint, check_same_distribution,
                       check_same_model, kernel_filters, open_run)
from rltx.store import LayerRecord
from rltx.tasks import build_recipe_model, open_recipe_source
from rltx.transfer import check_single_source, covariance_filters, rescaled_to_initial, rescaling_norm

_RANGE = re.compile(r"^\s*e?(\d+)\s*\.\.\s*e?(\d+)\s*$")


def select_eigenvectors(spec: str, dimension: int, count: int) -> np.ndarray:
    """0-based indices (eigenvalues in decreasing order) of the chosen eigenvectors: `top` (the
    `count` largest, Sec. 2.5), `bottom` (the smallest, Table 5), or a 1-based range `e4..e19` (Table 6)."""
    if spec == "top":
        chosen = np.arange(count)
    elif spec == "bottom":
        chosen = np.arange(dimension - count, dimension)
    elif _RANGE.match(str(spec)):
        first, last = (int(g) for g in _RANGE.match(spec).groups())
        chosen = np.arange(first - 1, min(last, dimension + 1))  # a range past the dimension is refused below
    else:
        raise UsageError(f"construct_eigenvectors {shorten(spec)} is not top, bottom or a range like e4..e19")
    if len(chosen) == 0 or chosen.min() < 0 or chosen.max() >= dimension:
        raise UsageError(f"eigenvectors {shorten(spec)} do not fit a layer input of dimension {dimension}; choose "
                         f"at most {dimension}, a range within e1..e{dimension}")
    return chosen


def tau_values(curve, chosen: np.ndarray, dimension: int) -> np.ndarray:
    """Weights of the chosen eigenvectors. A named curve or a list gives tau for the chosen ones in
    order; a transfer-function result (.h5 from `rltx analyze transfer-function`) gives tau per data
    eigenvector, measured on a layer input of the same dimension (its last checkpoint)."""
    if isinstance(curve, str) and curve.endswith(".h5"):
        from rltx.analysis.results import read_result
        measured = read_result(Path(curve)).arrays.get("tau")
        if measured is None or measured.ndim != 2 or measured.shape[0] < 1 or measured.shape[-1] != dimension:
            raise UsageError(f"{curve} is not a transfer-function result for inputs of dimension {dimension}; "
                             "analyze a layer of the same patch size")
        return np.asarray(measured[-1], dtype=np.float64)[chosen]
    values = hyperrule.TAU_CURVES.get(curve, curve) if isinstance(curve, str) else curve
    if isinstance(values, str) or len(values) < len(chosen):
        raise UsageError(f"construct_tau {shorten(curve)} gives {0 if isinstance(values, str) else len(values)} values "
                         f"for {len(chosen)} eigenvectors; use f1, f2, f3, a long enough list, or a .h5 result")
    return np.asarray(values[:len(chosen)], dtype=np.float64)


def filters_from_eigenvectors(vectors: np.ndarray, tau: np.ndarray, shape: tuple[int, ...], method: str,
                              generator: np.random.Generator) -> np.ndarray:
    """`direct`: column j is tau_j e_j (needs as many eigenvectors as filters); `sample`: filters
    drawn from N(0, E diag(tau^2) E^T); `rotate`: sqrt(f) E diag(tau) Q with Q a Haar-random orthogonal
    f x f matrix (f filters, as many eigenvectors), so that K K^T / f, the filters' second moment, is
    E diag(tau^2) E^T exactly, where a sample's equals it on average."""
    if method in ("direct", "rotate") and vectors.shape[1] != shape[-1]:
        raise UsageError(f"{method} construction uses one eigenvector per filter: {vectors.shape[1]} chosen for "
                         f"{shape[-1]} filters; choose {shape[-1]} or use construct_method: sample")
    if method == "direct":
        return (vectors * tau).reshape(shape)
    if method == "rotate":
        return (np.sqrt(shape[-1]) * (vectors * tau) @ random_orthogonal(shape[-1], generator)).reshape(shape)
    normal = generator.standard_normal((vectors.shape[1], shape[-1]))
    return ((vectors * tau) @ normal).reshape(shape)


def oriented(vectors: np.ndarray, signs: str, generator: np.random.Generator) -> np.ndarray:
    """The chosen eigenvectors (columns, each with its largest entry positive) as `construct_signs`
    says: kept (`largest_positive`) or each multiplied by a fair coin's sign (`random`; the recipe
    allows it for direct filters only, as a sample's or rotation's law is the same under any signs)."""
    if signs == "random":
        return vectors * generator.choice([-1.0, 1.0], size=vectors.shape[1])
    return vectors


def layer_plan(recipe: Recipe, layer: str, shape: tuple[int, ...], spec: str) -> tuple[np.ndarray, np.ndarray]:
    """The eigenvectors chosen for conv `layer` of kernel `shape` (0-based, decreasing eigenvalue; its input patches
    have prod(shape[:-1]) dimensions) and their weights tau, checked. It needs no patch, so `check_construction`
    runs it before any is read."""
    dimension, filters = int(np.prod(shape[:-1])), shape[-1]
    chosen = select_eigenvectors(spec, dimension, filters)
    tau = tau_values(recipe.construct_tau, chosen, dimension)
    if not (np.all(np.isfinite(tau)) and np.all(tau >= 0) and np.any(tau > 0)):
        raise UsageError(f"construct_tau gives {layer} the factors {np.round(tau, 4).tolist()[:8]}: they must be finite, "
                         "non-negative and not all zero; choose another construct_tau")
    if recipe.construct_method in ("direct", "rotate") and len(chosen) != filters:
        raise UsageError(f"{recipe.construct_method} construction uses one eigenvector per filter: {len(chosen)} chosen "
                         f"for {filters} filters; choose {filters} or use construct_method: sample")
    return chosen, tau


def construct_layer(model: keras.Model, layer: str, inputs: np.ndarray, recipe: Recipe, spec: str,
                    generator: np.random.Generator) -> LayerRecord:
    """Build `layer`'s filters from the covariance of its input patches (the current weights of the
    earlier layers define those inputs) and assign them, with a zero bias."""
    moments = input_moments(model, layer, inputs)
    covariance = moments.covariance(recipe.construct_centered)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    # decreasing; each e_i with its largest entry positive: tau_i e_i and -tau_i e_i pass different halves
    # of the input through the ReLU, and E.3 fixes no sign, so rltx fixes one that no LAPACK build changes
    eigenvalues, eigenvectors = eigenvalues[::-1], fix_signs(eigenvectors[:, ::-1].T).T
    target = model.get_layer(layer)
    shape = tuple(target.kernel.shape)
    chosen, tau = layer_plan(recipe, layer, shape, spec)
    vectors = oriented(eigenvectors[:, chosen], recipe.construct_signs, generator)
    kernel = filters_from_eigenvectors(vectors, tau, shape, recipe.construct_method, generator)
    factor = 1.0
    if recipe.construct_rescale == "he":  # match the norm of the layer's standard (He) initialisation
        factor = float(np.linalg.norm(np.asarray(target.kernel.numpy(), np.float64)) / np.linalg.norm(kernel))
    with np.errstate(over="ignore", invalid="ignore"):
        filters = (kernel * factor).astype(np.float32)
    if not np.all(np.isfinite(filters)):
        raise UsageError(f"construct_tau makes {layer}'s filters overflow float32; choose smaller factors")
    target.kernel.assign(filters)
    if target.bias is not None:
        target.bias.assign(np.zeros(target.bias.shape, np.float32))
    return LayerRecord(recipe.construct_method,
                       {"eigenvalues": eigenvalues, "chosen": chosen, "tau": tau, "mean": moments.mean},
                       {"rescale_factor": factor, "patches": moments.count})


def learned_first_layer(model: keras.Model, layer: str, runs: list[Path], generator, norm: str, draw: str,
                        init_scale: float, reporter: Reporter) -> LayerRecord:
    """Sec. 2.4: the first layer sampled from N(0, Sigma_w), Sigma_w learned by trained runs (or, with `draw`
    centred or rotation, the one run's centred filters, as they are or rotated, or with gaussian_with_mean from
    N(mu_w, Sigma_w): `transfer.covariance_filters`), then rescaled to the `norm` the first run's layer had at
    initialisation, as `transfer_mode: covariance` does (Sec. 2.4: "we always re-scale the weights after
    pre-training"; A.9). A run whose init_scale reading differs from this rltx's (models.init_scale_mismatch) is
    named through `reporter`: the sampled layer gets its norm, the fresh layers this recipe's `init_scale`."""
    check_distinct(runs, "--covariance-from")
    check_single_source(len(runs), "--covariance-from", draw)
    opened = [open_run(path) for path in runs]
    check_same_model(opened, "--covariance-from runs")
    check_same_distribution(opened, "--covariance-from runs")  # a Sigma_w pooled over two covariances is neither's
    for run in opened:
        if run.kind != "pretrain":  # as a covariance transfer's sources (A.9): Sigma_w learned on random labels
            raise UsageError(f"{run.run_dir} is a {run.kind} run; --covariance-from takes pre-training runs")
        status = store.live_status(run.run_dir, run.record.status)
        if status != "completed":
            raise UsageError(f"{run.run_dir} is {status}, not completed: its last checkpoint is "
                             "not the trained Sigma_w; finish it or give completed runs to --covariance-from")
        if not run.steps:
            raise UsageError(f"{run.run_dir} has no checkpoint; give trained runs to --covariance-from")
        check_final_checkpoint(run, str(run.run_dir), None)  # Sigma_w is the trained filters', never an earlier step's
        mismatch = init_scale_mismatch(run.rltx_version, run.recipe.init_scale, init_scale)
        if mismatch:
            reporter.message(f"warning: run {run.run_dir} {mismatch}")
        if is_flagged(run.record.health):
            reporter.message(f"warning: run {run.run_dir} is {run.record.health}; its filters are used as they are")
    if len(opened) > 1:
        check_distinct_checkpoints([(run.run_dir, store.checkpoint_sha256(run.run_dir, run.steps[-1]))
                                    for run in opened], "--covariance-from")
    filters = [kernel_filters(run, run.steps[-1], layer) for run in opened]
    target = model.get_layer(layer)
    # The sampled layer takes the norm of the source's initial layer, which matches only a layer of its shape.
    wanted = (int(np.prod(target.kernel.shape[:-1])), int(target.kernel.shape[-1]))
    if filters[0].shape != wanted:
        raise UsageError(f"the runs' {layer} has {filters[0].shape[1]} filters of dimension {filters[0].shape[0]}; "
                         f"this recipe's has {wanted[1]} of dimension {wanted[0]}; use runs whose {layer} has the "
                         "recipe's shape")
    drawn, sigma_w = covariance_filters(filters, tuple(target.kernel.shape), draw, generator)
    sampled, factor = rescaled_to_initial(drawn, store.read_checkpoint(opened[0].run_dir, 0), layer, norm)
    target.kernel.assign(sampled.astype(np.float32))
    if target.bias is not None:
        target.bias.assign(np.zeros(target.bias.shape, np.float32))
    method = "learned_covariance" if draw == "gaussian" else f"learned_covariance_{draw}"
    return LayerRecord(method, {"sigma_w": sigma_w},
                       {"source_filters": sum(f.shape[1] for f in filters), "rescale_factor": factor})


def check_construction(recipe: Recipe, layer_sets: list[list[int]], what: str) -> None:
    """Every choice `construct_init` makes for each set of conv layers (which layers, their eigenvectors, tau
    and method), checked on the model's shapes before any patch is read or any run trains; what only the data
    decides (a factor overflowing float32) is checked when the layers are built."""
    source = open_recipe_source(recipe)
    model = build_recipe_model(recipe, source.input_shape, recipe.num_classes_upstream, with_init_file=False)
    convs = conv_layers(model)
    for layer_numbers in layer_sets:
        check_layer_choice(recipe, list(layer_numbers), convs, what)
        for number in layer_numbers:
            layer = convs[number - 1]
            layer_plan(recipe, layer, tuple(model.get_layer(layer).kernel.shape), _eigenvector_choice(recipe, number))


def _eigenvector_choice(recipe: Recipe, number: int) -> str:
    """`construct_eigenvectors` for conv layer `number` (1-based): a list gives one choice per layer in turn."""
    specs = recipe.construct_eigenvectors
    return specs[number - 1] if isinstance(specs, list) else specs


def check_layer_choice(recipe: Recipe, layer_numbers: list[int], convs: list[str], what: str) -> None:
    """`layer_numbers` (1-based, increasing) name conv layers of the model, each with an eigenvector choice."""
    if layer_numbers and not convs:
        raise UsageError(f"architecture {recipe.architecture} has no conv layers to construct (Sec. 2.5 builds conv "
                         "filters); use simple_cnn, vgg16, resnet18 or wrn28")
    if sorted(set(layer_numbers)) != list(layer_numbers) or not set(layer_numbers) <= set(range(1, len(convs) + 1)):
        raise UsageError(f"{what} {','.join(map(str, layer_numbers))} must be increasing numbers among "
                         f"1..{len(convs)} (the model's conv layers: {', '.join(convs)})")
    specs = recipe.construct_eigenvectors
    if layer_numbers and isinstance(specs, list) and len(specs) < max(layer_numbers):
        raise UsageError(f"construct_eigenvectors lists {len(specs)} choices but layer {max(layer_numbers)} is "
                         "constructed; give one per conv layer or a single one")


def construct_init(recipe: Recipe, layer_numbers: list[int], covariance_runs: tuple[Path, ...] = (),
                   reporter: Reporter | None = None, init_seed: int | None = None):
    """The initial weights with conv layers `layer_numbers` (1-based, as in Table 1) constructed,
    how each was built, and the training examples used (the recipe's upstream sample, A.1);
    warnings about `covariance_runs` go to `reporter`. The other layers are the standard initialisation
    drawn with `init_seed` (default: the recipe's seed)."""
    configure_gpus()  # before the data's first TensorFlow op initialises the devices
    source = open_recipe_source(recipe)
    if recipe.num_examples_upstream > source.num_train:
        raise UsageError(f"num_examples_upstream {recipe.num_examples_upstream} exceeds the {source.num_train} examples "
                         f"of the training split; lower it (at most {source.num_train})")
    indices = hyperrule.sample_upstream(source.num_train, recipe.num_examples_upstream, recipe.seed)
    if recipe.construct_num_examples:
        indices = indices[:recipe.construct_num_examples]
    inputs = np.asarray(to_model_input(source.train(indices).x))
    model = build_recipe_model(recipe, tuple(inputs.shape[1:]), recipe.num_classes_upstream, with_init_file=False,
                               init_seed=init_seed)
    convs = conv_layers(model)
    check_layer_choice(recipe, layer_numbers, convs, "--layers")
    if covariance_runs and 1 not in layer_numbers:
        raise UsageError("--covariance-from builds conv layer 1 from the runs' filters; add 1 to --layers or drop "
                         "--covariance-from")
    generator = hyperrule.rng(recipe.seed, hyperrule.STREAM_COVARIANCE)
    records = {}
    for number in layer_numbers:
        name, spec = convs[number - 1], _eigenvector_choice(recipe, number)
        if number == 1 and covariance_runs:
            records[name] = learned_first_layer(model, name, list(covariance_runs), generator, rescaling_norm(recipe),
                                                recipe.covariance_draw, recipe.init_scale, reporter or Reporter())
        else:
            records[name] = construct_layer(model, name, inputs, recipe, spec, generator)
    return weights_of(model.weights), records, indices
