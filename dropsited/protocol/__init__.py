"""The DropSite protocol core: standard library only, so it can be vendored.

Copy this folder into a project and `from protocol import DropSite` works
without pyyaml, psutil or click.
"""

from .agent_loop import AgentLoop
from .errors import (
    ClaimLost,
    DropSiteError,
    InvalidName,
    NotAWorkspace,
    TaskNotFound,
    WaitTimeout,
)
from .task import Task, TaskBuilder
from .workspace import DropSite

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
]
