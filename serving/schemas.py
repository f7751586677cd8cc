"""Request and response models of the decision API (pydantic; FastAPI turns them into the OpenAPI contract).

Validation happens here, at the edge, strictly: a customer key is an integer in [0, 2^63) that is not a bool nor a
string of digits, or a short string key (the engine checks it against the project's key type); numbers are finite;
timestamps fall between 1990 and tomorrow; free-form attributes are a small flat mapping of scalars; unknown fields
are refused. A bad field becomes an HTTP 4xx in one shape, `Problem` (RFC 9457 problem details), naming the field.
Channels are the project's catalogue channels: `request_models(channels)` gives the request models with the
channel as an enum, so Swagger offers exactly the values the project accepts.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model, field_validator

LOCATION_TYPES: tuple[str, ...] = ("airport", "dealership", "home", "branch", "store", "other")
LocationType = Literal["airport", "dealership", "home", "branch", "store", "other"]
OUTCOMES: tuple[str, ...] = ("shown", "accepted", "dismissed", "ignored")
_NAME = r"^[a-z][a-z0-9_]{0,63}$"
_CLIENT_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$"
INT64_MAX = 2**63 - 1
#: the range a request's timestamp must fall in (Berka's history starts in 1993; year 9999 or 0001 is a bug). A time
#: in the future is refused by the engine unless the service runs simulated time (closed-loop simulations, tests).
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
MAX_ATTRIBUTES = 32
MAX_TEXT = 256

#: a customer (entity) key: an int64 that is not a bool or a string of digits, or a bank's string key
CustomerKey = (
    Annotated[int, Field(strict=True, ge=0, le=INT64_MAX)]
    | Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=_CLIENT_ID)]
)
#: a client's idempotency key: the same key twice is the same request (a retry), answered once
ClientKey = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=_CLIENT_ID)]
Scalar = bool | int | float | Annotated[str, StringConstraints(max_length=MAX_TEXT)] | None


def sane_time(value: datetime | None) -> datetime | None:
    """UTC, between 1990 and 2100 (year 9999 or 0001 is not a time a bank's event happened)."""
    if value is None:
        return None
    window = f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC)"
    try:
        ts = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 is before year 1 in UTC: not a ValueError, so say it
        raise ValueError(f"{window}, got {value.isoformat()}") from None
    if not EARLIEST <= ts < LATEST:
        raise ValueError(f"{window}, got {ts.isoformat()}")
    return ts


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class RecommendContext(_Request):
    """What the calling channel knows about this moment."""

    location_type: LocationType | None = None
    event: str | None = Field(None, pattern=_NAME, description="what triggered the call, e.g. airport_checkin")
    page: str | None = Field(None, pattern=_NAME, description="app/web page the customer is on")


class RecommendRequest(_Request):
    """One decision: the next best actions for one customer on one channel, now."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {"customer_id": 3, "channel": "app", "context": {"event": "airport_checkin"}, "max_actions": 2}
            ]
        },
    )

    customer_id: CustomerKey = Field(description="the bank's key of the served entity (integer or string)")
    channel: str = Field(pattern=_NAME, description="calling channel, one of the project's catalogue channels")
    context: RecommendContext = RecommendContext()
    max_actions: int = Field(3, ge=0, le=10, description="at most this many actions (policy may cap lower)")
    actions: list[Annotated[str, StringConstraints(pattern=_NAME)]] | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="consider only these catalogue actions (e.g. an outbound campaign's); the others are rejected "
        "with the rule campaign.action_filter",
    )
    ts: datetime | None = Field(
        None,
        description="simulation only: the decision's (simulated) time, UTC; refused unless serving.simulated_time",
    )
    prices: dict[Annotated[str, StringConstraints(pattern=_NAME)], Annotated[float, Field(ge=0, le=100)]] | None = (
        Field(
            None,
            max_length=64,
            description="a rate (% a year) asked for a priced action, e.g. an advisor's offer: it must lie inside an "
            "approved band (else 400 naming prices.<action>) and is served only inside the customer's own band (else "
            "the list price, reason PRICE_REFUSED_OUTSIDE_BAND)",
        )
    )

    _ts = field_validator("ts")(sane_time)


class RecommendedAction(BaseModel):
    rank: int
    action_id: str
    kind: Literal["sales", "retention", "service"]
    propensity: float
    value: float
    priority: float
    template_id: str
    reason_codes: list[str]
    # Pricing (`nextbest.pricing`): the offered rate (% a year: an APR for credit, the rate paid for a deposit)
    # inside the customer's approved band; null for an unpriced action. `band` names the product's band the price
    # came from (e.g. `personal_loan/low`), `band_version` the catalogue's pricing version; reason codes say
    # PRICE_PERSONALISED or PRICE_LIST.
    price: float | None = Field(None, description="offered rate, % a year, inside the approved band; null: unpriced")
    band: str = Field("", description="the approved band the price is in, product/risk band ('' when unpriced)")
    band_version: str = Field("", description="version of the catalogue's approved bands ('' when unpriced)")


class RecommendResponse(BaseModel):
    decision_id: str
    customer_id: int | str
    channel: str
    actions: list[RecommendedAction] = Field(description="best first; empty means 'no action' (a valid answer)")
    churn_risk: float | None = Field(description="the project's churn model's risk; null without one or unknown")
    model_versions: dict[str, str]
    degraded: bool = Field(description="true when the answer came from the safe fallback (features unavailable)")
    cold_start: bool = Field(description="true for an unknown customer: profile-free defaults")
    notes: list[str] = Field(default_factory=list)


class EventRequest(_Request):
    """A real-time event: a context signal, an app/web event, a consent change or a card transaction."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [{"customer_id": 3, "event_type": "airport_checkin", "location_type": "airport"}]
        },
    )

    customer_id: CustomerKey
    event_type: str = Field(pattern=_NAME, description="e.g. airport_checkin, card_lost, login, consent_withdrawn")
    ts: datetime | None = Field(None, description="when it happened (UTC); default now")
    channel: str | None = Field(None, pattern=_NAME)
    location_type: LocationType | None = None
    page: str | None = Field(None, pattern=_NAME)
    amount: float | None = Field(None, ge=0, le=1e12)
    category: str | None = Field(None, pattern=_NAME)
    event_id: ClientKey | None = Field(None, description="idempotency key (or the Idempotency-Key header)")
    attributes: dict[Annotated[str, StringConstraints(pattern=_NAME)], Scalar] = Field(
        default_factory=dict, max_length=MAX_ATTRIBUTES, description="anything else (scalars), stored with the event"
    )

    _ts = field_validator("ts")(sane_time)

    @field_validator("attributes")
    @classmethod
    def _finite(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, item in value.items():
            if isinstance(item, float) and not math.isfinite(item):
                raise ValueError(f"attributes.{key}: numbers must be finite")
        return value


class EventResponse(BaseModel):
    accepted: bool
    pushed: bool = Field(description="the online store was updated (false: recorded durably, push failed)")
    event_type: str
    customer_id: int | str
    duplicate: bool = Field(False, description="true: a retry of an event already recorded (same idempotency key)")
    detail: str = ""


class FeedbackRequest(_Request):
    """The outcome of a decision, joined by its id."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={"examples": [{"decision_id": "0193f3a1c2d40a1b2c3d4e5f60718293", "outcome": "accepted"}]},
    )

    decision_id: str = Field(min_length=8, max_length=40, pattern=r"^[0-9a-f]+$")
    outcome: Literal["shown", "accepted", "dismissed", "ignored"]
    action_id: str | None = Field(None, pattern=_NAME, description="the action it refers to (default: all shown)")
    ts: datetime | None = None
    value: float | None = Field(None, ge=0, le=1e12, description="the realised value, e.g. the loan amount")
    feedback_id: ClientKey | None = Field(None, description="idempotency key (or the Idempotency-Key header)")

    _ts = field_validator("ts")(sane_time)


class FeedbackResponse(BaseModel):
    decision_id: str
    customer_id: int | str | None = Field(description="the decision's customer; null until an early feedback is joined")
    action_id: str | None
    outcome: str
    joined: bool = Field(
        True,
        description="false: the decision (made an instant ago, by another worker) is not written yet; the feedback "
        "is recorded and joins it when it lands",
    )
    duplicate: bool = Field(False, description="true: a retry of feedback already recorded (same idempotency key)")


class ReloadResponse(BaseModel):
    reloaded: bool
    model_versions: dict[str, str]
    policy_version: str | None = Field(None, description="the decision policy in use after the reload")
    detail: str = ""


class StatusResponse(BaseModel):
    ready: bool
    project: str = ""
    model_versions: dict[str, str]
    policy_version: str | None = None
    failed_versions: dict[str, str] = Field(
        default_factory=dict,
        description="model -> why its newest champion version was refused (kept serving the version above)",
    )
    online_store: str
    breaker_open: bool
    detail: str = ""


class FieldError(BaseModel):
    field: str = Field(description="the offending field, dotted (e.g. context.location_type)")
    message: str


class Problem(BaseModel):
    """Every error of the API (RFC 9457 problem details, `application/problem+json`)."""

    type: str = Field("about:blank", description="a URI naming the kind of problem")
    title: str = Field(description="short, the same for every problem of this kind (e.g. 'Invalid request')")
    status: int
    detail: str = Field(description="what was wrong with this request, and what to do")
    instance: str | None = Field(None, description="the request path")
    field: str | None = Field(None, description="the first offending field, when the problem is one field")
    errors: list[FieldError] | None = Field(None, description="every offending field")
    request_id: str | None = Field(None, description="X-Request-ID of the request (also in the response header)")


def request_models(channels: tuple[str, ...]) -> tuple[type[RecommendRequest], type[EventRequest]]:
    """The request models with `channel` an enum of the project's catalogue channels (for validation and Swagger)."""
    Channel = Literal[channels]  # type: ignore[valid-type]
    recommend = create_model(
        "RecommendRequest",
        __base__=RecommendRequest,
        channel=(Channel, Field(description="calling channel, one of the project's catalogue channels")),
    )
    event = create_model(
        "EventRequest",
        __base__=EventRequest,
        channel=(Channel | None, Field(None, description="the channel it happened on (default app)")),
    )
    return recommend, event
