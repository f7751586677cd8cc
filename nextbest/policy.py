"""The decision policy: scores in, ranked actions out, as plain Python with no HTTP or model code in it.

Stages, in the order DESIGN.md fixes (each removed action keeps the rule that removed it):

1. eligibility   -- the catalogue's rules: channel, age, segment, products held / required, risk band;
2. consent and suitability -- marketing needs consent on an outbound channel; no credit push to customers in
   financial distress or flagged vulnerable; cold-start customers (no profile) get nothing that needs one;
3. contact policy -- caps per channel and window, cool-down after a dismissal of the same action; the history
   comes from the durable decision log (shared by all workers), never from process memory;
4. arbitration   -- priority = propensity x value x context weight; a retention offer's value adds churn risk x
   value at risk (earned only if accepted, so it too is weighted by the propensity);
   service triggers (card lost, complaint, distress) can outrank any sale; a floor makes "nothing" possible;
5. top-k with reason codes from the model's per-feature contributions.

The service scores only the actions that survive stages 1-3 (one batch), so the policy is split into
`DecisionPolicy.screen` (before scoring) and `DecisionPolicy.arbitrate` (after). Every parameter lives in
`nextbest/data/policy.yaml`, validated by `PolicyConfig` (unknown keys rejected), so compliance or marketing can change
caps, weights and thresholds without code. The mapping from feature names to profile facts lives there too, so a
renamed feature is a config change, not a code change.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import Field, ValidationError, model_validator

from nextbest.base import Frozen
from nextbest.catalogue import PRODUCTS, RISK_BANDS, Action, Catalogue
from nextbest.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_POLICY_PATH = Path(__file__).parent / "data" / "policy.yaml"
MARKETING_KINDS: frozenset[str] = frozenset({"sales", "retention"})
# Deterministic tie-break: at equal priority a service action wins over retention, retention over a sale.
_KIND_ORDER = {"service": 0, "retention": 1, "sales": 2}


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
    """Which online features carry the profile facts the rules need (names follow the feature repo)."""

    age: str = "age"
    # Segment as one-hot flags (segment -> flag feature); none set means `default_segment`.
    segment_flags: dict[str, str] = Field(
        default_factory=lambda: {"affluent": "segment_affluent", "small_business": "segment_small_business"}
    )
    default_segment: str = "mass"
    # Risk band as an ordinal code indexing `risk_band_codes` (0 = low).
    risk_level: str = "risk_level"
    risk_band_codes: tuple[str, ...] = RISK_BANDS
    vulnerable: str = "is_vulnerable"
    # "{product}" is replaced by each catalogue product name; a value > 0 means the product is held.
    holding: str = "has_{product}"
    # channel -> consent feature; a channel not listed is inbound (the customer came to us): no consent needed.
    consent: dict[str, str] = Field(
        default_factory=lambda: {
            "email": "consent_email",
            "sms": "consent_sms",
            "push": "consent_push",
            "app": "consent_app",
            "call_centre": "consent_call",
        }
    )
    # Features whose absence marks an unknown customer (cold start): Feast returns None for unknown entities.
    identity_features: tuple[str, ...] = ("age", "tenure_days")


class ContactCaps(Frozen):
    """Marketing contact caps. A contact is one decision that delivered at least one sales/retention action."""

    window_days: int = Field(7, gt=0)
    max_per_window: int = Field(3, ge=0)
    max_per_day_per_channel: int = Field(1, ge=0)
    # Channels the caps apply to (default: all). Service actions are never capped: they are not marketing.
    channels: tuple[str, ...] | None = None
    dismissal_cooldown_days: int = Field(14, ge=0)


class ServiceTrigger(Frozen):
    """A reason to show a service action now: a request event or a feature rule. Any match triggers."""

    action: str
    events: tuple[str, ...] = ()
    rules: tuple[FeatureRule, ...] = ()
    priority: float = Field(gt=0)
    reason: str


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
    max_actions: int = Field(3, gt=0)
    reasons: ReasonConfig = ReasonConfig()
    # Cold start and degraded answers: what may be shown without a profile / without features at all.
    cold_start_allow_credit: bool = False
    degraded_actions: tuple[str, ...] = ()

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
        """Fail fast when the policy names actions or channels the catalogue does not know."""
        known = set(catalogue.action_ids)
        named = {t.action for t in self.service_triggers} | set(self.degraded_actions)
        for weights in self.event_action_weights.values():
            named |= set(weights)
        unknown = sorted(named - known)
        if unknown:
            raise ConfigError(f"policy names unknown action(s) {unknown}; catalogue has {sorted(known)}")
        for t in self.service_triggers:
            if catalogue.action(t.action).kind != "service":
                raise ConfigError(f"service trigger for {t.action!r}, which is not a service action")
        channels = set(self.profile.consent) | set(self.channel_kind_weights) | set(self.caps.channels or ())
        bad = sorted(channels - set(catalogue.channels))
        if bad:
            raise ConfigError(f"policy names unknown channel(s) {bad}; catalogue channels: {catalogue.channels}")


def load_policy(path: str | Path | None = None) -> PolicyConfig:
    """Load and validate the policy YAML (default: `nextbest/data/policy.yaml`)."""
    resolved = Path(path) if path else DEFAULT_POLICY_PATH
    if not resolved.is_file():
        raise ConfigError(f"decision policy file not found: {resolved}")
    with resolved.open() as f:
        raw = yaml.safe_load(f) or {}
    try:
        return PolicyConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"invalid decision policy {resolved}:\n{exc}") from exc


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

    customer_id: int
    known: bool
    age: float | None = None
    segment: str | None = None
    risk_band: str | None = None
    holdings: frozenset[str] = frozenset()
    consents: Mapping[str, bool] = field(default_factory=dict)
    vulnerable: bool = False
    distress_reasons: tuple[str, ...] = ()
    value_at_risk: float = 0.0

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

    @property
    def action_id(self) -> str:
        return self.action.id


@dataclass(slots=True)
class Screening:
    """The result of stages 1-3: the actions worth scoring, and every removed action with its rule."""

    candidates: list[Action]
    rejected: list[Rejection]


# ---------------------------------------------------------------- helpers


def _as_float(value: object) -> float | None:
    if value is None or isinstance(value, str):
        return None
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def customer_view(customer_id: int, features: Mapping[str, object], config: PolicyConfig) -> CustomerView:
    """Extract the profile facts from one customer's online features (None values mean unknown)."""
    p = config.profile
    known = any(features.get(name) is not None for name in p.identity_features)
    if not known:
        return CustomerView(customer_id=customer_id, known=False, value_at_risk=config.default_value_at_risk)
    holdings = frozenset(
        product for product in PRODUCTS if (_as_float(features.get(p.holding.format(product=product))) or 0.0) > 0
    )
    consents = {channel: bool(_as_float(features.get(name)) or 0.0) for channel, name in p.consent.items()}
    distress = tuple(rule.code for rule in config.distress_rules if rule.matches(features))
    var = config.default_value_at_risk
    parts = [_as_float(features.get(name)) for name in config.value_at_risk_features]
    if parts and any(x is not None for x in parts):
        var = sum(x for x in parts if x is not None) * config.value_at_risk_factor
    segment = next(
        (seg for seg, flag in p.segment_flags.items() if (_as_float(features.get(flag)) or 0.0) > 0), p.default_segment
    )
    level = _as_float(features.get(p.risk_level))
    risk_band = (
        p.risk_band_codes[int(level)] if level is not None and 0 <= int(level) < len(p.risk_band_codes) else None
    )
    return CustomerView(
        customer_id=customer_id,
        known=True,
        age=_as_float(features.get(p.age)),
        segment=segment,
        risk_band=risk_band,
        holdings=holdings,
        consents=consents,
        vulnerable=bool(_as_float(features.get(p.vulnerable)) or 0.0),
        distress_reasons=distress,
        value_at_risk=float(min(max(var, 0.0), config.max_value_at_risk)),
    )


# ---------------------------------------------------------------- the policy


class DecisionPolicy:
    """The policy for one catalogue and one config; stateless, so one instance serves all requests."""

    def __init__(self, catalogue: Catalogue, config: PolicyConfig) -> None:
        config.check_against(catalogue)
        self.catalogue = catalogue
        self.config = config
        self._triggers: dict[str, list[ServiceTrigger]] = {}
        for t in config.service_triggers:
            self._triggers.setdefault(t.action, []).append(t)

    # ---- stage 1: eligibility
    def eligibility_rule(self, action: Action, customer: CustomerView, channel: str) -> Rejection | None:
        """The first catalogue rule that excludes this action for this customer on this channel, if any."""
        if channel not in action.channels:
            return Rejection(action.id, "eligibility.channel", f"not offered on {channel}")
        if not customer.known:
            # Without a profile, only actions with no profile condition remain.
            e = action.eligibility
            if e.requires or e.segments or e.min_age is not None or e.max_age is not None:
                return Rejection(action.id, "cold_start.needs_profile", "eligibility needs a known profile")
            if action.credit and not self.config.cold_start_allow_credit:
                return Rejection(action.id, "cold_start.no_credit", "credit needs a known risk band")
            return None
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
            band = customer.risk_band
            if band is None or RISK_BANDS.index(band) > RISK_BANDS.index(e.max_risk_band):
                return Rejection(action.id, "eligibility.risk_band", f"risk band {band} above {e.max_risk_band}")
        return None

    # ---- stage 2: consent and suitability
    def suitability_rule(self, action: Action, customer: CustomerView, channel: str) -> Rejection | None:
        if action.kind in MARKETING_KINDS and channel in self.config.profile.consent:
            if not customer.known:
                return Rejection(action.id, "consent.unknown", f"no consent on record for {channel}")
            if not customer.consents.get(channel, False):
                return Rejection(action.id, "consent.opted_out", f"no marketing consent for {channel}")
        if action.credit and action.kind == "sales":
            if customer.vulnerable:
                return Rejection(action.id, "suitability.vulnerable", "no credit push to vulnerable customers")
            if customer.in_distress:
                return Rejection(action.id, "suitability.financial_distress", ",".join(customer.distress_reasons))
        return None

    # ---- stage 3: contact policy
    def contact_rules(
        self, customer: CustomerView, channel: str, history: Sequence[ContactRecord], now: datetime
    ) -> tuple[str | None, dict[str, str]]:
        """(rule blocking all marketing on this channel now or None, {action id: cool-down rule})."""
        caps = self.config.caps
        blocked: str | None = None
        if caps.channels is None or channel in caps.channels:
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
                blocked = "contact_policy.daily_channel_cap"
            elif len(contacts) >= caps.max_per_window:
                blocked = "contact_policy.window_cap"
        cooldown: dict[str, str] = {}
        if caps.dismissal_cooldown_days > 0:
            since = now - timedelta(days=caps.dismissal_cooldown_days)
            for c in history:
                if c.outcome == "dismissed" and (c.outcome_ts or c.ts) >= since:
                    cooldown[c.action_id] = "contact_policy.dismissal_cooldown"
        return blocked, cooldown

    def screen(
        self,
        customer: CustomerView,
        channel: str,
        history: Sequence[ContactRecord],
        now: datetime,
        only: Sequence[str] | None = None,
    ) -> Screening:
        """Stages 1-3: which actions may be scored at all, and why every other one was removed."""
        if channel not in self.catalogue.channels:
            raise ValueError(f"unknown channel {channel!r}; known: {', '.join(self.catalogue.channels)}")
        blocked, cooldown = self.contact_rules(customer, channel, history, now)
        candidates: list[Action] = []
        rejected: list[Rejection] = []
        allowed = set(only) if only is not None else None
        for action in self.catalogue.actions:
            if allowed is not None and action.id not in allowed:
                rejected.append(Rejection(action.id, "degraded.not_safe", "only safe actions without features"))
                continue
            reason = self.eligibility_rule(action, customer, channel) or self.suitability_rule(
                action, customer, channel
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
    ) -> tuple[list[RankedAction], list[Rejection]]:
        """Stage 4: priority for each scored candidate, best first; below-threshold ones are rejected."""
        if len(candidates) != len(propensities):
            raise ValueError(f"{len(candidates)} candidates but {len(propensities)} propensities")
        cfg = self.config
        ranked: list[RankedAction] = []
        rejected: list[Rejection] = []
        for action, p in zip(candidates, propensities, strict=True):
            p = float(p)
            w = self.context_weight(action, channel, context)
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
            priority = p * value * w
            trigger = self.triggered(action, context, features) if action.kind == "service" else None
            if trigger is not None:
                priority = max(priority, trigger.priority)
                reasons.append(trigger.reason)
            elif p < cfg.min_propensity:
                rejected.append(Rejection(action.id, "arbitration.min_propensity", f"{p:.4f} < {cfg.min_propensity}"))
                continue
            if priority < cfg.min_priority:
                rejected.append(Rejection(action.id, "arbitration.min_priority", f"{priority:.3f}"))
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
        ranked.sort(key=lambda r: (-r.priority, _KIND_ORDER[r.action.kind], r.action.id))
        return ranked, rejected

    # ---- stage 5: top-k
    def top_k(self, ranked: Sequence[RankedAction], max_actions: int) -> tuple[list[RankedAction], list[Rejection]]:
        k = max(0, min(max_actions, self.config.max_actions))
        chosen = list(ranked[:k])
        rejected = [
            Rejection(r.action.id, "arbitration.outranked", f"rank {i + 1} > {k}") for i, r in enumerate(ranked[k:], k)
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


def reason_code(feature: str, codes: Mapping[str, str]) -> str:
    """The configured code for a feature (longest matching prefix), else the feature name in capitals."""
    best = ""
    for prefix in codes:
        if feature.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return codes[best] if best else feature.upper()


def _band(risk: float) -> str:
    return "HIGH" if risk >= 0.3 else "MEDIUM" if risk >= 0.1 else "LOW"
