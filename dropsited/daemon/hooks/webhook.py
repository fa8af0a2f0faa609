"""POSTing an event to a URL hook with the standard library's urllib (no new dependency).

The body is the event's JSON, or `{"text": summary}` for `body: text` (Slack-style
incoming webhooks, Mattermost, Rocket.Chat). Redirects are not followed: a redirect
would carry the manifest's headers (often a token) to another place. A 2xx answer is
success; 408, 429, 5xx and network errors may be retried; any other answer is final.
`timeout` bounds the connect and each read; the reply body is read up to 64 KiB.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from typing import Any

from ... import __version__
from ...protocol import json_rules
from ..manifest import HookSpec
from .command import Attempt

REPLY_LIMIT = 64 * 1024
RETRY_STATUSES = frozenset({408, 429})


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx status


_OPENER = urllib.request.build_opener(_NoRedirect)


def body_of(hook: HookSpec, event: dict[str, Any]) -> bytes:
    payload = {"text": event["summary"]} if hook.body == "text" else event
    return json_rules.dumps(payload, indent=None)


def post(hook: HookSpec, event: dict[str, Any]) -> Attempt:
    """One POST of `event` to the hook's URL."""
    headers = {"Content-Type": "application/json", "User-Agent": f"dropsited/{__version__}",
               **hook.headers}
    request = urllib.request.Request(hook.url or "", data=body_of(hook, event), method="POST",
                                     headers=headers)
    try:
        with _OPENER.open(request, timeout=hook.timeout) as reply:
            reply.read(REPLY_LIMIT)
            return Attempt(True)
    except urllib.error.HTTPError as exc:
        status = exc.code
        retry = status >= 500 or status in RETRY_STATUSES
        return Attempt(False, f"HTTP {status} {exc.reason}", retryable=retry)
    except TimeoutError:
        return Attempt(False, f"timed out after {hook.timeout:g}s", timed_out=True)
    except urllib.error.URLError as exc:
        timed_out = isinstance(exc.reason, TimeoutError)
        reason = f"timed out after {hook.timeout:g}s" if timed_out else str(exc.reason)
        return Attempt(False, reason, timed_out=timed_out)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return Attempt(False, f"{type(exc).__name__}: {exc}")
