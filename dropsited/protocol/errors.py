"""Exceptions of the protocol core, one base class so callers can catch them all."""


class DropSiteError(Exception):
    """Base of every error the library raises on purpose."""


class InvalidName(DropSiteError, ValueError):
    """A task id or agent name that could escape its folder or is unusable as a file name."""


class InvalidArgument(DropSiteError, TypeError):
    """An API call given None or a value of the wrong type (a Task was expected, say)."""


class InvalidTask(DropSiteError, ValueError):
    """A task document with a missing or mistyped field; the message names the field."""


class NotAWorkspace(DropSiteError):
    """A path that lacks the workspace folders (only `init` may create them)."""


class TaskNotFound(DropSiteError, LookupError):
    """No task with that id in the folder(s) searched."""


class ClaimLost(DropSiteError):
    """The caller no longer holds the task: it was reaped or moved by someone else.

    The late result is not dropped: it is appended to the workspace's
    `late-results.jsonl` before this is raised.
    """
