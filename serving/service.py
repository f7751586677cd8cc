"""The BentoML decision service: `bentoml serve serving.service:NextbestService` (or `nextbest serve`).

BentoML runs it (workers, the `/livez` and `/readyz` probes, `bentoml build`); the HTTP contract is the FastAPI app of
`serving.api`, mounted at the root, so every route, error and schema is the project's own (versioned `/v1/` paths,
problem details, the API-key scheme; Swagger at `/`, OpenAPI at `/docs.json`). In front of everything sits
`serving.edge.Edge` (request id, load shedding, body size, content type and body timeout).

The engine (models, feature store, policy, log) is built once per worker when BentoML instantiates the class, and
loads in the background: the probes answer at once (`/readyz` 503 until the champions and the store are loaded),
even when the registry is unreachable. At import the service reads the settings and the project (the channels
become enums of the API; a project that cannot be served, or auth on without keys, stops the server with one line).
Access log and metrics are off (on this machine they cost more than the whole decision, see
benchmarks/bench_serving.py); the API routes are left out of BentoML's OpenTelemetry tracing unless
`serving.tracing` is on.
"""

from __future__ import annotations

import logging
import sys

import bentoml

from nextbest.errors import ConfigError
from nextbest.project import project_of
from nextbest.settings import Settings, load_settings
from serving.api import Api
from serving.auth import key_ring, startup_problem
from serving.edge import Edge
from serving.engine import DecisionEngine

logger = logging.getLogger(__name__)


def api_routes(app: object) -> tuple[str, ...]:
    """The API's paths (a path parameter's part cut: `/v1/customers/`), for BentoML's tracing exclusions."""
    from fastapi.routing import APIRoute

    paths = {r.path.split("{")[0] for r in getattr(app, "routes", ()) if isinstance(r, APIRoute)}
    return tuple(sorted(paths - {"/docs.json"}))


def tracing_config(settings: Settings, routes: tuple[str, ...]) -> dict[str, list[str]]:
    """BentoML's tracing section: the API routes are excluded unless `serving.tracing` is on."""
    return {} if settings.serving.tracing else {"excluded_urls": list(routes)}


def _settings_or_exit() -> Settings:
    """The settings the service starts with; a configuration that cannot serve exits the server with one line."""
    try:
        settings = load_settings()
        project_of(settings).decisions()
    except (ConfigError, ValueError) as exc:
        sys.exit(f"nextbest serve: {str(exc).splitlines()[0]}")
    if problem := startup_problem(settings):
        sys.exit(f"nextbest serve: {problem}")
    return settings


_SETTINGS = _settings_or_exit()
_API = Api(project_of(_SETTINGS), key_ring(_SETTINGS), engine=lambda: bentoml.get_current_service().engine).build()
#: the API routes; with `serving.tracing` off they are excluded from BentoML's OpenTelemetry middleware
API_ROUTES = api_routes(_API)


@bentoml.service(
    name="nextbest",
    workers=1,
    traffic={"timeout": 10},
    logging={"access": {"enabled": False}},
    metrics={"enabled": False},
    tracing=tracing_config(_SETTINGS, API_ROUTES),
)
@bentoml.asgi_app(_API, path="/")
class NextbestService:
    """Next best action for one customer, in milliseconds; events and feedback close the loop."""

    def __init__(self) -> None:
        self.settings = load_settings()
        self.engine = DecisionEngine(self.settings)
        # In the background, always: a registry or store that hangs must not keep the probes from answering.
        self.engine.load_in_background(retry_s=max(self.settings.serving.reload_interval_s, 5.0))

    def __is_ready__(self) -> bool:
        return self.engine.ready

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        self.engine.close()


NextbestService.add_asgi_middleware(
    Edge,
    max_in_flight=_SETTINGS.serving.max_in_flight,
    max_body_bytes=_SETTINGS.serving.max_body_bytes,
    body_timeout_s=_SETTINGS.serving.body_timeout_s,
)
