"""The decision API a bank's channel team signs: versioned paths, one error shape, a declared key scheme, examples.

A FastAPI application, mounted inside the BentoML service (`serving.service`), so BentoML still runs the workers,
the probes (`/livez`, `/readyz`) and `bentoml build`, while the contract is ours:
- paths under `/v1/` (`recommend`, `events`, `feedback`, `status`, `admin/reload`, `customers/{id}`); the
  unversioned paths of earlier releases answer too (left out of the schema);
- request models with examples, the project's channels as an enum, strict types (`serving.schemas`);
- every error is RFC 9457 problem details (`Problem`, `application/problem+json`) naming the field, documented for
  every status the service can return (400, 401, 403, 404, 408, 413, 415, 422, 429, 500, 503);
- the `X-API-Key` scheme declared, so Swagger's "Authorize" works; `X-Request-ID` accepted, echoed and logged
  with the decision;
- Swagger UI at `/` and the OpenAPI document at `/docs.json` and `/v1/openapi.json` (BentoML's own index page reads
  `/docs.json`, which this app answers).
The engine is the service instance's (`bentoml.get_current_service().engine`); handlers compute on the event loop
(the decision is CPU-bound), database and store writes of events and feedback run in a bounded thread pool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import json
import logging
from collections import Counter
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException as StarletteHTTPException

from nextbest.decision_log import UnknownDecisionError
from nextbest.errors import ConfigError, NotReadyError, OverloadedError
from serving.auth import AuthError, KeyRing, Role
from serving.desk import add_desk_routes
from serving.explorer import add_explorer_routes
from serving.schemas import (
    EventResponse,
    FeedbackRequest,
    FeedbackResponse,
    FieldError,
    Problem,
    RecommendResponse,
    ReloadResponse,
    StatusResponse,
    request_models,
)

if TYPE_CHECKING:
    from nextbest.project import Project
    from serving.engine import DecisionEngine

logger = logging.getLogger(__name__)

PROBLEM = "application/problem+json"
API_PREFIX = "/v1"
_PROBLEM_DOC: dict[str, Any] = {
    "model": Problem,
    "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
}
_TITLES = {
    400: "Invalid request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Unprocessable",
    429: "Too many requests",
    500: "Internal error",
    503: "Not ready",
}


def package_version() -> str:
    try:
        return version("nextbest")
    except PackageNotFoundError:  # pragma: no cover - an uninstalled checkout
        return "0+unknown"


def problem(request: Request, status: int, detail: str, *, errors: list[FieldError] | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:  # fmt: skip
    """The one error response of the API."""
    body = Problem(
        title=_TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        instance=request.url.path,
        field=errors[0].field if errors else None,
        errors=errors,
        request_id=request.scope.get("state", {}).get("request_id"),
    )
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, media_type=PROBLEM, headers=headers)


def _typed_key(raw: str, key_type: str) -> int | str:
    """A key from a URL path, as the project types it (ValueError naming the field for a bad integer)."""
    if key_type != "int":
        return raw
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or int(raw) >= 2**63:  # not '²' or '١٢'
        raise ValueError(f"customer_id: an integer key in [0, 2^63) is expected, got {raw!r}")
    return int(raw)


#: the names pydantic gives a union's plain branches in an error's location (`attributes.x.int`: its int branch)
_UNION_BRANCHES = frozenset({"bool", "int", "float", "str", "bytes", "none", "list", "dict", "datetime", "date"})


def _field_path(loc: Any) -> str:
    """A validation error's location as a dotted field: `body`, union-branch tags (`constrained-int`) left out; a
    header by its name (`Idempotency-Key`)."""
    if len(loc) == 2 and loc[0] == "header":
        return str(loc[1])
    parts = [
        str(p)
        for p in loc
        if p not in ("body", "query", "path", "header") and (isinstance(p, int) or str(p).isidentifier())
    ]
    return ".".join(parts) or "body"


def _without_branches(locs: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """A value that fits no branch of a union fails once per branch (`attributes.x.bool`, `attributes.x.int`, ...):
    those errors name the field itself (`attributes.x`), not a branch of its type."""
    shared = Counter(loc[:-1] for loc in locs if loc)
    return [loc[:-1] if loc and shared[loc[:-1]] > 1 and loc[-1] in _UNION_BRANCHES else loc for loc in locs]


def _field_of(message: str) -> str | None:
    """`customer_id: ...` -> `customer_id` (the engine's and the log's ValueErrors name their field that way)."""
    head, sep, _rest = message.partition(":")
    return head.strip() if sep and head.strip().replace(".", "").replace("_", "").isalnum() else None


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        merged: dict[str, list[str]] = {}
        found = exc.errors()
        for e, loc in zip(found, _without_branches([tuple(e.get("loc", ())) for e in found]), strict=True):
            merged.setdefault(_field_path(loc), []).append(str(e.get("msg", "invalid")))
        errors = [FieldError(field=f, message=" or ".join(dict.fromkeys(m))) for f, m in merged.items()]
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors) or "the request is invalid"
        return problem(request, 400, detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(request, exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(AuthError)
    async def auth_error(request: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": 'ApiKey header="X-API-Key"'} if exc.status == 401 else None
        return problem(request, exc.status, str(exc), headers=headers)

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, exc: ValueError) -> JSONResponse:
        field = _field_of(str(exc))
        errors = [FieldError(field=field, message=str(exc))] if field else None
        return problem(request, 400, str(exc), errors=errors)

    @app.exception_handler(UnknownDecisionError)
    async def unknown(request: Request, exc: UnknownDecisionError) -> JSONResponse:
        return problem(request, 404, str(exc), errors=[FieldError(field="decision_id", message=str(exc))])

    @app.exception_handler(NotReadyError)
    async def not_ready(request: Request, exc: NotReadyError) -> JSONResponse:
        return problem(request, 503, str(exc), headers={"Retry-After": "5"})

    @app.exception_handler(OverloadedError)
    async def overloaded(request: Request, exc: OverloadedError) -> JSONResponse:
        return problem(request, 429, str(exc), headers={"Retry-After": "1"})

    @app.exception_handler(ConfigError)
    async def refused_config(request: Request, exc: ConfigError) -> JSONResponse:
        return problem(request, 422, str(exc), errors=[FieldError(field="policy", message=str(exc))])

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s", request.url.path)
        return problem(request, 500, "an unexpected error; the service log has the details (with this request id)")


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    common = (400, 401, 403, 408, 413, 415, 429, 500, 503)
    return {s: {**_PROBLEM_DOC, "description": _TITLES[s]} for s in sorted({*common, *statuses})}


class Api:
    """Builds the FastAPI app of one project (its channels as enums) around a way to get the engine."""

    def __init__(self, project: Project, keys: KeyRing, engine: Callable[[], DecisionEngine], io_threads: int = 8):
        self.project = project
        self.keys = keys
        self.engine = engine
        self._io = cf.ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="api-io")
        _serving, catalogue, _policy = project.decisions()
        self.recommend_model, self.event_model = request_models(tuple(catalogue.channels))

    def role(self, needed: Role) -> Callable[..., None]:
        scheme = APIKeyHeader(name="X-API-Key", auto_error=False, description="a channel or an admin key")

        def check(request: Request, key: str | None = Depends(scheme)) -> None:
            client = request.client.host if request.client else None
            self.keys.check(key, needed, client)

        return check

    async def io(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A blocking call (database, store) in the API's own bounded pool, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._io, lambda: fn(*args))

    def build(self) -> FastAPI:
        app = FastAPI(
            title="Nextbest decision API",
            version=package_version(),
            summary=f"Next best action for project {self.project.name!r}",
            description=_DESCRIPTION,
            openapi_url=f"{API_PREFIX}/openapi.json",
            docs_url=None,
            redoc_url=None,
            contact={"name": "Nextbest", "url": "https://github.com/nextbest"},
            license_info={"name": "Apache-2.0"},
        )
        _install_error_handlers(app)
        self._decision_routes(app)
        self._admin_routes(app)
        add_explorer_routes(self, app, _responses(404))
        add_desk_routes(self, app, _responses())

        generate = app.openapi

        def openapi() -> dict[str, Any]:
            if app.openapi_schema is None:
                app.openapi_schema = _tidy_openapi(generate())
            return app.openapi_schema

        app.openapi = openapi  # type: ignore[method-assign]

        @app.get("/docs.json", include_in_schema=False)
        async def openapi_document() -> JSONResponse:
            return JSONResponse(app.openapi())

        return app

    def _decision_routes(self, app: FastAPI) -> None:
        channel = Depends(self.role("channel"))
        Recommend, Event = self.recommend_model, self.event_model

        async def recommend(body: Any, request: Request) -> Response:
            request_id = request.scope.get("state", {}).get("request_id")
            resp = await self.engine().recommend_async(body, request_id=request_id)
            return Response(resp.model_dump_json(), media_type="application/json")

        async def events(
            body: Any, idempotency_key: str | None = Header(None, alias="Idempotency-Key", max_length=64)
        ) -> EventResponse:
            return await self.io(self.engine().record_event, body, idempotency_key)

        # The project's request models (channel enums) are built at run time: give FastAPI the classes themselves.
        recommend.__annotations__["body"] = Recommend
        events.__annotations__["body"] = Event

        async def feedback(
            body: FeedbackRequest, idempotency_key: str | None = Header(None, alias="Idempotency-Key", max_length=64)
        ) -> FeedbackResponse:
            return await self.io(self.engine().record_feedback, body, idempotency_key)

        async def status() -> StatusResponse:
            return self.engine().status()

        routes: list[tuple[str, Callable[..., Any], list[str], Any, tuple[int, ...], str, str]] = [
            ("/recommend", recommend, ["POST"], RecommendResponse, (), "Next best actions of a customer", "decisions"),
            ("/events", events, ["POST"], EventResponse, (), "A real-time event (durable, pushed)", "decisions"),
            ("/feedback", feedback, ["POST"], FeedbackResponse, (404,), "The outcome of a decision", "decisions"),
            ("/status", status, ["GET"], StatusResponse, (), "Models, policy and store in use", "service"),
        ]  # fmt: skip
        for path, endpoint, methods, model, extra, summary, tag in routes:
            _add(app, path, endpoint, methods, model, channel, extra, summary, tag)

    def _admin_routes(self, app: FastAPI) -> None:
        admin = Depends(self.role("admin"))

        async def reload(force: bool = False) -> ReloadResponse:
            return await self.io(self.engine().reload, force)

        summary = "Re-read the policy (validated) and load the registry's champions"
        _add(app, "/admin/reload", reload, ["POST"], ReloadResponse, admin, (409, 422), summary, "admin")

        async def erase(customer_id: str, request: Request) -> JSONResponse:
            key = self.project.parse_key(_typed_key(customer_id, self.project.served.key_type))
            report = await self.io(self.engine().erase, key)
            return JSONResponse(report, status_code=200 if report.get("complete") else 500)

        app.add_api_route(
            f"{API_PREFIX}/customers/{{customer_id}}",
            erase,
            methods=["DELETE"],
            dependencies=[admin],
            responses={**_responses(), 200: {"description": "the erasure report (what was removed where)"}},
            summary="Forget a customer everywhere (the right to erasure)",
            tags=["admin"],
        )


def _tidy_openapi(spec: dict[str, Any]) -> dict[str, Any]:
    """The published contract says only what the service does: FastAPI's default 422 (validation errors are 400
    problems here) and the `application/json` twin of every problem body removed, the int64 key bound exact."""
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            default = responses.get("422", {}).get("content", {})
            if PROBLEM not in default:
                responses.pop("422", None)
            for response in responses.values():
                content = response.get("content", {})
                if PROBLEM in content:
                    content.pop("application/json", None)
    schemas = spec.get("components", {}).get("schemas", {})
    text = json.dumps(spec["paths"])
    for name in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{name}" not in text:
            schemas.pop(name, None)

    def exact(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("maximum"), float) and node["maximum"] >= 2.0**63 - 1024:
                node["maximum"] = 2**63 - 1  # a float here reads as 2^63, a key the service refuses
            for value in node.values():
                exact(value)
        elif isinstance(node, list):
            for value in node:
                exact(value)

    exact(spec)
    return spec


def _add(
    app: FastAPI,
    path: str,
    endpoint: Callable[..., Any],
    methods: list[str],
    model: Any,
    role: Any,
    extra: tuple[int, ...],
    summary: str,
    tag: str,
) -> None:
    """One route at its versioned path (in the schema) and at its unversioned alias of earlier releases (not)."""
    for prefix, listed in ((API_PREFIX, True), ("", False)):
        app.add_api_route(
            f"{prefix}{path}",
            endpoint,
            methods=methods if listed or methods != ["GET"] else ["GET", "POST"],
            response_model=model,
            dependencies=[role],
            responses=_responses(*extra),
            include_in_schema=listed,
            summary=summary,
            tags=[tag],
        )


_DESCRIPTION = """\
Every interaction of a channel (an app open, a card swipe, an airport check-in, a call) asks for the next best
actions of one customer: an offer, a service, a retention gesture, or nothing, arbitrated by propensity, value and
churn risk inside consent, suitability and contact rules. Events and outcomes come back on the same API.

**Auth**: `X-API-Key` with a `channel` key (decisions, events, feedback, status) or an `admin` key (also reload).
**Errors**: every error is `application/problem+json` (RFC 9457) with `field` naming the offending field.
**Retries**: `Idempotency-Key` (or `event_id` / `feedback_id`) makes a retried event or feedback a no-op.
**Overload**: past its in-flight limit a worker answers 429 with `Retry-After` at once.
**Tracing**: send `X-Request-ID`; it is echoed and logged with the decision.
"""
