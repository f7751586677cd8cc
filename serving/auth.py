"""API keys with a role per key: `X-API-Key: <key>`, roles `channel` (decisions, events, feedback, status) and
`admin` (also reload and erasure).

Keys are never kept in clear where they can be avoided: `serving.api_keys` maps `sha256:<hex digest of the key>` to
a role (`nextbest keys hash KEY` prints the digest); a plain key there is accepted only in the embedded profile (and
logged as a warning). `serving.api_keys_file` names a YAML file of the same mapping, readable by its owner only
(0600), for keys handed over by a secrets manager. Comparison is in constant time on the digests.

Auth is on in the production profile (always) or with `serving.auth_enabled`; there, the service refuses to start
without keys (one clear line, `startup_problem`). With auth off (the embedded demo), channel routes are open and the
admin routes answer only a client on the loopback interface: the admin route is never open beyond the machine.
Missing or unknown key -> 401, known key without the role -> 403 (problem details, from the API's handlers).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from nextbest.errors import ConfigError
from nextbest.settings import Settings

logger = logging.getLogger(__name__)

Role = Literal["channel", "admin"]
HASH_PREFIX = "sha256:"
LOOPBACK: frozenset[str] = frozenset({"127.0.0.1", "::1", "localhost", "testclient"})
_GRANTS: dict[str, frozenset[str]] = {"channel": frozenset({"channel"}), "admin": frozenset({"channel", "admin"})}


class AuthError(Exception):
    """A request without the right key: `status` is 401 or 403."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def hash_key(key: str) -> str:
    """The stored form of a key: `sha256:<hex>`."""
    return HASH_PREFIX + hashlib.sha256(key.encode()).hexdigest()


def auth_required(settings: Settings) -> bool:
    return settings.serving.auth_enabled or settings.profile == "production"


def _read_keys_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise ConfigError(f"serving.api_keys_file: {path} not found")
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        raise ConfigError(f"serving.api_keys_file: {path} is readable by others (mode {mode:o}); chmod 600 it")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"serving.api_keys_file: {path} must map keys (or sha256: digests) to roles")
    return {str(k): str(v) for k, v in raw.items()}


@dataclass(frozen=True)
class KeyRing:
    """The digests of the accepted keys and their roles; `enabled` is False when auth is off."""

    enabled: bool
    digests: Mapping[str, str]

    def role_of(self, presented: str | None) -> str:
        """The role of a presented key (AuthError 401 when missing or unknown)."""
        if not presented:
            raise AuthError(401, "missing X-API-Key header")
        digest = hash_key(presented)
        role = None
        for known, r in self.digests.items():
            if hmac.compare_digest(known, digest):
                role = r
        if role is None:
            raise AuthError(401, "unknown API key")
        return role

    def check(self, presented: str | None, needed: Role, client_host: str | None) -> None:
        """Allow or raise AuthError (401/403); with auth off, admin routes need a loopback client."""
        if not self.enabled:
            if needed == "admin" and client_host not in LOOPBACK:
                raise AuthError(403, "admin routes answer only on this machine when API keys are off")
            return
        role = self.role_of(presented)
        if needed not in _GRANTS[role]:
            raise AuthError(403, f"API key role {role!r} may not call this endpoint (needs {needed!r})")


def key_ring(settings: Settings) -> KeyRing:
    """The accepted keys of these settings (ConfigError for a key that is misconfigured)."""
    entries = dict(settings.serving.api_keys)
    if settings.serving.api_keys_file is not None:
        entries.update(_read_keys_file(settings.serving.api_keys_file))
    digests: dict[str, str] = {}
    plain = 0
    for key, role in entries.items():
        if role not in _GRANTS:
            raise ConfigError(f"serving.api_keys: unknown role {role!r}; roles: {', '.join(_GRANTS)}")
        if key.startswith(HASH_PREFIX):
            digests[key] = role
        else:
            plain += 1
            digests[hash_key(key)] = role
    if plain and settings.profile == "production":
        raise ConfigError(
            "serving.api_keys: the production profile takes key digests only (sha256:..., `nextbest keys hash KEY`) "
            "or serving.api_keys_file (mode 600)"
        )
    if plain:
        logger.warning("%d API key(s) in clear in the settings: store their sha256 digests instead", plain)
    return KeyRing(enabled=auth_required(settings), digests=digests)


def startup_problem(settings: Settings) -> str | None:
    """Why the service must not start with these settings (auth on and no usable key), else None."""
    try:
        ring = key_ring(settings)
    except ConfigError as exc:
        return str(exc)
    if ring.enabled and not ring.digests:
        why = "the production profile" if settings.profile == "production" else "serving.auth_enabled"
        return f"API-key auth is on ({why}) but no keys are configured: set serving.api_keys or serving.api_keys_file"
    return None
