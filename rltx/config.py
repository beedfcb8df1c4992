"""Recipes: YAML → one validated, frozen `Recipe`.

Every key, its type, default, unit and meaning is declared once, here, as a dataclass field;
`rltx pretrain --help` and the README table are generated from these declarations.
Defaults are the paper's (Appendix A of Maennel et al. 2020) where it gives one.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from typing import Any, Optional, Union

import yaml

from rltx import model_fit
from rltx.errors import UsageError, clip, shorten
from rltx.recipe_yaml import parse_yaml

ARCHITECTURE_NAMES = ("simple_cnn", "vgg16", "resnet18", "mlp", "wrn28")
INT64_MAX = 2 ** 63 - 1  # steps, counts and sizes are stored and computed as int64
FLOAT32_MAX = 3.4028234663852886e38  # numpy.finfo(numpy.float32).max: config stays free of numpy
SEED_MAX = 2 ** 32 - 1  # seeds are 32-bit for numpy's and TensorFlow's generators
MAX_POINTS = 10 ** 6  # metric points and kept checkpoints: arrays and files of this many steps
NATURAL_SIZE = 32  # dead_leaves, photos: the side of their images when image_size is 0
# dead_leaves: the label designs of rltx/data/natural.py
NATURAL_LABELS = ("shape_colour", "orientation", "orientation_colour")


# Keys that name a run or say where its data lives, not what it computes (the data is known by its other keys):
# a run rerun with other values of these is the same run (rltx.loop), and runs differing only in them share a
# group (rltx.analysis.curves). So a renamed profile, or a dataset prepared in another folder, reuses the runs.
NOT_RUN_DEFINING = ("description", "data_dir", "manual_dir", "offline")


def run_defining(keys: dict) -> dict:
    """`keys` without NOT_RUN_DEFINING ones."""
    return {name: value for name, value in keys.items() if name not in NOT_RUN_DEFINING}


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """The data of a run (A.1, A.3), a value of its own: the recipe's data keys (`Recipe.data`),
    which `rltx.data.open_source` opens. Every key is given; `DataSpec.of` takes the recipe's defaults
    for those left out, so the defaults live only in the `Recipe` keys."""
    dataset: str
    data_dir: Optional[str]
    manual_dir: Optional[str]
    offline: bool
    data_path: Optional[str]
    image_size: int
    gaussian_spectrum: Union[str, list, None]
    gaussian_patch_size: int
    gaussian_image_size: int
    gaussian_rotate: bool
    gaussian_num_train: int
    gaussian_num_test: int
    gaussian_seed: Optional[int]
    gaussian_num_classes: int
    gaussian_class_separation: float
    natural_num_train: int
    natural_num_test: int
    natural_num_classes: int
    natural_labels: str
    natural_seed: Optional[int]
    seed: int  # the run's seed: the data's where gaussian_seed / natural_seed is null

    @classmethod
    def of(cls, dataset: str, **keys) -> "DataSpec":
        """The data keys given, the others at the `Recipe` keys' defaults (for notebooks and probes)."""
        names = {field.name for field in dataclasses.fields(cls)}
        defaults = {field.name: field.default for field in dataclasses.fields(Recipe) if field.name in names}
        return cls(**{**defaults, "dataset": dataset, **keys})

    def identity(self) -> dict:
        """The keys that decide which data a run sees (a transfer must use its source's data); where
        the data is found (data_dir, manual_dir, offline: NOT_RUN_DEFINING) is not among them, nor the run's
        seed unless it draws the data."""
        excluded = NOT_RUN_DEFINING + (() if self.seed_draws_data() else ("seed",))
        return {name: value for name, value in dataclasses.asdict(self).items() if name not in excluded}

    def distribution(self) -> dict:
        """The keys that decide the law of the inputs, which a Sigma_w pooled over runs is measured against
        (rltx.analysis.covariance): `identity()` without the split sizes, which change the sample, not the law,
        and without the data's seed keys; the seed the data is drawn with (`data_seed`) counts only where it
        draws the law (a Gaussian rotation or class means), not other images of one law (dead_leaves, photos,
        unrotated Gaussian data without class means)."""
        sizes = ("gaussian_num_train", "gaussian_num_test", "natural_num_train", "natural_num_test")
        keys = {name: value for name, value in self.identity().items()
                if name not in (*sizes, "seed", "gaussian_seed", "natural_seed")}
        if self.dataset.strip().lower() == "gaussian" and (self.gaussian_rotate or self.gaussian_num_classes > 0):
            keys["data_seed"] = self.data_seed()
        return keys

    def seed_draws_data(self) -> bool:
        """Generated data whose own seed key is null is drawn from the run's seed (`data_seed`)."""
        own = self._own_seed_key()
        return own is not None and getattr(self, own) is None

    def data_seed(self) -> int:
        """The seed of generated data (gaussian, dead_leaves, photos): its own seed key, or the run's seed."""
        own = getattr(self, self._own_seed_key())
        return self.seed if own is None else own

    def _own_seed_key(self) -> str | None:
        kind = self.dataset.strip().lower()
        return {"gaussian": "gaussian_seed", "dead_leaves": "natural_seed", "photos": "natural_seed"}.get(kind)


def key(default=dataclasses.MISSING, *, help: str, unit: str = "", choices=None, minimum=None,
        maximum=None, exclusive_minimum: bool = False):
    """A recipe key: its default, one-line help, unit and allowed values. `minimum` and `maximum`
    bound every number of the value, a list's too; every number must also be finite and every
    integer fit in int64 (INT64_MAX)."""
    metadata = dict(help=help, unit=unit, choices=choices, minimum=minimum, maximum=maximum,
                    exclusive_minimum=exclusive_minimum)
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Recipe:
    # --- what this recipe is -------------------------------------------------------------
    description: str = key("", help="what the recipe reproduces (free text, stored with the run)")
    # --- data (A.1, A.3) ---------------------------------------------------------------
    dataset: str = key(help="tfds name (cifar10, cifar100, imagenet2012, ...), or gaussian, dead_leaves, photos, npz, image_folder")
    data_dir: Optional[str] = key(None, help="tfds data directory holding the prepared dataset", unit="path")
    manual_dir: Optional[str] = key(None, help="directory with the original archive, for tfds manual preparation", unit="path")
    data_path: Optional[str] = key(None, help="the .npz file (x, y[, x_test, y_test]) or the image folder", unit="path")
    offline: bool = key(False, help="never attempt a download; fail at once when data is missing")
    image_size: int = key(0, help="resize images to this side (0: native size; imagenet2012: 224, A.3; `image_folder` requires a size)", unit="pixels", minimum=0)
    gaussian_spectrum: Union[str, list, None] = key(
        None, help="eigenvalues of Sigma: a list or 'linspace(a, b, n)' (E.1 uses linspace(0.1, 3.0, 30))",
        minimum=0.0, exclusive_minimum=True)
    gaussian_patch_size: int = key(0, help="k: images of i.i.d. N(0, Sigma) k x k patches (0: vectors in R^d)", unit="pixels", minimum=0)
    gaussian_image_size: int = key(0, help="side of gaussian images, a multiple of gaussian_patch_size", unit="pixels", minimum=0)
    gaussian_rotate: bool = key(False, help="rotate Sigma by a random orthogonal matrix (else diagonal)")
    gaussian_num_train: int = key(10000, help="size of the gaussian training split (E.1, Fig. 20: 10 000)", unit="examples", minimum=1)
    gaussian_num_test: int = key(2000, help="size of the gaussian held-out split", unit="examples", minimum=1)
    gaussian_seed: Optional[int] = key(None, help="gaussian: seed of the data (Sigma's rotation, examples, class means); null: the run's seed", minimum=0, maximum=SEED_MAX)
    gaussian_num_classes: int = key(0, help="gaussian: classes with their own mean image, giving real labels (0: no real labels)", unit="classes", minimum=0)
    gaussian_class_separation: float = key(1.0, help="gaussian: scale of the class means, each drawn like an example (patches ~ N(0, Sigma))", minimum=0.0)
    natural_num_train: int = key(10000, help="dead_leaves, photos: size of the training split", unit="examples", minimum=1)
    natural_num_test: int = key(2000, help="dead_leaves, photos: size of the held-out split", unit="examples", minimum=1)
    natural_num_classes: int = key(10, help="dead_leaves: classes; photos: always its 8 photographs", unit="classes", minimum=2)
    natural_labels: str = key("shape_colour", help="dead_leaves: what a label means: leaf shape x colour cast, the orientation of rectangular leaves, or their orientation and colour cast (rltx/data/natural.py)", choices=NATURAL_LABELS)
    natural_seed: Optional[int] = key(None, help="dead_leaves, photos: seed of the images, crops and labels; null: the run's seed", minimum=0, maximum=SEED_MAX)
    num_examples_upstream: int = key(help="examples sampled uniformly from the training split (A.1 step 1)", unit="examples", minimum=1)
    num_classes_upstream: int = key(10, help="number of random classes (A.1 step 3)", unit="classes", minimum=2)
    labels_upstream: str = key("random", help="random: uniform random labels (A.1 step 3); real: the dataset's labels", choices=("random", "real"))
    num_examples_downstream: int = key(0, help="examples reserved for fine-tuning, disjoint from upstream (A.1 step 2)", unit="examples", minimum=0)
    num_examples_test: int = key(0, help="held-out examples for test metrics, drawn uniformly from the test split, the same for every seed (0: the whole test split)", unit="examples", minimum=0)
    # --- model (A.2, A.3) --------------------------------------------------------------
    architecture: str = key(help="model: " + ", ".join(ARCHITECTURE_NAMES), choices=ARCHITECTURE_NAMES)
    num_conv_layers: int = key(3, help="simple_cnn: convolutional layers (A.2)", unit="layers", minimum=1)
    num_filters: int = key(16, help="simple_cnn: filters per convolutional layer (A.2)", unit="filters", minimum=1)
    num_units: int = key(1024, help="simple_cnn: units of the dense layer (A.2)", unit="units", minimum=1)
    kernel_size: int = key(3, help="simple_cnn: filter side (A.2: 3)", unit="pixels", minimum=1)
    stride: int = key(1, help="simple_cnn: convolution stride (A.2: 1; E.2 uses 2 and 3)", unit="pixels", minimum=1)
    padding: str = key("same", help="simple_cnn: convolution padding (A.2 does not say; same as VGG16)", choices=("same", "valid"))
    pooling: str = key("none", help="simple_cnn: max-pool after each convolution (max), once after the last (final, E.3), or none", choices=("none", "max", "final"))
    pool_size: int = key(2, help="simple_cnn: max-pool window (E.3: 3)", unit="pixels", minimum=1)
    pool_stride: int = key(2, help="simple_cnn: max-pool stride (E.3: 2)", unit="pixels", minimum=1)
    hidden_units: list = key([2048, 256], help="mlp: widths of the hidden layers (E.1: 2048, 256)", unit="units", minimum=1)
    group_norm_groups: int = key(32, help="resnet18: GroupNorm groups (Wu & He 2018 default)", unit="groups", minimum=1)
    resnet_stem: str = key("imagenet", help="resnet18: 7x7/2 conv + max-pool (imagenet) or 3x3/1 conv (cifar)", choices=("imagenet", "cifar"))
    width_factor: int = key(4, help="wrn28: width factor (A.7: 4)", minimum=1)
    first_conv_kernel_size: int = key(3, help="wrn28: side of the first convolution (A.7 used 5 for Fig. 3)", unit="pixels", minimum=1)
    init_algorithm: str = key("he", help="kernel initialisation (A.3: He normal)", choices=("he", "orthogonal"))
    init_scale: float = key(1.0, help="multiplier of the initial kernels' variance (A.3 init_scale; std factor sqrt(init_scale))", minimum=0.0, exclusive_minimum=True)
    # --- training (A.3) ----------------------------------------------------------------
    learning_rate: float = key(help="initial SGD learning rate; divided by 3 at 1/3 and 2/3 of the steps (A.3)", minimum=0.0, exclusive_minimum=True)
    batch_size: int = key(256, help="global mini-batch size over all replicas (A.3: 256)", unit="examples", minimum=1)
    momentum: float = key(0.9, help="SGD momentum (A.3: 0.9)", minimum=0.0, maximum=1.0)
    epochs: Optional[float] = key(None, help="training length in passes over the upstream set (give this or total_steps)", unit="epochs", minimum=0.0, exclusive_minimum=True)
    total_steps: Optional[int] = key(None, help="training length in SGD steps (give this or epochs)", unit="steps", minimum=1)
    schedule_steps: Optional[int] = key(None, help="length of A.3's learning-rate schedule for pre-training (null: the run's own length); a longer schedule trains its first steps only, as E.3 reads the 100-iteration row of a 1000-step run", unit="steps", minimum=1)
    seed: int = key(0, help="seed of sampling, labels, initialisation and data order", minimum=0, maximum=SEED_MAX)
    jit_compile: Union[str, bool] = key("auto", help="compile the training and evaluation steps with XLA: true, false, or auto (on GPUs only; on CPUs XLA was slower)")
    mixed_precision: str = key("none", help="compute dtype policy of training (weights, loss and all analysis stay float32/float64)", choices=("none", "mixed_float16", "mixed_bfloat16"))
    # --- downstream task and transfer (A.1 step 2-4, A.4, A.9, A.10; used by `rltx transfer`) ---
    num_classes_downstream: int = key(10, help="classes of the downstream task (A.1 step 4)", unit="classes", minimum=2)
    labels_downstream: str = key("real", help="real labels, or uniform random ones (A.1 step 4)", choices=("real", "random"))
    learning_rate_downstream: Optional[float] = key(None, help="fine-tuning learning rate (null: learning_rate, A.4)", minimum=0.0, exclusive_minimum=True)
    epochs_downstream: Optional[float] = key(None, help="fine-tuning length in passes over the downstream set (null: as upstream, A.4)", unit="epochs", minimum=0.0, exclusive_minimum=True)
    total_steps_downstream: Optional[int] = key(None, help="fine-tuning length in steps (null: as upstream, A.4)", unit="steps", minimum=1)
    transfer_layers: Union[str, int, list] = key("all", help="layers taken from the source: all, conv (A.9 'pretrained conv'), the first k, or a list of names", minimum=0)
    transfer_mode: str = key("weights", help="weights: copy the source layers; covariance: sample first-layer filters from N(0, Sigma_w) of the sources (A.9)", choices=("weights", "covariance"))
    covariance_draw: str = key("gaussian", help="transfer_mode covariance and construct-init --covariance-from: first-layer filters drawn from N(0, Sigma_w) (gaussian, A.9); or, as diagnostics of Sec. 2.4's recovery, one source's filters less their mean filter (centred), or those mixed by a Haar-random rotation, second moment exactly Sigma_w without a sample's noise (rotation), or A.9's draw plus the sources' mean filter, N(mu_w, Sigma_w) (gaussian_with_mean)", choices=("gaussian", "centred", "rotation", "gaussian_with_mean"))
    rescaling: str = key("default", help="match each transferred layer's norm at the source's initialisation: l2, l1, none, or default (A.4: l2, none for ResNets)", choices=("default", "l2", "l1", "none"))
    zero_transferred_biases: bool = key(False, help="reset the biases of transferred layers to zero (A.9 'no bias')")
    # --- initialisation from the data (Sec. 2.5, E.3; used by `rltx construct-init`) -----------------
    init_file: Optional[str] = key(None, help="initial weights from `rltx construct-init` (all layers but the head)", unit="path")
    construct_eigenvectors: Union[str, list] = key("top", help="eigenvectors used per constructed layer: top, bottom (Table 5), a range e4..e19 (Table 6), or a list of these, one per layer")
    construct_tau: Union[str, list] = key("f1", help="weights tau of the chosen eigenvectors: f1, f2, f3 (E.3, Fig. 23), a list, or a transfer-function result .h5", minimum=0.0)
    construct_method: str = key("direct", help="filters tau_i e_i (direct, Table 1), sampled from N(0, sum tau_i^2 e_i e_i^T) (sample, Table 4), or direct's filters turned by a random rotation and scaled by sqrt(filters), whose K K^T is exactly the filters times that sum, as a sample's is on average (rotate)", choices=("direct", "sample", "rotate"))
    construct_signs: str = key("largest_positive", help="sign of each chosen eigenvector (E.3 fixes none): its largest entry positive (largest_positive) or a fair coin's (random; construct_method direct)", choices=("largest_positive", "random"))
    construct_rescale: str = key("none", help="rescale constructed kernels to the norm of their He initialisation (he) or not", choices=("none", "he"))
    construct_centered: bool = key(True, help="eigenvectors of the patch covariance (true) or of E[x x^T] (false)")
    construct_num_examples: int = key(0, help="training images for the patch covariances (0: all num_examples_upstream)", unit="examples", minimum=0)
    table_layer_sets: list = key([[], [1], [1, 2], [1, 2, 3]], help="construct-init --table: the sets of constructed conv layers (Table 1 columns)", minimum=1)
    table_iterations: list = key([100, 1000], help="construct-init --table: training steps at which accuracies are read (Table 1 rows)", unit="steps", minimum=0)
    # --- evaluation and checkpoints ----------------------------------------------------------
    num_eval_points: int = key(50, help="about this many metric points, denser early, always step 0 and the last", unit="points", minimum=2, maximum=MAX_POINTS)
    eval_batch_size: int = key(1024, help="batch size for computing metrics on whole sets", unit="examples", minimum=1)
    checkpoint_every: int = key(0, help="keep the weights every this many steps (0: only the initial and the last)", unit="steps", minimum=0)
    checkpoint_steps: list = key([], help="further steps whose weights are kept (e.g. [1, 6240] for Fig. 10)", unit="steps", minimum=0)
    tensorboard: bool = key(True, help="also write the metrics as TensorBoard event files in RUN/tensorboard/ (false: metrics.h5 only)")

    @property
    def steps(self) -> int:
        """Total SGD steps, from total_steps or from epochs over the upstream set."""
        from rltx.hyperrule import total_steps_for_epochs
        if self.total_steps is not None:
            return self.total_steps
        return total_steps_for_epochs(self.epochs, self.num_examples_upstream, self.batch_size)

    @property
    def steps_downstream(self) -> int:
        """Fine-tuning steps: as given, else the upstream schedule (A.4: same as upstream), i.e. the
        same total_steps, or the same number of epochs over the downstream set."""
        from rltx.hyperrule import total_steps_for_epochs
        if self.total_steps_downstream is not None:
            return self.total_steps_downstream
        epochs = self.epochs_downstream if self.epochs_downstream is not None else self.epochs
        if epochs is None:
            return self.total_steps
        return total_steps_for_epochs(epochs, self.num_examples_downstream, self.batch_size)

    def check_downstream(self) -> None:
        """A.1 step 2: fine-tuning needs a downstream set, disjoint from the upstream one, of at least a batch."""
        if self.num_examples_downstream < 1:
            raise UsageError("num_examples_downstream is 0: fine-tuning needs a downstream set; set "
                             "num_examples_downstream=N (N >= 1) in the recipe or with --set")
        if self.batch_size > self.num_examples_downstream:  # as pre-training refuses it for its upstream set
            raise UsageError(f"batch_size {self.batch_size} is larger than num_examples_downstream "
                             f"{self.num_examples_downstream}; lower batch_size or sample more downstream examples")

    @property
    def data(self) -> DataSpec:
        """The recipe's data keys as one value."""
        return DataSpec(**{f.name: getattr(self, f.name) for f in dataclasses.fields(DataSpec)})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


FIELDS = {f.name: f for f in dataclasses.fields(Recipe)}
_HINTS = typing.get_type_hints(Recipe)


def key_default(name: str):
    """A recipe key's default (dataclasses.MISSING for a required key or a name that is no key): what a
    record written before the key existed ran with, as every key is added with the old behaviour as its default."""
    field = FIELDS.get(name)
    if field is None:
        return dataclasses.MISSING
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def check_section(section: dict, name: str, entries, where: str, example: str) -> None:
    """A recipe file's `name:` section is present and holds only the known entries."""
    if not section:
        raise UsageError(f"{where} has no {name}: section; use a recipe that declares one (e.g. {example})")
    unknown = sorted(set(section) - set(entries), key=str)
    if unknown:
        raise UsageError(f"{where}: unknown {name} entries {clip(', '.join(map(str, unknown)))}; "
                         f"the entries are {', '.join(entries)}")


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` from the command line; the value is read as YAML (numbers, lists, null)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise UsageError(f"--set {shorten(text)} is not key=value; write e.g. --set learning_rate=0.01")
    name = name.strip()
    _check_known(name)
    return name, parse_yaml(value, f"--set {name}") if value.strip() else None


def make_recipe(raw: dict) -> Recipe:
    """Validate a mapping of recipe keys and freeze it into a `Recipe`."""
    if not isinstance(raw, dict):
        raise UsageError("a recipe must be a YAML mapping of key: value lines")
    for name in raw:
        _check_known(name)
    missing = [n for n, f in FIELDS.items() if f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING and raw.get(n) is None]
    if missing:
        raise UsageError(f"recipe is missing required key(s) {', '.join(missing)}; add them to the YAML or pass --set KEY=VALUE")
    values = {name: _check_value(name, value) for name, value in raw.items()}
    recipe = Recipe(**values)
    _check_together(recipe)
    return recipe


def _check_known(name) -> None:
    if name not in FIELDS:
        close = difflib.get_close_matches(str(name), FIELDS, n=1) if len(str(name)) <= 64 else []
        hint = f"did you mean {close[0]!r}?" if close else "see `rltx pretrain --help` for the keys"
        raise UsageError(f"unknown recipe key {shorten(name)}; {hint}")


def _check_value(name: str, value):
    hint, meta = _HINTS[name], FIELDS[name].metadata
    allowed = typing.get_args(hint) if typing.get_origin(hint) is Union else (hint,)
    if value is None:
        if type(None) in allowed:
            return None
        default = FIELDS[name].default
        fix = ("give it a value" if default is dataclasses.MISSING
               else f"give it a value, or leave it out for its default {format_value(default)}")
        raise UsageError(f"recipe key {name} cannot be null or empty; {fix}")
    value = _coerce(name, value, [t for t in allowed if t is not type(None)])
    if meta["choices"] and value not in meta["choices"]:
        raise UsageError(f"recipe key {name} is {shorten(value)}; choose one of {', '.join(meta['choices'])}")
    _check_range(name, value, meta)
    return value


def _coerce(name: str, value, types: list):
    for wanted in types:
        if wanted is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if wanted is bool and isinstance(value, bool):
            return value
        if wanted in (int, str, list) and isinstance(value, wanted) and not isinstance(value, bool):
            return list(value) if wanted is list else value
    expected = " or ".join(_TYPE_WORDS[t] for t in types)
    raise UsageError(f"recipe key {name} is {shorten(value)} ({type(value).__name__}); it must be {expected}")


_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list"}


def _check_range(name: str, value, meta, within: str = "") -> None:
    """Every number of `value` (of a list too, at any depth) is finite, fits in int64 if an
    integer and in float32 if a float, and lies within the key's minimum and maximum."""
    if isinstance(value, list):
        for item in value:
            _check_range(name, item, meta, " holds a number that")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    shown = int(value) if isinstance(value, float) and value.is_integer() and abs(value) < 1e15 else value
    where = f"recipe key {name}{within} is {shorten(shown)}"
    if isinstance(value, int) and not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise UsageError(f"{where}; it must fit in 64 bits (at most {INT64_MAX})")
    if not math.isfinite(value):
        raise UsageError(f"{where}; give a finite number")
    if isinstance(value, float) and abs(value) > FLOAT32_MAX:  # the models, data and metrics compute in float32
        raise UsageError(f"{where}; it must fit in float32 (magnitude at most {FLOAT32_MAX:.7g})")
    low, high = meta["minimum"], meta["maximum"]
    if low is not None and (value < low or (meta["exclusive_minimum"] and value == low)):
        relation = ">" if meta["exclusive_minimum"] else ">="
        raise UsageError(f"{where}; it must be {relation} {format_value(low)}")
    if high is not None and value > high:
        raise UsageError(f"{where}; it must be <= {format_value(high)}")


def _check_together(recipe: Recipe) -> None:
    """Constraints that involve several keys."""
    if (recipe.epochs is None) == (recipe.total_steps is None):
        raise UsageError("give exactly one of epochs and total_steps in the recipe (set the other to null)")
    if recipe.jit_compile not in ("auto", True, False):
        raise UsageError(f"jit_compile is {recipe.jit_compile!r}; use auto, true or false")
    if recipe.epochs_downstream is not None and recipe.total_steps_downstream is not None:
        raise UsageError("give at most one of epochs_downstream and total_steps_downstream")
    _check_steps(recipe)
    if recipe.schedule_steps is not None and recipe.schedule_steps < recipe.steps:
        raise UsageError(f"schedule_steps {recipe.schedule_steps} is shorter than the run's {recipe.steps} steps; "
                         f"give at least {recipe.steps}, or null for a schedule as long as the run")
    layers = recipe.transfer_layers
    if not (layers in ("all", "conv") or isinstance(layers, int)
            or (isinstance(layers, list) and all(isinstance(name, str) for name in layers))):
        raise UsageError(f"transfer_layers is {shorten(layers)}; use all, conv, a number of layers, or a list of layer names")
    tau = recipe.construct_tau
    if isinstance(tau, list) and not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in tau):
        raise UsageError("construct_tau as a list must hold non-negative numbers, e.g. [1, 2, 4]")
    if recipe.construct_signs == "random" and recipe.construct_method != "direct":
        raise UsageError(f"construct_signs random flips the direct filters; construct_method {recipe.construct_method} "
                         "draws filters whose law no sign changes: drop construct_signs or use construct_method direct")
    if isinstance(recipe.construct_eigenvectors, list) and not all(isinstance(v, str) for v in recipe.construct_eigenvectors):
        raise UsageError("construct_eigenvectors as a list holds one of top, bottom, e4..e19 per layer")
    if recipe.batch_size > recipe.num_examples_upstream:
        raise UsageError(f"batch_size {recipe.batch_size} is larger than num_examples_upstream "
                         f"{recipe.num_examples_upstream}; lower batch_size or sample more examples")
    if recipe.dataset in ("npz", "image_folder") and not recipe.data_path:
        raise UsageError(f"dataset {recipe.dataset} needs data_path; set it to the file or folder")
    if not all(isinstance(s, list) and all(_is_int(n) for n in s) for s in recipe.table_layer_sets):
        raise UsageError("table_layer_sets must be a list of lists of conv layer numbers, e.g. [[], [1], [1, 2]]")
    for name in ("hidden_units", "checkpoint_steps", "table_iterations"):
        if not all(_is_int(v) for v in getattr(recipe, name)):
            raise UsageError(f"recipe key {name} must be a list of integers, e.g. [1, 10]")
    if not recipe.table_iterations or min(recipe.table_iterations) < 1:
        raise UsageError("table_iterations must list one or more training steps of at least 1, e.g. [100, 1000] "
                         "(E.3's rows)")
    model_fit.check_architecture(recipe)
    shape = input_shape_from_keys(recipe)
    if shape is not None:
        model_fit.check_fits(recipe, shape, f"dataset {recipe.dataset}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_steps(recipe: Recipe) -> None:
    """Training lengths given in epochs come to at most INT64_MAX steps, and the metric points and
    kept checkpoints to at most MAX_POINTS."""
    upstream = ("epochs", recipe.epochs, recipe.num_examples_upstream)
    downstream = ("epochs_downstream" if recipe.epochs_downstream is not None else "epochs",
                  recipe.epochs_downstream if recipe.epochs_downstream is not None else recipe.epochs,
                  recipe.num_examples_downstream)
    for name, epochs, examples in (upstream, downstream):
        if epochs is not None and epochs * examples / recipe.batch_size > INT64_MAX:
            raise UsageError(f"{name} {epochs:g} comes to more than 2^63 steps; lower it")
    every = recipe.checkpoint_every
    if every and max(recipe.steps, recipe.steps_downstream) // every > MAX_POINTS:
        raise UsageError(f"checkpoint_every {every} keeps more than {MAX_POINTS} checkpoints of a "
                         f"{max(recipe.steps, recipe.steps_downstream)}-step run; raise it")


def input_shape_from_keys(recipe: Recipe) -> tuple[int, ...] | None:
    """The shape of one input when the keys decide it (the channels of tfds and image folders are
    left at 0: only the image side matters to the model's fit); None until the source is opened."""
    dataset = recipe.dataset.strip().lower()  # as rltx.data.open_source reads it
    if dataset == "gaussian":
        return _check_gaussian(recipe)
    if dataset in ("dead_leaves", "photos"):
        side = recipe.image_size or NATURAL_SIZE
        return (side, side, 3)
    if recipe.image_size and dataset != "npz":
        return (recipe.image_size, recipe.image_size, 0)
    return None


def _check_gaussian(recipe: Recipe) -> tuple[int, ...]:
    """The gaussian keys are consistent; returns the shape of one input."""
    if recipe.gaussian_spectrum is None:
        raise UsageError("dataset gaussian needs gaussian_spectrum, e.g. 'linspace(0.1, 3.0, 30)'")
    if recipe.labels_upstream == "real" and recipe.gaussian_num_classes < 2:
        raise UsageError("the gaussian source has no real labels; use labels_upstream: random, "
                         "or set gaussian_num_classes >= 2")
    from rltx.spectrum import gaussian_input_shape, parse_spectrum  # numpy: kept out of `rltx --help`
    dimension = parse_spectrum(recipe.gaussian_spectrum).size
    return gaussian_input_shape(dimension, recipe.gaussian_patch_size, recipe.gaussian_image_size)


def describe_keys() -> list[tuple[str, str, str, str]]:
    """(key, default, unit, help) for every recipe key, for --help and the README."""
    rows = []
    for name, f in FIELDS.items():
        if f.default is not dataclasses.MISSING:
            default = "null" if f.default is None else str(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = str(f.default_factory())
        else:
            default = "(required)"
        rows.append((name, default, f.metadata["unit"], f.metadata["help"]))
    return rows



EMPTY = "''"


def keys_markdown() -> str:
    """The recipe-key table of the README (a test keeps the README equal to it)."""
    lines = ["| key | default | unit | meaning |", "|---|---|---|---|"]
    for name, default, unit, text in describe_keys():
        lines.append(f"| `{name}` | {default or EMPTY} | {unit} | {text} |")
    return "\n".join(lines)


def format_value(value) -> str:
    """A recipe value as people write it: whole floats as integers (epochs=60, not 60.0)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
