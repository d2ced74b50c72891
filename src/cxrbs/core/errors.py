"""One error type for problems a user can fix (bad file, bad config, missing data).

The CLI and the workflow scripts catch it and print one line instead of a traceback, so the
message itself must name the file or key and say what to do.
"""


class CxrbsError(Exception):
    """A user-facing error whose message names the file or key and the fix."""
