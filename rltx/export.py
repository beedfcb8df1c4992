"""`rltx export`: a stored run as standard files other tools read, a Keras model at a checkpoint
(`.keras`, loadable with plain `keras.saving.load_model`) and its metrics as CSV."""
from __future__ import annotations

from pathlib import Path

from rltx import store
from rltx.errors import UsageError
from rltx.health import is_flagged


def _check_new(path: Path, suffix: str) -> None:
    if path.suffix != suffix:
        raise UsageError(f"{path} must end in {suffix}; e.g. -o model{suffix}" if suffix == ".keras"
                         else f"{path} must end in {suffix}; e.g. --csv metrics{suffix}")
    if path.exists():
        raise UsageError(f"{path} exists; choose another file name or remove it")
    store.check_folder(path)
    store.check_outside_runs(path, "-o" if suffix == ".keras" else "--csv")


def export(run_dir: Path, *, step: int | None = None, model_path: Path | None = None,
           csv_path: Path | None = None) -> list[str]:
    """Write the run's model with the weights of its checkpoint at `step` (default: the last) to
    `model_path` (.keras) and/or its metrics, one row per eval point, to `csv_path` (.csv). Every
    input is checked before anything is written; returns what was written, one line each."""
    if model_path is None and csv_path is None:
        raise UsageError("export needs -o MODEL.keras and/or --csv METRICS.csv")
    if step is not None and model_path is None:
        raise UsageError("--step chooses the model's checkpoint, and the CSV holds every eval point: add -o "
                         "MODEL.keras or drop --step")
    for path, suffix in ((model_path, ".keras"), (csv_path, ".csv")):
        if path is not None:
            _check_new(Path(path), suffix)
    run_dir = Path(run_dir)
    run_dir = run_dir.parent if run_dir.name == store.RUN_FILE else run_dir  # RUN/run.h5 is the run
    record = store.read_run_record(run_dir)  # a fixable error for anything that is not a run
    caveat = _caveat(run_dir, record)  # read before anything is written
    if csv_path is not None:
        _check_metrics(run_dir, record)
    written = []
    if model_path is not None:  # the model needs the recipe; the metrics do not (runs of an older rltx export them)
        from rltx.runs import open_run, select_steps
        chosen = select_steps(open_run(run_dir), step, all_steps=False)[0]
        _save_model(run_dir, chosen, Path(model_path))
        written.append(f"wrote {model_path} (the model at step {chosen}{caveat})")
    if csv_path is not None:
        rows = store.read_metrics(run_dir)
        store.write_metrics_csv(Path(csv_path), rows)
        written.append(f"wrote {csv_path} ({len(rows)} eval points{caveat})")
    return written


def _check_metrics(run_dir: Path, record: store.RunRecord) -> None:
    """A CSV of no rows would pass for the run's metrics: a completed run without metrics.h5 is damaged, and
    a run that has not reached its first eval point has none yet."""
    if (run_dir / store.METRICS_FILE).exists():
        return
    if record.status == "completed":
        raise UsageError(f"{run_dir} is completed but its {store.METRICS_FILE} is missing: the run is damaged; "
                         "restore the file from a backup")
    raise UsageError(f"{run_dir} has no eval point yet ({store.METRICS_FILE} is missing); let it reach one, or "
                     "export only the model with -o")


def _caveat(run_dir: Path, record: store.RunRecord) -> str:
    """What a user of the exported model should know: a run that did not complete, or did not train."""
    status = store.live_status(run_dir, record.status)
    notes = ([f"the run is {status}"] if status != "completed" else []) + \
        ([f"health {record.health}"] if is_flagged(record.health) else [])
    return "".join(f"; {note}" for note in notes)


def _save_model(run_dir: Path, step: int, path: Path) -> None:
    from rltx.runs import load_model
    model = load_model(run_dir, step)
    temporary = store.temporary_path(path, keep_suffix=True)  # complete or absent, never half-written
    try:
        model.save(temporary)
        temporary.replace(path)
    except OSError as error:
        raise store.StoreWriteError(f"cannot write {path}: {error.strerror}; free disk space or fix the "
                                    "permissions and rerun the same command") from None
    finally:
        temporary.unlink(missing_ok=True)
