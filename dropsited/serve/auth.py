"""Tokens for the local servers: a random secret printed at start, compared in constant time."""

from __future__ import annotations

import hmac
import json
import secrets
from typing import Any


def new_token() -> str:
    """32 random bytes, URL-safe (so it can sit in a printed URL as is)."""
    return secrets.token_urlsafe(32)


def same(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


class BearerToken:
    """ASGI middleware: HTTP requests without `Authorization: Bearer <token>` get 401."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not same(_bearer(scope), self.token):
            body = json.dumps({"error": "missing or wrong bearer token"}).encode()
            await send({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
                (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def _bearer(scope: dict) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == b"authorization":
            kind, _, credential = value.decode("latin-1").partition(" ")
            return credential.strip() if kind.lower() == "bearer" else None
    return None
