"""Root-mean-square output of VGG16's layers at initialisation on dead-leaves images, per image size
and init_scale: why VGG16 sits at loss ln C in CPU-sized runs (docs/calibration.md, "Fig. 1 / 6 / 7").

    python bench/vgg_signal.py
"""
import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from rltx.data.natural import dead_leaves_images  # noqa: E402
from rltx.models import build_model  # noqa: E402

SIZES, SCALES, SHOWN = (8, 16, 32), (0.526, 1.0), ("conv_0", "conv_6", "conv_9", "conv_12", "head")


def layer_rms(size: int, init_scale: float, images: int = 128) -> dict[str, float]:
    """{layer: rms of its output} for one freshly built VGG16 (5 classes, A.11) on dead-leaves images."""
    x = dead_leaves_images(images, np.arange(images) % 10, 10, size, np.random.default_rng(0))
    x = x.astype("float32") / 127.5 - 1  # A.3: inputs in [-1, 1]
    model = build_model("vgg16", (size, size, 3), 5, init_scale=init_scale, seed=0)
    probe = keras.Model(model.input, [model.get_layer(name).output for name in SHOWN])
    return {name: float(np.sqrt(np.mean(np.square(out)))) for name, out in zip(SHOWN, probe.predict(x, verbose=0))}


def main() -> None:
    print("| image size | init_scale | " + " | ".join(SHOWN) + " |")
    for size in SIZES:
        for scale in SCALES:
            rms = layer_rms(size, scale)
            print(f"| {size} | {scale} | " + " | ".join(f"{rms[name]:.1e}" for name in SHOWN) + " |")


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
