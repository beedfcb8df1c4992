"""Keep TensorFlow's native log lines off the terminal of the `rltx` program.

TensorFlow 2.21's C++ core writes to file descriptor 2 directly, through absl logging, before
absl::InitializeLog() has run ("WARNING: All log messages before absl::InitializeLog() is called
are written to STDERR", then I0000 oneDNN / cudart lines at import and "E0000 ... failed call to
cuInit" at the first device query on a machine without a GPU). TF_CPP_MIN_LOG_LEVEL does not reach
those, so the program itself moves descriptor 2: Python's sys.stderr keeps the terminal (rltx's
messages, progress, warnings and tracebacks), while native writes go to /dev/null or to the file
named by RLTX_NATIVE_LOG. Only the command-line entry point calls this; importing rltx never does.

The Python side of TensorFlow and tensorflow-datasets logs through the `absl` and `tensorflow`
loggers, which reach sys.stderr: tfds warns "Variant folder ... has no dataset_info.json" whenever
a dataset that is not prepared is probed (every offline fallback, and before the one-line error of
a missing dataset). The program raises those loggers to ERROR too.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import sys

from rltx.errors import UsageError, shorten

PYTHON_LOGGERS = ("absl", "tensorflow")

LOG_VARIABLE = "RLTX_NATIVE_LOG"


def wants_native_logs(verbose: bool) -> bool:
    """The user asked for TensorFlow's own lines: --verbose, or TF_CPP_MIN_LOG_LEVEL below 2
    (0 and 1 show info and warnings; 2 and 3 ask for quiet)."""
    return verbose or os.environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip() in ("0", "1")


def divert_native_stderr() -> None:
    """Point descriptor 2 at /dev/null (or $RLTX_NATIVE_LOG, appended) and rebind sys.stderr to a
    duplicate of the original descriptor 2. Child processes inherit descriptor 2, i.e. the
    diverted one; rltx starts its workers with their own log files."""
    sys.stderr.flush()
    target = os.environ.get(LOG_VARIABLE) or os.devnull
    try:  # non-blocking: a FIFO that no process reads fails at once (ENXIO) instead of hanging the program
        sink = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o644)
    except OSError as error:
        reason = "a FIFO that no process reads" if error.errno == errno.ENXIO else error.strerror
        raise UsageError(f"{LOG_VARIABLE}={shorten(target)} cannot be opened for appending ({reason}); "
                         "point it at a file in a writable folder or unset it") from None
    fcntl.fcntl(sink, fcntl.F_SETFL, fcntl.fcntl(sink, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    terminal = os.dup(2)
    os.dup2(sink, 2)
    os.close(sink)
    sys.stderr = os.fdopen(terminal, "w", buffering=1, encoding=sys.stderr.encoding or "utf-8",
                           errors="backslashreplace")


def quiet_python_loggers() -> None:
    """Show only errors of TensorFlow's and tfds's Python loggers (their warnings are about their
    own internals; --verbose keeps them)."""
    for name in PYTHON_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
