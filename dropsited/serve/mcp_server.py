"""`dropsited mcp`: the workspace as Model Context Protocol tools, on the official SDK.

Each tool is a thin call into serve.ops (and so into DropSite). Errors a client can
cause (a bad id, bad JSON, a task held by someone else) come back as tool errors
(`isError: true`) with one line naming the field, never as a crash. Tasks claimed
here are held by this process and the agent name given; when the client's
connection closes (stdin at EOF, an HTTP session ended) or the server is stopped
(SIGTERM, SIGINT, SIGHUP), the tasks it still holds go back to the inbox.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from .. import __version__
from ..protocol import DropSiteError, WaitTimeout
from .ops import Workspace, task_view
from .running import STOP_SIGNALS

log = logging.getLogger("dropsited.mcp")

INSTRUCTIONS = """\
A DropSite workspace: a task queue shared by AI agents and people, one JSON file per task.
A task moves between folders: inbox (waiting) -> active (claimed) -> done / failed, or
feedback (waiting for a person's answer) / blocked (waiting on something outside).
To hand work to another agent: drop_task, then wait_for_task for its result.
To do work: claim_next_task with your agent name, then complete_task, fail_task,
block_task, request_feedback or release_task with the id you got. Tasks you hold go
back to the inbox if you disconnect."""

WAIT_CAP = 3600.0  # seconds one wait_for_task call may block
PROGRESS_EVERY = 5.0


def tool_errors(func: Callable) -> Callable:
    """Library errors become tool errors with the library's one-line message."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (DropSiteError, ValueError) as exc:
            raise ToolError(str(exc)) from None
    return wrapper


def async_tool_errors(func: Callable) -> Callable:
    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await func(*args, **kwargs)
        except (DropSiteError, ValueError) as exc:
            raise ToolError(str(exc)) from None
    return wrapper


def build_server(ws: Workspace) -> MCPServer:
    app = MCPServer("dropsited", version=__version__, instructions=INSTRUCTIONS,
                    log_level="WARNING")
    _reading_tools(app, ws)
    _dropping_tools(app, ws)
    _holding_tools(app, ws)
    _people_tools(app, ws)

    @app.resource("dropsite://task/{task_id}", name="task", mime_type="application/json",
                  description="One task as JSON: its folder and the whole document, history "
                              "included.")
    def task_resource(task_id: str) -> str:
        try:
            return json.dumps(ws.show(task_id), indent=2, default=str, ensure_ascii=False)
        except DropSiteError as exc:
            from mcp.server.mcpserver.exceptions import ResourceError
            raise ResourceError(str(exc)) from None

    return app


def _reading_tools(app: MCPServer, ws: Workspace) -> None:
    @app.tool(description=(
        "List or search tasks. Filter by folder (inbox, active, done, failed, blocked, "
        "feedback), by tag, by agent (tasks assigned to, created by or held by that agent) "
        "and by text (case-insensitive, in title, description, context and result). Returns "
        "summaries, best first (priority 1 first, then oldest); use show_task for a whole task."))
    @tool_errors
    def list_tasks(folder: str | None = None, tag: str | None = None, agent: str | None = None,
                   text: str | None = None, limit: int = 50) -> dict[str, Any]:
        hits = ws.find(folder, tag, agent, text, limit)
        return {"count": len(hits), "tasks": hits}

    @app.tool(description=(
        "Show one task by id: its folder, every field, the result if done, and its history "
        "(every state change with time, who claimed it, errors, answers). Also readable as the "
        "resource dropsite://task/ID. Error if no task has this id."))
    @tool_errors
    def show_task(task_id: str) -> dict[str, Any]:
        return ws.show(task_id)

    @app.tool(description=(
        "Count the tasks in each folder of the workspace (inbox, active, done, failed, blocked, "
        "feedback, quarantine: files that are not valid tasks)."))
    @tool_errors
    def workspace_stats() -> dict[str, Any]:
        return ws.stats()

    @app.tool(description=(
        "Status of the agents registered in the workspace (from agents/*.json): state "
        "(RUNNING, BACKOFF, FATAL, ...), pids, restarts, tasks done and failed, last error, and "
        "whether a dropsited daemon is running."))
    @tool_errors
    def agent_status() -> dict[str, Any]:
        return ws.agents()

    @app.tool(description=(
        "Wait until a task is finished (in done/ or failed/) and return it, result included. "
        "until=['feedback'] or ['blocked'] also returns when it waits for a person or is "
        "blocked. Sends progress notifications while waiting. timeout_seconds (default 300, "
        f"at most {WAIT_CAP:g}) is an error when it runs out; the task is unaffected and you "
        "may wait again."))
    @async_tool_errors
    async def wait_for_task(task_id: str, ctx: Context, timeout_seconds: float = 300.0,
                            until: list[str] | None = None) -> dict[str, Any]:
        return await _wait(ws, ctx, task_id, timeout_seconds, until or [])


def _dropping_tools(app: MCPServer, ws: Workspace) -> None:
    @app.tool(description=(
        "Create a task in the inbox for an agent (or a person) to do. title is one line for "
        "humans; context is the input the handler reads (a JSON object); tags route it to "
        "agents that handle those tags; assigned_to gives it to one agent only; priority 1 is "
        "served first (default 5); depends_on lists task ids that must be done first; "
        "delay_seconds holds it back; parent_id links it to the task it came from. Returns the "
        "new task with its id: pass the id to wait_for_task to get the result."))
    @tool_errors
    def drop_task(title: str, created_by: str = "mcp", description: str = "",
                  context: dict[str, Any] | str | None = None, tags: list[str] | None = None,
                  assigned_to: str | None = None, priority: int = 5,
                  depends_on: list[str] | None = None, delay_seconds: float = 0,
                  parent_id: str | None = None, max_retries: int = 3,
                  task_id: str | None = None) -> dict[str, Any]:
        return ws.drop(title, created_by, description=description, assigned_to=assigned_to,
                       priority=priority, tags=tags, context=context, parent_id=parent_id,
                       max_retries=max_retries, depends_on=depends_on,
                       delay_seconds=delay_seconds, task_id=task_id)


def _holding_tools(app: MCPServer, ws: Workspace) -> None:
    @app.tool(description=(
        "Claim the best waiting task for the agent name you give (tasks assigned to that name, "
        "or unassigned ones; with tags, only tasks sharing a tag, plus those assigned to you). "
        "You then hold it: finish it with complete_task, fail_task, block_task or "
        "request_feedback, or give it back with release_task. Returns claimed: false when "
        "nothing is waiting. Held tasks go back to the inbox if you disconnect."))
    @async_tool_errors
    async def claim_next_task(agent: str, ctx: Context,
                              tags: list[str] | None = None) -> dict[str, Any]:
        task = await anyio.to_thread.run_sync(ws.claim_next, agent, tags)
        if task is None:
            return {"claimed": False, "message": "no task is waiting for this agent now"}
        _release_on_disconnect(ctx, ws, task)
        return {"claimed": True, **task_view(task, "active")}

    @app.tool(description=(
        "Finish a task you hold with its result (a JSON object): it moves to done/ and anyone "
        "waiting for it gets the result. Error if you do not hold the task."))
    @tool_errors
    def complete_task(task_id: str, result: dict[str, Any] | str | None = None) -> dict[str, Any]:
        return ws.complete(task_id, result)

    @app.tool(description=(
        "Record a failed attempt at a task you hold, with the error. It goes back to the inbox "
        "for a retry after a backoff, or to failed/ when its retries are used up; the returned "
        "folder says which."))
    @tool_errors
    def fail_task(task_id: str, error: str) -> dict[str, Any]:
        return ws.fail(task_id, error)

    @app.tool(description=(
        "Move a task you hold to blocked/, with the reason (something outside the queue must "
        "happen first). A person unblocks it later."))
    @tool_errors
    def block_task(task_id: str, reason: str) -> dict[str, Any]:
        return ws.block(task_id, reason)

    @app.tool(description=(
        "Give a task you hold back to the inbox at once, without using a retry (you cannot or "
        "should not do it)."))
    @tool_errors
    def release_task(task_id: str, reason: str = "released by an MCP client") -> dict[str, Any]:
        return ws.release(task_id, reason)

    @app.tool(description=(
        "Ask a person about a task you hold: it moves to feedback/ with your question, the "
        "options to choose from and a draft for review. When the person answers it returns to "
        "the inbox assigned to you, with the answer in context._feedback_response; claim it "
        "again to continue."))
    @tool_errors
    def request_feedback(task_id: str, question: str, options: list[str] | None = None,
                         draft: str | None = None) -> dict[str, Any]:
        return ws.request_feedback(task_id, question, options, draft)


def _people_tools(app: MCPServer, ws: Workspace) -> None:
    @app.tool(description=(
        "Answer a task waiting in feedback/ on behalf of a person: the answer (text, or an "
        "option given in the request) goes to the agent that asked and the task returns to the "
        "inbox. by is the name of the person answering, recorded in the task's history."))
    @tool_errors
    def answer_feedback(task_id: str, answer: str, by: str) -> dict[str, Any]:
        return ws.answer_feedback(task_id, answer, by)


async def _wait(ws: Workspace, ctx: Context, task_id: str, timeout: float,
                until: list[str]) -> dict[str, Any]:
    """wait_for in a worker thread, reporting progress; a cancelled call stops the thread."""
    from ..protocol.waiting import wait_for

    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or \
            not 0 <= timeout <= WAIT_CAP:
        raise DropSiteError(f"timeout_seconds: expected 0 to {WAIT_CAP:g}, got {timeout!r}")
    stop = threading.Event()

    def progress(pending: dict[str, str | None], elapsed: float) -> None:
        folder = pending.get(task_id)
        message = f"task {task_id} is in {folder}/" if folder else f"task {task_id} is moving"
        anyio.from_thread.run(ctx.report_progress, round(elapsed, 1), timeout, message)

    def run() -> dict[str, Any]:
        found = wait_for(ws.ds, [task_id], timeout, until, on_progress=progress,
                         progress_every=PROGRESS_EVERY, cancel=stop)
        folder, task = found[task_id]
        return task_view(task, folder)

    try:
        return await anyio.to_thread.run_sync(run, abandon_on_cancel=True)
    except WaitTimeout as exc:
        raise DropSiteError(f"{exc}; call wait_for_task again to keep waiting") from None
    finally:
        stop.set()  # ends the thread within 0.25 s if this call was cancelled


def _release_on_disconnect(ctx: Context, ws: Workspace, task: Any) -> None:
    """When this client's connection closes, give back what it claimed and still holds.

    The SDK unwinds a per-connection exit stack when a stdio stream or an HTTP session
    ends; MCPServer's Context does not expose the connection, so it is reached through
    the session (mcp 2.x). Where that fails, or for 2026-era stateless requests (one
    connection per request), claims are released when the server stops instead.
    Each claim is remembered with its time: a task this client gave back and another
    client of this server claimed since is the other client's, not released here.
    """
    connection = getattr(ctx.request_context.session, "_connection", None)
    if connection is None or connection.session_id is None and _per_request(connection):
        return
    claims = connection.state.get("dropsited_claims")
    if claims is None:
        claims = connection.state["dropsited_claims"] = {}
        connection.exit_stack.push_async_callback(_release_claims, ws, claims)
    claims[task.id] = task.holder.claimed_ms


async def _release_claims(ws: Workspace, claims: dict[str, int]) -> None:
    def still_ours() -> list[str]:
        ids = []
        for task_id, claimed_ms in claims.items():
            found = ws.ds.locate(task_id)
            if found is not None and found.holder is not None and \
                    found.holder.claimed_ms == claimed_ms:
                ids.append(task_id)
        return ids

    ids = await anyio.to_thread.run_sync(still_ours)
    released = await anyio.to_thread.run_sync(ws.release_mine, ids) if ids else []
    if released:
        log.info("client went away: released %s", ", ".join(released))


def _per_request(connection: Any) -> bool:
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS
    return connection.protocol_version in MODERN_PROTOCOL_VERSIONS


# -- running ----------------------------------------------------------------------
def serve_stdio(ws: Workspace) -> None:
    """Serve one client on stdin/stdout until stdin closes or a stop signal arrives."""
    app = build_server(ws)
    try:
        anyio.run(_until_stopped, app.run_stdio_async, ws)
    finally:
        ws.release_mine(reason="MCP server stopped")


def serve_http(ws: Workspace, host: str, token: str, sock: Any) -> None:
    """Serve streamable HTTP at /mcp on an already bound socket; every request needs the
    token. A stop signal ends the sessions (releasing their claims), then the rest."""
    import uvicorn

    from .auth import BearerToken
    from .running import run_until_signal

    app = build_server(ws)
    asgi = BearerToken(app.streamable_http_app(host=host), token)
    server = uvicorn.Server(uvicorn.Config(asgi, log_level="warning", lifespan="on"))
    run_until_signal(server, sock, lambda: ws.release_mine(reason="MCP server stopped"))


async def _until_stopped(serve: Callable, ws: Workspace) -> None:
    """Run `serve` until it returns or a stop signal arrives.

    On a signal the held tasks are released, then the process exits at once: the SDK
    reads stdin in a worker thread that nothing can interrupt, and the event loop's
    shutdown would wait for that read (for ever, while the client keeps stdin open).
    """
    async with anyio.create_task_group() as group:
        async def watch_signals() -> None:
            with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
                async for signum in signals:
                    await anyio.to_thread.run_sync(ws.release_mine, None, "MCP server stopped")
                    log.info("stopped by signal %d", signum)
                    sys.stdout.flush()
                    os._exit(0)

        group.start_soon(watch_signals)
        await serve()
        group.cancel_scope.cancel()
