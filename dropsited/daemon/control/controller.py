"""The daemon's side of control requests: take a request file, carry it out, reply.

The loop calls `pick_up` for a ControlRequest event (the inbox watcher's observer also
watches the control folder) and `scan` at each rescan (every poll with --poll), and
`tick` on every turn, which answers the requests under way. A request is taken by
unlinking it (at most once, even if two daemons look), then carried out; its reply is
written with the one record writer. A broken request gets an error reply: nothing a
request file holds can stop the daemon.
"""

from __future__ import annotations

from collections.abc import Callable

from ...protocol import DropSiteError
from ...protocol.control import (
    CONTROL,
    REPLY_SUFFIX,
    ControlError,
    Request,
    Requester,
    owner_of,
    parse_request,
    read_request,
    remove,
    reply_file,
    request_id_of,
    write_reply,
)
from ...protocol.folders import STATE_DIR
from ...protocol.holder import this_host
from ...protocol.task import utcnow_iso
from ..agents.roster import Roster
from ..context import Context, log, log_limited
from .verbs import Pending, Result, carry_out

REPLY_MAX_AGE = 600.0  # replies nobody read (the asker gave up) are removed after this


class Controller:
    def __init__(self, ctx: Context, roster: Roster, accepting: Callable[[], bool],
                 on_change: Callable[[], None]) -> None:
        self.ctx = ctx
        self.roster = roster
        self.accepting = accepting  # False while the daemon drains
        self.on_change = on_change  # publish status at once after a change
        self.folders = ctx.ds.store
        self.pending: dict[str, tuple[Request, Requester, Pending]] = {}

    def start(self) -> None:
        """Make the control folder (0755: only this user may ask), take what waits."""
        self._make_folder()
        self.scan()

    def _make_folder(self) -> None:
        self.folders.make_folder(STATE_DIR)
        self.folders.make_folder(CONTROL)

    def scan(self) -> None:
        try:
            if not self.folders.exists(STATE_DIR, "control"):
                # removed (rm -rf .dropsited): made again; rescans find its requests
                self.folders.revalidate()
                self._make_folder()
            names = [entry.name for entry in self.folders.entries(CONTROL)]
        except (OSError, DropSiteError) as exc:
            log_limited("control", f"cannot list {self.folders.path(CONTROL)}: {exc}")
            return
        for name in sorted(names):  # request ids sort by creation: first asked, first served
            self.pick_up(name)

    def pick_up(self, name: str | None) -> None:
        """One entry of the control folder (None: all of them)."""
        if name is None:
            self.scan()
            return
        try:
            self._take(name)
        except (OSError, DropSiteError) as exc:
            log_limited("control", f"control request {name}: {exc}")

    def _take(self, name: str) -> None:
        if name.startswith(".") or name.endswith(REPLY_SUFFIX):
            return  # temp files of the record writer, and our replies
        request_id = request_id_of(name)
        if request_id is None:
            self._drop_stray(name)
            return
        if request_id in self.pending:
            return
        try:
            got = read_request(self.folders, name)
        except ControlError as exc:
            self._refuse(name, request_id, owner_of(self.folders, name), exc)
            return
        if got is None:
            return  # taken meanwhile, or withdrawn by its asker
        raw, uid = got
        try:
            request = parse_request(raw, request_id)
        except ControlError as exc:
            self._refuse(name, request_id, uid, exc)
            return
        if request.host is not None and request.host != this_host():
            return  # addressed to another host's daemon on a shared file system
        if not remove(self.folders, name):
            return  # another daemon took it first
        by = Requester.of_uid(uid)
        log.info("control: %s requested by %s (uid %d)", request.what(), by.user, by.uid)
        self._carry_out(request, by)

    def _carry_out(self, request: Request, by: Requester) -> None:
        if not self.accepting():
            self._reply(request, by, Result(False, "the daemon is stopping", "stopping"))
            return
        try:
            outcome = carry_out(self.ctx, self.roster, request, by)
        except Exception as exc:  # a request must never take the loop down
            log.exception("control: %s failed", request.what())
            outcome = Result(False, f"the daemon could not carry it out: {exc}", "failed")
        self.on_change()
        if isinstance(outcome, Pending):
            self.pending[request.id] = (request, by, outcome)
            self.tick(self.ctx.clock())  # what is over already is answered now
        else:
            self._reply(request, by, outcome)

    def tick(self, now: float) -> None:
        """Answer the requests under way that are over (or past their deadline)."""
        for request_id, (request, by, pending) in list(self.pending.items()):
            try:
                result = pending.check()
            except Exception as exc:
                log.exception("control: checking %s failed", request.what())
                result = Result(False, f"the daemon could not carry it out: {exc}", "failed")
            if result is None and now >= pending.deadline:
                result = Result(False, pending.late, "timed_out")
            if result is not None:
                del self.pending[request_id]
                self.on_change()
                self._reply(request, by, result)

    def _reply(self, request: Request, by: Requester, result: Result) -> None:
        (log.info if result.ok else log.warning)(
            "control: %s by %s (uid %d): %s", request.what(), by.user, by.uid, result.message)
        self._write(request.id, {"id": request.id, "ok": result.ok, "verb": request.verb,
                                 "request": request.what(), "message": result.message,
                                 **({"code": result.code} if result.code else {}),
                                 "by": {"user": by.user, "uid": by.uid},
                                 "at": utcnow_iso(), "details": result.details})

    def _refuse(self, name: str, request_id: str, uid: int | None, exc: ControlError) -> None:
        """A request that cannot be read or parsed: an error reply naming file and field."""
        by = Requester.of_uid(uid) if uid is not None else Requester(-1, "?")
        message = f"{self.folders.path(CONTROL, name)}: {exc}"
        log.warning("control: refused a request from %s (uid %d): %s", by.user, by.uid, message)
        if not remove(self.folders, name):
            return
        self._write(request_id, {"id": request_id, "ok": False, "verb": None, "message": message,
                                 "code": exc.code, "by": {"user": by.user, "uid": by.uid},
                                 "at": utcnow_iso(), "details": {}})

    def _write(self, request_id: str, reply: dict) -> None:
        try:
            write_reply(self.folders, request_id, reply)
        except (OSError, DropSiteError) as exc:
            log_limited("control", f"cannot write {reply_file(request_id)}: {exc}")

    def _drop_stray(self, name: str) -> None:
        """Something in the control folder that no request is named like: removed, so a
        rescan does not meet it again (a folder, which unlink cannot remove, is left)."""
        uid = owner_of(self.folders, name)
        try:
            remove(self.folders, name)
        except OSError as exc:
            log_limited(f"control {name}", f"control: cannot remove {self.folders.path(CONTROL, name)}"
                        f" (uid {uid}), not a request name (<id>.json): {exc.strerror}")
            return
        log.warning("control: removed %s (uid %s): not a request name (<id>.json)",
                    self.folders.path(CONTROL, name), uid)

    def sweep(self, now_wall: float) -> None:
        """Remove replies (and temp files) older than REPLY_MAX_AGE: their writer is gone."""
        try:
            for entry in self.folders.entries(CONTROL):
                if entry.name.endswith(REPLY_SUFFIX) or entry.name.startswith("."):
                    info = self.folders.lstat(CONTROL, entry.name)
                    if info is not None and now_wall - info.st_mtime > REPLY_MAX_AGE:
                        remove(self.folders, entry.name)
        except (OSError, DropSiteError) as exc:
            log_limited("control", f"cannot sweep {self.folders.path(CONTROL)}: {exc}")
