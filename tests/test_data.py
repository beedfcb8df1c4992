"""Data sources: every check uses an oracle independent of the code under test; no network."""
import os
import tempfile

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import time  # noqa: E402

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402
from sklearn.datasets import load_digits, load_sample_images  # noqa: E402

import rltx.data.tfds_source as tfds_source  # noqa: E402
from rltx.config import DataSpec  # noqa: E402
from rltx.data import Source, Split, open_source, parse_spectrum, to_model_input  # noqa: E402
from rltx.data.base import resize_central_crop  # noqa: E402
from rltx.errors import UsageError  # noqa: E402


def assert_covariance_matches(samples, sigma, z=5.0):
    """Entrywise |S - Sigma| <= z * Wishart standard error sqrt((S_ii S_jj + S_ij^2) / n), known mean 0."""
    n = len(samples)
    s = samples.T.astype(np.float64) @ samples.astype(np.float64) / n
    se = np.sqrt((np.outer(np.diag(sigma), np.diag(sigma)) + sigma ** 2) / n)
    assert np.all(np.abs(s - sigma) <= z * se), np.max(np.abs(s - sigma) / se)


def assert_uncorrelated(a, b, sigma_a, sigma_b, z=5.0):
    n = len(a)
    cross = a.T.astype(np.float64) @ b.astype(np.float64) / n
    se = np.sqrt(np.outer(np.diag(sigma_a), np.diag(sigma_b)) / n)
    assert np.all(np.abs(cross) <= z * se), np.max(np.abs(cross) / se)


# ------------------------------------------------------------------------------------ gaussian
def test_gaussian_vectors_have_the_requested_covariance():
    spectrum = [0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0]
    src = open_source(DataSpec.of("gaussian", gaussian_spectrum=spectrum, gaussian_rotate=True, gaussian_seed=3,
                      gaussian_num_train=20000, gaussian_num_test=10))
    assert isinstance(src, Source)
    assert (src.input_shape, src.num_train, src.num_test, src.num_classes) == ((8,), 20000, 10, 0)
    sigma = src.covariance
    # the rotated Sigma is symmetric, really rotated, and keeps the spectrum as eigenvalues
    # O diag(l) O^T in float64: entries off by <= d eps max(l) (Higham Sec. 3.5), so the asymmetry
    # too and, by Weyl, the eigenvalues (plus eigvalsh's own d eps ||Sigma||, Higham Sec. 20)
    floor = 4 * len(spectrum) * np.finfo(np.float64).eps * max(spectrum)
    np.testing.assert_allclose(sigma, sigma.T, rtol=0, atol=floor)
    np.testing.assert_allclose(np.linalg.eigvalsh(sigma), spectrum, rtol=0, atol=2 * floor)
    assert np.max(np.abs(sigma - np.diag(np.diag(sigma)))) > 0.1
    split = src.train(np.arange(20000))
    assert split.x.dtype == np.float32 and split.y.dtype == np.int64 and not split.y.any()
    assert np.all(np.abs(split.x.mean(0)) <= 5 * np.sqrt(np.diag(sigma) / 20000))
    assert_covariance_matches(split.x, sigma)


def test_labelled_gaussian_means_and_noise_have_their_stated_covariances():
    """Class means ~ N(0, s^2 O diag(L^2/mean L) O^T), x - m_y ~ N(0, Sigma), labels uniform: each
    checked against the known parameter (Wishart errors, chi-square)."""
    spectrum, s, classes = np.array([0.5, 1.0, 2.0, 4.0]), 0.5, 4000
    src = open_source(DataSpec.of("gaussian", gaussian_spectrum=spectrum.tolist(), gaussian_rotate=True, gaussian_seed=2,
                      gaussian_num_train=20000, gaussian_num_test=10, gaussian_num_classes=classes,
                      gaussian_class_separation=s))
    assert src.num_classes == classes and src.has_labels
    rotation = src.rotation
    assert_covariance_matches(src.class_means, s**2 * (rotation * spectrum**2 / spectrum.mean()) @ rotation.T)
    split = src.train(np.arange(20000))
    assert_covariance_matches(split.x - src.class_means[split.y], src.covariance)
    assert stats.chisquare(np.bincount(split.y, minlength=classes)).pvalue > 1e-3


def test_gaussian_unrotated_is_diagonal():
    src = open_source(DataSpec.of("gaussian", gaussian_spectrum="1, 2, 4", gaussian_num_train=20000, gaussian_num_test=1))
    np.testing.assert_array_equal(src.covariance, np.diag([1.0, 2.0, 4.0]))
    assert_covariance_matches(src.train(np.arange(20000)).x, np.diag([1.0, 2.0, 4.0]))


def _patches_by_loops(images, k):
    n, size = len(images), images.shape[1]
    return {(a, b): images[:, a * k:(a + 1) * k, b * k:(b + 1) * k, :].reshape(n, -1)
            for a in range(size // k) for b in range(size // k)}


def test_gaussian_image_patches_are_iid_with_covariance_sigma():
    k, size, n = 2, 8, 3000  # 16 patches per image, d = 2*2*3 = 12
    src = open_source(DataSpec.of("gaussian", gaussian_spectrum="linspace(0.2, 2.4, 12)", gaussian_patch_size=k,
                      gaussian_image_size=size, gaussian_rotate=True, gaussian_seed=1,
                      gaussian_num_train=n, gaussian_num_test=5))
    assert src.input_shape == (8, 8, 3)
    images = src.train(np.arange(n)).x
    assert images.shape == (n, 8, 8, 3)
    by_position = _patches_by_loops(images, k)
    # a second extraction method agrees on the (row, col, channel) flattening order
    tf_patches = tf.image.extract_patches(images, [1, k, k, 1], [1, k, k, 1], [1, 1, 1, 1], "VALID").numpy()
    np.testing.assert_array_equal(tf_patches[:, 1, 2], by_position[(1, 2)])
    sigma = src.covariance
    assert_covariance_matches(np.concatenate(list(by_position.values())), sigma)
    assert_covariance_matches(by_position[(3, 3)], sigma)
    for other in [(0, 1), (1, 0), (2, 3)]:
        assert_uncorrelated(by_position[(0, 0)], by_position[other], sigma, sigma)


def test_gaussian_patch_order_is_row_col_channel():
    spectrum = np.arange(1.0, 13.0)  # distinct variances: pixel (r, c, ch) of a patch has spectrum[(r*2+c)*3+ch]
    src = open_source(DataSpec.of("gaussian", gaussian_spectrum=spectrum, gaussian_patch_size=2, gaussian_image_size=4,
                      gaussian_num_train=8000, gaussian_num_test=1))
    var = src.train(np.arange(8000)).x.astype(np.float64).var(0)  # [4, 4, 3]
    expected = np.tile(spectrum.reshape(2, 2, 3), (2, 2, 1))
    np.testing.assert_allclose(var, expected, rtol=5 * np.sqrt(2 / 8000))


def test_gaussian_geometry_errors():
    with pytest.raises(UsageError, match="k\\*k\\*C"):
        open_source(DataSpec.of("gaussian", gaussian_spectrum=[1.0] * 10, gaussian_patch_size=3, gaussian_image_size=9))
    with pytest.raises(UsageError, match="multiple"):
        open_source(DataSpec.of("gaussian", gaussian_spectrum=[1.0] * 27, gaussian_patch_size=3, gaussian_image_size=10))
    with pytest.raises(UsageError, match="gaussian_spectrum"):
        open_source(DataSpec.of("gaussian"))


def test_parse_spectrum():
    values = parse_spectrum("linspace(0.1, 3.0, 30)")  # App. E.1: diag(0.1, 0.2, ..., 3.0)
    np.testing.assert_array_equal(values, np.linspace(0.1, 3.0, 30))
    # linspace's a + i * step vs 0.1 * i: each a few roundings of numbers <= 3, so <= 4 eps * 3
    np.testing.assert_allclose(values, [0.1 * i for i in range(1, 31)], rtol=0, atol=4 * np.finfo(np.float64).eps * 3)
    np.testing.assert_allclose(parse_spectrum(" linspace( 1 ,1.9,10 ) "), np.arange(10) / 10 + 1)
    np.testing.assert_array_equal(parse_spectrum([1, 2.5]), [1.0, 2.5])
    np.testing.assert_array_equal(parse_spectrum("1, 2e-1"), [1.0, 0.2])
    for bad in ["linspace(0, 3, 30)", "linspace(-1, 3, 5)", "linspace(1, 3)", "linspace(1, 3, 0)",
                "__import__('os')", "range(3)", "", [], [1, -2], [1, 0], [[1, 2]], ["a"], [float("nan")]]:
        with pytest.raises(UsageError):
            parse_spectrum(bad)


def test_gaussian_is_deterministic_per_seed_and_split():
    kw = dict(gaussian_spectrum="linspace(1, 2, 5)", gaussian_rotate=True, gaussian_num_train=50, gaussian_num_test=50)
    a, b, c = (open_source(DataSpec.of("gaussian", gaussian_seed=seed, **kw)) for seed in (7, 7, 8))
    idx = np.array([4, 0, 49, 4])
    np.testing.assert_array_equal(a.train(idx).x, b.train(idx).x)
    np.testing.assert_array_equal(a.test(idx).x, b.test(idx).x)
    np.testing.assert_array_equal(a.covariance, b.covariance)
    assert not np.allclose(a.train(idx).x, c.train(idx).x)
    assert not np.allclose(a.covariance, c.covariance)
    assert not np.allclose(a.train(idx).x, a.test(idx).x)
    np.testing.assert_array_equal(a.train(idx).x[0], a.train(idx).x[3])  # same index, same example
    kw["gaussian_rotate"] = False
    assert not np.allclose(open_source(DataSpec.of("gaussian", gaussian_seed=7, **kw)).train(idx).x,
                           open_source(DataSpec.of("gaussian", gaussian_seed=8, **kw)).train(idx).x)
    with pytest.raises(UsageError, match="out of range"):
        a.train(np.array([50]))


# ------------------------------------------------------------------------------- to_model_input
def test_to_model_input_scales_uint8_to_minus_one_one():
    out = to_model_input(tf.constant([0, 127, 128, 255], tf.uint8)).numpy()
    assert out.dtype == np.float32
    # float32: 0 / 127.5 - 1 and 255 / 127.5 - 1 are exact; 127 / 127.5 and 128 / 127.5 each carry
    # one rounding (<= eps32 / 2 relative), the subtraction of 1 is exact (Sterbenz)
    np.testing.assert_array_equal(out[[0, 3]], [-1.0, 1.0])
    assert abs((out[1] + out[2]) / 2) <= np.finfo(np.float32).eps  # 127.5 -> 0
    np.testing.assert_allclose(to_model_input(np.array([127.5, -3.0])).numpy(), [127.5, -3.0])
    ds = tf.data.Dataset.from_tensor_slices(np.array([[0], [255]], np.uint8)).map(to_model_input)
    np.testing.assert_array_equal(np.concatenate(list(ds.as_numpy_iterator())), [-1.0, 1.0])  # exact, as above


# ------------------------------------------------------------------------------------------- npz
def test_npz_round_trip_with_real_digits(tmp_path):
    digits = load_digits()
    x = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)  # [N, 8, 8], 0..16 -> 0..255
    y = digits.target
    path = tmp_path / "digits.npz"
    np.savez(path, x=x[:1500], y=y[:1500], x_test=x[1500:], y_test=y[1500:])
    src = open_source(DataSpec.of("npz", data_path=str(path)))
    assert (src.input_shape, src.num_train, src.num_test, src.num_classes) == ((8, 8, 1), 1500, len(x) - 1500, 10)
    idx = np.random.default_rng(0).permutation(1500)[:100]
    split = src.train(idx)
    assert split.x.dtype == np.uint8 and split.y.dtype == np.int64
    np.testing.assert_array_equal(split.x[..., 0], x[idx])
    np.testing.assert_array_equal(split.y, y[idx])
    np.testing.assert_array_equal(src.test(np.array([3, 1])).y, y[[1503, 1501]])
    floats = tmp_path / "floats.npz"
    np.savez(floats, x=digits.data.astype(np.float64), y=y)
    fsrc = open_source(DataSpec.of("npz", data_path=str(floats)))
    assert fsrc.input_shape == (64,) and fsrc.num_test == 0
    assert fsrc.train(np.array([5])).x.dtype == np.float32
    np.testing.assert_array_equal(fsrc.train(np.array([5])).x[0], digits.data[5])


def test_npz_is_resized_to_image_size_on_opening(tmp_path):
    """A 32x32 npz read at image_size 16 (how a CIFAR-sized cross-check set meets the 16x16 quick
    profiles). Oracle: a symmetric, normalised resampling kernel keeps a linear ramp linear, so away
    from the border new pixel j (covering old pixels 2j and 2j+1) holds the ramp at 2j + 0.5."""
    columns = np.arange(32, dtype=np.float64)
    ramp = np.broadcast_to((10.0 + 7.0 * columns)[None, None, :, None], (5, 32, 32, 3))
    np.savez(tmp_path / "float.npz", x=ramp - 120.0, y=np.arange(5) % 2)
    np.savez(tmp_path / "uint8.npz", x=ramp.astype(np.uint8), y=np.arange(5) % 2,
             x_test=ramp[:2].astype(np.uint8), y_test=np.array([0, 1]))
    expected = 10.0 + 7.0 * (2 * np.arange(16) + 0.5)
    floats = open_source(DataSpec.of("npz", data_path=str(tmp_path / "float.npz"), image_size=16))
    x = floats.train(np.arange(5)).x
    assert floats.input_shape == (16, 16, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, :, 1:-1], np.broadcast_to((expected - 120.0)[1:-1, None], (5, 16, 14, 3)), atol=1e-3)
    pixels = open_source(DataSpec.of("npz", data_path=str(tmp_path / "uint8.npz"), image_size=16))
    train, test = pixels.train(np.arange(5)).x, pixels.test(np.arange(2)).x
    assert train.dtype == np.uint8 and test.shape == (2, 16, 16, 3)
    assert np.abs(train[:, :, 1:-1].astype(float) - expected[1:-1, None]).max() <= 0.5  # rounded once
    np.testing.assert_array_equal(test, train[:2])
    same = open_source(DataSpec.of("npz", data_path=str(tmp_path / "uint8.npz"), image_size=32))
    np.testing.assert_array_equal(same.train(np.arange(5)).x, ramp.astype(np.uint8))  # its own size: untouched


def test_npz_resizing_is_antialiased_as_image_folders_are(tmp_path):
    """Stripes of period 4 halved: point-sampling bilinear would keep 0 and 255, an antialiasing
    (area-widened) kernel blends neighbouring stripes; and each image is resized as resize_exact
    resizes an image of an image folder."""
    from rltx.data.base import resize_exact
    stripes = np.tile(np.array([0, 0, 255, 255], np.uint8), 8)
    x = np.broadcast_to(stripes[None, None, :, None], (3, 32, 32, 3)).copy()
    x[1] = np.asarray(load_sample_images().images[0][100:132, 200:232])  # a real photograph's crop
    np.savez(tmp_path / "stripes.npz", x=x, y=np.arange(3))
    resized = open_source(DataSpec.of("npz", data_path=str(tmp_path / "stripes.npz"), image_size=16)).train(np.arange(3)).x
    inner = resized[0, :, 1:-1, 0].astype(int)
    assert ((inner > 0) & (inner < 255)).all()
    for image, expected in zip(x, resized):
        np.testing.assert_array_equal(resize_exact(image, 16).numpy(), expected)


def test_npz_errors(tmp_path):
    with pytest.raises(UsageError, match="data_path"):
        open_source(DataSpec.of("npz"))
    with pytest.raises(UsageError, match="does not exist"):
        open_source(DataSpec.of("npz", data_path=str(tmp_path / "missing.npz")))
    np.savez(tmp_path / "bad.npz", x=np.zeros((3, 4, 4), np.int32), y=np.zeros(3, int))
    with pytest.raises(UsageError, match="uint8"):
        open_source(DataSpec.of("npz", data_path=str(tmp_path / "bad.npz")))


# ---------------------------------------------------------------------------------- image folder
def _tiles():
    china, flower = load_sample_images().images  # two real 427 x 640 RGB photos
    return {"zebra": [china[100:140, 200:240], china[300:340, 0:40]],
            "apple": [flower[50:90, 300:340], flower[200:240, 400:440], flower[0:40, 0:40]]}


def _write_png(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    tf.io.write_file(str(path), tf.io.encode_png(image))


def test_image_folder_labels_follow_sorted_folder_names(tmp_path):
    tiles = _tiles()
    for cls, images in tiles.items():  # written zebra first; sorted order is apple (0), zebra (1)
        for i, image in enumerate(images):
            _write_png(tmp_path / cls / f"{i}.png", image)
    src = open_source(DataSpec.of("image_folder", data_path=str(tmp_path), image_size=40))
    assert src.class_names == ("apple", "zebra")
    assert (src.input_shape, src.num_train, src.num_test, src.num_classes) == ((40, 40, 3), 5, 0, 2)
    split = src.train(np.array([4, 0, 3]))  # apple/0, apple/1, apple/2, zebra/0, zebra/1
    assert split.x.dtype == np.uint8
    np.testing.assert_array_equal(split.y, [1, 0, 1])
    np.testing.assert_array_equal(split.x[0], tiles["zebra"][1])  # same size: pixels unchanged
    np.testing.assert_array_equal(split.x[1], tiles["apple"][0])
    small = open_source(DataSpec.of("image_folder", data_path=str(tmp_path), image_size=20))
    assert small.train(np.arange(5)).x.shape == (5, 20, 20, 3)
    with pytest.raises(UsageError, match="image_size"):
        open_source(DataSpec.of("image_folder", data_path=str(tmp_path)))


def test_image_folder_class_index_is_sorted_name_order(tmp_path):
    tile = _tiles()["apple"][0]
    names = ["m", "B", "zz", "a", "c10", "c2", "Q"]
    for name in names:  # created unsorted
        _write_png(tmp_path / name / "x.png", tile)
    src = open_source(DataSpec.of("image_folder", data_path=str(tmp_path), image_size=8))
    assert list(src.class_names) == sorted(names)
    np.testing.assert_array_equal(src.train(np.arange(len(names))).y, np.arange(len(names)))


def test_image_folder_train_test_layout(tmp_path):
    tiles = _tiles()
    for split in ("train", "test"):
        for cls, images in tiles.items():
            _write_png(tmp_path / split / cls / "a.png", images[0])
    src = open_source(DataSpec.of("image_folder", data_path=str(tmp_path), image_size=16))
    assert (src.num_train, src.num_test, src.num_classes) == (2, 2, 2)
    np.testing.assert_array_equal(src.test(np.array([1, 0])).y, [1, 0])


# ------------------------------------------------------------------------------------------ tfds
def test_tfds_cifar10_with_mock_data(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_source, "is_prepared", lambda builder: True)  # mock_data leaves it False
    with tfds.testing.mock_data(num_examples=40):
        src = open_source(DataSpec.of("cifar10", data_dir=str(tmp_path), offline=True))
        truth = list(tfds.load("cifar10", split="train", shuffle_files=False, as_supervised=True,
                               data_dir=str(tmp_path)).as_numpy_iterator())
        idx = np.array([39, 3, 17, 3, 0])
        split = src.train(idx)
        test = src.test(np.array([2]))
    assert (src.input_shape, src.num_train, src.num_test, src.num_classes) == ((32, 32, 3), 40, 40, 10)
    assert split.x.shape == (5, 32, 32, 3) and split.x.dtype == np.uint8 and split.y.dtype == np.int64
    np.testing.assert_array_equal(split.x, np.stack([truth[i][0] for i in idx]))
    np.testing.assert_array_equal(split.y, [truth[i][1] for i in idx])
    assert test.x.shape == (1, 32, 32, 3)


def test_tfds_really_prepared_dataset_is_read_in_stored_order(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_source, "network_reachable", _no_network)
    # DummyMnist: a tfds builder whose generation is local random data (no supervised keys)
    tfds.testing.DummyMnist(data_dir=str(tmp_path)).download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    src = open_source(DataSpec.of("dummy_mnist", data_dir=str(tmp_path), offline=True))
    assert (src.input_shape, src.num_train, src.num_test, src.num_classes) == ((28, 28, 1), 20, 20, 10)
    truth = list(tfds.load("dummy_mnist", split="train", shuffle_files=False, data_dir=str(tmp_path),
                           download=False).as_numpy_iterator())
    idx = np.array([19, 2, 2, 7])
    split = src.train(idx)
    np.testing.assert_array_equal(split.x, np.stack([truth[i]["image"] for i in idx]))
    np.testing.assert_array_equal(split.y, [truth[i]["label"] for i in idx])
    assert split is src.train(idx)  # cached per (split, indices)
    small = open_source(DataSpec.of("dummy_mnist", data_dir=str(tmp_path), offline=True, image_size=16))
    assert small.input_shape == (16, 16, 1) and small.test(np.array([0, 1])).x.shape == (2, 16, 16, 1)


def _no_network(urls):
    raise AssertionError("offline=True must not probe the network")


def test_tfds_offline_missing_dataset_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_source, "network_reachable", _no_network)
    start = time.monotonic()
    with pytest.raises(UsageError) as error:
        open_source(DataSpec.of("cifar10", data_dir=str(tmp_path), offline=True))
    assert time.monotonic() - start < 10
    message = str(error.value)
    assert "data_dir" in message and "manual_dir" in message and "offline" in message and "\n" not in message
    with pytest.raises(UsageError, match="manual_dir"):
        open_source(DataSpec.of("imagenet2012", data_dir=str(tmp_path)))  # manual-only dataset: no download attempt
    with pytest.raises(UsageError, match="unknown dataset"):
        open_source(DataSpec.of("no_such_dataset_xyz", data_dir=str(tmp_path), offline=True))


def test_opening_a_tfds_dataset_leaves_no_temporary_directory(tmp_path, monkeypatch):
    # tfds.builder makes a tempfile.mkdtemp directory it never removes; rltx points it at one it removes
    monkeypatch.setattr(tfds_source, "network_reachable", _no_network)
    temporary = tempfile.gettempdir()
    before = set(os.listdir(temporary))
    for _ in range(2):
        with pytest.raises(UsageError):
            open_source(DataSpec.of("cifar10", data_dir=str(tmp_path), offline=True))
    assert set(os.listdir(temporary)) == before and tempfile.gettempdir() == temporary


def test_tfds_online_without_network_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_source, "network_reachable", lambda urls: False)
    with pytest.raises(UsageError, match="unreachable"):
        open_source(DataSpec.of("cifar10", data_dir=str(tmp_path), offline=False))


def test_tfds_manual_dir_prepares_without_network(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare",
                        lambda self, download_config=None, **kw: calls.append(download_config))
    manual = tmp_path / "manual"
    manual.mkdir()
    with pytest.raises(UsageError, match="cifar-10-binary.tar.gz"):  # archive missing: reported, not downloaded
        open_source(DataSpec.of("cifar10", data_dir=str(tmp_path / "data"), manual_dir=str(manual), offline=True))
    (manual / "cifar-10-binary.tar.gz").write_bytes(b"")
    monkeypatch.setattr(tfds_source, "_split_size", lambda builder, split: 7)
    src = open_source(DataSpec.of("cifar10", data_dir=str(tmp_path / "data"), manual_dir=str(manual), offline=True))
    assert src.num_train == 7 and len(calls) == 1
    assert str(calls[0].manual_dir) == str(manual) and calls[0].try_download_gcs is False


def test_resize_central_crop_uses_256_for_224():
    # A 400 x 800 image whose 350 x 350 square [25:375, 225:575] is white: resizing the shorter side
    # to 256 (scale 0.64) maps the square exactly onto the central 224 x 224 crop.
    image = np.zeros((400, 800, 3), np.uint8)
    image[25:375, 225:575] = 255
    crop = resize_central_crop(tf.constant(image), 224).numpy()
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
    assert np.all(crop[2:-2, 2:-2] == 255) and crop.mean() > 245


def test_tfds_imagenet_default_crop_with_mock_data(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_source, "is_prepared", lambda builder: True)
    with tfds.testing.mock_data(num_examples=3):
        src = open_source(DataSpec.of("imagenet2012", data_dir=str(tmp_path), offline=True))
        split = src.train(np.array([2, 0]))
    assert src.input_shape == (224, 224, 3) and src.test_split == "validation" and src.num_classes == 1000
    assert split.x.shape == (2, 224, 224, 3) and split.x.dtype == np.uint8


def test_split_is_a_frozen_record():
    split = Split(np.zeros((2, 3), np.float32), np.zeros(2, np.int64))
    with pytest.raises(AttributeError):
        split.x = None
    assert len(split) == 2
