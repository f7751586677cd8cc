"""The Feast objects of the customer genome, built for one offline folder (so tests can use a tmp home).

`repo.py` calls `build_definitions` with the configured state folder for the `feast` CLI; `nextbest.features`
calls it with `settings.features_dir / "offline"` and applies the same objects through the SDK. Names and types
come from `specs`; values come from `pipeline`; request-time math from `context`.

TTLs: snapshot views are refreshed daily (weekly at large scale), so 30 days means "this customer's row is
current", while a customer gone for a month reads as missing. Real-time state only changes on events, and a
signal older than a year has decayed to nothing, so its TTL is a year.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import FunctionType
from typing import TYPE_CHECKING, Any

from feature_repo.specs import (
    CHURN_SERVICE,
    CONTEXT_FIELDS,
    CONTEXT_VIEW,
    ENTITY_NAME,
    JOIN_KEY,
    NBA_SERVICE,
    PUSH_SOURCE,
    REALTIME_VIEW,
    REQUEST_FIELD_TYPES,
    REQUEST_SOURCE,
    SNAPSHOT_VIEWS,
    TIMESTAMP_FIELD,
    VIEW_FIELDS,
)

if TYPE_CHECKING:
    from feast import Entity, FeatureService, FeatureView, OnDemandFeatureView, PushSource

SNAPSHOT_TTL = timedelta(days=30)
REALTIME_TTL = timedelta(days=365)

_DESCRIPTIONS = {
    "customer_profile": "Profile, consent and holdings of the customer at each daily snapshot (00:00 UTC).",
    "customer_activity": "Balances, flows, transaction aggregates by category, digital engagement (7/30/90 days).",
    "contact_history": "Marketing contacts and their outcomes: contact pressure, fatigue, recent acceptances.",
    "realtime_state": "Last time (epoch s) of each context signal and intent page; updated by pushed events.",
}


@dataclass(frozen=True)
class Definitions:
    """Every Feast object of the repo, by role."""

    entity: Entity
    views: dict[str, FeatureView]
    push_source: PushSource
    context_view: OnDemandFeatureView
    services: dict[str, FeatureService]
    extra: list[Any] = field(default_factory=list)

    def objects(self) -> list[Any]:
        """All objects, in the order `FeatureStore.apply` wants them."""
        return [
            self.entity,
            self.push_source,
            *self.extra,
            *self.views.values(),
            self.context_view,
            *self.services.values(),
        ]


def _feast_type(kind: str) -> Any:
    from feast.types import Float64, Int64, String

    return {"int64": Int64, "float64": Float64, "string": String}[kind]


def _schema(fields: dict[str, str]) -> list[Any]:
    from feast import Field

    return [Field(name=name, dtype=_feast_type(kind)) for name, kind in fields.items()]


def request_context(inputs: dict[str, Any]) -> dict[str, Any]:
    """On-demand transformation; Feast stores this source and re-executes it, so it imports what it uses."""
    from feature_repo.context import context_features

    return context_features(inputs)


def _fresh(function: FunctionType) -> FunctionType:
    """A copy of a module-level function: Feast's decorator rebinds the function it gets to `__main__`, after
    which its source can no longer be found, so building the definitions twice in one process needs a new copy."""
    copy = FunctionType(function.__code__, function.__globals__, function.__name__, function.__defaults__)
    copy.__module__ = function.__module__
    copy.__qualname__ = function.__qualname__
    copy.__doc__ = function.__doc__
    return copy


def build_definitions(offline_dir: Path) -> Definitions:
    """Build the entity, sources, views, on-demand view and feature services over the tables in `offline_dir`."""
    from feast import Entity, FeatureService, FeatureView, FileSource, PushSource, RequestSource, ValueType
    from feast.on_demand_feature_view import on_demand_feature_view

    offline_dir = Path(offline_dir).resolve()
    customer = Entity(
        name=ENTITY_NAME,
        join_keys=[JOIN_KEY],
        value_type=ValueType.INT64,
        description="A retail bank customer (person or small business).",
    )
    views: dict[str, FeatureView] = {}
    for view in SNAPSHOT_VIEWS:
        source = FileSource(
            name=f"{view}_source",
            path=str(offline_dir / f"{view}.parquet"),
            timestamp_field=TIMESTAMP_FIELD,
        )
        views[view] = FeatureView(
            name=view,
            entities=[customer],
            ttl=SNAPSHOT_TTL,
            schema=_schema(VIEW_FIELDS[view]),
            source=source,
            online=True,
            description=_DESCRIPTIONS[view],
            tags={"cadence": "daily", "team": "nextbest"},
        )
    realtime_batch = FileSource(
        name=f"{REALTIME_VIEW}_source",
        path=str(offline_dir / f"{REALTIME_VIEW}.parquet"),
        timestamp_field=TIMESTAMP_FIELD,
    )
    push_source = PushSource(name=PUSH_SOURCE, batch_source=realtime_batch)
    views[REALTIME_VIEW] = FeatureView(
        name=REALTIME_VIEW,
        entities=[customer],
        ttl=REALTIME_TTL,
        schema=_schema(VIEW_FIELDS[REALTIME_VIEW]),
        source=push_source,
        online=True,
        description=_DESCRIPTIONS[REALTIME_VIEW],
        tags={"cadence": "event", "team": "nextbest"},
    )
    request = RequestSource(name=REQUEST_SOURCE, schema=_schema(REQUEST_FIELD_TYPES))
    context_view = on_demand_feature_view(
        name=CONTEXT_VIEW,
        sources=[views[REALTIME_VIEW], request],
        schema=_schema(CONTEXT_FIELDS),
        mode="python",
        description="Recency (hours) and decayed strength of each signal at request time, channel and location.",
    )(_fresh(request_context))
    snapshot = [views[v] for v in SNAPSHOT_VIEWS]
    services = {
        CHURN_SERVICE: FeatureService(
            name=CHURN_SERVICE,
            features=snapshot,
            description="Churn model v1: customer features at the snapshot, no request context.",
        ),
        NBA_SERVICE: FeatureService(
            name=NBA_SERVICE,
            features=[*snapshot, context_view],
            description="Next-best-action model v1: customer features plus request-time context.",
        ),
    }
    return Definitions(
        entity=customer, views=views, push_source=push_source, context_view=context_view, services=services
    )
