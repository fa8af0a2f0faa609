"""examples/hooks: the feedback notification (its terminal-or-log fallback, as on a machine
without notify-send) and the chat webhook (body: text) against a stub server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml
from conftest import EXAMPLES

EXAMPLE = EXAMPLES / "hooks"


class _Chat(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.posts.append((self.path, json.loads(body)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_notification_for_feedback_and_chat_message_for_a_failed_task(
        tmp_path: Path, daemon, wait_until, dropsited) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Chat)
    server.posts = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log = tmp_path / "notifications.log"
    ws = tmp_path / "ws"
    try:
        url = f"http://127.0.0.1:{server.server_port}/services/T0/B0/X"
        running = daemon(_manifest(tmp_path, log, url), ws, "--retry-base", "0.05")
        asked = dropsited("drop", ws, "--from", "me", "--title", "the launch post", "--type",
                          "ask", "-q", "--payload", "{}").strip()
        failing = dropsited("drop", ws, "--from", "me", "--title", "call the service", "--type",
                            "flaky", "-q", "--payload", "{}", "--max-retries", "0").strip()
        wait_until(lambda: log.exists() and asked in log.read_text(), 15, "the notification",
                   daemon=running)
        assert "dropsited: feedback: 'the launch post'" in log.read_text()
        assert "asks: Publish 'the launch post'?" in log.read_text()
        wait_until(lambda: server.posts, 15, "the chat message", daemon=running)
        path, body = server.posts[0]
        assert path == "/services/T0/B0/X" and list(body) == ["text"]
        assert body["text"].startswith(f"failed: 'call the service' ({failing}) by flaky")
        assert body["text"].endswith("the service is down")
        assert running.stop() == 0
        assert len(server.posts) == 1  # failed attempts that are retried are not posted
    finally:
        server.shutdown()
        server.server_close()


def _manifest(tmp_path: Path, log: Path, url: str) -> Path:
    """The example's manifest, its paths made absolute, with the notification's fallback
    pointed at `log` (no terminal, no desktop session: as under a service manager) and
    the chat hook at the stub server (the URL the example takes from $CHAT_WEBHOOK_URL)."""
    doc = yaml.safe_load((EXAMPLE / "agents.yaml").read_text())
    notify = doc["on"][0]
    notify["env"] = {"DROPSITED_NOTIFY_TTY": str(tmp_path / "no-tty"),
                     "DROPSITED_NOTIFY_LOG": str(log), "DISPLAY": "", "WAYLAND_DISPLAY": ""}
    notify["cwd"] = str(EXAMPLE)
    doc["on"][1]["url"] = url
    for agent in doc["agents"]:
        agent["cwd"] = str(EXAMPLE)
    path = tmp_path / "agents.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
