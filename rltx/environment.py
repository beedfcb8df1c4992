"""What a run was computed with: package versions, devices, the strategy and rltx's git commit."""
from __future__ import annotations

import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

import tensorflow as tf

from rltx import __version__

PACKAGES = ("tensorflow", "keras", "tensorflow-datasets", "numpy", "h5py", "scipy")


def describe_environment(strategy: tf.distribute.Strategy) -> dict[str, str]:
    """Stored in run.h5 /environment, so a result can be traced to the code and hardware behind it."""
    # rltx's own version from the code that runs, not the installed metadata, which an editable install
    # leaves stale: a transfer reads it to tell how a source read init_scale (rltx.models.init_scale_mismatch).
    versions = {"version/rltx": __version__, **{f"version/{name}": _version(name) for name in PACKAGES}}
    devices = [f"{d.device_type}:{d.name}" for d in tf.config.list_logical_devices()]
    return {**versions, "python": platform.python_version(), "hostname": socket.gethostname(),
            "devices": ", ".join(devices), "strategy": type(strategy).__name__,
            "num_replicas": str(strategy.num_replicas_in_sync), "git_commit": git_commit()}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def git_commit(source: Path | None = None) -> str:
    """The commit of the rltx checkout this package runs from (or of `source`; 'unknown' for a plain install).

    `-dirty` is appended when the checkout has uncommitted changes. Read only: `--no-optional-locks` keeps
    `git status` from refreshing the checkout's index, which takes .git/index.lock, and a run killed meanwhile
    (or limited in file size) left that lock behind, blocking every git command in the user's checkout."""
    source = source or Path(__file__).resolve().parent
    git = ["git", "--no-optional-locks", "-C", str(source)]
    try:
        commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")
