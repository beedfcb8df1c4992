"""The Gaussian inputs' spectrum and shape from the recipe keys (App. E.1, Prop. 1 / App. C).

Numpy and regexes only, so that a recipe is checked against its input shape before TensorFlow
loads; `rltx.data.gaussian` generates the data itself.
"""
from __future__ import annotations

import re

import numpy as np

from rltx.errors import UsageError, shorten

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_LINSPACE = re.compile(rf"^\s*linspace\s*\(\s*({_NUM})\s*,\s*({_NUM})\s*,\s*(\d+)\s*\)\s*$")
_NUMBER_LIST = re.compile(rf"^\s*\[?\s*{_NUM}(?:\s*,\s*{_NUM})*\s*,?\s*\]?\s*$")
_SPECTRUM_FIX = "give positive numbers, e.g. [1, 1.1, 1.2] or 'linspace(0.1, 3.0, 30)'"
# Sigma and its rotation are d x d float64 matrices: 2^16 dimensions already take 32 GiB each.
MAX_DIMENSION = 2 ** 16


def parse_spectrum(spec) -> np.ndarray:
    """Eigenvalues of Sigma as float64: a sequence of positive numbers, a string of comma-separated
    numbers, or "linspace(a, b, n)" (= np.linspace(a, b, n); parsed with a regex, never eval).
    E.g. App. E.1's diag(0.1, 0.2, ..., 3.0) is "linspace(0.1, 3.0, 30)"."""
    if isinstance(spec, str):
        values = _parse_spectrum_string(spec)
    else:
        try:
            values = np.array(spec, dtype=np.float64)  # a copy: never freeze the caller's array
        except (TypeError, ValueError, OverflowError):
            raise UsageError(f"gaussian_spectrum {shorten(spec)} is not a list of numbers; {_SPECTRUM_FIX}") from None
    if values.ndim != 1 or values.size == 0:
        raise UsageError(f"gaussian_spectrum {shorten(spec)} must be a non-empty flat list; {_SPECTRUM_FIX}")
    if values.size > MAX_DIMENSION:
        raise UsageError(f"gaussian_spectrum has {values.size} values; at most {MAX_DIMENSION} dimensions fit in memory")
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise UsageError(f"gaussian_spectrum {shorten(spec)} has non-positive or non-finite values; {_SPECTRUM_FIX}")
    return values


def _parse_spectrum_string(text: str) -> np.ndarray:
    match = _LINSPACE.match(text)
    if match:
        start, stop, count = float(match[1]), float(match[2]), int(match[3])
        if not 1 <= count <= MAX_DIMENSION:
            raise UsageError(f"gaussian_spectrum {shorten(text)} has n = {shorten(count)}; "
                             f"use 1 <= n <= {MAX_DIMENSION}, e.g. 'linspace(0.1, 3.0, 30)'")
        return np.linspace(start, stop, count)
    if _NUMBER_LIST.match(text):
        return np.asarray([float(v) for v in re.findall(_NUM, text)])
    raise UsageError(f"gaussian_spectrum {shorten(text)} is not understood; {_SPECTRUM_FIX}")


def gaussian_input_shape(dimension: int, patch_size: int, image_size: int) -> tuple[int, ...]:
    """The shape of one input: (d,) vectors (patch_size 0, App. E.1), or [S, S, C] images of
    k x k patches, C = d / k^2 (Prop. 1 / App. C)."""
    k, size = patch_size, image_size
    if k == 0 and size == 0:
        return (dimension,)
    if k <= 0 or size <= 0:
        raise UsageError("gaussian images need both gaussian_patch_size and gaussian_image_size > 0; "
                         "set both, or both to 0 for vectors")
    if dimension % (k * k):
        raise UsageError(f"gaussian spectrum length {dimension} is not k*k*C for patch size k={k}; "
                         f"give {k * k}*C values (e.g. {k * k * 3} for RGB)")
    if size % k:
        raise UsageError(f"gaussian_image_size {size} is not a multiple of gaussian_patch_size {k}; "
                         f"use e.g. {max(k, size - size % k)}")
    return (size, size, dimension // (k * k))
