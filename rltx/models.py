"""Model zoo of Maennel et al. (2020): Simple CNN, VGG16, ResNet18 (A.2), MLP (E.1), WRN-28 (A.7).

Every model is a Keras functional model mapping `keras.Input(input_shape)` to logits through a final
Dense layer named `HEAD`. Kernels are initialised per A.3 (He normal with its variance scaled by
init_scale, or orthogonal as in B.2), biases with zeros, each layer with its own seed derived from `seed`.
Weights are float32; the head outputs float32 logits whatever the compute dtype of the other layers.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Callable

import keras

from rltx import hyperrule

HEAD = "head"
INIT_ALGORITHMS = ("he", "orthogonal")  # A.3 (He normal); B.2 adds orthogonal [Saxe et al.]


def kernel_initializer(init_algorithm: str, init_scale: float, seed: int) -> keras.initializers.Initializer:
    """Initializer for one conv/dense kernel (A.3: "He normal algorithm with init_scale scaling").

    init_scale multiplies He's variance, not its standard deviation: VGG16 at A.5 / A.11's init_scale
    0.526 and 0.612 fits its random labels on the paper's own schedule only under this reading (std
    factor sqrt(0.526) = 0.725; with 0.526 on the std its logits start at 1e-4 and it stays at ln C
    for all 9375 steps; `bench/vgg_plateau.py`, docs/calibration.md).

    "he": untruncated normal, std = sqrt(init_scale * 2 / fan_in), fan_in = kh*kw*in_channels.
    "orthogonal": kernel flattened to (fan_in, fan_out) is a (semi-)orthogonal matrix times the gain
    sqrt(2 * init_scale), so its per-unit variance scale matches He's.
    """
    if init_algorithm == "he":
        return keras.initializers.VarianceScaling(
            scale=2.0 * init_scale, mode="fan_in", distribution="untruncated_normal", seed=seed)
    if init_algorithm == "orthogonal":
        # keras' Orthogonal: QR of a Gaussian, sign-fixed by diag(R), reshaped to the kernel shape.
        return keras.initializers.Orthogonal(gain=math.sqrt(2.0 * init_scale), seed=seed)
    raise ValueError(f"unknown init_algorithm {init_algorithm!r}; valid: {', '.join(INIT_ALGORITHMS)}")


def init_scale_mismatch(source_version: str, source_scale: float, scale: float) -> str:
    """Why a run initialised with `scale` does not start at the scale of a source run made by rltx
    `source_version` with `source_scale` ('' when it does): rltx before 0.2.0 put init_scale on He's std."""
    try:
        on_std = tuple(int(part) for part in source_version.split(".")[:2]) < (0, 2)
    except ValueError:  # "not installed" or a local version: assume the current reading
        on_std = False
    if not on_std or source_scale == 1.0 or math.isclose(math.sqrt(scale), source_scale):
        return ""
    return (f"was made by rltx {source_version}, which put init_scale {source_scale:g} on He's std; this rltx puts "
            f"it on the variance, so the fresh layers here start at {math.sqrt(scale):.3g} of He's std, not "
            f"{source_scale:g}: set init_scale={source_scale ** 2:.4g} to match")


def _layer_seed(seed: int, index: int) -> int:
    """Deterministic, well-spread 31-bit seed for the index-th kernel layer of a model built with seed."""
    return hyperrule.derived_seed(int(seed), index)


class _Layers:
    """Makes the layers of one model: kernel initializers in layer-creation order, seeded by
    (seed, layer index), and every layer in the compute dtype `policy` except the head, which
    computes in float32 so that the logits, softmax and loss never round to 16 bits."""

    def __init__(self, init_algorithm: str, init_scale: float, seed: int, policy: str):
        kernel_initializer(init_algorithm, init_scale, 0)  # validate early
        self.algorithm, self.scale, self.seed, self.policy, self.count = init_algorithm, init_scale, seed, policy, 0

    def _kernels(self) -> keras.initializers.Initializer:
        self.count += 1
        return kernel_initializer(self.algorithm, self.scale, _layer_seed(self.seed, self.count - 1))

    def __call__(self, layer_class, *args, **kwargs) -> keras.layers.Layer:
        """Any other layer (pooling, ReLU, normalisation, ...), in the compute policy."""
        return layer_class(*args, dtype=self.policy, **kwargs)

    def conv(self, x, filters, size, name, stride=1, padding="same", use_bias=True, activation=None):
        return keras.layers.Conv2D(filters, size, strides=stride, padding=padding, use_bias=use_bias,
                                   activation=activation, kernel_initializer=self._kernels(),
                                   bias_initializer="zeros", name=name, dtype=self.policy)(x)

    def dense(self, x, units, name, activation=None):
        return self._dense(units, name, activation, self.policy)(x)

    def head(self, x, num_classes):
        return self._dense(num_classes, HEAD, None, "float32")(x)

    def _dense(self, units, name, activation, policy):
        return keras.layers.Dense(units, activation=activation, kernel_initializer=self._kernels(),
                                  bias_initializer="zeros", name=name, dtype=policy)


def _choice(name: str, value, valid: tuple):
    if value not in valid:
        raise ValueError(f"{name}={value!r} is not one of {valid}")


def simple_cnn(inputs, num_classes, make, *, num_conv_layers: int, num_filters: int, num_units: int,
               kernel_size: int = 3, stride: int = 1, padding: str = "same", pooling: str = "none",
               pool_size: int = 2, pool_stride: int = 2):
    """A.2 Simple CNN: num_conv_layers x [conv 3x3 stride 1 (with bias) + ReLU], Flatten,
    dense num_units + ReLU, head. kernel_size/stride/padding/pooling generalise it: pooling "max"
    puts a SAME max-pool after each conv (as in VGG16), "final" one VALID max-pool after the last
    conv (E.3's network: 3x3, stride 2)."""
    _choice("padding", padding, ("same", "valid"))
    _choice("pooling", pooling, ("none", "max", "final"))
    x = inputs
    for i in range(num_conv_layers):
        x = make.conv(x, num_filters, kernel_size, f"conv_{i}", stride, padding, activation="relu")
        if pooling == "max":
            x = make(keras.layers.MaxPooling2D, pool_size, pool_stride, padding="same",
                     name=f"pool_{i}")(x)
    if pooling == "final":
        x = make(keras.layers.MaxPooling2D, pool_size, pool_stride, padding="valid", name="pool")(x)
    x = make(keras.layers.Flatten, name="flatten")(x)
    x = make.dense(x, num_units, "dense_0", activation="relu")
    return keras.Model(inputs, make.head(x, num_classes), name="simple_cnn")


# A.2: VGG16 "Configuration D" of Simonyan & Zisserman; integers are conv filters, "M" is max-pool.
VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def vgg16(inputs, num_classes, make):
    """A.2 VGG16 (config D) without the two FC-4096 layers: 13 convs conv_0..conv_12, 3x3 SAME
    stride 1 with bias + ReLU, 2x2 stride-2 SAME max-pools pool_0..pool_4, Flatten, head."""
    x, n_conv, n_pool = inputs, 0, 0
    for item in VGG16_CONFIG:
        if item == "M":  # A.2: max-pool over 2x2 window, SAME padding, stride 2
            x = make(keras.layers.MaxPooling2D, 2, 2, padding="same", name=f"pool_{n_pool}")(x)
            n_pool += 1
        else:  # A.2: 3x3 filters with biases, SAME padding, stride 1, ReLU
            x = make.conv(x, item, 3, f"conv_{n_conv}", activation="relu")
            n_conv += 1
    x = make(keras.layers.Flatten, name="flatten")(x)
    return keras.Model(inputs, make.head(x, num_classes), name="vgg16")


def _preact_block(x, make, filters, stride, name, norm):
    """Pre-activation basic block (He et al. 2016, "Identity mappings"): norm-ReLU-conv3x3 twice,
    identity shortcut, or a 1x1 projection of the pre-activated input when the shape changes.
    Convs have no bias: each is followed by a normalisation layer (which has its own shift)."""
    h = make(keras.layers.ReLU, name=f"{name}_relu1")(norm(f"{name}_norm1")(x))
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = make.conv(h, filters, 1, f"{name}_shortcut", stride, use_bias=False)
    h = make.conv(h, filters, 3, f"{name}_conv1", stride, use_bias=False)
    h = make(keras.layers.ReLU, name=f"{name}_relu2")(norm(f"{name}_norm2")(h))
    h = make.conv(h, filters, 3, f"{name}_conv2", 1, use_bias=False)
    return make(keras.layers.Add, name=f"{name}_add")([shortcut, h])


def _preact_head(x, make, num_classes, norm):
    x = make(keras.layers.ReLU, name="final_relu")(norm("final_norm")(x))
    x = make(keras.layers.GlobalAveragePooling2D, name="global_pool")(x)
    return make.head(x, num_classes)


def resnet18(inputs, num_classes, make, *, group_norm_groups: int = 32, resnet_stem: str = "imagenet"):
    """A.2 ResNet18: vanilla ResNet-v2 (pre-activation) with BatchNorm replaced by GroupNorm.
    Stem "imagenet": 7x7/2 conv + 3x3/2 max-pool; "cifar": 3x3/1 conv. Then 4 stages x 2 basic blocks
    (64, 128, 256, 512 filters; stride 2 in the first block of stages 2-4), final GN-ReLU-GAP-head.
    As in the reference v2 implementation the stem conv is not followed by norm/ReLU."""
    _choice("resnet_stem", resnet_stem, ("imagenet", "cifar"))

    def norm(name):
        return make(keras.layers.GroupNormalization, groups=group_norm_groups, name=name)

    if resnet_stem == "imagenet":
        x = make.conv(inputs, 64, 7, "stem_conv", 2, use_bias=False)
        x = make(keras.layers.MaxPooling2D, 3, 2, padding="same", name="stem_pool")(x)
    else:
        x = make.conv(inputs, 64, 3, "stem_conv", 1, use_bias=False)
    for stage, filters in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            stride = 2 if stage > 1 and block == 0 else 1
            x = _preact_block(x, make, filters, stride, f"stage{stage}_block{block}", norm)
    return keras.Model(inputs, _preact_head(x, make, num_classes, norm), name="resnet18")


def wrn28(inputs, num_classes, make, *, width_factor: int = 4, first_conv_kernel_size: int = 3):
    """A.7 wide ResNet (Zagoruyko & Komodakis 2016), pre-activation with BatchNorm: 4 blocks per group
    (depth 6*4+4 = 28), stem conv of 16 filters (A.7 used 5x5), groups of 16k, 32k, 64k filters with
    strides 1, 2, 2, final BN-ReLU-GAP-head. BN momentum 0.9 / epsilon 1e-5 as in the WRN reference
    code (PyTorch defaults); no dropout."""

    def norm(name):
        return make(keras.layers.BatchNormalization, momentum=0.9, epsilon=1e-5, name=name)

    x = make.conv(inputs, 16, first_conv_kernel_size, "stem_conv", use_bias=False)
    for group, (filters, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
        for block in range(4):  # A.7: 4 blocks per group
            x = _preact_block(x, make, filters * width_factor, stride if block == 0 else 1,
                              f"group{group}_block{block}", norm)
    return keras.Model(inputs, _preact_head(x, make, num_classes, norm), name="wrn28")


def mlp(inputs, num_classes, make, *, hidden_units: tuple[int, ...] | list[int] = (2048, 256)):
    """E.1 fully connected ReLU network (default widths 2048, 256 as in Figure 20): Flatten if the
    input has rank > 1, dense_0..dense_{n-1} with ReLU, head."""
    x = make(keras.layers.Flatten, name="flatten")(inputs) if len(inputs.shape) > 2 else inputs
    for i, units in enumerate(hidden_units):
        x = make.dense(x, int(units), f"dense_{i}", activation="relu")
    return keras.Model(inputs, make.head(x, num_classes), name="mlp")


@dataclass(frozen=True)
class Architecture:
    builder: Callable[..., keras.Model]  # builder(inputs, num_classes, make, **options)
    options: tuple[str, ...]  # the recipe keys this builder takes as keyword arguments
    default_rescaling: str  # A.4: "l2" for Simple CNN/VGG16 (and mlp), "none" for residual nets


def _register(builder, rescaling):
    params = inspect.signature(builder).parameters.values()
    options = tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)
    return Architecture(builder, options, rescaling)


ARCHITECTURES: dict[str, Architecture] = {
    "simple_cnn": _register(simple_cnn, "l2"),  # A.4: re-scaled
    "vgg16": _register(vgg16, "l2"),  # A.4: re-scaled
    "mlp": _register(mlp, "l2"),
    "resnet18": _register(resnet18, "none"),  # A.4: "we decided not to re-scale ResNet18"
    "wrn28": _register(wrn28, "none"),
}


def build_model(architecture: str, input_shape: tuple[int, ...], num_classes: int, *,
                init_algorithm: str = "he", init_scale: float = 1.0, seed: int = 0,
                dtype_policy: str = "float32", **options) -> keras.Model:
    """Build `architecture` with fresh weights; the same arguments give bit-identical weights.

    `dtype_policy` ("float32", "mixed_float16", "mixed_bfloat16") is the Keras policy of every layer
    but the head: mixed policies compute in 16 bits and keep the weights in float32, so the
    weights are the same whatever the policy."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; valid: {', '.join(sorted(ARCHITECTURES))}")
    arch = ARCHITECTURES[architecture]
    unknown = sorted(set(options) - set(arch.options))
    if unknown:
        raise ValueError(f"{architecture} does not take option(s) {unknown}; "
                         f"valid options: {list(arch.options) or 'none'}")
    params = inspect.signature(arch.builder).parameters.values()
    missing = [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty
               and p.name not in options]
    if missing:
        raise ValueError(f"{architecture} requires option(s) {missing}")
    make = _Layers(init_algorithm, init_scale, seed, dtype_policy)
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    return arch.builder(inputs, num_classes, make, **options)


def transferable_layers(model: keras.Model) -> list[str]:
    """Names of the layers owning weights, in the model's topological order, head excluded."""
    return [layer.name for layer in model.layers if layer.weights and layer.name != HEAD]


def conv_layers(model: keras.Model) -> list[str]:
    """The transferable layers that are convolutions (A.9 'pretrained conv'; Table 1's layer numbers)."""
    return [name for name in transferable_layers(model) if isinstance(model.get_layer(name), keras.layers.Conv2D)]
