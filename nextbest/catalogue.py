"""The offer catalogue (actions, values, channels, eligibility, templates) loaded and validated from YAML.

The catalogue is data: `nextbest/data/catalogue.yaml` ships the default; `NEXTBEST_CATALOGUE` or an explicit
path points at a bank's own. The simulator, training (action attributes are model inputs) and the decision
policy all read the same object, so an action added here is scored, offered and simulated without code changes.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, model_validator

from nextbest.base import Frozen
from nextbest.pricing import ProductPricing, check_pricing

DEFAULT_CATALOGUE = Path(__file__).parent / "data" / "catalogue.yaml"

PRODUCTS: tuple[str, ...] = (
    "current_account",
    "savings",
    "term_deposit",
    "credit_card",
    "travel_card",
    "personal_loan",
    "car_loan",
    "mortgage",
    "investments",
    "home_insurance",
    "travel_insurance",
    "bnpl",
    "business_account",
    "business_loan",
    "merchant_acquiring",
)
SEGMENTS: tuple[str, ...] = ("mass", "affluent", "small_business")
RISK_BANDS: tuple[str, ...] = ("low", "medium", "high")
ActionKind = Literal["sales", "retention", "service"]
#: every action kind, in the deterministic tie-break order of arbitration (service first)
ACTION_KINDS: tuple[str, ...] = ("service", "retention", "sales")
#: the kinds that are marketing: consent, contact caps and the universal holdout apply to them
MARKETING_KINDS: frozenset[str] = frozenset({"sales", "retention"})


class FeatureCondition(Frozen):
    """An eligibility condition on one online feature of the served entity: min <= value <= max (missing: not met)."""

    feature: str
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _a_bound(self) -> FeatureCondition:
        if self.min is None and self.max is None:
            raise ValueError(f"condition on {self.feature!r}: give min, max or both")
        return self


class Eligibility(Frozen):
    """Who may be offered an action at all: profile facts (age, segment, holdings, risk band) and feature conditions.

    Product, segment and risk-band names are checked against the catalogue's own lists (`Catalogue`).
    """

    min_age: int | None = None
    max_age: int | None = None
    segments: tuple[str, ...] | None = None
    requires: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    max_risk_band: str | None = None
    conditions: tuple[FeatureCondition, ...] = ()

    @property
    def needs_profile(self) -> bool:
        """Whether any condition needs the customer's profile (a cold-start customer has none)."""
        return bool(
            self.requires or self.segments or self.min_age is not None or self.max_age is not None or self.conditions
        )


class Action(Frozen):
    """One thing the bank can do for a customer: an offer, a retention gesture or a service action."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: ActionKind
    product: str | None = None
    value: float = Field(gt=0)
    credit: bool = False
    # The project's model whose probability is this action's propensity (None: the project's action model).
    model: str | None = None
    channels: tuple[str, ...] = ()  # default: the channels that have a template
    eligibility: Eligibility = Eligibility()
    templates: dict[str, str] = Field(min_length=1)
    # What ties a customer's moment to this action (`feature_repo.actions.RELEVANCE_FEATURES`): online features of
    # the action model's service, summed per family. `signals`: the decayed strengths / intents of the real-time
    # signals that announce the need (a property search for a mortgage); `interest`: the 30-day page views of it.
    signals: tuple[str, ...] = ()
    interest: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _channels_default(cls, data: object) -> object:
        if isinstance(data, dict) and not data.get("channels") and isinstance(data.get("templates"), dict):
            return {**data, "channels": tuple(data["templates"])}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Action:
        missing = [c for c in self.channels if c not in self.templates]
        if missing:
            raise ValueError(f"action {self.id}: no approved template for channel(s) {missing}")
        return self


class Catalogue(Frozen):
    """A project's actions and the names they may use (channels, products, segments, risk bands)."""

    schema_version: int = 1
    channels: tuple[str, ...]
    # Defaults: the simulated bank's lists (its catalogue, simulator and genome share them).
    products: tuple[str, ...] = PRODUCTS
    segments: tuple[str, ...] = SEGMENTS
    risk_bands: tuple[str, ...] = RISK_BANDS  # lowest risk first
    # What delivering one action costs on each channel, EUR (agent time, message fees); a channel not listed costs 0.
    channel_costs: dict[str, float] = Field(default_factory=dict)
    actions: tuple[Action, ...]
    # Approved price bands per priced action (`nextbest.pricing`): per risk band a range, step and list price,
    # with an owner and a version. An action not listed is unpriced.
    pricing: dict[str, ProductPricing] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Catalogue:
        unknown = [c for c in self.channel_costs if c not in self.channels]
        if unknown:
            raise ValueError(f"channel_costs for unknown channel(s) {unknown}; channels: {list(self.channels)}")
        negative = [c for c, v in self.channel_costs.items() if v < 0]
        if negative:
            raise ValueError(f"channel_costs must be >= 0; negative for {negative}")
        ids = [a.id for a in self.actions]
        if len(ids) != len(set(ids)):
            raise ValueError("duplicate action ids in catalogue")
        for a in self.actions:
            bad = [c for c in a.channels if c not in self.channels]
            if bad:
                raise ValueError(f"action {a.id}: channel(s) {bad} not in catalogue channels {list(self.channels)}")
            if a.product is not None and a.product not in self.products:
                raise ValueError(f"action {a.id}: unknown product {a.product!r}; known: {', '.join(self.products)}")
            e = a.eligibility
            for prod in (*e.requires, *e.excludes):
                if prod not in self.products:
                    raise ValueError(f"action {a.id}: unknown product {prod!r} in eligibility; known: {self.products}")
            for seg in e.segments or ():
                if seg not in self.segments:
                    raise ValueError(f"action {a.id}: unknown segment {seg!r}; known: {', '.join(self.segments)}")
            if e.max_risk_band is not None and e.max_risk_band not in self.risk_bands:
                raise ValueError(f"action {a.id}: unknown risk band {e.max_risk_band!r}; known: {self.risk_bands}")
        check_pricing(self.pricing, self)
        return self

    @property
    def action_ids(self) -> tuple[str, ...]:
        return tuple(a.id for a in self.actions)

    def channel_cost(self, channel: str) -> float:
        """EUR cost of delivering one action on `channel` (0 when the catalogue declares none)."""
        if channel not in self.channels:
            raise KeyError(f"unknown channel {channel!r}; channels: {', '.join(self.channels)}")
        return float(self.channel_costs.get(channel, 0.0))

    def action(self, action_id: str) -> Action:
        for a in self.actions:
            if a.id == action_id:
                return a
        raise KeyError(f"unknown action {action_id!r}")

    def index(self, action_id: str) -> int:
        return self.action_ids.index(action_id)

    def models(self, default: str | None) -> dict[str, str]:
        """action id -> the model that scores it (`default` for actions that name none)."""
        out: dict[str, str] = {}
        for a in self.actions:
            name = a.model or default
            if name is None:
                raise ValueError(f"action {a.id} names no model and the project has no action model")
            out[a.id] = name
        return out


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """Load and validate a catalogue file (default: NEXTBEST_CATALOGUE or the simulated bank's)."""
    resolved = Path(path or os.environ.get("NEXTBEST_CATALOGUE") or DEFAULT_CATALOGUE)
    return _load(resolved.resolve())


@lru_cache(maxsize=8)
def _load(path: Path) -> Catalogue:
    if not path.is_file():
        raise FileNotFoundError(f"offer catalogue not found: {path}")
    with path.open() as f:
        raw = yaml.safe_load(f)
    return Catalogue.model_validate(raw)
