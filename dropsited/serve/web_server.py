"""Running the review page: uvicorn on an already bound socket, stopped by a signal."""

from __future__ import annotations

import socket

import uvicorn

from .ops import Workspace
from .running import run_until_signal
from .web_app import build_app


def serve_web(ws: Workspace, token: str, humans: list[str], loopback: bool,
              sock: socket.socket) -> None:
    """Serve until SIGINT, SIGTERM or SIGHUP; open event streams get 2 s to close."""
    app = build_app(ws, token, humans, loopback)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on",
                                           timeout_graceful_shutdown=2))
    run_until_signal(server, sock, lambda: None)
