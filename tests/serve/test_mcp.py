"""`dropsited mcp` driven by the MCP SDK's own client, over stdio and streamable HTTP,
against the real server process (and a real daemon where work has to be done)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import anyio
import httpx2
import psutil
import pytest

pytest.importorskip("mcp", reason="the optional 'serve' extra (mcp) is not installed")

from harness import agent, gone, py, wait_until  # noqa: E402
from mcp import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.shared.exceptions import MCPError  # noqa: E402

from dropsited import DropSite  # noqa: E402

DROPSITED = str(Path(sys.executable).parent / "dropsited")
TOOLS = {"drop_task", "list_tasks", "show_task", "claim_next_task", "complete_task", "fail_task",
         "block_task", "release_task", "request_feedback", "answer_feedback", "wait_for_task",
         "workspace_stats", "agent_status"}
ECHO = py("import json, sys; t = json.load(sys.stdin); print(json.dumps({'echo': t['title']}))")


def server(ws: Path) -> StdioServerParameters:
    return StdioServerParameters(command=DROPSITED, args=["mcp", str(ws)],
                                 env={"PYTHONPATH": os.environ.get("PYTHONPATH", "")})


async def call(session: ClientSession, tool: str, **args: object) -> dict:
    """A tool call that must succeed; its structured result."""
    result = await session.call_tool(tool, args)
    assert not result.is_error, result.content[0].text
    return result.structured_content


async def error(session: ClientSession, tool: str, **args: object) -> str:
    """A tool call that must fail as a tool error (not a crash); its message."""
    result = await session.call_tool(tool, args)
    assert result.is_error, result.structured_content
    return result.content[0].text


def holder_pid(ws: Path, task_id: str) -> int:
    claim = next((ws / "active").glob(f"{task_id}~*.json"))
    return int(claim.name.split("~")[3])


def test_a_client_drops_claims_completes_answers_and_waits(run_daemon) -> None:
    d = run_daemon([agent("echo", ECHO, tags=["echo"])])
    person = subprocess.run([DROPSITED, "drop", d.ws, "--from", "me", "--title", "mine",
                             "--type", "people", "-q"], capture_output=True, text=True)
    theirs = person.stdout.strip()
    assert subprocess.run([DROPSITED, "claim", d.ws, theirs]).returncode == 0

    async def session_run() -> None:
        async with stdio_client(server(d.ws)) as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            tools = await session.list_tools()
            assert {t.name for t in tools.tools} == TOOLS
            assert all(len(t.description or "") > 60 for t in tools.tools)

            # Work for the daemon's agent, held back by a dependency on a task nobody serves
            # until the wait has reported progress; then this client does that task.
            progress: list[tuple] = []
            waiting = anyio.Event()

            async def on_progress(done: float, total: float | None, message: str | None) -> None:
                progress.append((done, total, message))
                waiting.set()

            gate = await call(session, "drop_task", title="open the gate", tags=["gate"])
            work = await call(session, "drop_task", title="say hi", tags=["echo"],
                              context='{"lang": "en"}', depends_on=[gate["task"]["id"]])
            assert work["task"]["context"] == {"lang": "en", "_depends_on": [gate["task"]["id"]]}
            waited: dict = {}

            async def wait_for_work() -> None:
                waited["result"] = await session.call_tool("wait_for_task", {
                    "task_id": work["task"]["id"], "timeout_seconds": 30},
                    progress_callback=on_progress)

            async with anyio.create_task_group() as group:
                group.start_soon(wait_for_work)
                await waiting.wait()
                assert progress[0][1:] == (30, f"task {work['task']['id']} is in inbox/")
                keeper = await call(session, "claim_next_task", agent="keeper", tags=["gate"])
                assert keeper["task"]["id"] == gate["task"]["id"]
                await call(session, "complete_task", task_id=gate["task"]["id"], result={})
            result = waited["result"]
            assert not result.is_error, result.content[0].text
            assert result.structured_content["folder"] == "done"
            assert result.structured_content["task"]["result"] == {"echo": "say hi"}

            # Work for the client itself: claim, ask a person, get the answer, complete.
            mine = await call(session, "drop_task", title="write the note", tags=["notes"],
                              priority=1)
            task_id = mine["task"]["id"]
            claimed = await call(session, "claim_next_task", agent="llm", tags=["notes"])
            assert claimed["claimed"] and claimed["task"]["id"] == task_id
            servers = [p.pid for p in psutil.Process().children()
                       if p.cmdline()[-2:] == ["mcp", str(d.ws)]]
            assert [holder_pid(d.ws, task_id)] == servers  # held by the server process
            await call(session, "request_feedback", task_id=task_id, question="Formal?",
                       options=["yes", "no"], draft="Dear all")
            asked = await call(session, "list_tasks", folder="feedback")
            assert [t["id"] for t in asked["tasks"]] == [task_id]
            await call(session, "answer_feedback", task_id=task_id, answer="no", by="Ada L.")
            again = await call(session, "claim_next_task", agent="llm", tags=["notes"])
            assert again["task"]["context"]["_feedback_response"] == "no"
            assert any(e.get("by") == "Ada L." for e in again["task"]["history"])
            await call(session, "complete_task", task_id=task_id, result={"text": "hi all"})
            shown = await call(session, "show_task", task_id=task_id)
            assert shown["folder"] == "done" and shown["task"]["result"] == {"text": "hi all"}
            resource = await session.read_resource(f"dropsite://task/{task_id}")
            assert json.loads(resource.contents[0].text)["task"]["id"] == task_id
            with pytest.raises(MCPError, match="no task nosuchtask"):
                await session.read_resource("dropsite://task/nosuchtask")

            assert (await call(session, "claim_next_task", agent="llm",
                               tags=["notes"]))["claimed"] is False
            found = await call(session, "list_tasks", text="SAY HI")
            assert [t["id"] for t in found["tasks"]] == [work["task"]["id"]]
            stats = await call(session, "workspace_stats")
            assert stats["done"] == 3 and stats["active"] == 1
            status = await call(session, "agent_status")
            assert status["daemon"]["running"] is True
            assert [a["name"] for a in status["agents"]] == ["echo"]

            # What a client gets wrong is a tool error, and the server goes on.
            assert "looks like a path" in await error(session, "show_task", task_id="../etc")
            assert "no task nosuchtask" in await error(session, "show_task", task_id="nosuchtask")
            assert "result: not valid JSON" in await error(
                session, "complete_task", task_id=theirs, result="{not json")
            assert "held by human (pid 0" in await error(
                session, "complete_task", task_id=theirs, result={})
            assert "is in done/, not held" in await error(session, "fail_task",
                                                          task_id=task_id, error="x")
            assert "context: not valid JSON" in await error(
                session, "drop_task", title="t", context="{'single': 'quotes'}")
            assert "validation error" in await error(  # the SDK parsed it: not an object
                session, "drop_task", title="t", context="[1, 2]")
            assert "by: the name" in await error(session, "answer_feedback",
                                                 task_id=task_id, answer="a", by=" ")
            assert "timed out after 0.2s" in await error(
                session, "wait_for_task", task_id=theirs, timeout_seconds=0.2)
            assert "validation error" in await error(session, "drop_task", title=["no"])
            assert (await call(session, "workspace_stats"))["done"] == 3

    anyio.run(session_run)
    assert d.stop() == 0


def test_claims_go_back_when_the_client_leaves_or_the_server_stops(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ds = DropSite(ws, durable=False)
    left = ds.submit(_task("left behind"))

    async def leave() -> None:
        async with stdio_client(server(ws)) as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            claimed = await call(session, "claim_next_task", agent="editor")
            assert claimed["task"]["id"] == left

    anyio.run(leave)
    assert ds.locate(left).folder == "inbox"
    assert ds.get_task(left).history[-1]["released"] is True

    async def stop() -> None:
        async with stdio_client(server(ws)) as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            claimed = await call(session, "claim_next_task", agent="editor")
            assert claimed["task"]["id"] == left
            pid = holder_pid(ws, left)
            os.kill(pid, signal.SIGTERM)
            wait_until(lambda: gone(pid), 10, "the MCP server to exit on SIGTERM")

    anyio.run(stop)
    assert ds.locate(left).folder == "inbox"
    assert ds.get_task(left).history[-1]["reason"] == "MCP server stopped"


def test_streamable_http_needs_the_token_and_releases_per_session(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ds = DropSite(ws, durable=False)
    first, second = ds.submit(_task("one")), ds.submit(_task("two"))
    proc = subprocess.Popen([DROPSITED, "mcp", str(ws), "--http", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().split()[-1]
        token = proc.stdout.readline().split()[-1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/mcp") and len(token) >= 32
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}):
            request = urllib.request.Request(url, data=b"{}", method="POST", headers=headers)
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)
            assert refused.value.code == 401

        async def session(leave_open: bool) -> str:
            async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"},
                                          timeout=60) as http, streamable_http_client(url, http_client=http,
                                                    terminate_on_close=not leave_open) \
                    as (read, write), ClientSession(read, write) as client:
                await client.initialize()
                claimed = await call(client, "claim_next_task", agent="remote")
                assert holder_pid(ws, claimed["task"]["id"]) == proc.pid
                return claimed["task"]["id"]

        ended = anyio.run(session, False)  # the session ends: its claim goes back
        wait_until(lambda: ds.locate(ended).folder == "inbox", 10, "the session's claim back")
        assert ds.get_task(ended).history[-1]["reason"] == "MCP client went away"
        assert proc.poll() is None
        still_open = anyio.run(session, True)  # no DELETE: the session lives on
        assert ds.locate(still_open).folder == "active"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert ds.get_task(still_open).history[-1]["released"] is True  # sessions end first
        assert {ds.locate(t).folder for t in (first, second)} == {"inbox"}
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def test_a_client_leaving_does_not_release_what_another_client_holds(tmp_path: Path) -> None:
    """Both clients' claims have the server's pid: each connection gives back only the
    claims it made itself, and only while they are still those claims."""
    ws = tmp_path / "ws"
    ds = DropSite(ws, durable=False)
    task_id = ds.submit(_task("shared"))
    own = ds.submit(_task("the first client's own"))
    proc = subprocess.Popen([DROPSITED, "mcp", str(ws), "--http", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, text=True)
    url, token = proc.stdout.readline().split()[-1], proc.stdout.readline().split()[-1]

    @contextlib.asynccontextmanager
    async def connect():
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"},
                                      timeout=60) as http, \
                streamable_http_client(url, http_client=http) as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            yield session

    a_released, b_claimed, a_gone, checked = (anyio.Event() for _ in range(4))

    async def first_client() -> None:
        async with connect() as first:
            assert (await call(first, "claim_next_task", agent="a"))["task"]["id"] == task_id
            await call(first, "release_task", task_id=task_id)
            a_released.set()
            await b_claimed.wait()
            assert (await call(first, "claim_next_task", agent="a"))["task"]["id"] == own
        a_gone.set()

    async def second_client() -> None:
        await a_released.wait()
        async with connect() as second:
            assert (await call(second, "claim_next_task", agent="b"))["task"]["id"] == task_id
            b_claimed.set()
            await checked.wait()

    async def scenario() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(first_client)
            group.start_soon(second_client)
            await a_gone.wait()
            # The first session has ended: its own claim goes back, the shared one stays b's.
            await anyio.to_thread.run_sync(lambda: wait_until(
                lambda: ds.locate(own).folder == "inbox", 10, "a's own claim back"))
            assert ds.locate(task_id).folder == "active"
            assert ds.locate(task_id).holder.agent == "b"
            checked.set()

    try:
        anyio.run(scenario)
        wait_until(lambda: ds.locate(task_id).folder == "inbox", 10, "b's claim back")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        proc.stdout.close()


def _task(title: str):
    from dropsited import TaskBuilder
    return TaskBuilder(title, "test").build()
