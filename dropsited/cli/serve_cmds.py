"""`dropsited mcp` and `dropsited web`: servers for AI clients and for people.

Both need the optional `serve` extra (the MCP SDK, Starlette, uvicorn). Without it
they say which extra to install and exit 2; the rest of dropsited never imports it.
"""

from __future__ import annotations

import importlib
import ipaddress
import os
import socket
from pathlib import Path

import click

from .common import ENV_WORKSPACE, fail, handle_errors, open_workspace

EXTRA = "serve"
ENV_MCP_TOKEN = "DROPSITED_MCP_TOKEN"
MIN_TOKEN = 16


def register(group: click.Group) -> None:
    _mcp(group)
    _web(group)


def require_extra(command: str, modules: tuple[str, ...]) -> None:
    """One line naming the extra when a module of it is missing, exit 2."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            fail(f"dropsited {command} needs the optional '{EXTRA}' extra ({module} is not "
                 f"installed): pip install 'dropsited[{EXTRA}]'")


def workspace_or_env(workspace: Path | None, command: str) -> Path:
    if workspace is None:
        env = os.environ.get(ENV_WORKSPACE)
        if not env:
            fail(f"no workspace: give one (dropsited {command} ./workspace) or set "
                 f"${ENV_WORKSPACE}")
        workspace = Path(env)
    open_workspace(workspace)  # the one-line error for a missing workspace
    return workspace


def parse_address(text: str, option: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        fail(f"{option}: expected HOST:PORT (for example 127.0.0.1:8766), got {text!r}")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_socket(host: str, port: int, option: str) -> socket.socket:
    """A listening socket, bound before the server starts so port 0 names a free port."""
    try:
        return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host
                                    else socket.AF_INET)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        fail(f"{option}: cannot listen on {host}:{port}: {reason}")


def _mcp(group: click.Group) -> None:
    @group.command("mcp")
    @click.argument("workspace", required=False, type=click.Path(file_okay=False, path_type=Path))
    @click.option("--http", "http", default=None, metavar="HOST:PORT",
                  help="Serve streamable HTTP at http://HOST:PORT/mcp instead of stdio, with a "
                       "bearer token printed at start. Port 0 picks a free one.")
    @click.option("--token", default=lambda: os.environ.get(ENV_MCP_TOKEN), show_default=
                  f"${ENV_MCP_TOKEN} or a random one", help="With --http: the bearer token.")
    @handle_errors
    def mcp(workspace: Path | None, http: str | None, token: str | None) -> None:
        """Serve WORKSPACE (or $DROPSITE_WORKSPACE) to AI clients over MCP.

        Tools: drop, list/search, show, claim, complete, fail, block, release,
        request and answer feedback, wait, stats, agent status; each task is also
        the resource dropsite://task/ID. Tasks a client claims are held by this
        process and go back to the inbox when the client goes away.

        \b
        Example:
          claude mcp add dropsite -- dropsited mcp /path/to/workspace
          dropsited mcp ./workspace --http 127.0.0.1:8766
        """
        ws_path = workspace_or_env(workspace, "mcp")
        require_extra("mcp", ("mcp", "anyio", "uvicorn", "starlette"))
        from ..serve.auth import new_token
        from ..serve.mcp_server import serve_http, serve_stdio
        from ..serve.ops import Workspace

        ws = Workspace(ws_path)
        if http is None:
            serve_stdio(ws)
            return
        if token is not None and len(token) < MIN_TOKEN:
            fail(f"--token: at least {MIN_TOKEN} characters")
        host, port = parse_address(http, "--http")
        sock = bind_socket(host, port, "--http")
        token = token or new_token()
        url = f"http://{_url_host(host)}:{sock.getsockname()[1]}/mcp"
        click.echo(f"dropsited MCP server on {url}\nbearer token: {token}\n"
                   f"  claude mcp add --transport http dropsite {url} "
                   f"--header 'Authorization: Bearer {token}'", err=False)
        serve_http(ws, host, token, sock)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _web(group: click.Group) -> None:
    @group.command("web")
    @click.argument("workspace", required=False, type=click.Path(file_okay=False, path_type=Path))
    @click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
                  help="0 picks a free port.")
    @click.option("--bind", default=None, metavar="HOST",
                  help="Listen on HOST instead of 127.0.0.1. Other machines can then reach "
                       "the page (still only with the token): say so explicitly.")
    @click.option("--human", "humans", multiple=True, metavar="AGENT",
                  help="Agent names whose inbox tasks wait for a person (repeatable). "
                       "Default: $DROPSITE_AGENT or human.")
    @handle_errors
    def web(workspace: Path | None, port: int, bind: str | None, humans: tuple[str, ...]) -> None:
        """A review page in the browser for the people in the loop.

        Shows what waits for a person (feedback/, inbox tasks assigned to a human
        agent, blocked/) with question, options, draft and history; answer with
        a button or free text, unblock, retry failed tasks; queue depths, agents
        and a chart of the last hour, updated live. Every answer is recorded in
        the task's history with the name typed on the page. The URL printed
        carries a random token: without it every request gets 403.

        \b
        Example:
          dropsited web ./workspace
          dropsited web ./workspace --port 0 --human alice --human bob
        """
        ws_path = workspace_or_env(workspace, "web")
        require_extra("web", ("starlette", "uvicorn", "anyio"))
        from ..protocol.names import check_agent_name
        from ..serve.auth import new_token
        from ..serve.ops import Workspace
        from ..serve.web_server import serve_web

        names = [check_agent_name(h) for h in humans] or [
            check_agent_name(os.environ.get("DROPSITE_AGENT") or "human")]
        host = bind or "127.0.0.1"
        ws = Workspace(ws_path)
        sock = bind_socket(host, port, "--bind" if bind else "--port")
        token = new_token()
        url = f"http://{_url_host(host)}:{sock.getsockname()[1]}/?token={token}"
        click.echo(f"dropsited review page for {ws.ds.workspace} (Ctrl-C stops it):\n  {url}")
        if not is_loopback(host):
            click.echo(f"note: listening on {host}: reachable from other machines, "
                       "with the token only", err=True)
        serve_web(ws, token, names, is_loopback(host), sock)
