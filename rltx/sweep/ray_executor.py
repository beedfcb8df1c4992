"""The Ray executor of `rltx sweep` (pip install 'rltx[ray]'): one Ray task per planned run.

The driver orders the runs with the local executor's Scheduler: completed runs are skipped before
any task is submitted, a run is submitted once the runs it needs completed, and a failed run blocks
the runs that need it. A task starts its run's command with the Python of the node it landed on, so
every node needs rltx installed; the run writes into the plan's absolute run directories, so on a
cluster of several machines OUT must be on storage that all nodes share (NFS, a cluster file system).
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import Callable

from rltx.errors import UsageError
from rltx.sweep.execute import (POLL_S, STOP_GRACE_S, Outcome, Scheduler, gpu_memory_mb, log_path, memory_cap_mb,
                                outcome, raise_interrupt, start, stop)
from rltx.sweep.plan import Plan, PlannedRun


def run_ray(plan: Plan, *, address: str | None = None, gpus_per_run: float | None = None,
            echo: Callable[[str], None] = print) -> list[Outcome]:
    """Execute `plan` on the Ray cluster at `address` (else RAY_ADDRESS, else a local Ray started here
    and shut down at the end; a Ray this process already joined is used as it is). Each run takes one
    CPU and `gpus_per_run` GPUs [default: 1 when the cluster has GPUs, else 0]. Ctrl-C / SIGTERM
    cancels every task; running runs save their state."""
    try:
        import ray
    except ImportError as error:
        raise UsageError(f"--executor ray needs Ray ({error}); pip install 'rltx[ray]'") from None
    # RAY_ADDRESS: under `ray job submit` the driver must join the job's cluster, not start its own
    address = address or os.environ.get("RAY_ADDRESS") or None
    owned = not ray.is_initialized()  # a library caller may have connected already
    if owned:
        quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
        if address:
            _check_reachable(address)
            try:
                ray.init(address=address, **quiet)
            except ConnectionError as error:  # e.g. a cluster with token authentication and no token here
                raise UsageError(f"{error}; check the address, and for a cluster with token authentication "
                                 "set RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN)") from None
        else:  # "local": a fresh instance even when another Ray runs on this machine
            ray.init(address="local", include_dashboard=False, **quiet)
    try:
        if gpus_per_run is None:
            gpus_per_run = 1 if ray.cluster_resources().get("GPU", 0) else 0
        # no retries: a run killed with its worker is resumed by rerunning the sweep, while a retry
        # could race that run's own process if it outlived the worker
        task = ray.remote(_run_task).options(num_cpus=1, num_gpus=gpus_per_run, max_retries=0)
        return _execute(ray, task, plan, gpus_per_run, echo)
    finally:
        if owned:
            ray.shutdown()  # stops a local Ray; from a cluster given by address it only disconnects


def _check_reachable(address: str) -> None:
    """Ray retries an address nobody answers at for about 13 minutes; a mistyped one should fail at once."""
    host, _, port = address.split("://")[-1].rpartition(":")
    if not port.isdigit():
        return  # e.g. "auto": Ray looks for the cluster itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as error:
        raise UsageError(f"no Ray cluster answers at {address} ({error}); check the address "
                         "(`ray status` on the head node prints it)") from None


def _execute(ray, task, plan: Plan, gpus_per_run: float, echo: Callable[[str], None]) -> list[Outcome]:
    scheduler = Scheduler(plan, echo)
    running: dict = {}  # object ref -> its planned run
    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        while not scheduler.finished or running:
            while (run := scheduler.take_ready()) is not None:
                running[task.remote(run, str(log_path(plan, run)), gpus_per_run)] = run
            scheduler.check_stalled(len(running))
            # a timeout: a blocked ray.wait would hold back Ctrl-C / SIGTERM for seconds
            ready = ray.wait(list(running), num_returns=1, timeout=POLL_S)[0] if running else []
            for ref in ready:
                run = running.pop(ref)
                scheduler.finish(_result(ray, ref, run, log_path(plan, run)))
    except KeyboardInterrupt:
        for ref in running:
            ray.cancel(ref)  # a KeyboardInterrupt in the task, which stops its run (it saves its state)
        ray.wait(list(running), num_returns=len(running), timeout=STOP_GRACE_S + 10)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    return [scheduler.outcomes[run.name] for run in plan.runs]


def _result(ray, ref, run: PlannedRun, log: Path) -> Outcome:
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as error:  # the task's worker or node died: say so in the run's log
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as handle:
            handle.write(f"\nrltx sweep: the Ray task of this run failed: {type(error).__name__}: {error}\n")
        return Outcome(run.name, "failed", 0.0, str(log))


def task_env(gpus_per_run: float, total_mb: Callable[[], int | None]) -> dict[str, str]:
    """What a task adds to its run's environment. Ray sets CUDA_VISIBLE_DEVICES to the GPUs it
    assigned to a task with num_gpus > 0; a run that asked for none must not see any. A fraction
    of a GPU: every run grows its GPU memory as needed (rltx.distribute), capped at its share
    of the GPU (`total_mb()`, when known) like `--runs-per-gpu` with int(1 / gpus_per_run)."""
    from rltx.cluster import MEMORY_ENV
    if not gpus_per_run:
        return {"CUDA_VISIBLE_DEVICES": ""}
    cap = memory_cap_mb(total_mb(), int(1 / gpus_per_run)) if gpus_per_run < 1 else None
    return {MEMORY_ENV: str(cap)} if cap is not None else {}


def _run_task(run: PlannedRun, log: str, gpus_per_run: float) -> Outcome:
    """One planned run, on a Ray worker (environment: `task_env`)."""
    process, started, log = start(run, Path(log), task_env(gpus_per_run, gpu_memory_mb))
    try:
        while process.poll() is None:
            time.sleep(POLL_S)  # a short sleep, not wait(): ray.cancel's KeyboardInterrupt arrives promptly
    except KeyboardInterrupt:
        stop([process])
        raise
    return outcome(run, process.returncode, started, log)
