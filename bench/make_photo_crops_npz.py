"""The cross-check set of docs/calibration.md: 32x32 crops of ten scikit-image photographs (label =
which photo), train crops from the left 80 % of each photo's columns, test crops from the right 20 %.

    python bench/make_photo_crops_npz.py photos.npz [SEED] [--half]     # --half: 2x2-averaged to 16x16
    rltx reproduce table1 --quick --set dataset=npz --set data_path=photos.npz
"""
import sys

import numpy as np
import skimage.data as data

PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "retina", "hubble_deep_field",
          "stereo_motorcycle", "grass", "camera"]
SIZE, NUM_TRAIN, NUM_TEST = 32, 1500, 300


def photo(name: str) -> np.ndarray:
    image = getattr(data, name)()
    image = image[0] if isinstance(image, tuple) else image
    image = np.stack([image] * 3, -1) if image.ndim == 2 else image[..., :3]
    return image[::2, ::2] if image.shape[0] > 800 else image  # the two large ones at a comparable scale


def crops(image: np.ndarray, count: int, columns: tuple[int, int], rng) -> list[np.ndarray]:
    rows = rng.integers(0, image.shape[0] - SIZE, count)
    cols = rng.integers(columns[0], columns[1] - SIZE, count)
    return [c[:, ::-1] if rng.random() < 0.5 else c for c in (image[i:i + SIZE, j:j + SIZE] for i, j in zip(rows, cols))]


def main(path: str, seed: int, half: bool) -> None:
    rng = np.random.default_rng(seed)
    split = {"x": [], "y": [], "x_test": [], "y_test": []}
    for label, name in enumerate(PHOTOS):
        image = photo(name).astype(np.uint8)
        cut = int(image.shape[1] * 0.8)
        split["x"] += crops(image, NUM_TRAIN, (0, cut), rng)
        split["x_test"] += crops(image, NUM_TEST, (cut, image.shape[1]), rng)
        split["y"] += [label] * NUM_TRAIN
        split["y_test"] += [label] * NUM_TEST
    arrays = {k: np.array(v) for k, v in split.items()}
    for x, y in (("x", "y"), ("x_test", "y_test")):
        order = rng.permutation(len(arrays[x]))
        arrays[x], arrays[y] = arrays[x][order], arrays[y][order].astype(np.int64)
        if half:
            pixels = arrays[x].astype(np.float32)
            arrays[x] = np.round(pixels.reshape(len(pixels), SIZE // 2, 2, SIZE // 2, 2, 3).mean((2, 4))).astype(np.uint8)
    np.savez(path, **arrays)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--half"]
    main(args[0], int(args[1]) if len(args) > 1 else 0, "--half" in sys.argv)
