"""dropsited: the DropSite protocol (folders of JSON files as a task queue) and its daemon.

The library API is source-compatible with DropSite 0.1.0:
`from dropsited import DropSite, Task, TaskBuilder, AgentLoop`.
"""

from .protocol import (
    AgentLoop,
    ClaimLost,
    DropSite,
    DropSiteError,
    InvalidName,
    NotAWorkspace,
    Task,
    TaskBuilder,
    TaskNotFound,
    WaitTimeout,
)

__version__ = "0.2.0"

__all__ = [
    "AgentLoop",
    "ClaimLost",
    "DropSite",
    "DropSiteError",
    "InvalidName",
    "NotAWorkspace",
    "Task",
    "TaskBuilder",
    "TaskNotFound",
    "WaitTimeout",
    "__version__",
]
