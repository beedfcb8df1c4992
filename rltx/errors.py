"""The one exception type for mistakes the user can fix (bad recipe, missing data, busy run).

The CLI turns it into a one-line message and exit code 2; library callers catch it like any error.
"""


class UsageError(Exception):
    """A problem with the user's input; the message names the problem and the fix."""
