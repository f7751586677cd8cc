"""API keys with a role per key, as a small ASGI middleware in front of the decision endpoints.

`X-API-Key: <key>`; `settings.serving.api_keys` maps key -> role (`channel` or `admin`). Channel keys may call
`/recommend`, `/events`, `/feedback`, `/status`; `/admin/*` needs an admin key. Probes, OpenAPI and Swagger stay
open so orchestrators and developers can reach them. Auth is off by default (embedded demo) and always on in
the production profile, where starting without keys is a configuration error. Missing or unknown key -> 401,
known key without the role -> 403. Keys are compared in constant time.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Literal

from nextbest.errors import ConfigError
from nextbest.settings import Settings, load_settings

logger = logging.getLogger(__name__)

Role = Literal["channel", "admin"]
HEADER = b"x-api-key"
# path prefix -> role needed; anything else (probes, docs, static) is open.
PROTECTED: tuple[tuple[str, Role], ...] = (
    ("/admin/", "admin"),
    ("/recommend", "channel"),
    ("/events", "channel"),
    ("/feedback", "channel"),
    ("/status", "channel"),
)
_GRANTS: dict[Role, frozenset[Role]] = {"channel": frozenset({"channel"}), "admin": frozenset({"channel", "admin"})}

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def auth_required(settings: Settings) -> bool:
    return settings.serving.auth_enabled or settings.profile == "production"


def required_role(path: str) -> Role | None:
    path = path.rstrip("/") or "/"
    for prefix, role in PROTECTED:
        base = prefix.rstrip("/")
        if path == base or path.startswith(base + "/"):
            return role
    return None


def check_key(keys: Mapping[str, Role], presented: str | None, needed: Role) -> tuple[int, str] | None:
    """None if allowed, else (HTTP status, message)."""
    if not presented:
        return 401, "missing X-API-Key header"
    role: Role | None = None
    for key, r in keys.items():
        if hmac.compare_digest(key.encode(), presented.encode()):
            role = r
    if role is None:
        return 401, "unknown API key"
    if needed not in _GRANTS[role]:
        return 403, f"API key role {role!r} may not call this endpoint (needs {needed!r})"
    return None


class ApiKeyMiddleware:
    """ASGI middleware; settings are read on the first request (nothing happens at import or mount time)."""

    def __init__(self, app: Callable[..., Awaitable[None]], settings: Settings | None = None) -> None:
        self.app = app
        self._settings = settings
        self._config: tuple[bool, dict[str, Role]] | None = None

    def _resolve(self) -> tuple[bool, dict[str, Role]]:
        if self._config is None:
            settings = self._settings or load_settings()
            enabled = auth_required(settings)
            keys = dict(settings.serving.api_keys)
            if enabled and not keys:
                raise ConfigError("API-key auth is on (production profile or serving.auth_enabled) but no api_keys")
            self._config = (enabled, keys)
        return self._config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        enabled, keys = self._resolve()
        needed = required_role(scope.get("path", "")) if enabled else None
        if needed is None:
            await self.app(scope, receive, send)
            return
        presented = None
        for name, value in scope.get("headers", ()):
            if name == HEADER:
                presented = value.decode("latin-1")
                break
        denied = check_key(keys, presented, needed)
        if denied is None:
            await self.app(scope, receive, send)
            return
        status, message = denied
        body = json.dumps({"error": message}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if status == 401:
            headers.append((b"www-authenticate", b'ApiKey header="X-API-Key"'))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
