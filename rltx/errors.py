"""The one exception type for mistakes the user can fix (bad recipe, missing data, busy run),
`shorten`, which quotes a user's value in its message, and `check_not_special`, which names an input path that
no read would return from.

The CLI turns it into a one-line message and exit code 2; library callers catch it like any error.
"""
from __future__ import annotations

import os
import reprlib
import stat

QUOTE_LIMIT = 100  # characters of a user's value quoted in a message
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, QUOTE_LIMIT, QUOTE_LIMIT
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 8


class UsageError(Exception):
    """A problem with the user's input; the message names the problem and the fix, on one line."""

    def __str__(self) -> str:
        return " ".join(super().__str__().splitlines())


def shorten(value, limit: int = QUOTE_LIMIT) -> str:
    """repr(value) cut to about `limit` characters: a message never echoes a huge or nested value
    whole (nor an integer too long for Python to print)."""
    if isinstance(value, int) and value.bit_length() > 256:
        return f"<an integer of {value.bit_length()} bits>"
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def clip(text: str, limit: int = QUOTE_LIMIT) -> str:
    """`text` (e.g. a list of the user's names) cut to about `limit` characters, unquoted."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_not_special(path, what: str) -> None:
    """Refuse an input path that is a FIFO, socket or device: opening a FIFO that no process writes blocks
    forever (it hung `rltx pretrain`, `--init` and `plot`). A missing or unreadable path, or a folder, is left to
    the reader, which names it."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise UsageError(f"{path} is not a regular file (a pipe, socket or device); give {what}")
