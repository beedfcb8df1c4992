"""Run inspection (`rltx runs`, `rltx show`): what the stored runs are, at a glance or in full.

Reads only run.h5, metrics.h5, the resume state's step and the checkpoint names (through
`rltx.store`), never TensorFlow, so it answers at once and works on runs that are training,
interrupted or failed.
"""
from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

import numpy as np

from rltx import store
from rltx.config import make_recipe
from rltx.errors import UsageError
from rltx.health import health_kind, is_flagged

RUN_SUBFOLDERS = (store.CHECKPOINT_DIR, store.EVENTS_DIR)  # a run's own folders, which never hold runs
SUMMARY_COLUMNS = ("name", "kind", "recipe", "status", "step", "train_accuracy", "test_accuracy", "age")


def find_runs(paths: list[Path], unreadable: list[str] | None = None) -> list[Path]:
    """The run directories (holding run.h5) at or under each of `paths`, in path order; folders that
    cannot be listed (permissions) are appended to `unreadable` instead of being skipped unseen. Symbolic
    links to folders are followed (runs linked in from scratch storage), each real folder once over all
    `paths` (a link back up the tree ends there), and a folder's own subfolders before its links, so a run
    is listed under its real name where the walk meets it, not under a link to it (`latest -> exp7`)."""
    found, visited = [], set()
    for path in map(Path, paths):
        if not path.exists():
            raise UsageError(f"{path} does not exist; give directories holding runs (default: runs)")
        if path.is_file():
            if path.name != store.RUN_FILE:
                raise UsageError(f"{path} is a file, not a run; give directories holding runs (or RUN/run.h5)")
            path = path.parent
        on_error = (lambda error: unreadable.append(str(error.filename))) if unreadable is not None else None
        under = []
        for folder, folders, files in os.walk(path, onerror=on_error, followlinks=True):
            real = os.path.realpath(folder)
            if real in visited:  # reached again through a link
                folders[:] = []
                continue
            visited.add(real)
            if store.RUN_FILE in files:
                under.append(Path(folder))
                folders[:] = [name for name in folders if name not in RUN_SUBFOLDERS]
            folders.sort(key=lambda name: os.path.islink(os.path.join(folder, name)))  # real folders first
        found += sorted(under)
    return list(dict.fromkeys(found))


def _total_steps(keys: dict, kind: str) -> int | None:
    try:
        recipe = make_recipe(keys)
    except UsageError:  # a run written by an older rltx with keys since renamed
        return None
    return recipe.steps if kind == "pretrain" else recipe.steps_downstream


def _recipe_label(keys: dict) -> str:
    return keys.get("description") or f"{keys.get('architecture')} on {keys.get('dataset')}"


def _last_modified(run_dir: Path) -> float:
    files = [run_dir / name for name in (store.RUN_FILE, store.METRICS_FILE, store.STATE_FILE)]
    return max(f.stat().st_mtime for f in files if f.exists())


def summary(run_dir: Path) -> dict:
    """One row of `rltx runs`: name, kind, recipe, status, step and total, final accuracies, age (s)."""
    run_dir = Path(run_dir)
    try:
        return _summary_row(run_dir, *_read(run_dir))
    except (UsageError, PermissionError) as error:  # a damaged or unreadable run still gets its row
        reason = str(error) if isinstance(error, UsageError) else f"{error.filename}: permission denied"
        return {**dict.fromkeys(SUMMARY_COLUMNS), "name": str(run_dir), "status": "unreadable", "total_steps": None,
                "reason": reason, "health": None, "damage": None}


def _read(run_dir: Path) -> tuple:
    """What a summary shows, from the run's files: its record, metrics, resume step and status. A completed
    run's resume state is read by nothing (a rerun reports the run, transfers and analyses read checkpoints), so
    a damaged one does not hide the run; an unfinished run's is its next step, and a damaged one is named."""
    record = store.read_run_record(run_dir)
    state_step = None if record.status == "completed" else store.read_state_step(run_dir)
    return record, store.read_metrics(run_dir), state_step, store.live_status(run_dir, record.status)


def _summary_row(run_dir: Path, record: store.RunRecord, metrics: list[dict], state_step, status) -> dict:
    last, keys = (metrics[-1] if metrics else {}), record.config
    total = _total_steps(keys, record.kind)
    return {"name": str(run_dir), "kind": record.kind, "recipe": _recipe_label(keys), "status": status,
            "step": max(state_step or 0, last.get("step", 0)),  # metrics may pass the resume state
            "train_accuracy": last.get("train_accuracy"), "test_accuracy": last.get("test_accuracy"),
            "age": time.time() - _last_modified(run_dir), "total_steps": total,
            "reason": record.error, "health": record.health, "damage": _damage(run_dir, status, total)}


def _damage(run_dir: Path, status: str, total_steps: int | None) -> str | None:
    """What a completed run lacks of the files every completed run keeps: its final checkpoint (which transfer,
    export and analyze then refuse, runs.check_final_checkpoint) and its metrics (which a rerun then refuses);
    None for a whole run. Where the final step cannot be worked out (keys of an older rltx), a run with no
    checkpoint at all is damaged."""
    if status != "completed":
        return None
    missing, stored = [], store.checkpoint_steps_stored(run_dir)
    if total_steps is not None and total_steps not in stored:
        missing.append(f"its final checkpoint {store.CHECKPOINT_DIR}/{store.checkpoint_path(run_dir, total_steps).name}")
    elif total_steps is None and not stored:
        missing.append(f"every checkpoint ({store.CHECKPOINT_DIR}/)")
    if not (run_dir / store.METRICS_FILE).exists():
        missing.append(store.METRICS_FILE)
    return f"{' and '.join(missing)} missing; restore from a backup" if missing else None


def _sources(run_dir: Path, record: store.RunRecord) -> list[dict]:
    """The recorded sources, each with where it is now (`store.located_source`: moved runs are found
    next to the transfer by their checkpoint's sha256; None when it is nowhere)."""
    sources = []
    for i, (run, step, digest) in enumerate(zip(record.sources, record.from_steps, record.source_digests)):
        now = store.located_source(run_dir, record, i)
        sources.append({"run": run, "step": step, "sha256": digest, "now": None if now is None else str(now)})
    return sources


def _init_file(run_dir: Path, record: store.RunRecord) -> dict | None:
    """The init file the run began from, with where it is now (`store.located_init`: a file moved with the run is
    found beside it by its sha256; None when it is nowhere); None for a run without one."""
    recorded = record.config.get("init_file")
    if not recorded:
        return None
    now = recorded if Path(recorded).is_file() else store.located_init(run_dir, record)  # a relative path: from here
    return {"run": recorded, "sha256": record.init_digest, "now": now if Path(now).is_file() else None}


def _samples(samples: dict[str, np.ndarray]) -> dict:
    """Each stored sample array by its size (and distinct labels); scalars by value."""
    described = {}
    for name, values in samples.items():
        values = np.asarray(values)
        if values.ndim == 0:
            described[name] = values.item()
        else:
            described[name] = {"count": int(values.size)}
            if name.endswith("_labels"):
                described[name]["classes"] = int(np.unique(values).size)
    return described


def _transfer_details(transfer: dict) -> dict:
    """How a transfer built its initial weights; Sigma_w and mu_w are given by their shapes, not their entries."""
    shown = {"sigma_w": "matrix", "mu_w": "vector"}
    return {key: (f"{shown[key]} {np.shape(value)}" if key in shown else value) for key, value in transfer.items()}


def resume_command(run_dir: Path, record: store.RunRecord, sources: list[dict] | None = None,
                   init: dict | None = None) -> str:
    """The command that continues the run (for a completed run it reports it and does nothing); `sources` and
    `init`: `_sources` and `_init_file` of the run when the caller has them (each file is looked for, and a moved
    one hashed, once). An init file no longer at its recorded path (from the current directory) but beside the
    moved run is given there."""
    run_dir = Path(run_dir)
    init = _init_file(run_dir, record) if init is None else init
    moved = init is not None and init["now"] is not None and init["now"] != init["run"]
    moved_init = f" --init {shlex.quote(init['now'])}" if moved else ""
    if record.kind == "pretrain":
        return f"rltx pretrain {shlex.quote(str(run_dir / store.RUN_FILE))}{moved_init}"
    sources = _sources(run_dir, record) if sources is None else sources
    paired = record.paired_with
    out, baseline = run_dir, ""
    if sources and paired:  # a pair resumes together: its transfer with --with-baseline
        partner = store.located_partner(run_dir, paired[0]) or Path(paired[0])
        out, baseline = (partner if record.kind == "scratch" else run_dir), " --with-baseline"
    froms = " ".join(f"--from {shlex.quote(s['now'] or s['run'])}" for s in sources) or "--from scratch"
    steps = {s["step"] for s in sources}
    from_step = f" --from-step {steps.pop()}" if len(steps) == 1 else ""
    return (f"rltx transfer {shlex.quote(str(out / store.RUN_FILE))} {froms}{from_step}{baseline}{moved_init} "
            f"--out {shlex.quote(str(out))}")


def details(run_dir: Path) -> dict:
    """Everything `rltx show` prints: the summary, the resolved recipe, sources with their sha256,
    samples, how a transfer began, the last metrics, the checkpoints and the resume command."""
    run_dir = Path(run_dir)
    if run_dir.name == store.RUN_FILE:
        run_dir = run_dir.parent
    elif run_dir.is_file():
        raise UsageError(f"{run_dir} is a file, not a run; give a run directory (or RUN/run.h5)")
    record, metrics, state_step, status = _read(run_dir)  # `runs` lists a damaged run; `show` names the file
    sources, init = _sources(run_dir, record), _init_file(run_dir, record)
    return {**_summary_row(run_dir, record, metrics, state_step, status), "recipe_yaml": record.config_yaml, "created": store.iso_time(record.created),
            "sources": sources, "init_file": init, "samples": _samples(record.samples),
            "transfer": _transfer_details(record.transfer), "eval_points": len(metrics),
            "last_metrics": metrics[-1] if metrics else {}, "checkpoints": store.checkpoint_steps_stored(run_dir),
            "environment": record.environment, "resume_command": resume_command(run_dir, record, sources, init)}


# --- text ---------------------------------------------------------------------------------

def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _accuracy(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _progress(row: dict) -> str:
    total = row["total_steps"]
    return f"{row['step'] if row['step'] is not None else '-'}/{total if total is not None else '?'}"


def summary_table(rows: list[dict], recipe_width: int = 36) -> str:
    """The `rltx runs` table: one line per run, columns padded to the widest entry."""
    header = ["NAME", "KIND", "RECIPE", "STATUS", "STEP", "TRAIN", "TEST", "AGE"]
    lines = [[row["name"], row["kind"] or "-", _shorten(row["recipe"] or "-", recipe_width), _status(row),
              _progress(row), _accuracy(row["train_accuracy"]), _accuracy(row["test_accuracy"]), _age(row["age"])]
             for row in rows]
    widths = [max(len(cells[i]) for cells in [header] + lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()
                     for cells in [header] + lines)


def _status(row: dict) -> str:
    """The status, with `damaged` for a completed run missing files (`_damage`) and the health flag of a run that
    ended without training (rltx.health): `completed, diverged` is no evidence."""
    health = row.get("health") or ""
    flags = (["damaged"] if row.get("damage") else []) + ([health_kind(health)] if is_flagged(health) else [])
    return ", ".join([row["status"], *flags])


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def _number(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _no_checkpoint(status: str) -> str:
    """What an empty checkpoint list means: none yet while the run may still write one; a completed run's are
    missing (`_damage` says which)."""
    return "none (missing)" if status == "completed" else "none yet"


def _whereabouts(source: dict) -> str:
    """A source or init file no longer at its recorded path: where it is now, or that it is missing."""
    if source["now"] is None:
        return "  (not found)"
    return "" if Path(source["now"]) == Path(source["run"]) else f"  (moved: now {source['now']})"


def details_text(info: dict) -> str:
    """`rltx show` as text: one section per part of the run."""
    status = info["status"] + (f" ({info['reason']})" if info["reason"] else "")
    lines = [f"run:         {info['name']}", f"kind:        {info['kind']}", f"status:      {status}",
             *([f"damaged:     {info['damage']}"] if info["damage"] else []), f"health:      {info['health']}",
             f"step:        {_progress(info)}", f"recipe:      {info['recipe']}",
             f"created:     {info['created']}",
             f"updated:     {_age(info['age'])} ago",
             f"checkpoints: {', '.join(map(str, info['checkpoints'])) or _no_checkpoint(info['status'])}"]
    if info["sources"]:
        lines.append("sources:")
        lines += [f"  {s['run']} at step {s['step']}  sha256 {s['sha256']}{_whereabouts(s)}" for s in info["sources"]]
    if info["init_file"]:
        init = info["init_file"]
        relative = init["now"] is not None and init["now"] != init["run"] and not Path(init["run"]).is_absolute()
        where = (f"  (relative to where the run began; found at {init['now']})" if relative  # construct-init
                 else _whereabouts(init))                                                  # --table DIR: not moved
        lines.append(f"init file:   {init['run']}{'  sha256 ' + init['sha256'] if init['sha256'] else ''}{where}")
    if info["transfer"]:
        lines.append("transfer:")
        lines += [f"  {key}: {_number(value)}" for key, value in info["transfer"].items()]
    lines.append("samples:")
    for name, value in info["samples"].items():
        text = value if not isinstance(value, dict) else ", ".join(f"{v} {k}" for k, v in value.items())
        lines.append(f"  {name}: {text}")
    lines.append(f"last metrics ({info['eval_points']} eval points):")
    lines += [f"  {key}: {_number(value)}" for key, value in info["last_metrics"].items()] or ["  none yet"]
    lines.append("recipe (resolved):")
    lines += [f"  {line}" for line in info["recipe_yaml"].rstrip().splitlines()]
    lines.append(f"resume:      {info['resume_command']}")
    return "\n".join(lines)


def to_json(value) -> str:
    return store.json_text(value)
