"""Tests for rltx.models, each against an oracle computed independently of the module."""
import math

import keras
import numpy as np
import pytest

from rltx.models import ARCHITECTURES, HEAD, build_model, kernel_initializer, transferable_layers

CNN = dict(num_conv_layers=3, num_filters=8, num_units=16)


def _kernel(model, name):
    return model.get_layer(name).kernel.numpy()


# 1. VGG16 conv stack against Keras' own VGG16 -------------------------------------------------

def test_vgg16_conv_params_match_keras_applications():
    ours = build_model("vgg16", (32, 32, 3), 10)
    ref = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    ref_convs = [l for l in ref.layers if isinstance(l, keras.layers.Conv2D)]
    our_convs = [ours.get_layer(f"conv_{i}") for i in range(13)]
    assert sum(l.count_params() for l in our_convs) == sum(l.count_params() for l in ref_convs)
    assert [l.kernel.shape for l in our_convs] == [l.kernel.shape for l in ref_convs]
    # 5 pools of a 32x32 input -> 1x1x512 -> head has 512*10 + 10 params
    assert ours.get_layer(HEAD).count_params() == 512 * 10 + 10


# 2. Initialisation statistics ------------------------------------------------------------------

@pytest.mark.parametrize("scale", [1.0, 0.37])
def test_he_std_of_conv_kernel(scale):
    w = keras.ops.convert_to_numpy(kernel_initializer("he", scale, seed=3)((3, 3, 64, 128)))
    expected = math.sqrt(scale * 2.0 / (3 * 3 * 64))  # A.3: init_scale on He's variance
    assert abs(w.std() / expected - 1) < 0.03
    assert abs(w.mean()) < 0.03 * expected
    # untruncated normal: about 0.27% of N(0, s) samples lie beyond 3s (a truncated normal has none)
    assert (np.abs(w) > 3 * expected).mean() > 0.001


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_he_std_of_dense_layer_in_model_and_zero_biases(scale):
    model = build_model("mlp", (1024,), 10, init_scale=scale, hidden_units=[1024])
    w = _kernel(model, "dense_0")
    expected = math.sqrt(scale * 2.0 / 1024)
    assert abs(w.std() / expected - 1) < 0.03
    assert abs(w.mean()) < 0.03 * expected
    head = _kernel(model, HEAD)  # the head is He-initialised too
    assert abs(head.std() / expected - 1) < 0.03
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            assert not np.any(layer.bias.numpy())


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_orthogonal_dense_kernel(scale):
    model = build_model("mlp", (256,), 10, init_algorithm="orthogonal", init_scale=scale,
                        hidden_units=[512])
    w = _kernel(model, "dense_0").astype(np.float64)  # (fan_in 256, fan_out 512)
    assert abs(w.std() / math.sqrt(2 * scale / 512) - 1) < 0.03
    np.testing.assert_allclose(w @ w.T, 2 * scale * np.eye(256), atol=1e-4)
    assert not np.any(model.get_layer("dense_0").bias.numpy())


def test_orthogonal_conv_kernel():
    w = keras.ops.convert_to_numpy(kernel_initializer("orthogonal", 1.5, seed=1)((3, 3, 16, 32)))
    flat = w.reshape(-1, 32).astype(np.float64)  # (fan_in 144, fan_out 32)
    np.testing.assert_allclose(flat.T @ flat, 2 * 1.5 * np.eye(32), atol=1e-4)
    assert abs(flat.std() / math.sqrt(2 * 1.5 / 144) - 1) < 0.03


def test_unknown_init_algorithm():
    with pytest.raises(ValueError, match="glorot.*he, orthogonal"):
        build_model("mlp", (4,), 2, init_algorithm="glorot")


# 3. Determinism ------------------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ["he", "orthogonal"])
def test_same_seed_same_weights_different_seed_different(algorithm):
    a, b, c = (build_model("simple_cnn", (8, 8, 3), 5, init_algorithm=algorithm, seed=s, **CNN)
               for s in (7, 7, 8))
    for wa, wb, wc in zip(a.get_weights(), b.get_weights(), c.get_weights()):
        np.testing.assert_array_equal(wa, wb)
        if wa.ndim > 1:  # kernels (biases are all zero)
            assert not np.array_equal(wa, wc)
    # layers of one model get different seeds: two same-shape convs differ
    assert not np.array_equal(_kernel(a, "conv_1"), _kernel(a, "conv_2"))


# 4. Layer names, shapes, forward passes --------------------------------------------------------

def test_transferable_layers_simple_cnn_and_vgg16():
    cnn = build_model("simple_cnn", (8, 8, 3), 5, **CNN)
    assert transferable_layers(cnn) == ["conv_0", "conv_1", "conv_2", "dense_0"]
    vgg = build_model("vgg16", (32, 32, 3), 10)
    assert transferable_layers(vgg) == [f"conv_{i}" for i in range(13)]
    assert transferable_layers(build_model("vgg16", (32, 32, 3), 7, seed=1)) == transferable_layers(vgg)


def test_resnet18_shape_names_and_param_count():
    model = build_model("resnet18", (32, 32, 3), 10)
    assert model.output_shape == (None, 10)
    names = transferable_layers(model)
    assert names == transferable_layers(build_model("resnet18", (32, 32, 3), 10, seed=5))
    assert names[0] == "stem_conv" and names[-1] == "final_norm" and HEAD not in names
    assert len(names) == 1 + 8 * 4 + 3 + 1  # stem + 8 blocks x (2 norms, 2 convs) + 3 shortcuts + final
    assert all(isinstance(model.get_layer(n), keras.layers.GroupNormalization)
               for n in names if "norm" in n)
    # torchvision's ResNet18 has 11,689,512 params (1000 classes, BN). With a 10-class head:
    # -990*513. v1 -> v2: drop the stem BN (-2*64) and shortcut BNs (-2*(128+256+512)), add the
    # final norm (+2*512); first-block norm1 sees the input width (-2*(64+128+256)).
    expected = 11_689_512 - 990 * 513 - 2 * 64 - 2 * (128 + 256 + 512) + 2 * 512 - 2 * (64 + 128 + 256)
    assert model.count_params() == expected


def test_wrn28_10_param_count_matches_reference():
    # WRN-28-10 on CIFAR10 has 36,479,194 trainable parameters (Zagoruyko & Komodakis, "36.5M").
    model = build_model("wrn28", (32, 32, 3), 10, width_factor=10)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 36_479_194
    assert any(isinstance(l, keras.layers.BatchNormalization) for l in model.layers)


def test_wrn28_first_conv_kernel_size():
    model = build_model("wrn28", (16, 16, 3), 10, width_factor=1, first_conv_kernel_size=5)
    assert _kernel(model, "stem_conv").shape == (5, 5, 3, 16)  # A.7: 5x5 first conv
    assert model.output_shape == (None, 10)


@pytest.mark.parametrize("architecture,input_shape,options", [
    ("simple_cnn", (32, 32, 3), CNN),
    ("simple_cnn", (32, 32, 3), dict(CNN, num_conv_layers=2, pooling="max", padding="valid", stride=2)),
    ("vgg16", (32, 32, 3), {}),
    ("resnet18", (32, 32, 3), dict(group_norm_groups=8)),
    ("resnet18", (32, 32, 3), dict(resnet_stem="cifar")),
    ("wrn28", (32, 32, 3), dict(width_factor=1)),
    ("mlp", (30,), dict(hidden_units=[16, 8])),
    ("mlp", (4, 4, 2), dict(hidden_units=(8,))),
])
def test_forward_pass(architecture, input_shape, options):
    model = build_model(architecture, input_shape, 6, **options)
    x = np.random.default_rng(0).uniform(-1, 1, (2,) + input_shape).astype("float32")
    y = keras.ops.convert_to_numpy(model(x))
    assert y.shape == (2, 6) and np.all(np.isfinite(y))
    head = model.get_layer(HEAD)
    assert model.layers[-1] is head and head.activation is keras.activations.linear
    assert head.units == 6


def test_registry_metadata():
    assert {k: a.default_rescaling for k, a in ARCHITECTURES.items()} == {
        "simple_cnn": "l2", "vgg16": "l2", "mlp": "l2", "resnet18": "none", "wrn28": "none"}
    assert ARCHITECTURES["vgg16"].options == ()
    assert set(ARCHITECTURES["simple_cnn"].options) == {
        "num_conv_layers", "num_filters", "num_units", "kernel_size", "stride", "padding", "pooling",
        "pool_size", "pool_stride"}
    assert set(ARCHITECTURES["resnet18"].options) == {"group_norm_groups", "resnet_stem"}
    assert set(ARCHITECTURES["wrn28"].options) == {"width_factor", "first_conv_kernel_size"}
    assert ARCHITECTURES["mlp"].options == ("hidden_units",)


# 5. Errors -------------------------------------------------------------------------------------

def test_unknown_architecture():
    with pytest.raises(ValueError, match=r"'resnet50'.*mlp, resnet18, simple_cnn, vgg16, wrn28"):
        build_model("resnet50", (32, 32, 3), 10)


def test_unknown_missing_and_bad_options():
    with pytest.raises(ValueError, match=r"vgg16 does not take option\(s\) \['num_units'\]"):
        build_model("vgg16", (32, 32, 3), 10, num_units=3)
    with pytest.raises(ValueError, match=r"\['num_filter'\].*valid options: .*'num_filters'"):
        build_model("simple_cnn", (8, 8, 3), 10, num_filter=3)
    with pytest.raises(ValueError, match=r"requires option\(s\) \['num_units'\]"):
        build_model("simple_cnn", (8, 8, 3), 10, num_conv_layers=1, num_filters=2)
    with pytest.raises(ValueError, match="padding='full'"):
        build_model("simple_cnn", (8, 8, 3), 10, **CNN, padding="full")
    with pytest.raises(ValueError, match="resnet_stem"):
        build_model("resnet18", (32, 32, 3), 10, resnet_stem="tiny")


# 6. simple_cnn geometry follows the Keras output-size formula ----------------------------------

@pytest.mark.parametrize("kernel_size,stride,padding,pooling", [
    (3, 1, "same", "none"), (3, 1, "valid", "none"), (3, 2, "valid", "none"),
    (5, 2, "same", "none"), (3, 1, "same", "max"), (3, 2, "valid", "max"), (1, 3, "valid", "none"),
    (3, 1, "same", "final"), (3, 1, "valid", "final"),
])
def test_simple_cnn_geometry(kernel_size, stride, padding, pooling):
    size = 23
    model = build_model("simple_cnn", (size, size, 1), 3, num_conv_layers=2, num_filters=4,
                        num_units=5, kernel_size=kernel_size, stride=stride, padding=padding,
                        pooling=pooling)
    for i in range(2):
        size = math.ceil(size / stride) if padding == "same" else (size - kernel_size) // stride + 1
        assert model.get_layer(f"conv_{i}").output.shape == (None, size, size, 4)
        assert _kernel(model, f"conv_{i}").shape[:2] == (kernel_size, kernel_size)
        if pooling == "max":
            size = math.ceil(size / 2)  # 2x2 stride-2 SAME pooling
            assert model.get_layer(f"pool_{i}").output.shape == (None, size, size, 4)
    if pooling == "final":  # E.3: one 3x3 stride-2 VALID max-pool after the last conv
        model = build_model("simple_cnn", (23, 23, 1), 3, num_conv_layers=2, num_filters=4, num_units=5,
                            kernel_size=kernel_size, stride=stride, padding=padding, pooling=pooling,
                            pool_size=3, pool_stride=2)
        size = (size - 3) // 2 + 1
        assert model.get_layer("pool").output.shape == (None, size, size, 4)
    assert model.get_layer("dense_0").kernel.shape == (size * size * 4, 5)
