"""Analysis results: one HDF5 file per result, with the inputs it used; JSON; a rich table."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from rltx import __version__, store
from rltx.errors import UsageError


@dataclass
class Result:
    """`arrays` are stored as datasets; `inputs` (runs, steps, layer, options) as a JSON attribute;
    `table` rows are what the terminal shows."""
    kind: str
    inputs: dict
    arrays: dict[str, np.ndarray]
    table: list[dict] = field(default_factory=list)


def write_result(result: Result, path: Path) -> None:
    """Store `result` in `path`, replacing only an rltx result of the same kind (never a run's files)."""
    store.check_output(Path(path), lambda existing: store.result_kind(existing) == result.kind,
                       f"an rltx {result.kind} result")
    with store.atomic_h5(Path(path)) as handle:
        handle.attrs.update(kind=result.kind, inputs=json.dumps(result.inputs), rltx_version=__version__,
                            created=time.time())
        store.write_arrays(handle, result.arrays)


RESULT_FILE = "an analysis result (`rltx analyze KIND RUNS -o FILE.h5`; a reproduction's folder holds its own)"


def read_result(path: Path) -> Result:
    if store.result_kind(Path(path)) is None:
        # a folder, a missing or a non-HDF5 file has its own message
        store.open_h5(Path(path), "check the path", RESULT_FILE).close()
        raise UsageError(f"{path} is not an rltx analysis result; produce one with `rltx analyze ... -o`")
    with store.open_h5(Path(path), "check the path", RESULT_FILE) as handle:
        return Result(str(handle.attrs["kind"]), json.loads(handle.attrs["inputs"]), store.read_arrays(handle))


def to_json(result: Result) -> str:
    return store.json_text({"kind": result.kind, "inputs": result.inputs, "table": result.table,
                            "arrays": result.arrays}, indent=None)


def print_table(result: Result, console: Console | None = None) -> None:
    console = console or Console()
    if not result.table:
        return
    rows = [{name: f"{v:.6g}" if isinstance(v, float) else str(v) for name, v in row.items()} for row in result.table]
    table = Table(title=result.kind)
    for column in rows[0]:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*(Text(value) for value in row.values()))  # values are not rich markup
    if Measurement.get(console, console.options.update_width(10 ** 6), table).maximum <= console.width:
        console.print(table)
        return
    # too wide for the terminal: rich would cut every cell to a few characters, so one block per row
    console.print(result.kind, style="bold", markup=False)
    for row in rows:
        console.print("\n".join(f"  {name}: {value}" for name, value in row.items()),
                      highlight=False, soft_wrap=True, markup=False)
        console.print()
