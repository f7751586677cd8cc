"""The service's edge: what every request meets before any framework code runs (a pure ASGI middleware).

In order:
1. a request id: `X-Request-ID` when the client sends a well-formed one (64 characters at most), else a new one;
   echoed on every response and handed to the API (`scope["state"]["request_id"]`), so the decision log records it;
2. load shedding: at most `max_in_flight` requests per worker are admitted; past that the request is answered at
   once with 429 and `Retry-After` instead of queueing into timeouts (a worker is CPU-bound: requests beyond a
   handful in flight only wait). Probes and docs are never shed, so an overloaded worker still reports itself;
3. the body: a request with a body must declare JSON (`application/json` or `+json`), else 415; it may hold at most
   `max_body_bytes` (413, checked on the declared length and again while reading); it must arrive within
   `body_timeout_s` (408: a body shorter than its Content-Length must not hold a worker).
Every refusal is a problem details body (RFC 9457), the same shape as the API's own errors.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_HEADER = b"x-request-id"
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:@/+=-]{1,64}$")
#: paths that are never shed or body-checked: probes, docs and the Swagger assets
OPEN_PREFIXES: tuple[str, ...] = ("/livez", "/readyz", "/healthz", "/docs.json", "/static_content", "/v1/openapi.json")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def problem_body(status: int, title: str, detail: str, request_id: str, path: str) -> bytes:
    """A problem details document (the API's `serving.schemas.Problem`) as bytes."""
    return json.dumps(
        {
            "type": "about:blank",
            "title": title,
            "status": status,
            "detail": detail,
            "instance": path,
            "request_id": request_id,
        }
    ).encode()


class Edge:
    """Request id, load shedding and body checks in front of the whole service (probes included, never shed)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_in_flight: int = 16,
        max_body_bytes: int = 64 * 1024,
        body_timeout_s: float = 5.0,
        retry_after_s: int = 1,
    ) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.retry_after_s = retry_after_s
        self.in_flight = 0
        self.shed = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self._request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        scope["state"]["received_at"] = time.monotonic()
        path = scope.get("path", "")
        send = _with_request_id(send, request_id, path)
        if path.startswith(OPEN_PREFIXES) or path == "/":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            self.shed += 1
            headers = [(b"retry-after", str(self.retry_after_s).encode())]
            detail = f"{self.in_flight} requests in flight on this worker (at most {self.max_in_flight}); retry soon"
            await _refuse(send, 429, "Too many requests", detail, request_id, path, headers)
            return
        self.in_flight += 1
        try:
            if scope.get("method") in _BODY_METHODS:
                receive_or_refusal = await self._checked_body(scope, receive, send, request_id)
                if receive_or_refusal is None:
                    return
                receive = receive_or_refusal
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    @staticmethod
    def _request_id(scope: Scope) -> str:
        for name, value in scope.get("headers", ()):
            if name == REQUEST_ID_HEADER and _REQUEST_ID.match(value):
                return value.decode()
        return uuid.uuid4().hex

    async def _checked_body(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> Receive | None:
        """The body read whole (bounded in size and time) and replayed; None when the request was refused."""
        path = scope.get("path", "")
        headers = {k.lower(): v for k, v in scope.get("headers", ())}
        declared = headers.get(b"content-length")
        try:
            length = int(declared) if declared is not None else None
        except ValueError:
            await _refuse(send, 400, "Invalid request", "Content-Length is not a number", request_id, path)
            return None
        if length is not None and length > self.max_body_bytes:
            await self._too_large(send, request_id, path)
            return None
        chunks: list[bytes] = []
        size = 0
        deadline = time.monotonic() + self.body_timeout_s
        more = True
        while more:
            try:
                message = await asyncio.wait_for(receive(), timeout=max(deadline - time.monotonic(), 0.001))
            except TimeoutError:
                detail = f"the body did not arrive within {self.body_timeout_s:g} s"
                await _refuse(send, 408, "Request timeout", detail, request_id, path, [(b"connection", b"close")])
                return None
            if message["type"] == "http.disconnect":
                return None
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_body_bytes:
                await self._too_large(send, request_id, path)
                return None
            chunks.append(body)
            more = bool(message.get("more_body"))
        body = b"".join(chunks)
        if body and not _is_json(headers.get(b"content-type", b"")):
            declared_type = headers.get(b"content-type", b"(none)").decode("latin-1")[:80]
            detail = f"Content-Type must be application/json, got {declared_type}"
            await _refuse(send, 415, "Unsupported media type", detail, request_id, path)
            return None
        return _replay(body)

    async def _too_large(self, send: Send, request_id: str, path: str) -> None:
        detail = f"the body exceeds {self.max_body_bytes} bytes"
        await _refuse(send, 413, "Request too large", detail, request_id, path, [(b"connection", b"close")])


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


def _with_request_id(send: Send, request_id: str, path: str) -> Send:
    """Adds the request id to the response; a framework's plain-text 404/405 (a path or method nothing serves)
    becomes the API's problem details."""
    header = (REQUEST_ID_HEADER, request_id.encode())
    replacing = False

    async def wrapped(message: Message) -> None:
        nonlocal replacing
        if message["type"] == "http.response.start":
            status = message.get("status", 200)
            content_type = dict(message.get("headers", [])).get(b"content-type", b"")
            if status in (404, 405) and b"json" not in content_type:
                replacing = True
                title = "Not found" if status == 404 else "Method not allowed"
                detail = f"no {'route' if status == 404 else 'such method'} for {path}; see /docs.json"
                await _refuse(send, status, title, detail, request_id, path, [header])
                return
            message["headers"] = [*message.get("headers", []), header]
        elif replacing:
            return  # the original body of a replaced response
        await send(message)

    return wrapped


async def _refuse(
    send: Send,
    status: int,
    title: str,
    detail: str,
    request_id: str,
    path: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = problem_body(status, title, detail, request_id, path)
    head = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        *(headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})
