"""`AgentLoop`: turn a Python function into an agent, as on the reference page."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from .errors import ClaimLost, DropSiteError
from .task import Task
from .workspace import DropSite


class _Stop(BaseException):
    """Raised inside the handler by SIGTERM/SIGINT so the task in hand can be released."""


class AgentLoop:
    """Poll the inbox, claim what this agent may take, run the handler, record the outcome.

    The handler's return value completes the task; an exception fails the
    attempt (retry with backoff, then failed/). If the handler itself moved the
    task (request_feedback, block, complete), the loop leaves it where it is.
    SIGTERM or SIGINT stop the loop; a task in hand goes back to inbox/ at once.
    """

    def __init__(self, ds: DropSite, name: str, handler: Callable[[Task], Any],
                 filter_tags: list[str] | None = None, poll_interval: float = 1.0,
                 role: str = "worker", verbose: bool = True) -> None:
        self.ds = ds
        self.name = name
        self.handler = handler
        self.filter_tags = filter_tags
        self.poll_interval = poll_interval
        self.verbose = verbose
        self.current: Task | None = None
        self.processed = 0
        self._stop = threading.Event()
        self._in_handler = False
        self.ds.register_agent(name, role=role, pid=_pid())

    def stop(self) -> None:
        """Ask the loop to finish after the current task (thread-safe)."""
        self._stop.set()

    def run(self, once: bool = False) -> int:
        """Run until stopped (or one pass with once=True); returns tasks handled."""
        self._say(f"agent '{self.name}' watching {self.ds.workspace}")
        previous = self._install_signal_handlers()
        try:
            while not self._stop.is_set():
                self.ds.heartbeat(self.name)
                self.run_pass()
                if once:
                    break
                self._stop.wait(self.poll_interval)
        except _Stop:
            pass
        finally:
            self._restore_signal_handlers(previous)
        return self.processed

    def run_pass(self) -> int:
        """Claim and handle tasks until none is available now."""
        handled = 0
        while not self._stop.is_set():
            task = self.ds.claim_next(self.name, self.filter_tags)
            if task is None:
                break
            self._handle(task)
            handled += 1
        return handled

    def _handle(self, task: Task) -> None:
        self.current = task
        self._say(f"  claimed: {task.title} [{task.id}]")
        try:
            try:
                self._in_handler = True
                if self._stop.is_set():  # the signal came between the claim and now
                    raise _Stop()
                result = self.handler(task)
            finally:
                self._in_handler = False
        except _Stop:
            self._settle(lambda: self.ds.release(task, "agent stopping"))
            self.current = None
            raise
        except Exception as exc:  # the handler's failure is the task's failure
            error = str(exc) or type(exc).__name__
            self._say(f"  failed: {task.title}: {error}")
            self._settle(lambda: self.ds.fail(task, error))
        else:
            if task.status == "active":  # the handler did not move it itself
                self._settle(lambda: self.ds.complete(task, result or {}))
                self._say(f"  done: {task.title} [{task.id}]")
        self.processed += 1
        self.current = None

    def _settle(self, action: Callable[[], Any]) -> None:
        try:
            action()
        except ClaimLost as exc:
            self._say(f"  claim lost, result logged to late-results.jsonl: {exc}")
        except DropSiteError as exc:
            self._say(f"  could not record outcome: {exc}")

    # -- signals ------------------------------------------------------------
    def _install_signal_handlers(self) -> dict | None:
        if threading.current_thread() is not threading.main_thread():
            return None
        previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, self._on_signal)
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict | None) -> None:
        for sig, handler in (previous or {}).items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stop.set()
        if self._in_handler:
            raise _Stop()

    def _say(self, line: str) -> None:
        if self.verbose:
            print(line, file=sys.stdout, flush=True)


def _pid() -> int:
    import os
    return os.getpid()
