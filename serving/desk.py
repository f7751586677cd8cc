"""The decisioning desk over HTTP: an outbound campaign spec in dry run (`POST /v1/admin/campaigns/dry-run`, admin).

A marketer's tool (or the bank's campaign platform) posts a campaign spec (the YAML of `nextbest campaign run`, as
JSON) and gets what the campaign would do now: the audience, holdout and control sizes, per channel the proposals,
volume, cost and whether the limit binds, and the first contacts of the proposed list. It runs
`nextbest.jobs.campaign.run_campaign(..., dry_run=True)` on the service's own engine (the same policy and models
as its decisions), so nothing is delivered or logged; the proposed contact list is kept under the project's
`campaigns/` like a CLI dry run. A bad spec is a 400 problem naming the field (`channels.0.volume`). The run takes
the time of the audience's decisions (about a millisecond a customer and candidate here): meant for segments and
previews, a whole base of millions belongs to the CLI job.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fastapi import Body, Depends, FastAPI, Query
from fastapi.responses import JSONResponse

if TYPE_CHECKING:
    from serving.api import Api
    from serving.engine import DecisionEngine

#: contacts of the proposed list returned in the answer (the whole list is in the files it names)
PREVIEW = 20


def campaign_dry_run(engine: DecisionEngine, spec: Mapping[str, Any], as_of: str | None = None) -> dict[str, Any]:
    """A campaign spec decided in dry run on `engine`: the summary and the first contacts (ValueError naming the
    field for a bad spec or date)."""
    import pandas as pd

    from nextbest.campaigns import SpecError, parse_campaign
    from nextbest.errors import ConfigError
    from nextbest.jobs.campaign import run_campaign
    from nextbest.segments import parse_as_of

    project = engine.project
    try:
        parsed = parse_campaign(dict(spec), "spec")
        parsed.check_against(project)
    except SpecError as exc:
        raise ValueError(f"{exc.field}: {exc.detail}") from None
    try:
        when = parse_as_of(as_of)
    except ConfigError as exc:
        raise ValueError(f"as_of: {exc}") from None
    result = run_campaign(parsed, project, engine.settings, as_of=when, dry_run=True, engine=engine)
    assert result.contacts is not None
    head = pd.read_parquet(result.contacts).head(PREVIEW)
    preview = json.loads(head.to_json(orient="records", date_format="iso"))
    return {
        "summary": result.summary,
        "seconds": result.seconds,
        "contacts": str(result.contacts),
        "contacts_csv": str(result.contacts_csv),
        "preview": preview,
    }


def add_desk_routes(api: Api, app: FastAPI, responses: Mapping[int | str, Any]) -> None:
    """The desk's admin routes."""
    admin = Depends(api.role("admin"))

    async def dry_run(
        spec: dict[str, Any] = Body(  # noqa: B008
            ...,
            examples=[{"id": "autumn", "segment": None, "channels": [{"channel": "email", "volume": 1000}]}],
            description="a campaign spec (docs/decisioning.md, 'Outbound campaigns'), as JSON",
        ),
        as_of: str | None = Query(None, max_length=40, description="features as of (YYYY-MM-DD or ISO datetime)"),
    ) -> JSONResponse:
        return JSONResponse(await api.io(campaign_dry_run, api.engine(), spec, as_of))

    app.add_api_route(
        "/v1/admin/campaigns/dry-run",
        dry_run,
        methods=["POST"],
        dependencies=[admin],
        responses={**responses, 200: {"description": "the campaign's summary and the first contacts it proposes"}},
        summary="A campaign spec in dry run: whom it would contact, with what, at what cost (nothing sent)",
        tags=["admin"],
    )
