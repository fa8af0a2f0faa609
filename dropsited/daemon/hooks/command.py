"""Running a command hook: the event as JSON on stdin and DROPSITED_* variables, a
bounded capture of what it prints, killed (its whole process group) at its timeout.

The command is the manifest's (a list exec'd as is, a string through /bin/sh -c); no
byte of the event reaches its argument vector. Hook processes are spawned like agents
(their own session, the death watch or PDEATHSIG, under the spawn lock), and their
pids are held, so the daemon's orphan sweep never takes them for leftovers.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..agents.agent_env import PASSED_THROUGH
from ..manifest import HookSpec
from ..supervision.child import ChildProcess

if TYPE_CHECKING:
    from ..context import Context

OUTPUT_LIMIT = 64 * 1024  # per stream: the last bytes are kept, the rest counted
# A notification needs the desktop session's variables besides the agents' set.
HOOK_PASSED_THROUGH = (*PASSED_THROUGH, "DISPLAY", "WAYLAND_DISPLAY", "XDG_RUNTIME_DIR",
                       "DBUS_SESSION_BUS_ADDRESS")


@dataclass(frozen=True)
class Attempt:
    """How one run (or one POST) went; `retryable` says whether another may help."""

    ok: bool
    error: str = ""
    timed_out: bool = False
    retryable: bool = True


class CommandRunner:
    """Spawns command hooks for the hook threads and holds their pids for the daemon."""

    def __init__(self, ctx: Context | None) -> None:
        self.ctx = ctx
        self._lock = threading.Lock()
        self._children: dict[int, ChildProcess] = {}

    def pids(self) -> set[int]:
        with self._lock:
            return set(self._children)

    def kill_all(self) -> None:
        """The daemon stops: no hook process outlives it."""
        with self._lock:
            children = list(self._children.values())
        for child in children:
            child.kill_tree(timeout=1.0)

    def run(self, hook: HookSpec, data: bytes, env: dict[str, str]) -> Attempt:
        base = {k: os.environ[k] for k in HOOK_PASSED_THROUGH if k in os.environ}
        full_env = {**base, **hook.env, **env}
        try:
            child = self._spawn(hook, full_env)
        except OSError as exc:
            return Attempt(False, f"cannot start {hook.argv()[0]!r}: {exc.strerror or exc}",
                           retryable=False)
        try:
            out, err, timed_out = exchange(child, data, time.monotonic() + hook.timeout)
            if timed_out:
                child.kill_tree(timeout=2.0)
                return Attempt(False, f"timed out after {hook.timeout:g}s; killed",
                               timed_out=True)
            code = child.wait(timeout=2.0)
        finally:
            child.kill_tree(timeout=2.0)  # whatever it left in its group goes too
            self._forget(child)
        if code == 0:
            return Attempt(True)
        tail = _last_line(err) or _last_line(out)
        return Attempt(False, f"exit {code}" + (f": {tail}" if tail else ""))

    def _spawn(self, hook: HookSpec, env: dict[str, str]) -> ChildProcess:
        ctx = self.ctx
        lock = ctx.spawn_lock if ctx is not None else threading.Lock()
        watch_up = ctx is not None and ctx.watch_up()
        with lock:  # spawned and held before an orphan sweep can look
            child = ChildProcess.spawn(hook.argv(), cwd=hook.cwd, env=env,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, pdeathsig=not watch_up)
            with self._lock:
                self._children[child.pid] = child
            if ctx is not None:
                ctx.track(child.pid)
        return child

    def _forget(self, child: ChildProcess) -> None:
        if self.ctx is not None:
            self.ctx.untrack(child.pid)
        with self._lock:
            self._children.pop(child.pid, None)


def exchange(child: Any, data: bytes, deadline: float) -> tuple[bytes, bytes, bool]:
    """Write `data` to stdin, read stdout and stderr (the last OUTPUT_LIMIT bytes of
    each) until both close and the process exits, or until `deadline` (True)."""
    sel = selectors.DefaultSelector()
    kept = {child.stdout: bytearray(), child.stderr: bytearray()}
    view = memoryview(data)
    for stream in (child.stdin, child.stdout, child.stderr):
        os.set_blocking(stream.fileno(), False)
    if data:
        sel.register(child.stdin, selectors.EVENT_WRITE)
    else:
        child.stdin.close()
    for stream in kept:
        sel.register(stream, selectors.EVENT_READ)
    try:
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                return bytes(kept[child.stdout]), bytes(kept[child.stderr]), True
            for key, _ in sel.select(left):
                if key.fileobj is child.stdin:
                    view = _write_some(sel, child.stdin, view)
                else:
                    _read_some(sel, key.fileobj, kept[key.fileobj])
        left = deadline - time.monotonic()
        try:
            child.wait(timeout=max(0.0, left))
        except subprocess.TimeoutExpired:
            return bytes(kept[child.stdout]), bytes(kept[child.stderr]), True
    finally:
        sel.close()
        for stream in (child.stdin, child.stdout, child.stderr):
            stream.close()
    return bytes(kept[child.stdout]), bytes(kept[child.stderr]), False


def _write_some(sel: selectors.BaseSelector, stream: Any, view: memoryview) -> memoryview:
    try:
        view = view[os.write(stream.fileno(), view[:65536]):]
    except BlockingIOError:
        return view
    except (BrokenPipeError, OSError):  # the hook does not read its stdin: fine
        view = view[len(view):]
    if not view:
        sel.unregister(stream)
        stream.close()
    return view


def _read_some(sel: selectors.BaseSelector, stream: Any, kept: bytearray) -> None:
    try:
        chunk = os.read(stream.fileno(), 65536)
    except BlockingIOError:
        return
    if not chunk:
        sel.unregister(stream)
        return
    kept += chunk
    if len(kept) > OUTPUT_LIMIT:
        del kept[: len(kept) - OUTPUT_LIMIT]


def _last_line(data: bytes) -> str:
    lines = data.decode("utf-8", "replace").strip().splitlines()
    return lines[-1][:300] if lines else ""
