"""A chat call to any OpenAI-compatible endpoint (Ollama, vLLM, llama.cpp server,
LM Studio, ...) with the standard library only, and the exec-agent boilerplate.

Configuration comes from the environment, which the manifest's `env:` sets:
LLM_BASE_URL (e.g. http://127.0.0.1:11434 for Ollama), LLM_MODEL, and
LLM_API_KEY when the endpoint wants one.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable

EX_TEMPFAIL = 75  # the exec contract's "try again later, without using an attempt"


class LLMError(Exception):
    """The endpoint refused the request (bad model, bad key): retrying will not help."""


class LLMUnavailable(Exception):
    """The endpoint is down, overloaded or slow: worth trying again later."""


def chat(messages: list[dict], *, temperature: float = 0.2, timeout: float = 120) -> str:
    """POST {LLM_BASE_URL}/v1/chat/completions; the assistant's reply text."""
    base = os.environ["LLM_BASE_URL"].rstrip("/")
    url = base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")
    body = json.dumps({"model": os.environ["LLM_MODEL"], "messages": messages,
                       "temperature": temperature, "stream": False}).encode()
    headers = {"Content-Type": "application/json"}
    if os.environ.get("LLM_API_KEY"):
        headers["Authorization"] = f"Bearer {os.environ['LLM_API_KEY']}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            reply = json.load(response)
    except urllib.error.HTTPError as exc:
        detail = exc.read(300).decode("utf-8", "replace")
        if exc.code == 429 or exc.code >= 500:
            raise LLMUnavailable(f"{url}: HTTP {exc.code}: {detail}") from None
        raise LLMError(f"{url}: HTTP {exc.code}: {detail}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise LLMUnavailable(f"{url}: {getattr(exc, 'reason', exc)}") from None
    try:
        return reply["choices"][0]["message"]["content"].strip()
    except (KeyError, IndexError, TypeError, AttributeError):
        raise LLMError(f"{url}: unexpected reply {str(reply)[:200]}") from None


def ask(system: str, user: str) -> str:
    return chat([{"role": "system", "content": system}, {"role": "user", "content": user}])


def run_agent(handler: Callable[[dict], dict]) -> None:
    """Exec agent main: the task JSON on stdin, the result JSON on stdout.

    An unreachable endpoint exits 75, so the daemon retries later without
    using one of the task's attempts; any other error fails the attempt.
    """
    task = json.load(sys.stdin)
    try:
        result = handler(task)
    except LLMUnavailable as exc:
        print(f"LLM unavailable, later: {exc}", file=sys.stderr)
        sys.exit(EX_TEMPFAIL)
    except LLMError as exc:
        print(f"LLM error: {exc}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(result))
