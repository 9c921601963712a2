"""The one exception type for mistakes a user can fix (bad path, bad image, missing weights).

The CLI turns it into ``error: <message>`` and exit status 2; anything else is a bug and keeps
its traceback.
"""


class FaceregenError(Exception):
    """A user-facing error: the message names the file or setting and the problem."""
