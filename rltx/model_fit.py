"""Whether a recipe's architecture fits its input shape, worked out by arithmetic on the layer layout
of `rltx.models` (no Keras), so that a recipe that cannot be built is refused, naming the keys to
change, before TensorFlow loads and before anything is written. tests/test_model_fit.py checks it
against Keras building the models."""
from __future__ import annotations

import math

from rltx.errors import UsageError

CONVOLUTIONAL = ("simple_cnn", "vgg16", "resnet18", "wrn28")
RESNET18_CHANNELS = 64  # its narrowest normalised layer (stage 1); the others are multiples (A.2)


def check_architecture(recipe) -> None:
    """Options that fail whatever the input: GroupNorm groups must divide ResNet18's channels."""
    if recipe.architecture == "resnet18" and RESNET18_CHANNELS % recipe.group_norm_groups:
        raise UsageError(f"group_norm_groups {recipe.group_norm_groups} does not divide resnet18's "
                         f"{RESNET18_CHANNELS} channels; use 1, 2, 4, 8, 16, 32 or 64")


def check_fits(recipe, input_shape: tuple[int, ...], where: str) -> None:
    """The recipe's model can be built on inputs of `input_shape` (without the batch axis); `where`
    says where the shape comes from (e.g. "the gaussian_* keys")."""
    if recipe.architecture not in CONVOLUTIONAL:
        return  # mlp flattens any input
    if len(input_shape) != 3:
        raise UsageError(f"{recipe.architecture} needs images but {where} gives vectors of shape "
                         f"{tuple(input_shape)}; use architecture mlp, or images (e.g. gaussian_patch_size "
                         "and gaussian_image_size > 0)")
    if recipe.architecture == "simple_cnn":
        _check_simple_cnn(recipe, int(input_shape[0]), where)
    # vgg16, resnet18 and wrn28 pad every convolution and pooling (SAME): any side >= 1 fits


def _check_simple_cnn(recipe, side: int, where: str) -> None:
    """A.2's Simple CNN as rltx.models.simple_cnn lays it out."""
    image = f"the {side}x{side} images of {where}"
    for i in range(recipe.num_conv_layers):
        side = _output_side(side, recipe.kernel_size, recipe.stride, recipe.padding)
        if side < 1:
            raise UsageError(f"simple_cnn does not fit {image}: conv_{i} (kernel_size {recipe.kernel_size}, "
                             f"stride {recipe.stride}, padding valid) leaves nothing; lower kernel_size or "
                             "num_conv_layers, or set padding: same")
        if recipe.pooling == "max":
            side = _output_side(side, recipe.pool_size, recipe.pool_stride, "same")
    if recipe.pooling == "final" and _output_side(side, recipe.pool_size, recipe.pool_stride, "valid") < 1:
        raise UsageError(f"simple_cnn does not fit {image}: its final {recipe.pool_size}x{recipe.pool_size} "
                         f"max-pool sees {side}x{side} maps; lower pool_size, kernel_size, stride or "
                         "num_conv_layers, or set pooling: none")


def _output_side(side: int, window: int, stride: int, padding: str) -> int:
    """Keras' output size of a convolution or pooling along one axis."""
    if padding == "same":
        return math.ceil(side / stride)
    return (side - window) // stride + 1 if side >= window else 0
