"""Model zoo of Maennel et al. (2020): Simple CNN, VGG16, ResNet18 (A.2), MLP (E.1), WRN-28 (A.7).

Every model is a Keras functional model mapping `keras.Input(input_shape)` to logits through a final
Dense layer named `HEAD`. Kernels are initialised per A.3 (He normal scaled by init_scale, or
orthogonal as in B.2), biases with zeros, each layer with its own seed derived from `seed`.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np

HEAD = "head"
INIT_ALGORITHMS = ("he", "orthogonal")  # A.3 (He normal); B.2 adds orthogonal [Saxe et al.]


def kernel_initializer(init_algorithm: str, init_scale: float, seed: int) -> keras.initializers.Initializer:
    """Initializer for one conv/dense kernel (A.3: "He normal algorithm with init_scale scaling").

    "he": untruncated normal, std = init_scale * sqrt(2 / fan_in), fan_in = kh*kw*in_channels.
    "orthogonal": kernel flattened to (fan_in, fan_out) is a (semi-)orthogonal matrix times the ReLU
    gain sqrt(2) times init_scale, so its per-unit variance scale matches He's.
    """
    if init_algorithm == "he":
        return keras.initializers.VarianceScaling(
            scale=2.0 * init_scale**2, mode="fan_in", distribution="untruncated_normal", seed=seed)
    if init_algorithm == "orthogonal":
        # keras' Orthogonal: QR of a Gaussian, sign-fixed by diag(R), reshaped to the kernel shape.
        return keras.initializers.Orthogonal(gain=math.sqrt(2.0) * init_scale, seed=seed)
    raise ValueError(f"unknown init_algorithm {init_algorithm!r}; valid: {', '.join(INIT_ALGORITHMS)}")


def _layer_seed(seed: int, index: int) -> int:
    """Deterministic, well-spread 31-bit seed for the index-th kernel layer of a model built with seed."""
    return int(np.random.SeedSequence([int(seed), index]).generate_state(1)[0]) & 0x7FFFFFFF


class _Kernels:
    """Hands out kernel initializers in layer-creation order, seeded by (seed, layer index)."""

    def __init__(self, init_algorithm: str, init_scale: float, seed: int):
        kernel_initializer(init_algorithm, init_scale, 0)  # validate early
        self.algorithm, self.scale, self.seed, self.count = init_algorithm, init_scale, seed, 0

    def __call__(self) -> keras.initializers.Initializer:
        self.count += 1
        return kernel_initializer(self.algorithm, self.scale, _layer_seed(self.seed, self.count - 1))


def _conv(x, kernels, filters, size, name, stride=1, padding="same", use_bias=True, activation=None):
    return keras.layers.Conv2D(filters, size, strides=stride, padding=padding, use_bias=use_bias,
                               activation=activation, kernel_initializer=kernels(),
                               bias_initializer="zeros", name=name)(x)


def _dense(x, kernels, units, name, activation=None):
    return keras.layers.Dense(units, activation=activation, kernel_initializer=kernels(),
                              bias_initializer="zeros", name=name)(x)


def _choice(name: str, value, valid: tuple):
    if value not in valid:
        raise ValueError(f"{name}={value!r} is not one of {valid}")


def simple_cnn(inputs, num_classes, kernels, *, num_conv_layers: int, num_filters: int, num_units: int,
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
        x = _conv(x, kernels, num_filters, kernel_size, f"conv_{i}", stride, padding, activation="relu")
        if pooling == "max":
            x = keras.layers.MaxPooling2D(pool_size, pool_stride, padding="same", name=f"pool_{i}")(x)
    if pooling == "final":
        x = keras.layers.MaxPooling2D(pool_size, pool_stride, padding="valid", name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = _dense(x, kernels, num_units, "dense_0", activation="relu")
    return keras.Model(inputs, _dense(x, kernels, num_classes, HEAD), name="simple_cnn")


# A.2: VGG16 "Configuration D" of Simonyan & Zisserman; integers are conv filters, "M" is max-pool.
VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def vgg16(inputs, num_classes, kernels):
    """A.2 VGG16 (config D) without the two FC-4096 layers: 13 convs conv_0..conv_12, 3x3 SAME
    stride 1 with bias + ReLU, 2x2 stride-2 SAME max-pools pool_0..pool_4, Flatten, head."""
    x, n_conv, n_pool = inputs, 0, 0
    for item in VGG16_CONFIG:
        if item == "M":  # A.2: max-pool over 2x2 window, SAME padding, stride 2
            x = keras.layers.MaxPooling2D(2, 2, padding="same", name=f"pool_{n_pool}")(x)
            n_pool += 1
        else:  # A.2: 3x3 filters with biases, SAME padding, stride 1, ReLU
            x = _conv(x, kernels, item, 3, f"conv_{n_conv}", activation="relu")
            n_conv += 1
    x = keras.layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, _dense(x, kernels, num_classes, HEAD), name="vgg16")


def _preact_block(x, kernels, filters, stride, name, norm):
    """Pre-activation basic block (He et al. 2016, "Identity mappings"): norm-ReLU-conv3x3 twice,
    identity shortcut, or a 1x1 projection of the pre-activated input when the shape changes.
    Convs have no bias: each is followed by a normalisation layer (which has its own shift)."""
    h = keras.layers.ReLU(name=f"{name}_relu1")(norm(f"{name}_norm1")(x))
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv(h, kernels, filters, 1, f"{name}_shortcut", stride, use_bias=False)
    h = _conv(h, kernels, filters, 3, f"{name}_conv1", stride, use_bias=False)
    h = keras.layers.ReLU(name=f"{name}_relu2")(norm(f"{name}_norm2")(h))
    h = _conv(h, kernels, filters, 3, f"{name}_conv2", 1, use_bias=False)
    return keras.layers.Add(name=f"{name}_add")([shortcut, h])


def _preact_head(x, kernels, num_classes, norm):
    x = keras.layers.ReLU(name="final_relu")(norm("final_norm")(x))
    x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    return _dense(x, kernels, num_classes, HEAD)


def resnet18(inputs, num_classes, kernels, *, group_norm_groups: int = 32, resnet_stem: str = "imagenet"):
    """A.2 ResNet18: vanilla ResNet-v2 (pre-activation) with BatchNorm replaced by GroupNorm.
    Stem "imagenet": 7x7/2 conv + 3x3/2 max-pool; "cifar": 3x3/1 conv. Then 4 stages x 2 basic blocks
    (64, 128, 256, 512 filters; stride 2 in the first block of stages 2-4), final GN-ReLU-GAP-head.
    As in the reference v2 implementation the stem conv is not followed by norm/ReLU."""
    _choice("resnet_stem", resnet_stem, ("imagenet", "cifar"))

    def norm(name):
        return keras.layers.GroupNormalization(groups=group_norm_groups, name=name)

    if resnet_stem == "imagenet":
        x = _conv(inputs, kernels, 64, 7, "stem_conv", 2, use_bias=False)
        x = keras.layers.MaxPooling2D(3, 2, padding="same", name="stem_pool")(x)
    else:
        x = _conv(inputs, kernels, 64, 3, "stem_conv", 1, use_bias=False)
    for stage, filters in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            stride = 2 if stage > 1 and block == 0 else 1
            x = _preact_block(x, kernels, filters, stride, f"stage{stage}_block{block}", norm)
    return keras.Model(inputs, _preact_head(x, kernels, num_classes, norm), name="resnet18")


def wrn28(inputs, num_classes, kernels, *, width_factor: int = 4, first_conv_kernel_size: int = 3):
    """A.7 wide ResNet (Zagoruyko & Komodakis 2016), pre-activation with BatchNorm: 4 blocks per group
    (depth 6*4+4 = 28), stem conv of 16 filters (A.7 used 5x5), groups of 16k, 32k, 64k filters with
    strides 1, 2, 2, final BN-ReLU-GAP-head. BN momentum 0.9 / epsilon 1e-5 as in the WRN reference
    code (PyTorch defaults); no dropout."""

    def norm(name):
        return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)

    x = _conv(inputs, kernels, 16, first_conv_kernel_size, "stem_conv", use_bias=False)
    for group, (filters, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
        for block in range(4):  # A.7: 4 blocks per group
            x = _preact_block(x, kernels, filters * width_factor, stride if block == 0 else 1,
                              f"group{group}_block{block}", norm)
    return keras.Model(inputs, _preact_head(x, kernels, num_classes, norm), name="wrn28")


def mlp(inputs, num_classes, kernels, *, hidden_units: tuple[int, ...] | list[int] = (2048, 256)):
    """E.1 fully connected ReLU network (default widths 2048, 256 as in Figure 20): Flatten if the
    input has rank > 1, dense_0..dense_{n-1} with ReLU, head."""
    x = keras.layers.Flatten(name="flatten")(inputs) if len(inputs.shape) > 2 else inputs
    for i, units in enumerate(hidden_units):
        x = _dense(x, kernels, int(units), f"dense_{i}", activation="relu")
    return keras.Model(inputs, _dense(x, kernels, num_classes, HEAD), name="mlp")


@dataclass(frozen=True)
class Architecture:
    builder: Callable[..., keras.Model]  # builder(inputs, num_classes, kernels, **options)
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
                init_algorithm: str = "he", init_scale: float = 1.0, seed: int = 0, **options) -> keras.Model:
    """Build `architecture` with fresh weights; the same arguments give bit-identical weights."""
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
    kernels = _Kernels(init_algorithm, init_scale, seed)
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    return arch.builder(inputs, num_classes, kernels, **options)


def transferable_layers(model: keras.Model) -> list[str]:
    """Names of the layers owning weights, in the model's topological order, head excluded."""
    return [layer.name for layer in model.layers if layer.weights and layer.name != HEAD]
