"""Stranger suite (issue 11): another Unix user writes into the workspace of a root daemon.

The test creates a second user (`dropsited-stranger`, when it runs as root; skipped
with the reason otherwise) and, as that user, plants symbolic links in every folder
and in place of every state file: task files, claims, agent records, agent logs,
`late-results.jsonl`, `.dropsited/daemon.json`, and `quarantine/` itself, all pointing
outside the workspace at root-owned files, a root-only folder and FIFOs. The daemon
must not read, move or write anything outside: a FIFO target shows any open (a
writer's non-blocking open succeeds only while someone has it open for reading), and
the other targets keep their inode, size, mode and content.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import DROPSITED, kill_leftovers, wait_until

from dropsited import DropSite, TaskBuilder

USER = "dropsited-stranger"
ECHO = [sys.executable, "-c", "import sys; sys.stdin.read(); print('{\"ok\": 1}')"]


@pytest.fixture(scope="module")
def stranger() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a second Unix user")
    if shutil.which("useradd") is None or shutil.which("setpriv") is None:
        pytest.skip("needs useradd and setpriv (Debian passwd, util-linux)")
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        pass
    made = subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                           "/usr/sbin/nologin", USER], capture_output=True, text=True)
    if made.returncode:
        pytest.skip(f"useradd refused: {made.stderr.strip()}")
    return pwd.getpwnam(USER)


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[Path]:
    """A folder both users can reach (pytest's tmp_path is root-only)."""
    base = Path(tempfile.mkdtemp(prefix="dropsited-stranger-", dir="/tmp"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        kill_leftovers(base)
        shutil.rmtree(base, ignore_errors=True)


def _setpriv(user: pwd.struct_passwd) -> list[str]:
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]


def stranger_python(user: pwd.struct_passwd) -> str:
    """An interpreter the stranger may run (this one may live in root's home)."""
    for candidate in (sys.executable, "/usr/bin/python3", shutil.which("python3") or ""):
        if candidate and subprocess.run([*_setpriv(user), candidate, "-c", "pass"],
                                        capture_output=True).returncode == 0:
            return candidate
    pytest.skip(f"no Python interpreter that {USER} may run")


def as_stranger(user: pwd.struct_passwd, code: str, *args: str) -> None:
    result = subprocess.run([*_setpriv(user), stranger_python(user), "-c", code, *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


class Outside:
    """What lies outside the workspace: files, a root-only folder, FIFOs that tell on opens."""

    def __init__(self, base: Path) -> None:
        self.dir = base / "outside"
        self.dir.mkdir()
        self.secret_dir = self.dir / "rootonly"
        self.secret_dir.mkdir(mode=0o700)
        self.files = {}
        for name in ("passwd", "cron.daily-x", "secret.json"):
            path = self.dir / name
            path.write_text(json.dumps({"title": "secret", "name": name}) + "\n")
            path.chmod(0o600)
            self.files[name] = path
        self.fifos = []
        for i in range(3):
            fifo = self.dir / f"fifo{i}"
            os.mkfifo(fifo, 0o666)
            self.fifos.append(fifo)
        self.before = self.snapshot()
        self.opened: list[str] = []
        self._stop = threading.Event()
        self._spy = threading.Thread(target=self._watch_fifos, daemon=True)
        self._spy.start()

    def _watch_fifos(self) -> None:
        while not self._stop.is_set():
            for fifo in self.fifos:
                try:
                    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                except OSError:  # ENXIO: nobody has it open for reading
                    continue
                os.close(fd)
                self.opened.append(fifo.name)
            time.sleep(0.002)

    def snapshot(self) -> dict:
        out = {}
        for path in sorted(self.dir.rglob("*")):
            info = os.lstat(path)
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(info.st_mode) else ""
            out[str(path)] = (info.st_ino, info.st_size, info.st_mode, info.st_mtime_ns, digest)
        return out

    def check(self) -> None:
        self._stop.set()
        self._spy.join(timeout=2)
        assert self.opened == [], f"opened through a planted link: {self.opened}"
        assert self.snapshot() == self.before, "something outside the workspace changed"


PLANT = r"""
import os, sys
ws, outside, host = sys.argv[1], sys.argv[2], sys.argv[3]
def link(target, *where):
    path = os.path.join(ws, *where)
    try:
        os.symlink(os.path.join(outside, target), path)
    except FileExistsError:
        pass
link("passwd", "inbox", "passwd.json")
link("fifo0", "inbox", "fifo.json")
link("rootonly", "inbox", "dir.json")
link("fifo1", "active", "f1~ghost~" + host + "~999999~1~1.json")
link("secret.json", "active", "s1.json")
for folder in ("done", "failed", "blocked", "feedback"):
    link("secret.json", folder, folder + "-link.json")
link("fifo2", "agents", "echo.json")
link("cron.daily-x", "agents", "logs", "echo.log")
link("secret.json", "late-results.jsonl")
link("secret.json", ".dropsited", "daemon.json")
link("passwd", "inbox", ".x~" + host + "~1~0.tmp")
"""


def open_workspace(base: Path) -> Path:
    """A root-owned workspace whose every folder others may write (a shared drop box)."""
    ws = base / "ws"
    DropSite(ws)
    for sub in ("agents/logs", ".dropsited"):
        (ws / sub).mkdir(exist_ok=True)
    for path in [ws, *ws.rglob("*")]:
        if path.is_dir():
            path.chmod(0o777)
    return ws


def manifest(base: Path) -> Path:
    path = base / "agents.yaml"
    path.write_text(json.dumps({"workspace": "ws", "agents": [
        {"name": "echo", "command": ECHO, "concurrency": 2}]}))
    return path


def test_links_planted_in_every_folder_and_state_file_are_never_followed(stranger, shared) -> None:
    from dropsited.protocol.holder import this_host
    outside = Outside(shared)
    ws = open_workspace(shared)
    as_stranger(stranger, PLANT, str(ws), str(outside.dir), this_host())
    daemon = subprocess.Popen([DROPSITED, "up", "-c", str(manifest(shared)), "--fast",
                               "--corrupt-grace", "0.3", "--poll", "0.2"],
                              stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, cwd=shared)
    try:
        ds = DropSite(ws, durable=False)
        good = [ds.submit(TaskBuilder(f"good {i}", "t").build()) for i in range(5)]
        wait_until(lambda: all(ds.locate(t) and ds.locate(t).folder == "done" for t in good),
                   30, "good tasks done")
        # Now quarantine/ itself becomes a link, and more bad files arrive.
        as_stranger(stranger, "import os, sys; os.symlink(sys.argv[2], os.path.join(sys.argv[1], "
                    "'quarantine')) if not os.path.exists(os.path.join(sys.argv[1], 'quarantine'))"
                    " else None; open(os.path.join(sys.argv[1], 'inbox', 'bad.json'), 'w')"
                    ".write('{')", str(ws), str(outside.secret_dir))
        late = [ds.submit(TaskBuilder(f"late {i}", "t").build()) for i in range(3)]
        wait_until(lambda: all(ds.locate(t) and ds.locate(t).folder == "done" for t in late),
                   30, "tasks done after quarantine/ became a link")
        time.sleep(1.0)
        assert daemon.poll() is None
        for args in (("list", str(ws), "quarantine"), ("stats", str(ws)), ("status", str(ws)),
                     ("agents", str(ws)), ("list", str(ws), "done")):
            result = subprocess.run([DROPSITED, *args], capture_output=True, text=True, timeout=30)
            assert "Traceback" not in result.stderr, result.stderr
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err.decode()[-3000:]
    outside.check()


def test_a_workspace_owned_by_a_stranger_is_refused(stranger, shared) -> None:
    ws = shared / "ws"
    ws.mkdir()
    os.chown(ws, stranger.pw_uid, stranger.pw_gid)
    as_stranger(stranger, "import os, sys\nfor f in ('inbox', 'active', 'done', 'failed', "
                "'blocked', 'feedback', 'agents'): os.makedirs(os.path.join(sys.argv[1], f))",
                str(ws))
    result = subprocess.run([DROPSITED, "up", "-c", str(manifest(shared))], capture_output=True,
                            text=True, timeout=30, cwd=shared)
    assert result.returncode == 1, result.stderr
    assert f"is owned by uid {stranger.pw_uid}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_stranger_swapping_a_folder_for_a_link_at_start_is_refused(stranger, shared) -> None:
    outside = Outside(shared)
    ws = open_workspace(shared)
    as_stranger(stranger, "import os, sys; os.rename(sys.argv[1] + '/done', sys.argv[1] + "
                "'/done.old'); os.symlink(sys.argv[2], sys.argv[1] + '/done')", str(ws),
                str(outside.secret_dir))
    result = subprocess.run([DROPSITED, "up", "-c", str(manifest(shared))], capture_output=True,
                            text=True, timeout=30, cwd=shared)
    assert result.returncode == 1 and f"{ws / 'done'}: is a symbolic link" in result.stderr
    outside.check()
