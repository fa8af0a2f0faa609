"""`dropsited web`: the review page, a Starlette app served by uvicorn.

Security, since the page can move tasks:
- every request needs the token (in the printed URL; the page then keeps it in an
  HttpOnly, SameSite=Strict cookie); without it: 403;
- actions (POST) also need it in the X-Dropsite-Token header, which another site
  cannot send (CSRF);
- bound to loopback, a request whose Host header is not a loopback name is refused
  (DNS rebinding);
- the page and its script come from this package; task text is put on the page with
  textContent only, never as HTML.
Every action is a DropSite call through serve.people, recorded with the person's name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from importlib import resources
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from ..protocol import DropSiteError
from ..protocol.waiting import FolderWatch
from . import people, web_state
from .auth import same
from .ops import Workspace

COOKIE = "dropsite_token"
HEADER = "x-dropsite-token"
STATIC = {"app.js": "text/javascript", "app.css": "text/css"}
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]", "::1")
KEEPALIVE = 15.0
FOLDERS = ("inbox", "active", "done", "failed", "blocked", "feedback", "agents")
MAX_BODY = 1 << 20


def _static(name: str) -> bytes:
    return resources.files("dropsited.serve").joinpath("static", name).read_bytes()


class Changes:
    """One thread watches the workspace and wakes every open event stream on a change."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.version = 0
        self.waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="dropsited-web-watch", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        last = web_state.signature(self.ws)
        with FolderWatch(self.ws.ds.workspace, FOLDERS, None) as watch:
            while not self.stop.is_set():
                watch.sleep(max(watch.interval, 0.2))
                mark = web_state.signature(self.ws)
                if mark != last:
                    last = mark
                    self._bump()

    def _bump(self) -> None:
        with self.lock:
            self.version += 1
            waiters = list(self.waiters)
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    def subscribe(self) -> asyncio.Event:
        event = asyncio.Event()
        with self.lock:
            self.waiters.add((asyncio.get_running_loop(), event))
        return event

    def unsubscribe(self, event: asyncio.Event) -> None:
        with self.lock:
            self.waiters = {w for w in self.waiters if w[1] is not event}


def build_app(ws: Workspace, token: str, humans: list[str], loopback: bool) -> Starlette:
    chart = web_state.Chart()
    changes = Changes(ws)

    async def index(request: Request) -> Response:
        page = _static("index.html").decode().replace("{{TOKEN}}", token)
        response = Response(page, media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-store",
                                     "Content-Security-Policy": CSP})
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
        return response

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return PlainTextResponse("not found", status_code=404)
        return Response(_static(name), media_type=STATIC[name])

    async def state(request: Request) -> Response:
        snap = await anyio.to_thread.run_sync(web_state.snapshot, ws, humans, chart)
        return JSONResponse(snap, headers={"Cache-Control": "no-store"})

    async def task(request: Request) -> Response:
        return await _call(ws.show, request.path_params["task_id"])

    async def action(request: Request) -> Response:
        body = await _body(request)
        if isinstance(body, Response):
            return body
        handler = ACTIONS.get(request.path_params["name"])
        if handler is None:
            return JSONResponse({"error": "unknown action"}, status_code=404)
        return await _call(handler, ws, humans, body)

    async def events(request: Request) -> Response:
        return StreamingResponse(_stream(changes), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)  # none: spares the browser console a 404

    routes = [Route("/", index), Route("/favicon.ico", favicon), Route("/static/{name}", static), Route("/api/state", state),
              Route("/api/task/{task_id}", task), Route("/api/{name}", action, methods=["POST"]),
              Route("/events", events)]
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        changes.start()
        try:
            yield
        finally:
            changes.stop.set()

    return Guard(Starlette(routes=routes, lifespan=lifespan), token, loopback)


CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
       "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


async def _stream(changes: Changes):
    """Server-sent events: `change` whenever the workspace changes, a comment line as a
    keepalive; the page fetches /api/state on each `change`."""
    event = changes.subscribe()
    try:
        yield f"event: change\ndata: {json.dumps({'version': changes.version})}\n\n"
        while True:
            try:
                await asyncio.wait_for(event.wait(), KEEPALIVE)
            except asyncio.TimeoutError:
                yield ": keepalive\n\n"
                continue
            event.clear()
            await asyncio.sleep(0.1)  # one refresh for a burst of moves
            event.clear()
            yield f"event: change\ndata: {json.dumps({'version': changes.version})}\n\n"
    finally:
        changes.unsubscribe(event)


async def _body(request: Request) -> dict | Response:
    chunks, size = [], 0
    async for chunk in request.stream():  # read up to the limit, not whatever is sent
        size += len(chunk)
        if size > MAX_BODY:
            return JSONResponse({"error": "request body too large"}, status_code=413)
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        return JSONResponse({"error": "the request body is not valid JSON"}, status_code=400)
    if not isinstance(body, dict):
        return JSONResponse({"error": "the request body must be a JSON object"}, status_code=400)
    return body


async def _call(func, *args: Any) -> Response:
    """Run a library call in a thread; its one-line error becomes a 400 with that text."""
    try:
        return JSONResponse(await anyio.to_thread.run_sync(func, *args))
    except DropSiteError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)


def _text(body: dict, key: str, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise DropSiteError(f"{key}: a non-empty string is required")
    return value


def _answer(ws: Workspace, humans: list[str], body: dict) -> dict:
    by = people.check_person(body.get("by"))
    task_id, answer = _text(body, "task_id"), _text(body, "answer")
    with ws.lock:
        if body.get("folder") == "inbox":
            agent = _text(body, "agent")
            if agent not in humans:
                raise DropSiteError(f"agent: {agent!r} is not a human agent of this page")
            task = people.answer_assigned(ws.ds, task_id, agent, answer, by)
            return {"task_id": task.id, "folder": "done"}
        task = people.answer_feedback(ws.ds, task_id, answer, by)
    return {"task_id": task.id, "folder": "inbox"}


def _unblock(ws: Workspace, humans: list[str], body: dict) -> dict:
    by = people.check_person(body.get("by"))
    with ws.lock:
        task = people.unblock(ws.ds, _text(body, "task_id"), by, _text(body, "note", False))
    return {"task_id": task.id, "folder": "inbox"}


def _retry(ws: Workspace, humans: list[str], body: dict) -> dict:
    by = people.check_person(body.get("by"))
    with ws.lock:
        task = people.retry(ws.ds, _text(body, "task_id"), by)
    return {"task_id": task.id, "folder": "inbox"}


ACTIONS = {"answer": _answer, "unblock": _unblock, "retry": _retry}


class Guard:
    """ASGI middleware: the token checks and the Host check of the module docstring."""

    def __init__(self, app: Any, token: str, loopback: bool) -> None:
        self.app = app
        self.token = token
        self.loopback = loopback

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(scope)
            if refusal is not None:
                await PlainTextResponse(refusal, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: dict) -> str | None:
        request = Request(scope)
        host = request.headers.get("host", "").rsplit(":", 1)[0]
        if self.loopback and host not in LOOPBACK_NAMES:
            return "403 forbidden: this page answers only to 127.0.0.1 or localhost"
        if request.method == "POST":
            if same(request.headers.get(HEADER), self.token):
                return None
            return "403 forbidden: actions need the page's token in the X-Dropsite-Token header"
        given = request.query_params.get("token") or request.cookies.get(COOKIE)
        if same(given, self.token):
            return None
        return "403 forbidden: open the URL that `dropsited web` printed (it carries the token)"
