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
import errno
import fcntl
import hashlib
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import yaml

from rltx.errors import UsageError, check_not_special
from rltx.health import on_reading

FORMAT_VERSION = 1
RUN_FILE, METRICS_FILE, STATE_FILE, LOCK_FILE, CHECKPOINT_DIR = (
    "run.h5", "metrics.h5", "state.h5", "run.lock", "checkpoints")
EVENTS_DIR = "tensorboard"  # TensorBoard's view of metrics.h5 (rltx.events writes it)


class StoreWriteError(Exception):
    """A file could not be written (disk full, file-size limit, an I/O failure); the previous version
    of the file is intact."""


# A path the user can fix (exit 2): missing or read-only folder, a file where a folder should be, a
# name too long. Only a full disk or the file-size limit is about disk space; the rest is an I/O failure.
_PATH_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR, errno.EISDIR,
                errno.ENAMETOOLONG, errno.EEXIST}
_SPACE_ERRORS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def write_failure(path: Path, error: Exception) -> Exception:
    """The error to raise for a failed write of `path`: a UsageError for a path the user can fix,
    a StoreWriteError otherwise (disk-space advice only when the disk is full or the file too large)."""
    code = getattr(error, "errno", None) or _errno_in(str(error))
    reason = _reason(error)
    if code in _PATH_ERRORS:
        return UsageError(f"cannot write {path}: {reason}; choose a writable path (an existing, writable folder "
                          "and a name under 255 characters)")
    if code in _SPACE_ERRORS:
        return StoreWriteError(f"cannot write {path}: {reason}; the previous version is intact. Free disk space "
                               "(or raise the file-size limit) and rerun the same command")
    return StoreWriteError(f"cannot write {path}: {reason} (an I/O failure of the storage); the previous version "
                           "is intact. Check the storage and rerun the same command")


def _errno_in(message: str) -> int | None:
    found = re.search(r"errno = (\d+)", message)
    return int(found.group(1)) if found else None


def temporary_path(path: Path, keep_suffix: bool = False) -> Path:
    """Where `path` is built before it replaces the file: hidden, marked as rltx's with the writer's pid
    (`.NAME.rltx-PID.tmp`; a plot keeps its format's suffix, `.STEM.rltx-PID.png`), so that
    `remove_dead_temporaries` removes only rltx's own, never a user's hidden file."""
    name = f".{path.stem}.rltx-{os.getpid()}{path.suffix}" if keep_suffix else f".{path.name}.rltx-{os.getpid()}.tmp"
    return path.with_name(name)


_TEMPORARY = re.compile(r"^\..+\.rltx-(\d+)\.(tmp|png|pdf|svg)$")


def remove_dead_temporaries(directory: Path) -> None:
    """Temporaries of rltx's naming (`temporary_path`) whose writer is no longer alive: what a SIGKILL
    during a write left behind."""
    try:
        candidates = [p for p in Path(directory).iterdir() if _TEMPORARY.match(p.name)]
    except OSError:
        return
    for candidate in candidates:
        pid = int(_TEMPORARY.match(candidate.name).group(1))
        if pid != os.getpid() and not _alive(pid):
            with contextlib.suppress(OSError):
                candidate.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


@contextlib.contextmanager
def atomic_h5(path: Path):
    """Write an HDF5 file so that `path` is always either the old or the complete new file.

    The file is built in memory (HDF5's core driver) and its image written by Python, so a full disk or a
    file-size limit is one OSError of that write. Written by HDF5 itself, a failed write surfaced inside
    HDF5's clean-up of its handles, printed dozens of "Exception ignored" tracebacks and crashed the process
    (exit 139) before rltx could say anything. The price is the file's size in memory twice, briefly."""
    temporary = temporary_path(path)
    remove_dead_temporaries(path.parent)
    try:
        with h5py.File(str(temporary), "w", driver="core", backing_store=False) as handle:
            yield handle
            handle.flush()
            image = handle.id.get_file_image()
        with open(temporary, "wb") as raw:
            raw.write(image)
            raw.flush()
            os.fsync(raw.fileno())
        del image
        os.replace(temporary, path)
        _fsync_directory(path.parent)
    except OSError as error:
        raise write_failure(path, error) from None
    finally:
        try:
            temporary.unlink(missing_ok=True)
        except OSError:
            pass


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file so that `path` is always either the old or the complete new file."""
    temporary = temporary_path(path)
    remove_dead_temporaries(path.parent)
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except OSError as error:
        raise write_failure(path, error) from None
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


def make_directory(directory: Path) -> None:
    """Create an output folder (and its parents), with a one-line error for a path the user can fix."""
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise write_failure(directory, error) from None


def remove_empty_folders(top: Path) -> None:
    """Remove `top` and every folder under it that holds nothing, deepest first (what a refused command
    made before it was refused); a folder holding a file stays, and no file is touched."""
    for directory, _, _ in os.walk(top, topdown=False):
        with contextlib.suppress(OSError):
            Path(directory).rmdir()


def check_output(path: Path, is_same_kind, what: str) -> None:
    """Refuse an output file inside a run directory (or its checkpoints/), or in place of an existing
    file that is not `what` (`is_same_kind(path)` says whether it is): replacing a result of the same
    kind is fine, replacing anything else could destroy a run or another program's data."""
    path = Path(path)
    check_folder(path)
    try:
        check_outside_runs(path, "-o")
        if path.is_dir():
            raise UsageError(f"{path} is a directory; give a file name for -o")
        if (path.exists() or path.is_symlink()) and not is_same_kind(path):
            raise UsageError(f"{path} exists and is not {what}; choose another -o or remove it")
    except OSError as error:
        raise write_failure(path, error) from None


def enclosing_run(path: Path) -> Path | None:
    """The run directory that `path` lies inside (`path` itself not counted), if any. A folder this user
    may not search is not a run of theirs (os.path.isfile answers False there; Path.is_file raises)."""
    for folder in Path(path).resolve().parents:
        if os.path.isfile(folder / RUN_FILE):
            return folder
    return None


def first_repeated(paths) -> Path | None:
    """The first of `paths` that names a file or folder given before it (`./a` and `a` are the same), if any."""
    resolved = [Path(path).resolve() for path in paths]
    return next((Path(path) for index, path in enumerate(paths) if resolved[index] in resolved[:index]), None)


def check_outside_runs(path: Path, option: str) -> None:
    """A run directory holds one run's own files only: an output (a result, a model, another run) put
    inside one would be taken for part of it, or destroyed with it."""
    run = enclosing_run(path)
    if run is not None:
        raise UsageError(f"{path} is inside the run directory {run}; write outputs outside run directories "
                         f"(choose another {option})")


MAX_NAME = 255 - 24  # the file system's 255 bytes, less what a temporary adds (`.NAME.rltx-PID.tmp`: 18 at most)


def check_folder(path: Path) -> None:
    """The folder an output file goes to must exist and be writable (checked before any work)."""
    folder = Path(path).parent
    if len(Path(path).name.encode()) > MAX_NAME:
        raise UsageError(f"cannot write {path}: its name is longer than {MAX_NAME} bytes; choose a shorter name")
    if not folder.is_dir():
        raise UsageError(f"cannot write {path}: {folder} is not an existing folder; create it or choose another path")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"cannot write {path}: {folder} is not writable; choose another path")


def result_kind(path: Path) -> str | None:
    """The kind of the rltx analysis result in `path` (None for any other file)."""
    if not Path(path).is_file():  # a folder, or a FIFO, whose opening would block until a writer comes
        return None
    try:
        with h5py.File(path, "r") as handle:
            if "rltx_version" not in handle.attrs or "inputs" not in handle.attrs:
                return None
            return str(handle.attrs.get("kind"))
    except (OSError, ValueError):
        return None


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


def open_h5(path: Path, missing_fix: str = "check the run directory", expected: str = "a run written by rltx") \
        -> h5py.File:
    """Open a stored file for reading, with a fixable error for missing, damaged or misplaced files
    (`expected` says what belongs there)."""
    if Path(path).is_dir():
        raise UsageError(f"{path} is a folder, not a file; give {expected}")
    check_not_special(path, expected)
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist; {missing_fix}") from None
    except PermissionError:
        raise UsageError(f"{path}: permission denied; give this user read access (chmod / chown)") from None
    except OSError:
        raise UsageError(f"{path} is not a readable HDF5 file (truncated or another format); "
                         f"give {expected}") from None


def string_array(values) -> np.ndarray:
    """Strings as an array HDF5 stores (variable-length UTF-8)."""
    return np.array([str(v) for v in values], dtype=h5py.string_dtype())


def text(value) -> str:
    """A stored string as `str` (h5py reads variable-length strings back as bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


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
    health: str = "ok"  # ok | diverged: ... | collapsed: ... (rltx.health; "unchecked" in older runs)

    @property
    def config(self) -> dict:
        """The resolved recipe the run was made with, as keys (rltx.config.make_recipe validates them)."""
        return yaml.safe_load(self.config_yaml) or {}

    # A transfer's links are JSON lists in attributes of run.h5 (`source_links` writes them).
    @property
    def sources(self) -> list[str]:
        """The source run directories, as given to `rltx transfer --from`."""
        return json.loads(self.identity.get("sources", "[]"))

    @property
    def from_steps(self) -> list[int]:
        return [int(step) for step in json.loads(self.identity.get("from_step", "[]"))]

    @property
    def source_digests(self) -> list[str]:
        return json.loads(self.identity.get("source_digests", "[]"))

    @property
    def init_digest(self) -> str | None:
        """The sha256 of the run's init_file when it began (`init_links`); None without one, or from older rltx."""
        return self.identity.get("init_digest")

    @property
    def paired_with(self) -> list[str]:
        """The other run of a transfer / from-scratch pair (`rltx transfer --with-baseline`)."""
        return json.loads(self.transfer.get("paired_with", "[]"))

    @property
    def transferred_layers(self) -> list[str]:
        return json.loads(self.transfer.get("layers", "[]"))


def listed(values: list) -> str:
    """A list as the text of one run.h5 attribute (JSON), which the RunRecord properties above read."""
    return json.dumps(list(values))


def source_links(sources: list[str], digests: list[str], steps: list[int]) -> dict[str, str]:
    """A transfer's identity attributes: its sources, their checkpoints' sha256 and steps."""
    return {"sources": listed(sources), "source_digests": listed(digests), "from_step": listed(steps)}


def init_links(init_file: str | None) -> dict[str, str]:
    """A run's identity attribute for its init_file: the file's sha256, by which the run knows the file at
    another path when both were moved or copied (a reproduction's folder from a cluster to a laptop).
    Empty without an init file, or while the file is missing (reading the file reports that)."""
    if not init_file or not Path(init_file).is_file():
        return {}
    return {"init_digest": file_sha256(Path(init_file))}


def write_run_record(run_dir: Path, record: RunRecord) -> None:
    with atomic_h5(run_dir / RUN_FILE) as handle:
        handle.attrs.update(format_version=FORMAT_VERSION, status=record.status, error=record.error,
                            created=iso_time(record.created), updated=iso_time(time.time()), kind=record.kind,
                            health=record.health)
        config = handle.create_group("config")
        config.attrs["yaml"] = record.config_yaml
        environment = handle.create_group("environment")
        environment.attrs.update({k: str(v) for k, v in record.environment.items()})
        write_arrays(handle.create_group("samples"), record.samples)
        handle.create_group("identity").attrs.update(record.identity)
        _write_details(handle.create_group("transfer"), record.transfer)


def _write_details(group: h5py.Group, details: dict) -> None:
    """Scalars and strings as attributes; arrays (a covariance transfer's Sigma_w) as datasets, since HDF5
    refuses attributes over 64 KiB (a 147x147 Sigma_w of ResNet18's 7x7 stem is 173 KB)."""
    arrays = {k: v for k, v in details.items() if isinstance(v, np.ndarray) and v.ndim > 0}
    write_arrays(group, arrays)
    group.attrs.update({k: v for k, v in details.items() if k not in arrays})


def json_text(value, indent: int | None = 2) -> str:
    """Strict JSON for `--json` output: numpy values as Python ones, NaN and infinities as null (bare NaN,
    which Python's json writes by default, is not JSON and other parsers reject it)."""
    def plain(item):
        if isinstance(item, np.ndarray):
            item = item.tolist()  # a list, or a Python scalar for a 0-d array
        if isinstance(item, dict):
            return {str(key): plain(v) for key, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [plain(v) for v in item]
        if isinstance(item, np.generic):
            item = item.item()
        if isinstance(item, bytes):  # h5py's variable-length strings
            return item.decode("utf-8", errors="replace")
        if isinstance(item, float) and not math.isfinite(item):
            return None
        return item if item is None or isinstance(item, (str, int, float, bool)) else str(item)
    return json.dumps(plain(value), indent=indent, allow_nan=False)


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
        _require(handle, run_dir / RUN_FILE, groups=("environment", "samples", "identity", "transfer"),
                 attributes=("status", "error", "created", "kind"), what="an rltx run file")
        path = run_dir / RUN_FILE
        try:
            created = epoch_time(handle.attrs["created"])
        except (ValueError, TypeError, OverflowError):
            raise UsageError(f"{path} holds a damaged `created` time; restore the file rltx wrote") from None
        record = RunRecord(
            config_yaml=str(handle["config"].attrs.get("yaml", "")),
            environment=dict(handle["environment"].attrs),
            samples=read_arrays(handle["samples"]),
            status=str(handle.attrs["status"]), error=str(handle.attrs["error"]),
            created=created, kind=str(handle.attrs["kind"]),
            identity=_plain(handle["identity"].attrs),
            transfer={**_plain(handle["transfer"].attrs), **read_arrays(handle["transfer"])},
            health=str(handle.attrs.get("health", "unchecked")))
    if record.status == "completed":
        record.health = on_reading(record.health, *_last_loss(run_dir))
    try:
        keys = yaml.safe_load(record.config_yaml)
    except yaml.YAMLError:
        keys = None
    if not isinstance(keys, dict):
        raise UsageError(f"{path} holds a damaged recipe (config/yaml is not a mapping of recipe keys); restore the "
                         "file rltx wrote")
    return record


def _require(handle: h5py.File, path: Path, *, groups=(), attributes=(), what: str,
             fix: str = "restore the file rltx wrote or remove the run") -> None:
    """The layout a reader needs, or one line naming the file (another program's HDF5 in its place)."""
    missing = [name for name in groups if not isinstance(handle.get(name), h5py.Group)]
    missing += [f"attribute {name}" for name in attributes if name not in handle.attrs]
    if missing:
        raise UsageError(f"{path} is not {what} (it lacks {', '.join(missing[:3])}); {fix}")


def _plain(attributes) -> dict:
    """HDF5 attributes as Python values (numpy scalars to int/float, arrays to lists)."""
    return {k: v.tolist() if hasattr(v, "tolist") else v for k, v in attributes.items()}


def read_config_yaml(path: Path) -> str:
    """The resolved recipe stored in a run file (so `rltx pretrain RUN/run.h5` re-runs it)."""
    return read_run_record(Path(path).parent).config_yaml


def read_status(run_dir: Path | str) -> str:
    """running / completed / failed / interrupted ('running' in the file but nobody holds the lock); the
    README's public call, so a path given as text is taken too."""
    run_dir = Path(run_dir)
    return live_status(run_dir, read_run_record(run_dir).status)


def live_status(run_dir: Path, status: str) -> str:
    """A run record's stored `status` as it stands: 'running' that no writer's lock holds is interrupted
    (for callers that read the record already)."""
    try:
        if status == "running" and not _lock_is_held(run_dir / LOCK_FILE):
            return "interrupted"
    except PermissionError:  # whether a writer still holds it cannot be told
        raise UsageError(f"{run_dir / LOCK_FILE}: permission denied, so whether the run is still training cannot "
                         "be told; give this user read access (chmod / chown)") from None
    return status


# --- metrics.h5 ---------------------------------------------------------------------------

def write_metrics(run_dir: Path, rows: list[dict]) -> None:
    """All metric rows so far, as resizable 1-D datasets (per-layer norms under weight_norm/)."""
    with atomic_h5(run_dir / METRICS_FILE) as handle:
        for name in rows[0] if rows else ():
            values = np.asarray([row[name] for row in rows])
            handle.create_dataset(name, data=values, maxshape=(None,), chunks=True)


def _last_loss(run_dir: Path) -> tuple[float | None, int | None]:
    """The whole-set train loss and step of a run's last metrics row, or (None, None) without one (a missing
    or damaged metrics file is named by the commands that read the metrics)."""
    if not (run_dir / METRICS_FILE).is_file():
        return None, None
    try:
        with h5py.File(run_dir / METRICS_FILE, "r") as handle:
            return float(handle["train_loss"][-1]), int(handle["step"][-1])
    except (OSError, KeyError, IndexError, ValueError, TypeError):
        return None, None


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / METRICS_FILE
    if not path.exists():
        return []
    with open_h5(path) as handle:
        names = []
        handle.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
        columns = {name: handle[name][()] for name in names}
    lengths = {values.shape for values in columns.values()}
    numeric = all(values.dtype.kind in "biuf" for values in columns.values())
    if columns and ("step" not in columns or not numeric or len(lengths) != 1 or len(lengths.pop()) != 1):
        raise UsageError(f"{path} is not an rltx metrics file (it needs equally long 1-D numeric columns with a step "
                         "column); restore the file rltx wrote or remove the run")
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

def write_arrays(group: h5py.Group, arrays: dict[str, np.ndarray]) -> None:
    """Each array as a dataset of `group`; a name with slashes ('conv_0/kernel') makes subgroups."""
    for name, values in arrays.items():
        group.create_dataset(name, data=values)


def read_arrays(group: h5py.Group) -> dict[str, np.ndarray]:
    """Every dataset under `group`, keyed by its path relative to the group."""
    arrays = {}
    group.visititems(lambda name, item: arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return arrays


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return run_dir / CHECKPOINT_DIR / f"step_{step:08d}.h5"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def checkpoint_sha256(run_dir: Path, step: int) -> str:
    """The checkpoint file's sha256: what a transfer records of its source and checks when it is used again."""
    return file_sha256(checkpoint_path(Path(run_dir), step))


def located_source(run_dir: Path, record: RunRecord, index: int = 0) -> Path | None:
    """Where source `index` of the transfer in `run_dir` is now: next to it under the recorded name when
    that run's checkpoint at the recorded step has the recorded sha256 (runs moved or copied together,
    as a sweep's folder), else at the recorded path; None when neither holds a run."""
    recorded, step, digests = Path(record.sources[index]), record.from_steps[index], record.source_digests
    beside = Path(run_dir).resolve().parent / recorded.name
    if beside != recorded.resolve() and index < len(digests) and checkpoint_path(beside, step).exists() \
            and checkpoint_sha256(beside, step) == digests[index]:
        return beside
    return recorded if (recorded / RUN_FILE).exists() else None


def located_init(run_dir: Path, record: RunRecord) -> str | None:
    """Where the init file of the run in `run_dir` is now: next to the run's folder under the recorded name
    when that file has the recorded sha256 (a run moved or copied with its init file, as a reproduction's
    table or constructed variant), else the recorded path (which may be gone); None for a run without one."""
    recorded = record.config.get("init_file")
    if not recorded:
        return None
    beside = Path(run_dir).resolve().parent / Path(recorded).name
    if beside != Path(recorded).resolve() and record.init_digest and beside.is_file() \
            and file_sha256(beside) == record.init_digest:
        return str(beside)
    return recorded


def located_partner(run_dir: Path, recorded: str) -> Path | None:
    """The run paired with the one in `run_dir` (`paired_with`): next to it under the recorded name (a
    pair moved or copied together), else at the recorded path; None when neither holds a run."""
    for candidate in (Path(run_dir).resolve().parent / Path(recorded).name, Path(recorded)):
        if (candidate / RUN_FILE).exists():
            return candidate
    return None


def write_checkpoint(run_dir: Path, step: int, weights: dict[str, np.ndarray]) -> None:
    """Kept weights at `step`, keyed by variable path ('conv_0/kernel')."""
    (run_dir / CHECKPOINT_DIR).mkdir(exist_ok=True)
    with atomic_h5(checkpoint_path(run_dir, step)) as handle:
        handle.attrs["step"] = step
        write_arrays(handle.create_group("weights"), weights)


def read_checkpoint(run_dir: Path, step: int) -> dict[str, np.ndarray]:
    path = checkpoint_path(run_dir, step)
    if not path.exists():
        stored = ", ".join(str(s) for s in checkpoint_steps_stored(run_dir)) or "none"
        raise UsageError(f"{run_dir} has no checkpoint at step {step}; stored steps: {stored}")
    with open_h5(path) as handle:
        _require(handle, path, groups=("weights",), what="an rltx checkpoint")
        return read_arrays(handle["weights"])


_CHECKPOINT_NAME = re.compile(r"^step_(\d{8})\.h5$")


def checkpoint_steps_stored(run_dir: Path) -> list[int]:
    """The steps of the files named as rltx names checkpoints (copies and other files are ignored)."""
    folder = run_dir / CHECKPOINT_DIR
    names = [p.name for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
    return sorted(int(found.group(1)) for found in map(_CHECKPOINT_NAME.match, names) if found)


def write_state(run_dir: Path, step: int, weights: dict[str, np.ndarray], optimizer: dict[str, np.ndarray]) -> None:
    """The latest resume point: the step reached, the weights and the optimizer variables, by path."""
    with atomic_h5(run_dir / STATE_FILE) as handle:
        handle.attrs["step"] = step
        write_arrays(handle.create_group("weights"), weights)
        write_arrays(handle.create_group("optimizer"), optimizer)


def read_state(run_dir: Path) -> tuple[int, dict[str, np.ndarray], dict[str, np.ndarray]] | None:
    path = run_dir / STATE_FILE
    if not path.exists():
        return None
    check_not_special(path, "the resume state rltx wrote, or delete it to restart from step 0")
    try:
        handle = h5py.File(path, "r")
    except OSError:
        raise UsageError(f"{path} is damaged (truncated or another format); delete it to restart this run from "
                         "step 0 (its checkpoints hold no optimizer state to resume from)") from None
    with handle:
        _require(handle, path, groups=("weights", "optimizer"), attributes=("step",), what="an rltx resume state",
                 fix="delete it to restart this run from step 0")
        return int(handle.attrs["step"]), read_arrays(handle["weights"]), read_arrays(handle["optimizer"])


def read_state_step(run_dir: Path) -> int | None:
    """The step of the latest resume point (None before the first), without reading the weights."""
    path = run_dir / STATE_FILE
    if not path.exists():
        return None
    fix = "delete it (a completed run does not need it; an unfinished one then restarts from step 0)"
    with open_h5(path, expected=f"the resume state rltx wrote, or {fix}") as handle:
        step = handle.attrs.get("step")
    if not isinstance(step, (int, np.integer)) or isinstance(step, bool):
        raise UsageError(f"{path} is not an rltx resume state (no integer step); restore the file rltx wrote, or "
                         f"{fix}")
    return int(step)


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
        try:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise write_failure(self.path, error) from None
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
        write_arrays(handle.create_group("weights"), weights)
        handle.create_dataset("sample_indices", data=indices)
        construction = handle.create_group("construction")
        for layer, record in records.items():
            entry = construction.create_group(layer)
            entry.attrs.update(method=record.method, **record.numbers)
            write_arrays(entry, record.arrays)


def read_init_construction(path: Path) -> tuple[dict, dict[str, str]]:
    """An init file's recipe (the keys it was built with) and the layers it constructed, each with its method."""
    with open_h5(Path(path), "check the path, or build an init file with `rltx construct-init RECIPE -o FILE`",
                 "an init file written by `rltx construct-init`") as handle:
        if not (isinstance(handle.get("construction"), h5py.Group) and "recipe_yaml" in handle.attrs):
            raise UsageError(f"{path} is not an init file of `rltx construct-init`; build one with it")
        methods = {layer: text(entry.attrs.get("method", "")) for layer, entry in handle["construction"].items()}
        return yaml.safe_load(text(handle.attrs["recipe_yaml"])) or {}, dict(sorted(methods.items()))


def read_init_weights(path: Path) -> dict[str, np.ndarray]:
    with open_h5(Path(path), "check the path, or build an init file with `rltx construct-init RECIPE -o FILE`",
                 "an init file written by `rltx construct-init`") as handle:
        if not (isinstance(handle.get("weights"), h5py.Group) and "construction" in handle):
            raise UsageError(f"{path} is not an init file of `rltx construct-init`; build one with it")
        return read_arrays(handle["weights"])
