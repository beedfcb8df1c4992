"""The built-in natural-statistics sources (issue 14): their patch spectrum against real
photographs, learnable labels, no network, determinism; and writing any source to an npz."""
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rltx import store
from rltx.config import DataSpec, make_recipe
from rltx.data import open_source
from rltx.data.files import open_npz, write_npz
from rltx.data.natural import DISC, RECTANGLE, REACH, SQUARE, NaturalSource, TEST_FRACTION, _paint, photo_crops
from rltx.errors import UsageError
from rltx.pretrain import pretrain

skimage_data = pytest.importorskip("skimage.data")


def patch_spectrum(images) -> np.ndarray:
    """The 27 eigenvalues of the covariance of all 3x3x3 patches, divided by their sum (plain numpy)."""
    x = np.asarray(images, np.float64)
    h, w = x.shape[1:3]
    patches = np.stack([x[:, i:h - 2 + i, j:w - 2 + j] for i in range(3) for j in range(3)], axis=3)
    values = np.linalg.eigvalsh(np.cov(patches.reshape(-1, 27), rowvar=False))[::-1]
    return values / values.sum()


def random_crops(photos, per_photo: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    crops = []
    for photo in photos:
        top = rng.integers(0, photo.shape[0] - 31, per_photo)
        left = rng.integers(0, photo.shape[1] - 31, per_photo)
        crops += [photo[y:y + 32, x:x + 32, :3] for y, x in zip(top, left)]
    return np.stack(crops)


@pytest.fixture(scope="module")
def photo_reference() -> np.ndarray:
    """Crops of scikit-image's colour photographs, read here independently of rltx."""
    d = skimage_data
    photos = [d.astronaut(), d.chelsea(), d.coffee(), d.rocket(), d.immunohistochemistry(), d.retina(),
              d.hubble_deep_field(), d.stereo_motorcycle()[0]]
    return patch_spectrum(random_crops(photos, 250, seed=1))


@pytest.fixture(scope="module")
def leaves() -> NaturalSource:
    return NaturalSource("dead_leaves", seed=0, num_train=2000, num_test=1000)


@pytest.fixture(scope="module")
def oriented_leaves() -> NaturalSource:
    return NaturalSource("dead_leaves", seed=0, num_train=2000, num_test=1000, labels="orientation")


@pytest.fixture(scope="module")
def coloured_leaves() -> NaturalSource:
    return NaturalSource("dead_leaves", seed=0, num_train=2000, num_test=1000, labels="orientation_colour")


@pytest.fixture(scope="module")
def photos() -> NaturalSource:
    return NaturalSource("photos", seed=0, num_train=2000, num_test=1000)


def worst_factor(a, b) -> float:
    return float(np.max(np.maximum(a / b, b / a)))


@pytest.mark.parametrize("name", ["leaves", "oriented_leaves", "coloured_leaves"])
def test_dead_leaves_spectrum_matches_photographs(name, photo_reference, request):
    spectrum = patch_spectrum(request.getfixturevalue(name).train(np.arange(2000)).x)
    assert worst_factor(spectrum, photo_reference) < 2.0
    assert spectrum[0] / spectrum[-1] > 1e4  # a steeply decaying (power-law-like) spectrum, not white


def test_photos_spectrum_against_other_photographs(photos):
    """The photos source against scikit-learn's two photographs (china, flower), which it does not use.
    Two sets of real photographs differ by up to ~2.9x in some eigenvalue (bench/natural_spectrum.py),
    so the bound here is 3."""
    datasets = pytest.importorskip("sklearn.datasets")
    other = patch_spectrum(random_crops(datasets.load_sample_images().images, 1000, seed=2))
    assert worst_factor(patch_spectrum(photos.train(np.arange(2000)).x), other) < 3.0


def features(x: np.ndarray) -> np.ndarray:
    """Simple image features: mean and sd of each channel, and the energy of horizontal/vertical vs
    diagonal grey-level differences (squares have axis-aligned edges, discs do not)."""
    x = x.astype(np.float64) / 255
    grey = x.mean(axis=3)
    dx, dy = np.diff(grey, axis=2)[:, :-1], np.diff(grey, axis=1)[:, :, :-1]
    diagonal = grey[:, 1:, 1:] - grey[:, :-1, :-1]
    anti = grey[:, 1:, :-1] - grey[:, :-1, 1:]
    axis_energy = np.mean(np.abs(dx) + np.abs(dy), axis=(1, 2))
    diagonal_energy = np.mean(np.abs(diagonal) + np.abs(anti), axis=(1, 2))
    return np.column_stack([x.mean(axis=(1, 2)), x.std(axis=(1, 2)), axis_energy / (diagonal_energy + 1e-9)])


@pytest.mark.parametrize("name", ["leaves", "photos"])
def test_labels_learnable_on_the_test_split(name, request):
    """A linear classifier on simple features, fitted on the training split, is far above chance on
    the held-out split; with shuffled training labels it is at chance (the labels carry the signal)."""
    linear_model = pytest.importorskip("sklearn.linear_model")
    source = request.getfixturevalue(name)
    train, test = source.train(np.arange(2000)), source.test(np.arange(1000))
    mean, sd = features(train.x).mean(0), features(train.x).std(0)
    fit = lambda y: linear_model.LogisticRegression(max_iter=2000).fit((features(train.x) - mean) / sd, y)  # noqa: E731
    chance = 1 / source.num_classes
    accuracy = fit(train.y).score((features(test.x) - mean) / sd, test.y)
    shuffled = fit(np.random.default_rng(0).permutation(train.y)).score((features(test.x) - mean) / sd, test.y)
    assert accuracy > 2.5 * chance
    assert shuffled < 1.6 * chance


@pytest.mark.parametrize("name, labels, classes", [
    ("dead_leaves", "shape_colour", 10), ("dead_leaves", "orientation", 10), ("dead_leaves", "orientation_colour", 10),
    ("photos", "shape_colour", 8)])
def test_a_small_cnn_learns_the_real_labels(name, labels, classes, tmp_path):
    """rltx's own Simple CNN (2 conv layers of 16 filters, 64 units), trained on 2000 real-labelled 16x16
    images for 600 steps, is far above chance on the held-out split (measured: 0.28, 0.30, 0.42 of 10
    classes and 0.71 of 8); a seed-0 run takes about 12 s."""
    recipe = make_recipe({"description": "learnable labels", "dataset": name, "natural_labels": labels,
                          "image_size": 16, "natural_num_train": 2000, "natural_num_test": 1000,
                          "num_examples_upstream": 2000, "num_examples_test": 1000, "labels_upstream": "real",
                          "num_classes_upstream": classes, "architecture": "simple_cnn", "num_conv_layers": 2,
                          "num_filters": 16, "num_units": 64, "learning_rate": 0.01, "batch_size": 128,
                          "total_steps": 600, "num_eval_points": 2, "seed": 0})
    pretrain(recipe, tmp_path / "run", resume=False)
    assert store.read_metrics(tmp_path / "run")[-1]["test_accuracy"] > 2.2 / classes


def test_dead_leaves_shape_is_learnable(leaves):
    """The shape half of the label (discs: even, squares: odd) alone is above chance from the edge feature."""
    train, test = leaves.train(np.arange(2000)), leaves.test(np.arange(1000))
    ratio_train, ratio_test = features(train.x)[:, -1], features(test.x)[:, -1]
    threshold = np.median(ratio_train)
    square_side = np.mean(ratio_train[train.y % 2 == 1] > threshold) > 0.5
    accuracy = np.mean((ratio_test > threshold) == ((test.y % 2 == 1) == square_side))
    assert accuracy > 0.6


def channel_means(x: np.ndarray) -> np.ndarray:
    """Each image's mean R, G and B in [0, 1]: its colour, with no edge information."""
    return x.astype(np.float64).mean(axis=(1, 2)) / 255


def orientation_features(x: np.ndarray) -> np.ndarray:
    """The image's dominant edge orientation from its grey-level structure tensor, as the doubled
    angle (cos 2a, sin 2a) times the coherence: a linear softmax over it separates angular sectors."""
    grey = x.astype(np.float64).mean(axis=3)
    dx, dy = np.diff(grey, axis=2)[:, :-1], np.diff(grey, axis=1)[:, :, :-1]
    jxx, jyy, jxy = (np.mean(a * b, axis=(1, 2)) for a, b in ((dx, dx), (dy, dy), (dx, dy)))
    energy = jxx + jyy + 1e-9
    return np.column_stack([(jxx - jyy) / energy, 2 * jxy / energy])


def test_dead_leaves_orientation_labels_are_learnable(oriented_leaves):
    """Orientation labels (natural_labels: orientation): a linear classifier on the structure-tensor
    orientation alone is far above the 0.1 of chance on the held-out split, so the label is the
    leaves' orientation; and the colour carries no label (channel means alone are at chance)."""
    linear_model = pytest.importorskip("sklearn.linear_model")
    train, test = oriented_leaves.train(np.arange(2000)), oriented_leaves.test(np.arange(1000))
    fit = lambda f: linear_model.LogisticRegression(max_iter=2000).fit(f(train.x), train.y).score(f(test.x), test.y)  # noqa: E731
    assert fit(orientation_features) > 0.4
    assert fit(channel_means) < 0.16


def test_dead_leaves_orientation_colour_labels(coloured_leaves):
    """natural_labels: orientation_colour: the orientation alone still tells all 10 classes apart (the
    pairs sharing a cast lie 90 degrees apart); the colour alone is above chance over the 10 classes but
    at chance between the two classes of a pair (c and c + 5), so it gives the class only up to its pair."""
    linear_model = pytest.importorskip("sklearn.linear_model")
    train, test = coloured_leaves.train(np.arange(2000)), coloured_leaves.test(np.arange(1000))

    def fit(f, y_train, y_test):
        return linear_model.LogisticRegression(max_iter=2000).fit(f(train.x), y_train).score(f(test.x), y_test)
    assert fit(orientation_features, train.y, test.y) > 0.4
    assert fit(channel_means, train.y, test.y) > 0.2
    assert fit(channel_means, train.y % 5, test.y % 5) > 0.4  # the cast (5 of them, chance 0.2)
    assert abs(fit(channel_means, train.y // 5, test.y // 5) - 0.5) < 0.06  # which member of the pair


@pytest.mark.parametrize("kind, area, angle", [(DISC, np.pi, 0.0), (SQUARE, 4.0, 0.0), (RECTANGLE, np.pi, 0.0),
                                                (RECTANGLE, np.pi, 0.5), (RECTANGLE, np.pi, np.pi / 4)])
def test_one_leaf_is_painted_whole_with_its_area(kind, area, angle):
    """One leaf of radius 20 at the centre of a 96-pixel image, rendered by the band painter with its
    REACH: it covers its closed-form area (disc and area-matched rectangle pi r^2, square (2r)^2)
    within 3 %, so the painting box holds the whole leaf at any angle and the rectangle is area-matched
    (the coverage of _leaves_per_image assumes pi r^2); a rectangle's long axis lies at its angle."""
    size, radius = 96, 20.0
    reach = int(np.ceil(radius * REACH[kind]))
    top = np.zeros(size * size, np.int32)
    leaf = (np.array([48.0]), np.array([48.0]), np.array([radius]), np.array([angle]))
    _paint(top, np.array([0]), leaf, np.zeros(1, np.int32), np.ones(1, np.int32), kind, size,
           min(2 * reach + 2, size), reach)
    painted = top.reshape(size, size) > 0
    assert painted.sum() == pytest.approx(area * radius ** 2, rel=0.03)
    if kind == RECTANGLE:
        rows, cols = np.nonzero(painted)
        along = np.array([np.cos(angle), np.sin(angle)])  # (x, y): columns, rows
        spread = np.column_stack([cols, rows]) - np.array([cols.mean(), rows.mean()])
        assert np.std(spread @ along) > 2.5 * np.std(spread @ np.array([-along[1], along[0]]))


def test_offline_no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the natural sources must not touch the network")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for name in ("dead_leaves", "photos"):
        source = open_source(DataSpec.of(name, offline=True, natural_num_train=20, natural_num_test=10))
        assert source.train(np.arange(20)).x.shape == (20, 32, 32, 3)


@pytest.mark.parametrize("name, labels", [("dead_leaves", "shape_colour"), ("dead_leaves", "orientation"),
                                          ("dead_leaves", "orientation_colour"),
                                          ("photos", "shape_colour")])
def test_deterministic_in_the_seed(name, labels):
    a, b, c = (NaturalSource(name, seed=s, num_train=30, num_test=20, image_size=24, labels=labels) for s in (5, 5, 6))
    for split in ("train", "test"):
        first, again, other = (getattr(s, split)(np.arange(20)) for s in (a, b, c))
        assert first.x.dtype == np.uint8 and first.x.shape == (20, 24, 24, 3)
        np.testing.assert_array_equal(first.x, again.x)
        np.testing.assert_array_equal(first.y, again.y)
        assert not np.array_equal(first.x, other.x)
    assert a.num_classes == (10 if name == "dead_leaves" else 8)


def test_photo_test_crops_come_from_a_held_out_region():
    """Crops of a photograph whose pixels hold their column index: train crops lie left of the last
    quarter of the columns, test crops inside it."""
    width = 200
    photo = np.broadcast_to(np.arange(width, dtype=np.uint8)[None, :, None], (100, width, 3))
    labels = np.zeros(500, np.int64)
    split = width - round(width * TEST_FRACTION)
    train = photo_crops([photo], labels, 32, False, np.random.default_rng(0))
    test = photo_crops([photo], labels, 32, True, np.random.default_rng(0))
    assert train.max() < split <= test.min()
    assert train.min() == 0 and test.max() == width - 1  # the whole region is used


def test_photos_without_scikit_image_is_a_usage_error(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "skimage", None)
    with pytest.raises(UsageError, match=r"pip install 'rltx\[photos\]'"):
        open_source(DataSpec.of("photos", natural_num_train=5, natural_num_test=5))


def test_any_source_round_trips_through_npz(tmp_path, leaves):
    path = write_npz(leaves, tmp_path / "leaves.npz", num_train=50, num_test=20)
    back = open_npz(str(path), 32)
    assert (back.num_train, back.num_test, back.num_classes) == (50, 20, 10)
    np.testing.assert_array_equal(back.train(np.arange(50)).x, leaves.train(np.arange(50)).x)
    np.testing.assert_array_equal(back.test(np.arange(20)).y, leaves.test(np.arange(20)).y)


def cross_check_set(tmp_path, *options):
    """bench/other_photos_npz.py's set of 120 training and 30 test crops, read back through the npz source."""
    script = Path(__file__).resolve().parent.parent / "bench" / "other_photos_npz.py"
    out = tmp_path / "set.npz"
    done = subprocess.run([sys.executable, str(script), str(out), "--num-train", "120", "--num-test", "30", *options],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return open_npz(str(out))


def test_other_photographs_cross_check_set(tmp_path):
    """bench/other_photos_npz.py writes 6 classes of crops of photographs no source uses, which the npz
    source reads; no training crop shares pixels with the test strip (photo_crops, tested above)."""
    source = cross_check_set(tmp_path)
    assert (source.num_train, source.num_test, source.num_classes, source.input_shape) == (120, 30, 6, (16, 16, 3))
    assert set(source.train(np.arange(120)).y) == set(range(6))


def test_grey_photographs_cross_check_set(tmp_path):
    """`--photographs grey` writes 6 classes of crops of grey photographs no source uses, grey in R, G and B."""
    source = cross_check_set(tmp_path, "--photographs", "grey")
    assert (source.num_train, source.num_test, source.num_classes) == (120, 30, 6)
    train = source.train(np.arange(120))
    assert set(train.y) == set(range(6))
    assert np.array_equal(train.x[..., 0], train.x[..., 1]) and np.array_equal(train.x[..., 0], train.x[..., 2])
    assert train.x.std() > 0


def test_given_photographs_make_one_class_each_in_order(tmp_path):
    """Image files after OUT are the photographs, label = position: a grey and an RGBA file of known
    colours come back as RGB crops of exactly those colours, under their labels."""
    from PIL import Image
    Image.fromarray(np.full((40, 64), 10, np.uint8), mode="L").save(tmp_path / "grey.png")
    Image.fromarray(np.tile(np.array([200, 100, 50, 255], np.uint8), (40, 64, 1)), mode="RGBA").save(tmp_path / "rgba.png")
    source = cross_check_set(tmp_path, str(tmp_path / "grey.png"), str(tmp_path / "rgba.png"))
    assert (source.num_train, source.num_test, source.num_classes, source.input_shape) == (120, 30, 2, (16, 16, 3))
    for split in (source.train(np.arange(120)), source.test(np.arange(30))):
        colour = np.where(split.y[:, None] == 0, [10, 10, 10], [200, 100, 50])
        np.testing.assert_array_equal(split.x, np.broadcast_to(colour[:, None, None, :], split.x.shape))
        assert set(split.y) == {0, 1}


@pytest.mark.parametrize("case, expected", [
    ("one", "one photograph makes one class; give at least two image files"),
    ("missing", "no such file; give the paths of existing image files"),
    ("not an image", "is not an image Pillow can read; give PNG or JPEG files"),
    ("too small", "photograph 2 is 20x40 pixels, too small for 16x16 crops in separate train and test columns"),
])
def test_given_photographs_refused_in_one_line(tmp_path, case, expected):
    from PIL import Image
    Image.fromarray(np.zeros((40, 64, 3), np.uint8)).save(tmp_path / "good.png")
    Image.fromarray(np.zeros((40, 20, 3), np.uint8)).save(tmp_path / "small.png")
    (tmp_path / "notes.png").write_text("not pixels")
    images = {"one": ["good.png"], "missing": ["good.png", "absent.png"], "not an image": ["good.png", "notes.png"],
              "too small": ["good.png", "small.png"]}[case]
    script = Path(__file__).resolve().parent.parent / "bench" / "other_photos_npz.py"
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "set.npz"), *(str(tmp_path / i) for i in images)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("Error: ") and expected in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr  # no TensorFlow start-up lines either
    assert not (tmp_path / "set.npz").exists()


def test_a_negative_seed_is_refused_by_the_option_not_by_numpy(tmp_path):
    script = Path(__file__).resolve().parent.parent / "bench" / "other_photos_npz.py"
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "set.npz"), "--seed", "-1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Error: Invalid value for '--seed': -1 is not in the range x>=0." in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "set.npz").exists()


def test_the_spectrum_script_refuses_a_missing_photograph_in_one_line(tmp_path):
    script = Path(__file__).resolve().parent.parent / "bench" / "natural_spectrum.py"
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "absent.png"), str(tmp_path / "b.png")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == "", done.stdout
    assert done.stderr == f"Error: {tmp_path / 'absent.png'}: no such file; give the paths of existing image files\n"
