"""The decision explorer: one logged decision as a person reads it (compliance, complaints handling, a curious DS).

A page served by the decision service (`GET /explorer`; its data calls need the admin role) that takes a decision id
or a customer and shows, from the decision log of the project being served:
- the request and its context, the decision's time, request id, latency, degraded / cold-start flags;
- the model and policy versions (the policy by digest) and the feature service the features came from;
- every catalogue action: chosen (rank, propensity, value, priority, reason codes, template), or the rule that
  removed it (eligibility, consent, suitability, caps, a model rule, arbitration) with its detail and, when it was
  scored, its propensity;
- the features the models saw, the entity-level model scores, the features of other entities a rule read;
- the delivered contacts with their outcomes, and every feedback;
- a replay button: the same engine code decides it again from the log (`serving.replay`) and says whether it matches.

`explain_decision` builds that view from a logged decision (pure; the JSON the page renders), `recent_decisions`
lists a customer's latest decisions, `EXPLORER_PAGE` is the page (`serving/static/explorer.html`, self-contained, no
external assets)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from fastapi import Request

from nextbest.catalogue import Catalogue
from nextbest.decision_log import DecisionLog, decisions

if TYPE_CHECKING:
    from fastapi import FastAPI

    from serving.api import Api


def _plain(value: Any) -> Any:
    """A JSON-safe value (NaN as null, times as ISO strings)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _candidates(logged: Mapping[str, Any], catalogue: Catalogue) -> list[dict[str, Any]]:
    """Every catalogue action: chosen ones by rank, then the scored ones that lost, then the ones screened out."""
    scores: Mapping[str, float] = logged.get("scores") or {}
    chosen = {c["action_id"]: c for c in logged.get("chosen") or []}
    rejected: dict[str, Mapping[str, Any]] = {}
    for r in logged.get("rejected") or []:
        rejected.setdefault(r["action_id"], r)
    rows = []
    for action in catalogue.actions:
        row: dict[str, Any] = {
            "action_id": action.id,
            "kind": action.kind,
            "product": action.product,
            "value": action.value,
            "propensity": _plain(scores.get(action.id)),
            "scored": action.id in scores,
        }
        if action.id in chosen:
            c = chosen[action.id]
            row.update(
                status="chosen",
                rank=c.get("rank"),
                propensity=_plain(c.get("propensity")),
                value=c.get("value", action.value),
                priority=_plain(c.get("priority")),
                reason_codes=list(c.get("reason_codes") or []),
                template_id=c.get("template_id"),
            )
        elif action.id in rejected:
            r = rejected[action.id]
            row.update(status="rejected", rule=r.get("rule"), detail=r.get("detail") or "")
        else:
            row.update(status="not considered", rule=None, detail="")
        rows.append(row)
    order = {"chosen": 0, "rejected": 1, "not considered": 2}
    rows.sort(key=lambda r: (order[r["status"]], r.get("rank") or 0, not r["scored"], r["action_id"]))
    return rows


def explain_decision(logged: Mapping[str, Any], catalogue: Catalogue) -> dict[str, Any]:
    """The decision as the explorer shows it (JSON-safe), from `DecisionLog.get_decision`'s record."""
    features = logged.get("features") or {}
    related = logged.get("related_features") or {}
    return {
        "decision_id": logged["decision_id"],
        "customer_id": logged["customer_id"],
        "channel": logged["channel"],
        "ts": _plain(logged.get("ts")),
        "decided_at": _plain(logged.get("decided_at")),
        "request_id": logged.get("request_id"),
        "request": logged.get("request") or {},
        "context": logged.get("context") or {},
        "degraded": bool(logged.get("degraded")),
        "cold_start": bool(logged.get("cold_start")),
        "latency_ms": _plain(logged.get("latency_ms")),
        "versions": {
            "models": logged.get("model_versions") or {},
            "policy": logged.get("policy_version"),
            "feature_service": logged.get("feature_service"),
        },
        "churn_risk": _plain(logged.get("churn_risk")),
        "model_scores": {k: _plain(v) for k, v in (logged.get("model_scores") or {}).items()},
        "candidates": _candidates(logged, catalogue),
        "features": [{"name": k, "value": _plain(features[k])} for k in sorted(features)],
        "related_features": {
            model: {
                "key": r.get("key"),
                "features": [{"name": k, "value": _plain(v)} for k, v in sorted(r["features"].items())],
            }
            for model, r in related.items()
        },
        "contacts": [
            _row(c, ("rank", "action_id", "kind", "channel", "ts", "outcome", "outcome_ts"))
            for c in logged.get("contacts") or []
        ],
        "feedback": [
            _row(f, ("action_id", "outcome", "ts", "value", "feedback_id")) for f in logged.get("feedback") or []
        ],
    }


def _row(record: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    return {n: _plain(record.get(n)) for n in names}


def recent_decisions(log: DecisionLog, customer_id: int | str, limit: int = 20) -> list[dict[str, Any]]:
    """A customer's latest decisions, newest first: id, time, channel, the chosen actions."""
    c = decisions.c
    stmt = (
        sa.select(c.decision_id, c.ts, c.channel, c.chosen, c.degraded)
        .where(c.customer_id == str(customer_id))
        .order_by(c.ts.desc(), c.decision_id.desc())
        .limit(max(1, min(limit, 500)))
    )
    with log.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return [
        {
            "decision_id": r.decision_id,
            "ts": _plain(r.ts),
            "channel": r.channel,
            "chosen": [a.get("action_id") for a in r.chosen or []],
            "degraded": bool(r.degraded),
        }
        for r in rows
    ]


def add_explorer_routes(api: Api, app: FastAPI, responses: Mapping[int | str, Any]) -> None:
    """The explorer page (`GET /explorer`, no data in it), its admin-only data calls under `/v1`, and the Swagger
    page at `/` (the service's pages)."""
    from fastapi import Depends
    from fastapi.responses import HTMLResponse

    from nextbest.errors import NotReadyError

    admin = Depends(api.role("admin"))

    def logged(decision_id: str) -> dict[str, Any]:
        engine = api.engine()
        engine.decision_log.flush()  # a decision made an instant ago may still be in the write-behind queue
        record = engine.decision_log.get_decision(decision_id)
        if record is None:
            raise LookupError(decision_id)
        return explain_decision(record, engine.catalogue)

    async def decision(decision_id: str, request: Request) -> Any:
        try:
            return await api.io(logged, decision_id)
        except LookupError:
            return _not_found(request, f"decision_id: no decision {decision_id!r} in the log")

    async def customer_decisions(customer_id: str, request: Request, limit: int = 20) -> Any:
        from serving.api import _typed_key

        engine = api.engine()
        key = engine.project.parse_key(_typed_key(customer_id, engine.project.served.key_type))
        return await api.io(recent_decisions, engine.decision_log, key, limit)

    async def replay(decision_id: str, request: Request) -> Any:
        from serving.replay import replay_decision

        engine = api.engine()
        try:
            out = await api.io(replay_decision, engine.settings, decision_id, engine.project)
        except NotReadyError as exc:
            return _not_found(request, f"decision_id: {exc}")
        return {"decision_id": out.decision_id, "matches": out.matches, "differences": out.differences}

    async def page() -> HTMLResponse:
        return HTMLResponse(EXPLORER_PAGE)

    async def swagger() -> HTMLResponse:
        # Our own Swagger page over BentoML's bundled assets: the API's title, no third-party tag manager, keys
        # kept across reloads ("Authorize" once).
        from fastapi.openapi.docs import get_swagger_ui_html

        return get_swagger_ui_html(
            openapi_url="/v1/openapi.json",
            title="Nextbest decision API",
            swagger_js_url="/static_content/swagger-ui-bundle.js",
            swagger_css_url="/static_content/swagger-ui.css",
            swagger_favicon_url="/static_content/favicon-light-32x32.png",
            swagger_ui_parameters={"persistAuthorization": True, "displayRequestDuration": True},
        )

    routes = (
        ("/v1/decisions/{decision_id}", decision, "GET", "One logged decision, explained (the decision explorer)"),
        ("/v1/customers/{customer_id}/decisions", customer_decisions, "GET", "A customer's latest decisions"),
        ("/v1/decisions/{decision_id}/replay", replay, "POST", "Decide a logged decision again; does it match?"),
    )
    for path, endpoint, method, summary in routes:
        app.add_api_route(
            path,
            endpoint,
            methods=[method],
            dependencies=[admin],
            responses=dict(responses),
            summary=summary,
            tags=["explorer"],
        )
    app.add_api_route("/explorer", page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/", swagger, methods=["GET"], include_in_schema=False)


def _not_found(request: Request, detail: str) -> Any:
    from serving.api import problem
    from serving.schemas import FieldError

    return problem(request, 404, detail, errors=[FieldError(field="decision_id", message=detail)])


#: the page: self-contained HTML and script (no external assets), shipped beside this module
EXPLORER_PAGE = (Path(__file__).parent / "static" / "explorer.html").read_text(encoding="utf-8")
