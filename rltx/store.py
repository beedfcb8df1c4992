"""The HDF5 run store: one run = one directory.

    RUN/run.h5                     config, environment, samples, status (rewritten atomically)
    RUN/metrics.h5                 one resizable 1-D dataset per metric, a row per eval point
    RUN/checkpoints/step_NNNNNNNN.h5   kept weights: /weights/<layer>/<variable>
    RUN/state.h5                   latest resume state: weights, optimizer variables, step
    RUN/run.lock                   held (flock) by the one process writing the run
    INIT.h5                        an init file of `rltx construct-init` (weights and how they were built)

HDF5 is not journaled, so no file is ever modified in place: each write goes to a temporary
file that is fsync'ed and then renamed over the old one. A kill at any moment leaves every
file either in its previous or its new complete state, and readers (another process plotting)
always open a complete file. Nothing here is pickled: arrays, strings and numbers only.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from rltx.errors import UsageError

FORMAT_VERSION = 1
RUN_FILE, METRICS_FILE, STATE_FILE, LOCK_FILE, CHECKPOINT_DIR = (
    "run.h5", "metrics.h5", "state.h5", "run.lock", "checkpoints")


class StoreWriteError(Exception):
    """A file could not be written (disk full, file-size limit, permissions); the previous version
    of the file is intact."""


@contextlib.contextmanager
def atomic_h5(path: Path):
    """Write an HDF5 file so that `path` is always either the old or the complete new file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(temporary, "w") as handle:
            yield handle
        with open(temporary, "rb+") as raw:
            os.fsync(raw.fileno())
        os.replace(temporary, path)
        _fsync_directory(path.parent)
    except (OSError, RuntimeError) as error:
        if isinstance(error, RuntimeError) and "errno" not in str(error):
            raise  # not an I/O failure (HDF5 reports failed writes at close as RuntimeError with errno)
        raise StoreWriteError(f"cannot write {path}: {_reason(error)}; the previous version is intact. Free disk space "
                              "(or raise the file-size limit) and rerun the same command") from None
    finally:
        try:
            temporary.unlink(missing_ok=True)
        except OSError:
            pass


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file so that `path` is always either the old or the complete new file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except OSError as error:
        raise StoreWriteError(f"cannot write {path}: {_reason(error)}; free disk space or fix the "
                              "permissions and rerun the same command") from None
    finally:
        temporary.unlink(missing_ok=True)


def _reason(error: Exception) -> str:
    """The operating system's words for a failed write (HDF5 wraps them in a long message)."""
    found = re.search(r"error message = '([^']+)'", str(error))
    return found.group(1) if found else (getattr(error, "strerror", None) or str(error))


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def open_h5(path: Path) -> h5py.File:
    """Open a stored file for reading, with a fixable error for missing or damaged files."""
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist; check the run directory") from None
    except OSError:
        raise UsageError(f"{path} is not a readable HDF5 file (truncated or another format); "
                         "point to a run written by rltx") from None


# --- run.h5 -------------------------------------------------------------------------------

@dataclass
class RunRecord:
    """Everything in run.h5, held in memory so that status changes rewrite it whole."""
    config_yaml: str
    environment: dict
    samples: dict[str, np.ndarray]
    status: str = "running"
    error: str = ""
    created: float = field(default_factory=time.time)
    kind: str = "pretrain"  # pretrain | transfer | scratch
    identity: dict = field(default_factory=dict)  # what else defines the run (a transfer's sources)
    transfer: dict = field(default_factory=dict)  # how a transfer built its initial weights


def write_run_record(run_dir: Path, record: RunRecord) -> None:
    with atomic_h5(run_dir / RUN_FILE) as handle:
        handle.attrs.update(format_version=FORMAT_VERSION, status=record.status, error=record.error,
                            created=iso_time(record.created), updated=iso_time(time.time()), kind=record.kind)
        config = handle.create_group("config")
        config.attrs["yaml"] = record.config_yaml
        environment = handle.create_group("environment")
        environment.attrs.update({k: str(v) for k, v in record.environment.items()})
        samples = handle.create_group("samples")
        for name, values in record.samples.items():
            samples.create_dataset(name, data=values)
        handle.create_group("identity").attrs.update(record.identity)
        handle.create_group("transfer").attrs.update(record.transfer)


def iso_time(seconds: float) -> str:
    """A POSIX time as ISO 8601 in UTC with microseconds, e.g. 2026-12-02T05:21:05.123456+00:00."""
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat()


def epoch_time(stored) -> float:
    """A stored time as POSIX seconds: ISO 8601 text, or the raw float of runs written before."""
    if isinstance(stored, (bytes, str)):
        text = stored.decode() if isinstance(stored, bytes) else stored
        return datetime.datetime.fromisoformat(text).timestamp()
    return float(stored)


def read_run_record(run_dir: Path) -> RunRecord:
    with open_h5(run_dir / RUN_FILE) as handle:
        if handle.attrs.get("format_version") != FORMAT_VERSION or "config" not in handle:
            raise UsageError(f"{run_dir / RUN_FILE} is not an rltx run file; point to a run directory")
        return RunRecord(
            config_yaml=str(handle["config"].attrs["yaml"]),
            environment=dict(handle["environment"].attrs),
            samples={name: data[()] for name, data in handle["samples"].items()},
            status=str(handle.attrs["status"]), error=str(handle.attrs["error"]),
            created=epoch_time(handle.attrs["created"]), kind=str(handle.attrs["kind"]),
            identity=_plain(handle["identity"].attrs), transfer=_plain(handle["transfer"].attrs))


def _plain(attributes) -> dict:
    """HDF5 attributes as Python values (numpy scalars to int/float, arrays to lists)."""
    return {k: v.tolist() if hasattr(v, "tolist") else v for k, v in attributes.items()}


def read_config_yaml(path: Path) -> str:
    """The resolved recipe stored in a run file (so `rltx pretrain RUN/run.h5` re-runs it)."""
    return read_run_record(Path(path).parent).config_yaml


def read_status(run_dir: Path) -> str:
    """running / completed / failed / interrupted ('running' in the file but nobody holds the lock)."""
    status = read_run_record(run_dir).status
    if status == "running" and not _lock_is_held(run_dir / LOCK_FILE):
        return "interrupted"
    return status


# --- metrics.h5 ---------------------------------------------------------------------------

def write_metrics(run_dir: Path, rows: list[dict]) -> None:
    """All metric rows so far, as resizable 1-D datasets (per-layer norms under weight_norm/)."""
    with atomic_h5(run_dir / METRICS_FILE) as handle:
        for name in rows[0] if rows else ():
            values = np.asarray([row[name] for row in rows])
            handle.create_dataset(name, data=values, maxshape=(None,), chunks=True)


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / METRICS_FILE
    if not path.exists():
        return []
    with open_h5(path) as handle:
        names = []
        handle.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
        columns = {name: handle[name][()] for name in names}
    count = len(next(iter(columns.values()))) if columns else 0
    return [{name: values[i].item() for name, values in columns.items()} for i in range(count)]


def write_metrics_csv(path: Path, rows: list[dict]) -> None:
    """Metric rows as CSV: a header of the metric names (step first), then one line per eval point."""
    import csv
    import io
    names = list(dict.fromkeys(["step", *(name for row in rows for name in row)])) if rows else ["step"]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(Path(path), text.getvalue())


# --- weights: checkpoints and resume state -------------------------------------------------------

def _write_arrays(group: h5py.Group, arrays: dict[str, np.ndarray]) -> None:
    for name, values in arrays.items():
        group.create_dataset(name, data=values)


def _read_arrays(group: h5py.Group) -> dict[str, np.ndarray]:
    arrays = {}
    group.visititems(lambda name, item: arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return arrays


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return run_dir / CHECKPOINT_DIR / f"step_{step:08d}.h5"


def write_checkpoint(run_dir: Path, step: int, weights: dict[str, np.ndarray]) -> None:
    """Kept weights at `step`, keyed by variable path ('conv_0/kernel')."""
    (run_dir / CHECKPOINT_DIR).mkdir(exist_ok=True)
    with atomic_h5(checkpoint_path(run_dir, step)) as handle:
        handle.attrs["step"] = step
        _write_arrays(handle.create_group("weights"), weights)


def read_checkpoint(run_dir: Path, step: int) -> dict[str, np.ndarray]:
    path = checkpoint_path(run_dir, step)
    if not path.exists():
        stored = ", ".join(str(s) for s in checkpoint_steps_stored(run_dir)) or "none"
        raise UsageError(f"{run_dir} has no checkpoint at step {step}; stored steps: {stored}")
    with open_h5(path) as handle:
        return _read_arrays(handle["weights"])


def checkpoint_steps_stored(run_dir: Path) -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in (run_dir / CHECKPOINT_DIR).glob("step_*.h5"))


def write_state(run_dir: Path, step: int, weights: dict[str, np.ndarray], optimizer: dict[str, np.ndarray]) -> None:
    """The latest resume point: the step reached, the weights and the optimizer variables, by path."""
    with atomic_h5(run_dir / STATE_FILE) as handle:
        handle.attrs["step"] = step
        _write_arrays(handle.create_group("weights"), weights)
        _write_arrays(handle.create_group("optimizer"), optimizer)


def read_state(run_dir: Path) -> tuple[int, dict[str, np.ndarray], dict[str, np.ndarray]] | None:
    path = run_dir / STATE_FILE
    if not path.exists():
        return None
    with open_h5(path) as handle:
        return int(handle.attrs["step"]), _read_arrays(handle["weights"]), _read_arrays(handle["optimizer"])


def read_state_step(run_dir: Path) -> int | None:
    """The step of the latest resume point (None before the first), without reading the weights."""
    path = run_dir / STATE_FILE
    if not path.exists():
        return None
    with open_h5(path) as handle:
        return int(handle.attrs["step"])


def remove_stale_temporaries(run_dir: Path) -> None:
    """Temporary files left by a killed writer (call only while holding the run's lock)."""
    for temporary in list(run_dir.glob(".*.tmp")) + list((run_dir / CHECKPOINT_DIR).glob(".*.tmp")):
        temporary.unlink(missing_ok=True)


# --- one writer per run ------------------------------------------------------------------

class RunLock:
    """An exclusive flock on RUN/run.lock; the kernel releases it when the process dies (even SIGKILL)."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / LOCK_FILE
        self._descriptor = None

    def acquire(self) -> "RunLock":
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(descriptor)
            raise UsageError(f"{self.path.parent} is being written by another rltx process (pid {owner}); "
                             "wait for it to finish or choose another --out") from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, str(os.getpid()).encode(), 0)
        self._descriptor = descriptor
        return self

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _lock_is_held(path: Path) -> bool:
    if not path.exists():
        return False
    descriptor = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)


# --- init files (`rltx construct-init`, Sec. 2.5, E.3) --------------------------------------------

@dataclass
class LayerRecord:
    """How one layer of an init file was built (stored under /construction/<layer>)."""
    method: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    numbers: dict[str, float] = field(default_factory=dict)


def write_init(path: Path, recipe_yaml: str, weights: dict[str, np.ndarray], records: dict[str, LayerRecord],
               indices: np.ndarray) -> None:
    """The init file: /weights like a checkpoint, /construction/<layer> (arrays and attributes),
    /sample_indices, and the recipe (attribute `recipe_yaml`)."""
    with atomic_h5(Path(path)) as handle:
        handle.attrs["recipe_yaml"] = recipe_yaml
        _write_arrays(handle.create_group("weights"), weights)
        handle.create_dataset("sample_indices", data=indices)
        construction = handle.create_group("construction")
        for layer, record in records.items():
            entry = construction.create_group(layer)
            entry.attrs.update(method=record.method, **record.numbers)
            _write_arrays(entry, record.arrays)


def read_init_weights(path: Path) -> dict[str, np.ndarray]:
    with open_h5(Path(path)) as handle:
        if "weights" not in handle or "construction" not in handle:
            raise UsageError(f"{path} is not an init file of `rltx construct-init`; build one with it")
        return _read_arrays(handle["weights"])
