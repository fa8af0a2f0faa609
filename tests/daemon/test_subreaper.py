"""Subreaper: adopted orphans get reaped; Popen children keep their exit status.

Becoming a subreaper is permanent for a process, so the subreaper scenario runs in a
separate Python process instead of changing the pytest process for the other tests.
"""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from dropsited.daemon.containment import subreaper
from dropsited.daemon.containment.subreaper import reap_orphans

REPO = Path(__file__).resolve().parents[2]

SCENARIO = """
    import json, os, subprocess, sys, time
    sys.path.insert(0, sys.argv[1])
    from dropsited.daemon.containment.subreaper import become_subreaper, is_subreaper, reap_orphans

    result = {"before": is_subreaper(), "became": become_subreaper(), "after": is_subreaper()}
    # A child that double-forks: the grandchild exits 7 after its parent is gone, so
    # it is re-parented to us (the subreaper) and must be reaped by us.
    code = "import os, time\\nif os.fork() == 0:\\n    time.sleep(0.2)\\n    os._exit(7)\\n"
    middle = subprocess.Popen([sys.executable, "-c", code])
    middle.wait()
    owned = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(5)"])
    reaped, deadline = [], time.monotonic() + 5
    while not reaped and time.monotonic() < deadline:
        reaped = reap_orphans({owned.pid})
        time.sleep(0.02)
    result["reaped_codes"] = [os.waitstatus_to_exitcode(s) for _, s in reaped]
    result["owned_code"] = owned.wait()  # not stolen by reap_orphans
    print(json.dumps(result))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux only")
def test_subreaper_reaps_adopted_grandchild_but_not_popen_children():
    argv = [sys.executable, "-c", textwrap.dedent(SCENARIO), str(REPO)]
    out = subprocess.run(argv, capture_output=True, timeout=20, check=True).stdout
    result = json.loads(out)
    assert result == {
        "before": False,
        "became": True,
        "after": True,
        "reaped_codes": [7],
        "owned_code": 5,
    }


def test_reap_orphans_leaves_known_popen_children_alone():
    p = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not _is_zombie(p.pid):
        assert reap_orphans({p.pid}) == []
        time.sleep(0.01)
    assert reap_orphans({p.pid}) == []
    assert p.wait(5) == 3


def test_reap_orphans_reaps_children_no_popen_owns():
    pid = os.posix_spawn("/bin/sh", ["sh", "-c", "exit 4"], os.environ)
    deadline = time.monotonic() + 5
    reaped: list[tuple[int, int]] = []
    while not reaped and time.monotonic() < deadline:
        reaped = reap_orphans(set())
        time.sleep(0.01)
    assert [(p, os.waitstatus_to_exitcode(s)) for p, s in reaped] == [(pid, 4)]


def test_not_linux_is_a_no_op(monkeypatch):
    monkeypatch.setattr(subreaper.sys, "platform", "darwin")
    assert subreaper.become_subreaper() is False
    assert subreaper.is_subreaper() is False


def _is_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
