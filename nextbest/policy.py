"""The decision policy: scores in, ranked actions out, as plain Python with no HTTP, Feast or model code in it.

On the floor: the service, the evaluation ladder, campaigns and the twin all decide through this one module, for
every project (the simulated bank and any onboarded bank). Stages, in the order DESIGN.md fixes (each removed action
keeps the rule that removed it):

0. experiments   -- the universal holdout gets no marketing, a campaign's control group nothing from it;
1. eligibility   -- the catalogue's rules: channel, age, segment, products held / required, risk band, feature
   conditions; cold-start customers (no profile) get only what needs none (or the project's cold-start list);
2. consent and suitability -- marketing needs consent on a consent channel (or, for a project that declares no
   consent data, is withheld on outbound channels); no credit push to customers in financial distress or flagged
   vulnerable; model-based rules (e.g. a default-risk model) withhold the actions they list at or above a threshold;
3. contact policy -- caps per channel and window, cool-down after a dismissal, optional repeat cool-down after any
   delivery; the history comes from the durable decision log (shared by all workers), never from process memory;
4. arbitration   -- priority = propensity x value x context weight - the channel's contact cost; a retention
   offer's value adds churn risk x value at risk (earned only if accepted, so it too is weighted by the propensity);
   a service action is shown only when its trigger holds (a request event or a feature rule), and then it can
   outrank any sale; floors make "nothing" possible;
5. top-k with reason codes from the model's per-feature contributions (with `exploration`, a small share of
   decisions serve the top candidates in a random order fixed by the decision id, each served action's exact
   probability logged for off-policy estimates).

Segments (`nextbest.segments`, a project's named rules over its features) enter in two places: `segment_rules` make
actions eligible only for a segment's members (or never for them, `exclude`), `segment_action_weights` weight an
action for a segment's members in arbitration. The policy is given the project's bound segments
(`DecisionPolicy(..., segments=...)`) and `view` records which referenced segments the customer is in.

The service scores only the actions that survive stages 1-3 (one batch), so the policy is split into
`DecisionPolicy.screen` (before scoring) and `DecisionPolicy.arbitrate` (after). Every parameter lives in a
project's policy file (the simulated bank's: `nextbest/data/policy.yaml`), validated by `PolicyConfig` (unknown keys
rejected), so compliance or marketing can change caps, weights and thresholds without code. The mapping from feature
names to profile facts lives there too, so a renamed feature is a config change, not a code change."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import yaml
from pydantic import Field, ValidationError, model_validator

from nextbest.base import Frozen
from nextbest.catalogue import ACTION_KINDS, MARKETING_KINDS, PRODUCTS, Action, Catalogue, FeatureCondition
from nextbest.errors import ConfigError
from nextbest.pricing import Pricer, PriceResponse, PricingPolicy

logger = logging.getLogger(__name__)

DEFAULT_POLICY_PATH = Path(__file__).parent / "data" / "policy.yaml"
# Deterministic tie-break: at equal priority a service action wins over retention, retention over a sale.
_KIND_ORDER = {kind: i for i, kind in enumerate(ACTION_KINDS)}
#: `profile.consent: none` -- the project has no consent data (declared, never assumed)
NO_CONSENT_DATA = "none"


# ---------------------------------------------------------------- configuration


class FeatureRule(Frozen):
    """A threshold on one feature; a missing (None/NaN) value never matches."""

    feature: str
    op: Literal["gt", "ge", "lt", "le", "eq", "ne"]
    value: float

    def matches(self, features: Mapping[str, object]) -> bool:
        x = _as_float(features.get(self.feature))
        if x is None:
            return False
        return {
            "gt": x > self.value,
            "ge": x >= self.value,
            "lt": x < self.value,
            "le": x <= self.value,
            "eq": x == self.value,
            "ne": x != self.value,
        }[self.op]

    @property
    def code(self) -> str:
        return f"{self.feature}_{self.op}_{self.value:g}"


class ProfileMapping(Frozen):
    """Which online features carry the profile facts the rules need (names follow the project's feature repo).

    Every fact is optional: a project names the features it has (the simulated bank all of them, Berka a few) and
    a fact with no feature is unknown, so a rule that needs it does not pass (e.g. `min_age` without an age).
    """

    age: str | None = None
    # Segment as one-hot flags (segment -> flag feature); none set means `default_segment`.
    segment_flags: dict[str, str] = Field(default_factory=dict)
    default_segment: str | None = None
    # Risk band as an ordinal code indexing `risk_band_codes` (0 = lowest risk).
    risk_level: str | None = None
    risk_band_codes: tuple[str, ...] = ("low", "medium", "high")
    vulnerable: str | None = None
    # "{product}" is replaced by each catalogue product name; a value > 0 means the product is held.
    holding: str | None = None
    # product -> feature, for projects whose holdings are not named by one pattern (a count > 0 means held).
    holdings: dict[str, str] = Field(default_factory=dict)
    # channel -> consent feature: marketing on a listed channel needs the flag; a channel not listed is inbound
    # (the customer came to us). `none` declares that the project has no consent data at all: marketing is then
    # withheld on the outbound channels (`outbound_channels`), since no consent can be shown for them.
    consent: dict[str, str] | Literal["none"] = Field(default_factory=dict)
    # Features whose absence marks an unknown customer (cold start): Feast returns None for unknown entities.
    # None of them set = unknown. Empty: known when any feature of the row is set.
    identity_features: tuple[str, ...] = ()

    @cached_property
    def consent_channels(self) -> Mapping[str, str]:
        """Channel -> consent feature (empty without consent data), computed once: every screened action reads it
        (callers only read it; a plain dict, so a pickled config carries it)."""
        return {} if self.consent == NO_CONSENT_DATA else dict(self.consent)  # type: ignore[arg-type]


class ContactCaps(Frozen):
    """Marketing contact caps. A contact is one decision that delivered at least one sales/retention action."""

    window_days: int = Field(7, gt=0)
    max_per_window: int = Field(3, ge=0)
    max_per_day_per_channel: int = Field(1, ge=0)
    # Channels the caps apply to (default: all). Service actions are never capped: they are not marketing.
    channels: tuple[str, ...] | None = None
    dismissal_cooldown_days: int = Field(14, ge=0)
    # An action delivered within this many days is not offered again, whatever its outcome (0: off).
    repeat_cooldown_days: int = Field(0, ge=0)


class ServiceTrigger(Frozen):
    """A reason to show a service action now: a request event or a feature rule. Any match triggers."""

    action: str
    events: tuple[str, ...] = ()
    rules: tuple[FeatureRule, ...] = ()
    priority: float = Field(gt=0)
    reason: str


class ModelRule(Frozen):
    """Suitability by a model: withhold actions when the model's risk for the customer is at or above a threshold.

    The model may be keyed by another entity (e.g. the default risk of a loan): `key_feature` names the served
    entity's feature that holds that entity's key (e.g. the account's latest loan id). No key = nothing to assess.
    A rule that cannot be assessed (store down, no features for the key) withholds: compliance fails closed.
    """

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    model: str
    key_feature: str | None = None
    max_probability: float = Field(gt=0, lt=1)
    # Action ids withheld when the rule fires, or `credit` for every credit offer of the catalogue.
    blocks: tuple[str, ...] | Literal["credit"] = "credit"
    reason: str = Field(pattern=r"^[a-z][a-z0-9_.]*$")


class SegmentRule(Frozen):
    """Eligibility by segment (`nextbest.segments`): the listed actions go only to the segment's members, or, with
    `exclude: true`, never to them. A customer with no profile (cold start) is decided by the cold-start rules."""

    segment: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    actions: tuple[str, ...] = Field(min_length=1)
    exclude: bool = False


class Exploration(Frozen):
    """A little live exploration, so off-policy estimates can use served traffic: with probability `share` the top
    `among` candidates are served in a random order (a draw fixed by the decision id, so a replay repeats it), and
    each served action's exact probability of being served is logged."""

    share: float = Field(0.0, ge=0.0, lt=1.0)
    among: int = Field(3, ge=2)


class ReasonConfig(Frozen):
    top_n: int = Field(3, ge=0)
    # feature name or prefix -> readable reason code; the longest matching prefix wins.
    codes: dict[str, str] = Field(default_factory=dict)
    # Features never used as reasons (action attributes explain the offer, not the customer).
    exclude_prefixes: tuple[str, ...] = ("action_",)
    min_contribution: float = 0.0


class PolicyConfig(Frozen):
    """Every tunable of the decision policy. Loaded from `nextbest/data/policy.yaml`; unknown keys are errors."""

    schema_version: int = 1
    profile: ProfileMapping = ProfileMapping()
    distress_rules: tuple[FeatureRule, ...] = ()
    caps: ContactCaps = ContactCaps()
    kind_weights: dict[str, float] = Field(default_factory=lambda: {"sales": 1.0, "retention": 1.0, "service": 1.0})
    channel_kind_weights: dict[str, dict[str, float]] = Field(default_factory=dict)
    # request event -> {action id: weight}: a business lever on top of what the model already sees.
    event_action_weights: dict[str, dict[str, float]] = Field(default_factory=dict)
    retention_boost: float = Field(1.0, ge=0)
    # Value at risk of a retention case = factor x sum of these features (e.g. balances), clipped.
    value_at_risk_features: tuple[str, ...] = ()
    value_at_risk_factor: float = Field(1.0, ge=0)
    default_value_at_risk: float = Field(500.0, ge=0)
    max_value_at_risk: float = Field(20_000.0, gt=0)
    service_triggers: tuple[ServiceTrigger, ...] = ()
    min_propensity: float = Field(0.0, ge=0, le=1)
    min_priority: float = Field(0.0, ge=0)
    # Priority net of what delivering the action costs on the channel (the catalogue's channel_costs): an offer
    # not worth its contact is not made ("nothing" wins).
    net_of_contact_cost: bool = True
    max_actions: int = Field(3, gt=0)
    exploration: Exploration = Exploration()
    reasons: ReasonConfig = ReasonConfig()
    # Cold start and degraded answers: what may be shown without a profile / without features at all.
    cold_start_allow_credit: bool = False
    # Only these actions for an unknown customer (None: any action whose eligibility needs no profile).
    cold_start_actions: tuple[str, ...] | None = None
    degraded_actions: tuple[str, ...] = ()
    # The project's churn model: its risk boosts retention offers (None: no retention boost).
    churn_model: str | None = None
    model_rules: tuple[ModelRule, ...] = ()
    # Where we reach out (not where the customer came to us): with `profile.consent: none` no marketing goes there.
    outbound_channels: tuple[str, ...] = ("email", "sms", "push", "call_centre")
    # A customer with no marketing consent on any consent channel gets no marketing anywhere (inbound included):
    # opting out of every channel is opting out of marketing.
    marketing_needs_a_consent: bool = True
    # Segments of the project (its `segments:`) in eligibility, and segment -> {action id: weight} in arbitration.
    segment_rules: tuple[SegmentRule, ...] = ()
    segment_action_weights: dict[str, dict[str, float]] = Field(default_factory=dict)
    # Personalised pricing inside the catalogue's approved bands (`nextbest.pricing`); `personalise: false` offers
    # every priced action at its list price (the list-price arm).
    pricing: PricingPolicy = PricingPolicy()

    @property
    def segment_names(self) -> tuple[str, ...]:
        """The segments this policy refers to (the project must declare them)."""
        names = [r.segment for r in self.segment_rules] + list(self.segment_action_weights)
        return tuple(dict.fromkeys(names))

    @model_validator(mode="after")
    def _weights_known(self) -> PolicyConfig:
        for kind in self.kind_weights:
            if kind not in _KIND_ORDER:
                raise ValueError(f"kind_weights: unknown kind {kind!r}; known: {', '.join(_KIND_ORDER)}")
        for channel, weights in self.channel_kind_weights.items():
            for kind in weights:
                if kind not in _KIND_ORDER:
                    raise ValueError(f"channel_kind_weights.{channel}: unknown kind {kind!r}")
        return self

    def check_against(self, catalogue: Catalogue) -> None:
        """Fail fast when the policy names actions, channels or products the catalogue does not know."""
        known = set(catalogue.action_ids)
        named = {t.action for t in self.service_triggers} | set(self.degraded_actions)
        named |= set(self.cold_start_actions or ())
        for weights in self.event_action_weights.values():
            named |= set(weights)
        for rule in self.model_rules:
            if rule.blocks != "credit":
                named |= set(rule.blocks)
        for seg_rule in self.segment_rules:
            named |= set(seg_rule.actions)
        for weights in self.segment_action_weights.values():
            named |= set(weights)
        unknown = sorted(named - known)
        if unknown:
            raise ConfigError(f"policy names unknown action(s) {unknown}; catalogue has {sorted(known)}")
        for t in self.service_triggers:
            if catalogue.action(t.action).kind != "service":
                raise ConfigError(f"service trigger for {t.action!r}, which is not a service action")
        channels = set(self.profile.consent_channels) | set(self.channel_kind_weights) | set(self.caps.channels or ())
        bad = sorted(channels - set(catalogue.channels))
        if bad:
            raise ConfigError(f"policy names unknown channel(s) {bad}; catalogue channels: {catalogue.channels}")
        unknown_products = sorted(set(self.profile.holdings) - set(catalogue.products))
        if unknown_products:
            raise ConfigError(f"profile.holdings names unknown product(s) {unknown_products}")

    def blocked_by(self, rule: ModelRule, catalogue: Catalogue) -> frozenset[str]:
        """The action ids a model rule withholds (`credit`: every credit action of the catalogue)."""
        if rule.blocks == "credit":
            return frozenset(a.id for a in catalogue.actions if a.credit)
        return frozenset(rule.blocks)


def load_policy(path: str | Path | None = None) -> PolicyConfig:
    """Load and validate a policy YAML file (default: the simulated bank's, `nextbest/data/policy.yaml`)."""
    resolved = Path(path) if path else DEFAULT_POLICY_PATH
    if not resolved.is_file():
        raise ConfigError(f"decision policy file not found: {resolved}")
    try:
        with resolved.open() as f:
            raw = yaml.safe_load(f) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"decision policy {resolved} is not valid YAML: {exc}") from exc
    return parse_policy(raw, str(resolved))


def parse_policy(raw: object, where: str) -> PolicyConfig:
    """Validate a policy mapping (from a file or inline in a project file); errors name `where` and the key."""
    try:
        return PolicyConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"invalid decision policy {where}:\n{exc}") from exc


# ---------------------------------------------------------------- inputs and outputs


@dataclass(frozen=True, slots=True)
class DecisionContext:
    """What the channel tells us about this moment (all optional)."""

    location_type: str | None = None
    event: str | None = None
    page: str | None = None


@dataclass(frozen=True, slots=True)
class CustomerView:
    """The profile facts the rules need, extracted once from the online features."""

    customer_id: int | str
    known: bool
    age: float | None = None
    segment: str | None = None
    risk_band: str | None = None
    holdings: frozenset[str] = frozenset()
    consents: Mapping[str, bool] = field(default_factory=dict)
    vulnerable: bool = False
    distress_reasons: tuple[str, ...] = ()
    value_at_risk: float = 0.0
    # The online features the view was built from (feature conditions of eligibility read them).
    features: Mapping[str, object] = field(default_factory=dict)
    # The customer withdrew marketing consent on every channel (an event, effective before the features catch up).
    withdrew_all: bool = False
    # The segments the policy refers to that the customer is in (`DecisionPolicy.view`).
    segments: frozenset[str] = frozenset()
    # Experiments (`nextbest.assignment`, set by the engine): the universal holdout gets no marketing from any path;
    # a campaign's control group gets nothing from that campaign.
    holdout: bool = False
    campaign_control: bool = False

    @property
    def in_distress(self) -> bool:
        return bool(self.distress_reasons)


@dataclass(frozen=True, slots=True)
class ContactRecord:
    """One action delivered earlier (from the decision log), with its outcome if feedback arrived."""

    ts: datetime
    decision_id: str
    channel: str
    action_id: str
    kind: str
    outcome: str | None = None
    outcome_ts: datetime | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    action_id: str
    rule: str
    detail: str = ""


@dataclass(slots=True)
class RankedAction:
    action: Action
    propensity: float
    priority: float
    context_weight: float
    template_id: str
    reasons: list[str] = field(default_factory=list)
    # The probability that this action is served in this decision (exploration; 1.0 for a greedy pick).
    choice_probability: float = 1.0
    # Pricing (`nextbest.pricing.price_ranked`): the offered rate inside the customer's approved band (None:
    # unpriced), the band it came from (`product/risk band`) and the version of the catalogue's bands.
    price: float | None = None
    band: str = ""
    band_version: str = ""

    @property
    def action_id(self) -> str:
        return self.action.id


@dataclass(slots=True)
class Screening:
    """The result of stages 1-3: the actions worth scoring, and every removed action with its rule."""

    candidates: list[Action]
    rejected: list[Rejection]


@dataclass(frozen=True, slots=True)
class RuleScore:
    """What the engine found for one model rule: the model's probability for the rule's subject, or why none.

    status: `scored` (probability set), `no_subject` (the customer has no such entity, e.g. no loan: nothing to
    withhold), `unknown_subject` (a key without features) or `unavailable` (the store could not be read).
    """

    rule: str
    status: Literal["scored", "no_subject", "unknown_subject", "unavailable"]
    probability: float | None = None
    subject: str = ""


# ---------------------------------------------------------------- helpers


def _as_float(value: object) -> float | None:
    kind = type(value)  # the exact types an online row is made of first: a view reads ~30 of them per decision
    if kind is float:
        return None if value != value else value  # type: ignore[return-value]  # NaN is unknown
    if kind is int:
        return float(value)  # type: ignore[arg-type]
    if value is None or isinstance(value, str):
        return None
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _flag(features: Mapping[str, object], name: str | None) -> bool:
    return name is not None and (_as_float(features.get(name)) or 0.0) > 0


def is_known(features: Mapping[str, object], profile: ProfileMapping) -> bool:
    """Whether the online read found the customer (Feast returns None for every feature of an unknown entity)."""
    names = profile.identity_features or tuple(features)
    return any(_as_float(features.get(name)) is not None for name in names)


def holding_features(profile: ProfileMapping, products: Sequence[str] = PRODUCTS) -> dict[str, str]:
    """Product -> the feature that flags that the customer holds it."""
    out = {prod: profile.holding.format(product=prod) for prod in products} if profile.holding else {}
    out.update(profile.holdings)
    return out


def customer_view(
    customer_id: int | str,
    features: Mapping[str, object],
    config: PolicyConfig,
    products: Sequence[str] = PRODUCTS,
    holdings_by: Mapping[str, str] | None = None,
) -> CustomerView:
    """Extract the profile facts from one customer's online features (None values mean unknown); `holdings_by`:
    `holding_features` of the config's profile and the products, when the caller keeps them."""
    p = config.profile
    if not is_known(features, p):
        return CustomerView(customer_id=customer_id, known=False, value_at_risk=config.default_value_at_risk)
    by = holdings_by if holdings_by is not None else holding_features(p, products)
    holdings = frozenset(prod for prod, name in by.items() if _flag(features, name))
    consents = {channel: _flag(features, name) for channel, name in p.consent_channels.items()}
    distress = tuple(rule.code for rule in config.distress_rules if rule.matches(features))
    var = config.default_value_at_risk
    parts = [_as_float(features.get(name)) for name in config.value_at_risk_features]
    if parts and any(x is not None for x in parts):
        var = sum(x for x in parts if x is not None) * config.value_at_risk_factor
    segment = next((seg for seg, flag in p.segment_flags.items() if _flag(features, flag)), p.default_segment)
    level = _as_float(features.get(p.risk_level)) if p.risk_level else None
    risk_band = (
        p.risk_band_codes[int(level)] if level is not None and 0 <= int(level) < len(p.risk_band_codes) else None
    )
    return CustomerView(
        customer_id=customer_id,
        known=True,
        age=_as_float(features.get(p.age)) if p.age else None,
        segment=segment,
        risk_band=risk_band,
        holdings=holdings,
        consents=consents,
        vulnerable=_flag(features, p.vulnerable),
        distress_reasons=distress,
        value_at_risk=float(min(max(var, 0.0), config.max_value_at_risk)),
        features=features,
    )


def _holds(condition: FeatureCondition, value: object) -> bool:
    x = _as_float(value)
    if x is None:  # missing: the condition cannot be shown to hold
        return False
    return (condition.min is None or x >= condition.min) and (condition.max is None or x <= condition.max)


# ---------------------------------------------------------------- the policy


class SegmentMembership(Protocol):
    """What the policy needs of a project's segments (`nextbest.segments.Segments`)."""

    @property
    def names(self) -> tuple[str, ...]: ...

    def memberships(self, features: Mapping[str, object], names: Iterable[str]) -> frozenset[str]: ...


class DecisionPolicy:
    """The policy for one catalogue and one config; stateless, so one instance serves all requests.

    `segments`: the project's bound segments, required when the config refers to any (a rule that cannot be
    evaluated is a configuration error, not a silent pass)."""

    def __init__(
        self,
        catalogue: Catalogue,
        config: PolicyConfig,
        segments: SegmentMembership | None = None,
        price_response: PriceResponse | None = None,
    ) -> None:
        config.check_against(catalogue)
        self.catalogue = catalogue
        self.config = config
        self._triggers: dict[str, list[ServiceTrigger]] = {}
        for t in config.service_triggers:
            self._triggers.setdefault(t.action, []).append(t)
        self.segments = segments
        self._holdings_by = holding_features(config.profile, catalogue.products)
        self._rejections: dict[tuple[str, str, str], Rejection] = {}  # `_fixed`
        self.pricer = Pricer(catalogue, config.pricing, price_response)
        self._segment_rules: dict[str, list[SegmentRule]] = {}
        for rule in config.segment_rules:
            for action_id in rule.actions:
                self._segment_rules.setdefault(action_id, []).append(rule)
        if config.segment_names:
            if segments is None:
                raise ConfigError(
                    f"the policy refers to segments {list(config.segment_names)}: build it with the project's "
                    "segments (nextbest.segments.project_segments)"
                )
            unknown = sorted(set(config.segment_names) - set(segments.names))
            if unknown:
                raise ConfigError(f"the policy refers to unknown segment(s) {unknown}; known: {list(segments.names)}")

    def view(self, customer_id: int | str, features: Mapping[str, object]) -> CustomerView:
        """The customer's profile facts from its online features (the project's products and profile mapping), and
        the segments the policy refers to that they are in."""
        view = customer_view(customer_id, features, self.config, self.catalogue.products, self._holdings_by)
        if view.known and self.segments is not None and self.config.segment_names:
            view = replace(view, segments=self.segments.memberships(features, self.config.segment_names))
        return view

    def segment_rule(self, action: Action, customer: CustomerView) -> Rejection | None:
        """The first segment rule that withholds this action from this (known) customer, if any."""
        for rule in self._segment_rules.get(action.id, ()):
            inside = rule.segment in customer.segments
            if inside == rule.exclude:
                detail = f"in segment {rule.segment}" if inside else f"not in segment {rule.segment}"
                return Rejection(action.id, "eligibility.segment_rule", detail)
        return None

    def segment_weight(self, action: Action, customer: CustomerView) -> float:
        """The product of the weights the customer's segments give this action (1.0 without any)."""
        w = 1.0
        for segment, weights in self.config.segment_action_weights.items():
            if segment in customer.segments:
                w *= weights.get(action.id, 1.0)
        return w

    # ---- stage 0: experiments
    def experiment_rule(self, action: Action, customer: CustomerView) -> Rejection | None:
        """The controls uplift is measured against: no marketing to the universal holdout, nothing to a
        campaign's control group."""
        if customer.campaign_control:
            return self._fixed(action.id, "experiment.campaign_control", "in this campaign's control group")
        if customer.holdout and action.kind in MARKETING_KINDS:
            return self._fixed(action.id, "experiment.holdout", "in the universal holdout: no marketing")
        return None

    def _fixed(self, action_id: str, rule: str, detail: str) -> Rejection:
        """The one (immutable) Rejection of a rule whose detail does not depend on the customer, built once: a
        decision rejects most of the catalogue, mostly by such rules (a campaign makes millions of them)."""
        key = (action_id, rule, detail)
        found = self._rejections.get(key)
        if found is None:
            found = self._rejections.setdefault(key, Rejection(action_id, rule, detail))
        return found

    # ---- stage 1: eligibility
    def eligibility_rule(self, action: Action, customer: CustomerView, channel: str) -> Rejection | None:
        """The first catalogue rule that excludes this action for this customer on this channel, if any."""
        if channel not in action.channels:
            return self._fixed(action.id, "eligibility.channel", f"not offered on {channel}")
        if not customer.known:
            return self._cold_start_rule(action)
        e = action.eligibility
        if e.min_age is not None and (customer.age is None or customer.age < e.min_age):
            return Rejection(action.id, "eligibility.min_age", f"age {customer.age} < {e.min_age}")
        if e.max_age is not None and (customer.age is None or customer.age > e.max_age):
            return Rejection(action.id, "eligibility.max_age", f"age {customer.age} > {e.max_age}")
        if e.segments is not None and customer.segment not in e.segments:
            return Rejection(action.id, "eligibility.segment", f"segment {customer.segment}")
        missing = [p for p in e.requires if p not in customer.holdings]
        if missing:
            return Rejection(action.id, "eligibility.requires", f"does not hold {missing}")
        held = [p for p in e.excludes if p in customer.holdings]
        if held:
            return Rejection(action.id, "eligibility.excludes", f"already holds {held}")
        if e.max_risk_band is not None:
            bands = self.catalogue.risk_bands
            band = customer.risk_band
            if band not in bands or bands.index(band) > bands.index(e.max_risk_band):
                return Rejection(action.id, "eligibility.risk_band", f"risk band {band} above {e.max_risk_band}")
        for cond in e.conditions:
            value = customer.features.get(cond.feature)
            if not _holds(cond, value):
                return Rejection(action.id, f"eligibility.{cond.feature}", f"{value} outside [{cond.min}, {cond.max}]")
        return self.segment_rule(action, customer) if self._segment_rules else None

    def _cold_start_rule(self, action: Action) -> Rejection | None:
        """Without a profile: the project's cold-start list, else only actions whose eligibility needs none."""
        if self.config.cold_start_actions is not None:
            if action.id not in self.config.cold_start_actions:
                return Rejection(action.id, "cold_start.not_offered", "not a cold-start action of this project")
            return None
        if action.eligibility.needs_profile:
            return Rejection(action.id, "cold_start.needs_profile", "eligibility needs a known profile")
        if action.credit and not self.config.cold_start_allow_credit:
            return Rejection(action.id, "cold_start.no_credit", "credit needs a known risk band")
        return None

    # ---- stage 2: consent and suitability
    def suitability_rule(self, action: Action, customer: CustomerView, channel: str) -> Rejection | None:
        """Consent for marketing on this channel, then the credit rules (vulnerable customers, financial distress)."""
        if action.kind in MARKETING_KINDS:
            consent = self._consent_rule(action, customer, channel)
            if consent is not None:
                return consent
        if action.credit and action.kind == "sales":
            if customer.vulnerable:
                return Rejection(action.id, "suitability.vulnerable", "no credit push to vulnerable customers")
            if customer.in_distress:
                return Rejection(action.id, "suitability.financial_distress", ",".join(customer.distress_reasons))
        return None

    def _consent_rule(self, action: Action, customer: CustomerView, channel: str) -> Rejection | None:
        profile = self.config.profile
        if profile.consent == NO_CONSENT_DATA:
            if channel in self.config.outbound_channels:
                return Rejection(action.id, "consent.no_data", f"the project has no consent data for {channel}")
            return None
        if customer.known and (
            customer.withdrew_all
            or (
                self.config.marketing_needs_a_consent
                and profile.consent_channels
                and not any(customer.consents.values())
            )
        ):
            # Opted out of every channel (or withdrew marketing altogether): no marketing anywhere, inbound included.
            return self._fixed(action.id, "consent.opted_out_everywhere", "no marketing consent on any channel")
        if channel in profile.consent_channels:
            if not customer.known:
                return Rejection(action.id, "consent.unknown", f"no consent on record for {channel}")
            if not customer.consents.get(channel, False):
                return self._fixed(action.id, "consent.opted_out", f"no marketing consent for {channel}")
        return None

    def with_consent_changes(self, customer: CustomerView, changes: Sequence[tuple[str, bool]]) -> CustomerView:
        """The customer's consents after the changes recorded since the features were built, applied in time order.

        A change names a channel or `*` (every channel: a withdrawal also blocks marketing everywhere, inbound
        included, until a later grant).
        """
        if not changes or not customer.known:
            return customer
        consents = dict(customer.consents)
        withdrew_all = customer.withdrew_all
        for channel, granted in changes:
            if channel == "*":
                consents = {name: granted for name in self.config.profile.consent_channels}
                withdrew_all = not granted
            elif channel in self.config.profile.consent_channels:
                consents[channel] = granted
                withdrew_all = withdrew_all and not granted
        return replace(customer, consents=consents, withdrew_all=withdrew_all)

    def model_rule_rejections(self, rule_scores: Sequence[RuleScore]) -> tuple[dict[str, Rejection], list[str]]:
        """{action id: rejection} for the model rules that withhold, and a note per rule that fired."""
        rules = {r.name: r for r in self.config.model_rules}
        withheld: dict[str, Rejection] = {}
        notes: list[str] = []
        for score in rule_scores:
            rule = rules[score.rule]
            if score.status == "no_subject":
                continue
            if score.status == "scored":
                assert score.probability is not None
                if score.probability < rule.max_probability:
                    continue
                detail = f"{rule.model} {score.probability:.3f} >= {rule.max_probability} for {score.subject}"
            elif score.status == "unknown_subject":
                detail = f"{rule.model}: {score.subject} has no features; its actions withheld"
            else:
                detail = f"{rule.model} not assessable (online store unavailable); its actions withheld"
            notes.append(f"{rule.reason}: {detail}")
            for action_id in sorted(self.blocked_by(rule)):
                withheld.setdefault(action_id, Rejection(action_id, rule.reason, detail))
        return withheld, notes

    def blocked_by(self, rule: ModelRule) -> frozenset[str]:
        return self.config.blocked_by(rule, self.catalogue)

    def apply_model_rules(self, screening: Screening, rule_scores: Sequence[RuleScore]) -> tuple[Screening, list[str]]:
        """Stage 2, model rules: withhold the candidates a rule's risk rules out; the notes say which rule fired."""
        withheld, notes = self.model_rule_rejections(rule_scores)
        if not withheld:
            return screening, notes
        kept = [a for a in screening.candidates if a.id not in withheld]
        rejected = [*screening.rejected, *(withheld[a.id] for a in screening.candidates if a.id in withheld)]
        return Screening(candidates=kept, rejected=rejected), notes

    def rules_needed(self, candidates: Sequence[Action]) -> list[ModelRule]:
        """The model rules that could withhold one of these actions (only those are worth scoring)."""
        ids = {a.id for a in candidates}
        return [r for r in self.config.model_rules if self.blocked_by(r) & ids]

    # ---- stage 3: contact policy
    def contact_rules(
        self, customer: CustomerView, channel: str, history: Sequence[ContactRecord], now: datetime
    ) -> tuple[str | None, dict[str, str]]:
        """(rule blocking all marketing on this channel now or None, {action id: cool-down rule})."""
        caps = self.config.caps
        blocked: str | None = None
        if caps.channels is None or channel in caps.channels:
            blocked = self._cap_rule(channel, history, now)
        cooldown: dict[str, str] = {}
        if caps.repeat_cooldown_days > 0:
            since = now - timedelta(days=caps.repeat_cooldown_days)
            for c in history:
                if since <= c.ts <= now:
                    cooldown[c.action_id] = "contact_policy.repeat_cooldown"
        if caps.dismissal_cooldown_days > 0:
            since = now - timedelta(days=caps.dismissal_cooldown_days)
            for c in history:
                if c.outcome == "dismissed" and (c.outcome_ts or c.ts) >= since:
                    cooldown[c.action_id] = "contact_policy.dismissal_cooldown"
        return blocked, cooldown

    def _cap_rule(self, channel: str, history: Sequence[ContactRecord], now: datetime) -> str | None:
        caps = self.config.caps
        window_start = now - timedelta(days=caps.window_days)
        day_start = now - timedelta(days=1)
        contacts: set[str] = set()
        today_on_channel: set[str] = set()
        for c in history:
            if c.kind not in MARKETING_KINDS or c.ts > now:
                continue
            if c.ts >= window_start and (caps.channels is None or c.channel in caps.channels):
                contacts.add(c.decision_id)
            if c.ts >= day_start and c.channel == channel:
                today_on_channel.add(c.decision_id)
        if len(today_on_channel) >= caps.max_per_day_per_channel:
            return "contact_policy.daily_channel_cap"
        if len(contacts) >= caps.max_per_window:
            return "contact_policy.window_cap"
        return None

    @property
    def history_days(self) -> int:
        """How far back the contact policy looks (the decision log read covers this many days)."""
        caps = self.config.caps
        return max(caps.window_days, caps.dismissal_cooldown_days, caps.repeat_cooldown_days, 1)

    def screen(
        self,
        customer: CustomerView,
        channel: str,
        history: Sequence[ContactRecord],
        now: datetime,
        only: Sequence[str] | None = None,
    ) -> Screening:
        """Stages 1-3 but the model rules: which actions may be scored, and why every other one was removed.

        Model rules (`apply_model_rules`) come after, on the survivors only: scoring a rule's model may take a read
        of another entity, which is worth paying only when an action it could withhold is still a candidate.
        """
        if channel not in self.catalogue.channels:
            raise ValueError(f"channel: unknown channel {channel!r}; known: {', '.join(self.catalogue.channels)}")
        blocked, cooldown = self.contact_rules(customer, channel, history, now)
        candidates: list[Action] = []
        rejected: list[Rejection] = []
        allowed = set(only) if only is not None else None
        for action in self.catalogue.actions:
            if allowed is not None and action.id not in allowed:
                rejected.append(Rejection(action.id, "degraded.not_safe", "only safe actions without features"))
                continue
            reason = (
                self.experiment_rule(action, customer)
                or self.eligibility_rule(action, customer, channel)
                or self.suitability_rule(action, customer, channel)
            )
            if reason is None and action.kind in MARKETING_KINDS and blocked is not None:
                reason = Rejection(action.id, blocked)
            if reason is None and action.id in cooldown:
                reason = Rejection(action.id, cooldown[action.id])
            if reason is None:
                candidates.append(action)
            else:
                rejected.append(reason)
        return Screening(candidates=candidates, rejected=rejected)

    # ---- stage 4: arbitration
    def context_weight(self, action: Action, channel: str, context: DecisionContext) -> float:
        w = self.config.kind_weights.get(action.kind, 1.0)
        w *= self.config.channel_kind_weights.get(channel, {}).get(action.kind, 1.0)
        if context.event:
            w *= self.config.event_action_weights.get(context.event, {}).get(action.id, 1.0)
        return w

    def triggered(
        self, action: Action, context: DecisionContext, features: Mapping[str, object]
    ) -> ServiceTrigger | None:
        for t in self._triggers.get(action.id, ()):
            if (context.event and context.event in t.events) or any(r.matches(features) for r in t.rules):
                return t
        return None

    def arbitrate(
        self,
        candidates: Sequence[Action],
        propensities: Sequence[float] | np.ndarray,
        customer: CustomerView,
        channel: str,
        context: DecisionContext,
        features: Mapping[str, object],
        churn_risk: float | None,
        prices: Mapping[str, float] | None = None,
    ) -> tuple[list[RankedAction], list[Rejection]]:
        """Stage 4: priority for each scored candidate, best first; below-threshold ones are rejected. Priced
        actions get their price inside the customer's approved band (`nextbest.pricing`; `prices`: a request's)."""
        if len(candidates) != len(propensities):
            raise ValueError(f"{len(candidates)} candidates but {len(propensities)} propensities")
        cfg = self.config
        ranked: list[RankedAction] = []
        rejected: list[Rejection] = []
        for action, p in zip(candidates, propensities, strict=True):
            p = float(p)
            w = self.context_weight(action, channel, context)
            if customer.segments and self.config.segment_action_weights:
                w *= self.segment_weight(action, customer)
            value = action.value
            reasons: list[str] = []
            if action.kind == "retention" and churn_risk is not None:
                # A retention offer saves the relationship only if the customer takes it: the value at risk it
                # protects is earned with the offer's own propensity, like its margin. Added outside the
                # propensity (the former formula), churn risk x value at risk outranked far likelier sales even
                # when the retention offer itself would almost surely be ignored (measured on the evaluation
                # ladder, default world: stage 5 lost 3-5% of its value to such picks).
                value += cfg.retention_boost * churn_risk * customer.value_at_risk
                reasons.append(f"CHURN_RISK_{_band(churn_risk)}")
            cost = self.catalogue.channel_cost(channel) if cfg.net_of_contact_cost else 0.0
            priority = p * value * w - cost
            trigger = self.triggered(action, context, features) if action.kind == "service" else None
            if trigger is not None:
                priority = max(priority, trigger.priority)
                reasons.append(trigger.reason)
            elif action.kind == "service":
                # A service action answers a moment (a lost card, an open complaint, distress); without its trigger
                # it is not filler for an empty slot (it once filled slots past caps: a complaint callback to a
                # customer with no complaint).
                rejected.append(Rejection(action.id, "service.not_triggered", "its trigger does not hold"))
                continue
            elif p < cfg.min_propensity:
                rejected.append(Rejection(action.id, "arbitration.min_propensity", f"{p:.4f} < {cfg.min_propensity}"))
                continue
            if priority < cfg.min_priority:
                net = f" net of its {cost:g} contact cost" if cost else ""
                rejected.append(Rejection(action.id, "arbitration.min_priority", f"{priority:.3f}{net}"))
                continue
            ranked.append(
                RankedAction(
                    action=action,
                    propensity=p,
                    priority=priority,
                    context_weight=w,
                    template_id=action.templates[channel],
                    reasons=reasons,
                )
            )
        if self.pricer.active:
            cost = self.catalogue.channel_cost(channel) if cfg.net_of_contact_cost else 0.0
            self.pricer.price(ranked, customer.risk_band, cost, prices)
        ranked.sort(key=lambda r: (-r.priority, _KIND_ORDER[r.action.kind], r.action.id))
        return ranked, rejected

    # ---- stage 5: top-k
    def top_k(
        self, ranked: Sequence[RankedAction], max_actions: int, seed: str | None = None
    ) -> tuple[list[RankedAction], list[Rejection]]:
        """The k best (k = the request's and the policy's max), or, when exploring (`exploration.share`, a draw
        fixed by `seed`, the decision id), the top `among` in a random order; each served action carries its exact
        probability of being served: (1 - share) x [greedy] + share x [served when exploring]."""
        k = max(0, min(max_actions, self.config.max_actions))
        order = list(ranked)
        explore = self.config.exploration
        if explore.share > 0 and seed is not None and len(order) > 1:
            n = min(explore.among, len(order))
            u, permutation = _draws(seed, n)
            explored = [order[i] for i in permutation] + order[n:]
            for i, r in enumerate(order):
                served_when_exploring = (k / n if k < n else 1.0) if i < n else float(i < k)
                r.choice_probability = (1 - explore.share) * float(i < k) + explore.share * served_when_exploring
            if u < explore.share:
                order = explored
        chosen = order[:k]
        rejected = [
            Rejection(r.action.id, "arbitration.outranked", f"rank {i + 1} > {k} (priority {r.priority:.4g})")
            for i, r in enumerate(order[k:], k)
        ]
        return chosen, rejected

    def reason_codes(self, feature_names: Sequence[str], contributions: np.ndarray) -> list[str]:
        """Readable codes for the top positive per-feature contributions of one scored row.

        `contributions` has one value per feature plus the bias as last column (xgboost `pred_contribs`).
        """
        rc = self.config.reasons
        values = np.asarray(contributions, dtype=float)[: len(feature_names)]
        order = np.argsort(-values, kind="stable")
        codes: list[str] = []
        for i in order:
            if len(codes) >= rc.top_n or values[i] <= rc.min_contribution:
                break
            name = feature_names[i]
            if name.startswith(rc.exclude_prefixes):
                continue
            code = reason_code(name, rc.codes)
            if code not in codes:
                codes.append(code)
        return codes


def _draws(seed: str, n: int) -> tuple[float, list[int]]:
    """A uniform in [0, 1) and a permutation of range(n), both fixed by `seed` (a decision id)."""
    import hashlib

    digest = hashlib.blake2b(seed.encode(), digest_size=32, person=b"nextbest-explore").digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    rest = int.from_bytes(digest[8:], "big")
    pool, permutation = list(range(n)), []
    while pool:  # Fisher-Yates from the digest's remaining bits (n is a handful)
        rest, j = divmod(rest, len(pool))
        permutation.append(pool.pop(j))
    return u, permutation


def reason_code(feature: str, codes: Mapping[str, str]) -> str:
    """The configured code for a feature (longest matching prefix), else the feature name in capitals."""
    best = ""
    for prefix in codes:
        if feature.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return codes[best] if best else feature.upper()


def _band(risk: float) -> str:
    return "HIGH" if risk >= 0.3 else "MEDIUM" if risk >= 0.1 else "LOW"
