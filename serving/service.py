"""The BentoML decision service: `bentoml serve serving.service:NextbestService` (or `nextbest serve`).

A thin, typed shell over `serving.engine.DecisionEngine`, the one engine of every project (the simulated bank by
default; `settings.project` / `nextbest serve --project FILE` for another): the engine (models, feature store,
policy, log) is built once per worker when BentoML instantiates the class, never at import. Handlers are `async` so
BentoML calls them on the event loop (no thread hop per request); the only blocking part, the online read, runs in
the engine's own pool with a timeout. Access log and metrics are off in the service config: on this machine they
cost more than the whole decision (see benchmarks/bench_serving.py); the API routes are left out of BentoML's
OpenTelemetry tracing unless `serving.tracing` is on (+8-12% throughput, Redis p99 at 250 req/s halved:
docs/benchmarks.md). Swagger/OpenAPI, `/livez` and `/readyz` are BentoML's; `/readyz` stays 503 until the champions
and the store are loaded (`__is_ready__`).
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus

import bentoml
from bentoml.exceptions import BadInput, BentoMLException, NotFound, ServiceUnavailable

from nextbest.decision_log import UnknownDecisionError
from nextbest.errors import ConfigError, NotReadyError
from nextbest.settings import load_settings
from serving.auth import ApiKeyMiddleware, auth_required
from serving.engine import DecisionEngine
from serving.lifecycle import freeze_heap
from serving.schemas import (
    EventRequest,
    EventResponse,
    FeedbackRequest,
    FeedbackResponse,
    RecommendRequest,
    RecommendResponse,
    ReloadResponse,
    StatusResponse,
)

logger = logging.getLogger(__name__)


#: the API routes; with `serving.tracing` off they are excluded from BentoML's OpenTelemetry middleware
API_ROUTES = ("/recommend", "/events", "/feedback", "/status", "/admin/reload")


def _tracing_config() -> dict[str, list[str]]:
    # Read when BentoML imports the service (the settings file is what `nextbest serve` hands the workers).
    return {} if load_settings().serving.tracing else {"excluded_urls": list(API_ROUTES)}


@bentoml.service(
    name="nextbest",
    workers=1,
    traffic={"timeout": 10},
    logging={"access": {"enabled": False}},
    metrics={"enabled": False},
    tracing=_tracing_config(),
)
class NextbestService:
    """Next best action for one customer, in milliseconds; events and feedback close the loop."""

    def __init__(self) -> None:
        self.settings = load_settings()
        if auth_required(self.settings) and not self.settings.serving.api_keys:
            raise ConfigError(
                "API-key auth is on (production profile or serving.auth_enabled) but serving.api_keys is empty"
            )
        self.engine = DecisionEngine(self.settings)
        try:
            self.engine.load()
            self.engine.start_polling()
            freeze_heap()  # full GC passes over the loaded heap stalled requests ~200 ms (see freeze_heap)
        except Exception as exc:  # start anyway: /readyz reports not ready, loading retries in the background
            self.engine.load_error = f"{exc.__class__.__name__}: {exc}"
            logger.warning("decision engine not ready yet: %s", self.engine.load_error)
            self.engine.load_in_background(retry_s=max(self.settings.serving.reload_interval_s, 5.0))

    def __is_ready__(self) -> bool:
        return self.engine.ready

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        self.engine.close()

    def _require_ready(self) -> None:
        if not self.engine.ready:
            raise ServiceUnavailable(f"models or feature store not loaded yet: {self.engine.load_error or 'loading'}")

    @bentoml.api(route="/recommend", input_spec=RecommendRequest)
    async def recommend(self, **request: object) -> RecommendResponse:
        """Ranked next best actions for one customer on one channel ("no action" is a valid answer)."""
        self._require_ready()
        req = RecommendRequest.model_construct(**request)  # already validated by BentoML against the spec
        try:
            return await self.engine.recommend_async(req)
        except NotReadyError as exc:
            raise ServiceUnavailable(str(exc)) from exc
        except ValueError as exc:  # e.g. a simulated `ts` sent to a service that does not allow one
            raise BadInput(str(exc)) from exc

    @bentoml.api(route="/events", input_spec=EventRequest)
    async def events(self, **event: object) -> EventResponse:
        """A real-time event: pushed to the online store and recorded durably for training."""
        self._require_ready()
        ev = EventRequest.model_construct(**event)
        try:
            # the push reads and writes the online store (a few ms): keep it off the event loop
            return await asyncio.to_thread(self.engine.record_event, ev)
        except ValueError as exc:
            raise BadInput(str(exc)) from exc

    @bentoml.api(route="/feedback", input_spec=FeedbackRequest)
    async def feedback(self, **fb: object) -> FeedbackResponse:
        """The outcome of a decision (shown, accepted, dismissed, ignored), joined by decision id."""
        self._require_ready()
        req = FeedbackRequest.model_construct(**fb)
        try:
            return await asyncio.to_thread(self.engine.record_feedback, req)
        except UnknownDecisionError as exc:
            raise NotFound(str(exc)) from exc
        except ValueError as exc:
            raise BadInput(str(exc)) from exc

    @bentoml.api(route="/status")
    async def status(self) -> StatusResponse:
        """Readiness details: model versions in use, online store, circuit breaker."""
        return self.engine.status()

    @bentoml.api(route="/admin/reload")
    def reload(self, force: bool = False) -> ReloadResponse:
        """Admin: re-read the decision policy file (validated first: a bad file is refused with 422 and the policy
        in use is kept) and load the registry's current champions now (the poller does both every
        reload_interval_s)."""
        try:
            return self.engine.reload(force=force)
        except ConfigError as exc:
            raise BentoMLException(
                f"policy: the edited decision policy is invalid and was not loaded: {exc}",
                error_code=HTTPStatus.UNPROCESSABLE_ENTITY,
            ) from exc
        except NotReadyError as exc:
            raise BentoMLException(str(exc), error_code=HTTPStatus.CONFLICT) from exc


NextbestService.add_asgi_middleware(ApiKeyMiddleware)
