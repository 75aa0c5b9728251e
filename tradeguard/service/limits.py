"""Request limits of the claim service: body size (413 before parsing) and a per-key rate (429).

The body limit is an ASGI middleware: it reads at most `max_bytes` of the body before the app
sees any of it, so an oversized body is refused whole (413) without being parsed, logged or held
in memory past the limit. The rate limit is one token bucket per API key in the process, checked
once the key is known (`auth.current_principal`), so a stranger cannot drain another key's
bucket by sending its public id; failed authentications are limited per client address.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["BodyLimit", "RateLimiter", "retry_after"]

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]
ASGIApp = Callable[[Scope, Receive, Send], Any]


class BodyLimit:
    """ASGI middleware answering 413 to a request whose body exceeds `max_bytes`.

    Args:
        app: The wrapped ASGI app.
        max_bytes: The largest body accepted.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Buffer up to `max_bytes` of an HTTP body, then replay it to the app, or answer 413."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _too_large(send, self.max_bytes)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:  # chunked, or a Content-Length that lied
                await _too_large(send, self.max_bytes)
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            after: Message = await receive()  # after the body: the disconnect, as the server sends it
            return after

        await self.app(scope, replay, send)


async def _too_large(send: Send, max_bytes: int) -> None:
    payload = json.dumps({"detail": f"request body larger than {max_bytes} bytes"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Token buckets by name (an API key id, or a client address), in this process.

    Args:
        per_sec: Tokens added per second (the sustained rate); 0 or less disables the limit.
        burst: The bucket's size (the most requests at once after a quiet spell).
        monotonic: The time source (injected so tests never sleep).
        max_buckets: Buckets kept at most; the oldest are forgotten past it (a full bucket is
            what a forgotten one would be refilled to anyway, after a while).
    """

    def __init__(
        self,
        per_sec: float,
        burst: int,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        max_buckets: int = 100_000,
    ) -> None:
        self.per_sec = per_sec
        self.burst = max(burst, 1)
        self._monotonic = monotonic
        self._max = max_buckets
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, name: str) -> float:
        """Take one token from `name`'s bucket; return 0 if taken, else the seconds to wait."""
        if self.per_sec <= 0:
            return 0.0
        now = self._monotonic()
        with self._lock:
            bucket = self._buckets.pop(name, None) or _Bucket(float(self.burst), now)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.per_sec)
            bucket.at = now
            wait = 0.0
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
            else:
                wait = (1.0 - bucket.tokens) / self.per_sec
            self._buckets[name] = bucket  # re-inserted last: dict order is least recently used first
            while len(self._buckets) > self._max:
                del self._buckets[next(iter(self._buckets))]
        return wait


def retry_after(wait_secs: float) -> str:
    """Return a Retry-After header value (whole seconds, at least 1) for a wait."""
    return str(max(1, math.ceil(wait_secs)))
