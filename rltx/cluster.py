"""The environment a training process reads: TF_CONFIG (a multi-worker cluster) and
RLTX_GPU_MEMORY_MB (a per-process GPU memory cap), checked without TensorFlow so that every command
can refuse a bad value before it writes anything."""
from __future__ import annotations

import json
import os
import re

from rltx.errors import UsageError

# Per-process GPU memory cap in MiB (`rltx sweep --runs-per-gpu` sets it for its workers); unset:
# memory growth, so runs sharing a GPU each take only what they use.
MEMORY_ENV = "RLTX_GPU_MEMORY_MB"
CLUSTER_ROLES = ("chief", "worker", "ps", "evaluator")
SINGLE_ROLES = ("chief", "evaluator")  # TF allows at most one task of each
HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$")  # host:port, [IPv6]:port


def check_environment() -> None:
    """TF_CONFIG and RLTX_GPU_MEMORY_MB, checked before a command writes anything."""
    tf_config()
    gpu_memory_limit()


def gpu_memory_limit() -> int | None:
    """RLTX_GPU_MEMORY_MB as a positive number of MiB, or None when unset."""
    limit = os.environ.get(MEMORY_ENV, "").strip()
    if not limit:
        return None
    if not (limit.isascii() and limit.isdigit() and int(limit) > 0):  # '²'.isdigit() is True, int('²') fails
        raise UsageError(f"{MEMORY_ENV}={limit!r} is not a positive number of MiB; set e.g. {MEMORY_ENV}=8000 or unset it")
    return int(limit)


def tf_config() -> dict:
    """The TF_CONFIG environment variable of a multi-worker run (empty: one process), checked."""
    text = os.environ.get("TF_CONFIG", "").strip() or "{}"
    try:
        config = json.loads(text)
    except (ValueError, RecursionError):
        config = None
    if not (isinstance(config, dict) and _valid_cluster(config.get("cluster", {}), config.get("task", {}))):
        raise UsageError('TF_CONFIG is not valid: it must be JSON like {"cluster": {"worker": ["host:port", ...]}, '
                         '"task": {"type": "worker", "index": 0}}, the task one of the cluster\'s; fix it or unset it')
    return config


def _valid_cluster(cluster, task) -> bool:
    """The rules of TF's multi_worker_util: roles (chief, worker, ps, evaluator) with non-empty lists of
    host:port, at most one chief and one evaluator, and this process's task a role of the cluster with an
    index into its list; an evaluator may run outside the cluster. No task: one process only."""
    if not (isinstance(cluster, dict) and isinstance(task, dict)):
        return False
    if not cluster:
        return not task
    addresses = all(role in CLUSTER_ROLES and isinstance(hosts, list) and hosts
                    and all(isinstance(h, str) and HOST_PORT.match(h) for h in hosts) for role, hosts in cluster.items())
    single = all(len(cluster.get(role, ())) <= 1 for role in SINGLE_ROLES)
    role, index = task.get("type"), task.get("index", 0)
    if not (addresses and single and isinstance(index, int) and not isinstance(index, bool) and index >= 0):
        return False
    if role == "evaluator" and role not in cluster:
        return index == 0
    return role in cluster and index < len(cluster[role])
