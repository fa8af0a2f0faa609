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


class WaitTimeout(DropSiteError, TimeoutError):
    """A wait for tasks ran out of time (`DropSite.wait`, `dropsited wait`: exit 124).

    Also a TimeoutError, so `except TimeoutError` catches it. `pending` maps each
    unfinished task id to the folder it was last seen in (None: nowhere, mid-move);
    `finished` maps the ids that did arrive to (folder, Task).
    """

    def __init__(self, message: str, pending: dict | None = None,
                 finished: dict | None = None) -> None:
        super().__init__(message)
        self.pending = pending or {}
        self.finished = finished or {}
