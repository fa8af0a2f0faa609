"""The environment an agent process gets: little of the daemon's, all of the manifest's.

The daemon may run with secrets in its environment (API keys for other
services, tokens of its service manager); an agent sees only the variables
listed in PASSED_THROUGH plus what its manifest entry passes explicitly.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from ..containment.process_tree import MARKER_ENV as MARKER

PASSED_THROUGH = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ",
                  "TMPDIR", "TERM", "SHELL")


def agent_environ(manifest_env: Mapping[str, str], workspace: Path, agent: str,
                  marker: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for every process of one agent (task variables added per task)."""
    base = os.environ if base is None else base
    env = {k: base[k] for k in PASSED_THROUGH if k in base}
    venv_bin = str(Path(sys.executable).parent)
    path = env.get("PATH", os.defpath)
    if venv_bin not in path.split(os.pathsep):
        env["PATH"] = venv_bin + os.pathsep + path  # agents find this dropsited and python
    env.update(manifest_env)
    env.update({"DROPSITE_WORKSPACE": str(workspace), "DROPSITE_AGENT": agent,
                "DROPSITED_PYTHON": sys.executable, MARKER: marker})
    return env


def task_environ(agent_env: Mapping[str, str], task_id: str, task_file: Path) -> dict[str, str]:
    return {**agent_env, "DROPSITE_TASK_ID": task_id, "DROPSITE_TASK_FILE": str(task_file)}
