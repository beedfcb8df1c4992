"""What every figure shares: one style, reading inputs, saving, clear errors.

Figures are `matplotlib.figure.Figure` objects made without pyplot, so drawing never selects a
backend or keeps figures in pyplot's global list (a notebook's backend stays as it was)."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from rltx import store
from rltx.errors import UsageError

FORMATS = (".png", ".pdf", ".svg")
# One consistent style: `paper` is sized for a column of a two-column paper (3.3 in wide, 8 pt
# text); `screen` is larger for slides and notebooks.
STYLES = {
    "paper": {"figure.figsize": (3.3, 2.5), "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8,
              "legend.fontsize": 6.5, "xtick.labelsize": 7, "ytick.labelsize": 7, "lines.linewidth": 1.2,
              "figure.dpi": 200, "savefig.dpi": 300},
    "screen": {"figure.figsize": (6.4, 4.8), "font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11,
               "legend.fontsize": 9, "lines.linewidth": 1.8, "figure.dpi": 100, "savefig.dpi": 150},
}
COMMON = {"axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
          "savefig.bbox": "tight"}


def style_context(style: str):
    """matplotlib settings of the style, for everything drawn inside the `with` block."""
    if style not in STYLES:
        raise UsageError(f"unknown style {style!r}; choose {' or '.join(STYLES)}")
    return matplotlib.rc_context({**COMMON, **STYLES[style]})


def new_figure(style: str = "paper", nrows: int = 1, ncols: int = 1, **subplots):
    """A figure in the chosen style; wider for several columns."""
    with style_context(style):
        width, height = STYLES[style]["figure.figsize"]
        figure = Figure(figsize=(width * ncols ** 0.8, height * nrows ** 0.8), layout="constrained")
        axes = figure.subplots(nrows, ncols, squeeze=False, **subplots)
    return figure, axes


def require(arrays: dict, names: tuple[str, ...], path: Path, producer: str, finite: tuple[str, ...] = (),
            may_be_empty: tuple[str, ...] = ()) -> None:
    """A one-line error naming what a file lacks (or holds empty, unless in `may_be_empty`, or not finite
    among `finite`) and the command that produces it: a result edited by hand is refused before drawing."""
    missing = [name for name in names if name not in arrays]
    if missing:
        raise UsageError(f"{path} lacks {', '.join(missing)}; produce it with `{producer}`")
    empty = [name for name in names if np.size(arrays[name]) == 0 and name not in may_be_empty]
    if empty:
        raise UsageError(f"{path} holds empty arrays ({', '.join(empty)}); produce it again with `{producer}`")
    broken = [name for name in finite if not np.all(np.isfinite(np.asarray(arrays[name], np.float64)))]
    if broken:
        raise UsageError(f"{path} holds non-finite values in {', '.join(broken)}; produce it again with `{producer}`")


def read_analysis(path: Path, kind: str, producer: str):
    """An analysis result of the given kind (`rltx analyze KIND ... -o FILE`)."""
    from rltx.analysis.results import read_result
    result = read_result(Path(path))
    if result.kind != kind:
        raise UsageError(f"{path} holds a {result.kind} result, not {kind}; produce one with `{producer}`")
    return result


_MAGIC = {".png": (b"\x89PNG",), ".pdf": (b"%PDF",), ".svg": (b"<?xml", b"<svg")}


def check_image_output(output: Path) -> None:
    """Refuse an image path inside a run directory, or over a file that is not an image of its format."""
    output = Path(output)
    if output.suffix.lower() not in FORMATS:
        raise UsageError(f"output {output} must end in {', '.join(FORMATS)}")

    def same_format(existing: Path) -> bool:
        with open(existing, "rb") as handle:
            return handle.read(8).lstrip().startswith(_MAGIC[output.suffix.lower()])
    store.check_output(output, same_format, f"a {output.suffix.lower()[1:].upper()} image")


def save(figure, output: Path, title: str | None = None, style: str = "paper") -> Path:
    """Write the figure (format from the suffix, resolution of the style) through a temporary file."""
    output = Path(output)
    check_image_output(output)
    if not output.parent.exists() or not os.access(output.parent, os.W_OK):
        raise UsageError(f"cannot write {output}: {output.parent} does not exist or is not writable; choose another -o")
    temporary = store.temporary_path(output, keep_suffix=True)
    store.remove_dead_temporaries(output.parent)
    try:
        with style_context(style):
            if title:
                figure.suptitle(title)
            figure.savefig(temporary)
        os.replace(temporary, output)
    except OSError as error:
        raise UsageError(f"cannot write {output}: {error.strerror}; choose another -o") from None
    finally:
        temporary.unlink(missing_ok=True)
    return output
