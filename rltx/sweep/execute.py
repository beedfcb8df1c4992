"""Running a sweep plan: what every executor shares, and the local executor (N worker processes,
K per GPU when GPUs are present).

A planned run is done when all its run directories are completed; it is then skipped. Any other
run is started with its command, which resumes an interrupted run from its saved state (the run
store's own resume), so killing a sweep and starting it again redoes nothing that was finished.
A run starts only after the runs it needs (`after`) completed; when one fails, the runs that need
it are reported as blocked and the others go on.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from rltx.sweep.plan import Plan, PlannedRun

POLL_S = 0.5
# Memory a process takes on its GPU outside TF's allocator (CUDA context, cuDNN / cuBLAS handles):
# an allowance left free per run when runs share a GPU, not a measured value.
CONTEXT_MB = 512
STOP_GRACE_S = 120  # a stopped run saves its state at the end of its current chunk of steps


@dataclasses.dataclass(frozen=True)
class Outcome:
    name: str
    status: str      # completed (ran now) | skipped (was complete) | failed | blocked
    seconds: float = 0.0
    log: str = ""


def run_status(run_dir: str | Path) -> str:
    """absent, or the stored status of the run (running, completed, failed, interrupted)."""
    from rltx.store import RUN_FILE, read_status
    run_dir = Path(run_dir)
    if not (run_dir / RUN_FILE).exists():
        return "absent"
    return read_status(run_dir)


def is_done(run: PlannedRun) -> bool:
    return all(run_status(d) == "completed" for d in run.run_dirs)


def log_path(plan: Plan, run: PlannedRun) -> Path:
    return Path(plan.out) / "logs" / (run.name.replace("/", "__") + ".log")


def rltx_command(run: PlannedRun) -> list[str]:
    """The run's command with this interpreter's rltx (the `rltx` script need not be on PATH)."""
    return [sys.executable, "-m", "rltx", *run.argv]


def visible_gpus() -> list[str]:
    """Indices of the GPUs this process may use (CUDA_VISIBLE_DEVICES when set)."""
    import tensorflow as tf
    count = len(tf.config.list_physical_devices("GPU"))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip()][:count]
    return [str(i) for i in range(count)]


def gpu_memory_mb() -> int | None:
    """Total memory of the smallest GPU of this machine in MiB (nvidia-smi), None when unknown.
    The smallest, because nvidia-smi and CUDA may number the GPUs differently."""
    try:
        text = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=30, check=True).stdout
        return min(int(line) for line in text.split())
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def memory_cap_mb(total_mb: int | None, runs_per_gpu: int) -> int | None:
    """Each of `runs_per_gpu` runs on a GPU of `total_mb` gets an equal share, less CONTEXT_MB;
    None (memory growth only) for one run per GPU or an unknown size."""
    if total_mb is None or runs_per_gpu <= 1:
        return None
    cap = total_mb // runs_per_gpu - CONTEXT_MB
    return cap if cap > 0 else None


def worker_env(slot: int, gpus: list[str], runs_per_gpu: int, total_mb: int | None) -> dict[str, str]:
    """The environment of local worker `slot`: slots 0..K-1 share the first visible GPU, K..2K-1 the
    second, ..., each capped by RLTX_GPU_MEMORY_MB when the GPU's size is known (rltx.distribute)."""
    from rltx.cluster import MEMORY_ENV
    if not gpus:
        return {}
    env = {"CUDA_VISIBLE_DEVICES": gpus[(slot // runs_per_gpu) % len(gpus)]}
    cap = memory_cap_mb(total_mb, runs_per_gpu)
    if cap is not None:
        env[MEMORY_ENV] = str(cap)
    return env


class Scheduler:
    """Which runs may start: a run is ready when every run it needs is done, blocked when one failed."""

    def __init__(self, plan: Plan, echo: Callable[[str], None]):
        self.pending = list(plan.runs)
        self.outcomes: dict[str, Outcome] = {}
        self.echo = echo
        for run in list(self.pending):
            if is_done(run):
                self.finish(Outcome(run.name, "skipped"))
                self.pending.remove(run)

    def finish(self, outcome: Outcome) -> None:
        self.outcomes[outcome.name] = outcome
        if outcome.status != "skipped":
            self.echo(f"{outcome.status}: {outcome.name} ({outcome.seconds:.0f} s)"
                      + (f", log {outcome.log}" if outcome.status == "failed" else ""))

    def take_ready(self) -> PlannedRun | None:
        """The next run whose prerequisites are done; runs behind a failure become blocked."""
        for run in list(self.pending):
            states = [self.outcomes.get(name) for name in run.after]
            if any(s is not None and s.status in ("failed", "blocked") for s in states):
                self.pending.remove(run)
                self.finish(Outcome(run.name, "blocked"))
            elif all(s is not None for s in states):
                self.pending.remove(run)
                return run
        return None

    @property
    def finished(self) -> bool:
        return not self.pending

    def check_stalled(self, running: int) -> None:
        """Nothing runs and nothing can start: the runs left wait for runs that are not in the plan."""
        if not running and not self.finished:
            raise RuntimeError(f"runs {[r.name for r in self.pending]} wait for runs not in the plan")


def outcome(run: PlannedRun, returncode: int, started: float, log: Path) -> Outcome:
    """A run's command ended: the run completed when it exited 0 and stored every run directory as completed."""
    done = returncode == 0 and is_done(run)
    return Outcome(run.name, "completed" if done else "failed", time.monotonic() - started, str(log))


def run_local(plan: Plan, *, workers: int, runs_per_gpu: int = 1,
              echo: Callable[[str], None] = print) -> list[Outcome]:
    """Execute `plan` with `workers` concurrent processes; when there are GPUs, worker slot i gets
    visible GPU i // runs_per_gpu (`worker_env`). Ctrl-C / SIGTERM stops every running run (they
    save their state)."""
    gpus = visible_gpus()
    total_mb = gpu_memory_mb() if gpus and runs_per_gpu > 1 else None
    if gpus:
        cap = memory_cap_mb(total_mb, runs_per_gpu)
        echo(f"{workers} workers on {len(gpus)} GPUs, {runs_per_gpu} per GPU, "
             + (f"{cap} MiB each" if cap else "GPU memory growing as needed"))
    scheduler = Scheduler(plan, echo)
    free_slots = list(range(workers))
    running: dict[int, tuple[PlannedRun, subprocess.Popen, float, Path]] = {}
    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        while not scheduler.finished or running:
            while free_slots and (run := scheduler.take_ready()) is not None:
                slot = free_slots.pop(0)
                env = worker_env(slot, gpus, runs_per_gpu, total_mb)
                running[slot] = (run, *start(run, log_path(plan, run), env))
            scheduler.check_stalled(len(running))
            for slot, (run, process, started, log) in list(running.items()):
                if process.poll() is not None:
                    del running[slot]
                    free_slots.append(slot)
                    scheduler.finish(outcome(run, process.returncode, started, log))
            time.sleep(POLL_S if running else 0)
    except KeyboardInterrupt:
        stop(process for _, process, _, _ in running.values())
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    return [scheduler.outcomes[run.name] for run in plan.runs]


def start(run: PlannedRun, log: Path, env: dict[str, str]) -> tuple[subprocess.Popen, float, Path]:
    """Start the run's command, output into `log`, with `env` added to this process's environment."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as handle:  # appended: a resumed run keeps the log of its first attempt
        process = subprocess.Popen(rltx_command(run), stdout=handle, stderr=subprocess.STDOUT,
                                   env={**os.environ, **env},
                                   start_new_session=True)  # our own signals reach it only through stop
    return process, time.monotonic(), log


def raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def stop(processes) -> None:
    """SIGTERM the runs' processes and wait for them to save their state (killed after STOP_GRACE_S)."""
    processes = list(processes)
    for process in processes:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
