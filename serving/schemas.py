"""Request and response models of the decision service (pydantic; BentoML turns them into OpenAPI).

Validation happens here, at the edge: a bad field becomes an HTTP 4xx whose message names the field. One schema
serves every project: a customer key is a strict integer (0 to 2^63 - 1) or a short string, and the engine checks
it against the project's key type and the channel against the project's catalogue (both 4xx naming the field).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

LOCATION_TYPES: tuple[str, ...] = ("airport", "dealership", "home", "branch", "store", "other")
_NAME = r"^[a-z][a-z0-9_]{0,63}$"
INT64_MAX = 2**63 - 1
#: a customer (entity) key: an int64 that is not a bool or a string of digits, or a bank's string key
CustomerKey = (
    Annotated[int, Field(strict=True, ge=0, le=INT64_MAX)]
    | Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*$")]
)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecommendContext(_Request):
    """What the calling channel knows about this moment."""

    location_type: Literal["airport", "dealership", "home", "branch", "store", "other"] | None = None
    event: str | None = Field(None, pattern=_NAME, description="what triggered the call, e.g. airport_checkin")
    page: str | None = Field(None, pattern=_NAME, description="app/web page the customer is on")


class RecommendRequest(_Request):
    customer_id: CustomerKey = Field(description="the bank's key of the served entity (integer or string)")
    channel: str = Field(pattern=_NAME, description="calling channel, one of the project's catalogue channels")
    context: RecommendContext = RecommendContext()
    max_actions: int = Field(3, ge=0, le=10, description="at most this many actions (policy may cap lower)")
    ts: datetime | None = Field(
        None,
        description="simulation only: the decision's (simulated) time, UTC; refused unless serving.simulated_time",
    )


class RecommendedAction(BaseModel):
    rank: int
    action_id: str
    kind: str
    propensity: float
    value: float
    priority: float
    template_id: str
    reason_codes: list[str]


class RecommendResponse(BaseModel):
    decision_id: str
    customer_id: int | str
    channel: str
    actions: list[RecommendedAction] = Field(description="best first; empty means 'no action' (a valid answer)")
    churn_risk: float | None
    model_versions: dict[str, str]
    degraded: bool = Field(description="true when the answer came from the safe fallback (features unavailable)")
    cold_start: bool = Field(description="true for an unknown customer: profile-free defaults")
    notes: list[str] = Field(default_factory=list)


class EventRequest(_Request):
    """A real-time event: context signal, app/web event or card transaction."""

    customer_id: CustomerKey
    event_type: str = Field(pattern=_NAME, description="e.g. airport_checkin, card_lost, login, page_view")
    ts: datetime | None = Field(None, description="when it happened (UTC); default now")
    channel: str | None = Field(None, pattern=_NAME)
    location_type: Literal["airport", "dealership", "home", "branch", "store", "other"] | None = None
    page: str | None = Field(None, pattern=_NAME)
    amount: float | None = Field(None, ge=0)
    category: str | None = Field(None, pattern=_NAME)
    attributes: dict[str, Any] = Field(default_factory=dict, description="anything else, stored with the event")


class EventResponse(BaseModel):
    accepted: bool
    pushed: bool = Field(description="the online store was updated (false: recorded durably, push failed)")
    event_type: str
    customer_id: int | str
    detail: str = ""


class FeedbackRequest(_Request):
    decision_id: str = Field(min_length=8, max_length=40, pattern=r"^[0-9a-f]+$")
    outcome: Literal["shown", "accepted", "dismissed", "ignored"]
    action_id: str | None = Field(None, pattern=_NAME, description="the action it refers to (default: all shown)")
    ts: datetime | None = None


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
