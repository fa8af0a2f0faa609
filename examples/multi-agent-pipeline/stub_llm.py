"""A stand-in for an OpenAI-compatible chat endpoint, for offline demos and tests.

    python3 stub_llm.py [--port 8011] [--log requests.jsonl]

Serves POST /v1/chat/completions on 127.0.0.1 (port 0 picks a free one; the
first line printed is the URL). Replies are canned but follow the prompt: a
request for titles "per line" gets three of them, a request to summarise
gets one sentence, anything else a short paragraph; those two start with the
requested model's name, so a caller can see which model it asked for. With
--log, each request is appended as a JSON line (path, model, Authorization
header, messages).
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def reply_for(model: str, messages: list[dict]) -> str:
    user = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    if "per line" in user.lower():
        topic = re.search(r"report on:\s*(.+)", user)
        subject = topic.group(1).strip() if topic else "the subject"
        return f"1. Origins of {subject}\n2. {subject[:1].upper() + subject[1:]} today\n3. What comes next"
    if user.lower().startswith("summarise"):
        count = user.count("\n## ")
        return f"[{model}] A report in {count} sections."
    first = user.splitlines()[0] if user else ""
    return f"[{model}] A paragraph answering: {first}"


class Handler(BaseHTTPRequestHandler):
    server_version = "stub-llm/1"
    log_file: Path | None = None
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        try:
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            model, messages = request["model"], request["messages"]
        except (ValueError, KeyError, TypeError):
            self._send(400, {"error": {"message": "expected JSON with model and messages"}})
            return
        self._record(model, messages)
        content = reply_for(model, messages)
        self._send(200, {
            "id": f"chatcmpl-stub-{time.monotonic_ns()}", "object": "chat.completion",
            "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        })

    def _record(self, model: str, messages: list) -> None:
        if self.log_file is None:
            return
        line = json.dumps({"path": self.path, "model": model, "messages": messages,
                           "authorization": self.headers.get("Authorization")})
        with self.lock, open(self.log_file, "a") as log:
            log.write(line + "\n")

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


def make_server(port: int = 0, log_file: Path | None = None) -> ThreadingHTTPServer:
    Handler.log_file = log_file
    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A canned OpenAI-compatible chat endpoint.")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--log", type=Path, default=None, help="append each request here")
    args = parser.parse_args(argv)
    server = make_server(args.port, args.log)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"stub LLM listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
