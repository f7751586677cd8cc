"""The true acceptance model and the true churn hazard: pure, vectorized functions of a customer's state.

The simulator calls them to draw outcomes; `truth.TrueWorld` calls the same functions on state it rebuilds from the
written tables. Keeping one implementation is what makes the oracle exact (it reproduces every logged contact's
`p_accept`). The per-(customer, action, day) noise is a hash, not an RNG draw, for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nextbest.catalogue import PRODUCTS, RISK_BANDS, SEGMENTS, Catalogue
from nextbest.simulator import params as P

_HASH_C1 = np.uint64(0x9E3779B97F4A7C15)
_HASH_C2 = np.uint64(0xBF58476D1CE4E5B9)
_HASH_C3 = np.uint64(0x94D049BB133111EB)
_HASH_C4 = np.uint64(0xD6E8FEB86659FD93)


def _splitmix(x: np.ndarray) -> np.ndarray:
    x = x + _HASH_C1
    x = (x ^ (x >> np.uint64(30))) * _HASH_C2
    x = (x ^ (x >> np.uint64(27))) * _HASH_C3
    return x ^ (x >> np.uint64(31))


def hash_noise(seed: int, customer_id: np.ndarray, action_index: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Logistic noise, scaled by NOISE_SCALE, that is a fixed function of (seed, customer, action, day)."""
    with np.errstate(over="ignore"):
        x = np.full(np.shape(customer_id), np.uint64(seed & 0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
        x = _splitmix(x ^ (np.asarray(customer_id).astype(np.uint64) * _HASH_C4))
        x = _splitmix(x ^ (np.asarray(action_index).astype(np.uint64) * _HASH_C2))
        x = _splitmix(x ^ (np.asarray(day).astype(np.uint64) * _HASH_C3))
    u = ((x >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
    return P.NOISE_SCALE * np.log(u / (1.0 - u))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def logit(p: float) -> float:
    return float(np.log(p / (1.0 - p)))


def _base_logit(action_id: str, kind: str, value: float) -> float:
    """The sourced untargeted rate of a product offer, else the kind's base shifted by the action's value."""
    if action_id in P.ACCEPT_BASE_RATE:
        return logit(P.ACCEPT_BASE_RATE[action_id])
    return P.KIND_BASE_LOGIT[kind] + P.VALUE_SLOPE * float(np.log(value / 100.0))


@dataclass(frozen=True)
class ActionTable:
    """The catalogue as arrays (one row per action) with the world's true effects attached."""

    ids: tuple[str, ...]
    channels: tuple[str, ...]
    kind: np.ndarray  # str
    product: np.ndarray  # product index, -1 for retention/service actions
    value: np.ndarray
    credit: np.ndarray  # bool
    base_logit: np.ndarray
    intent_gain: np.ndarray  # (A, n_intents)
    context_gain: np.ndarray  # (A, n_signals)
    segment_gain: np.ndarray  # (A, n_segments)
    income_gain: np.ndarray
    price_gain: np.ndarray
    age_peak: np.ndarray
    age_width: np.ndarray
    age_gain: np.ndarray
    channel_ok: np.ndarray  # (A, n_channels) bool
    min_age: np.ndarray
    max_age: np.ndarray
    segment_ok: np.ndarray  # (A, n_segments) bool
    requires: np.ndarray  # (A, n_products) bool
    excludes: np.ndarray  # (A, n_products) bool
    max_risk: np.ndarray  # index into RISK_BANDS
    deposit: np.ndarray  # bool: a deposit product (rate shock raises appetite)
    loan: np.ndarray  # bool: a loan product (rate shock lowers appetite)
    churn_gain: np.ndarray  # daily churn-logit effect of accepting the action (retention, service, a new product)
    churn_tau: np.ndarray  # its time constant in days (inf: for as long as the product is held)
    outbound: np.ndarray  # (n_channels,) bool: the channel pushes a message (OUTBOUND_CHANNELS)
    opt_out_logit: np.ndarray  # (n_channels,) base logit of withdrawing consent after an unwanted contact (-inf: none)
    complaint_logit: np.ndarray  # (n_channels,) base logit of a complaint after an unwanted contact (-inf: none)
    organic_gain: np.ndarray  # (A, n_intents): daily organic uptake of the action's product per unit intent level
    organic_credit: np.ndarray  # (A,) bool: organic uptake of the product needs a low or medium risk band
    # Pricing (the catalogue's approved bands): per action and risk band the list price, range and step (NaN:
    # unpriced), the sign of the response (+1 credit, -1 deposit) and the elasticities below / above the list price.
    price_list: np.ndarray  # (A, n_risk_bands)
    price_min: np.ndarray
    price_max: np.ndarray
    price_step: np.ndarray
    price_sign: np.ndarray  # (A,)
    price_elasticity: np.ndarray  # (A, 2)

    @classmethod
    def from_catalogue(cls, catalogue: Catalogue) -> ActionTable:
        acts = catalogue.actions
        n_a = len(acts)
        channels = catalogue.channels
        kind = np.array([a.kind for a in acts])
        product = np.array([PRODUCTS.index(a.product) if a.product else -1 for a in acts], dtype=np.int64)
        value = np.array([a.value for a in acts], dtype=np.float64)
        base = np.array([_base_logit(a.id, a.kind, a.value) for a in acts], dtype=np.float64)
        intent_gain = np.zeros((n_a, len(P.INTENTS)))
        context_gain = np.zeros((n_a, len(P.SIGNALS)))
        segment_gain = np.zeros((n_a, len(SEGMENTS)))
        income_gain = np.zeros(n_a)
        age_peak = np.full(n_a, 40.0)
        age_width = np.full(n_a, 10.0)
        age_gain = np.zeros(n_a)
        for i, a in enumerate(acts):
            for k, g in P.INTENT_EFFECT.get(a.id, {}).items():
                intent_gain[i, P.INTENTS.index(k)] = g
            for s, g in P.CONTEXT_EFFECT.get(a.id, {}).items():
                context_gain[i, P.SIGNALS.index(s)] = g
            for seg, g in P.SEGMENT_EFFECT.get(a.id, {}).items():
                segment_gain[i, SEGMENTS.index(seg)] = g
            income_gain[i] = P.INCOME_EFFECT.get(a.id, 0.0)
            if a.id in P.AGE_EFFECT:
                age_peak[i], age_width[i], age_gain[i] = P.AGE_EFFECT[a.id]
        rules = _eligibility_arrays(catalogue)
        deposit = np.array([a.product in P.DEPOSIT_PRODUCTS for a in acts])
        loan = np.array([a.product in P.LOAN_PRODUCTS for a in acts])
        churn_gain, churn_tau = _churn_effects(kind, product)
        organic_gain = np.zeros((n_a, len(P.INTENTS)))
        for i, a in enumerate(acts):
            for k, g in P.ORGANIC_UPTAKE.get(a.product or "", {}).items():
                organic_gain[i, P.INTENTS.index(k)] = g
        return cls(
            ids=catalogue.action_ids,
            channels=channels,
            kind=kind,
            product=product,
            value=value,
            credit=np.array([a.credit for a in acts]),
            base_logit=base,
            intent_gain=intent_gain,
            context_gain=context_gain,
            segment_gain=segment_gain,
            income_gain=income_gain,
            price_gain=np.array([P.PRICE_SENSITIVITY_EFFECT.get(a.id, 0.0) for a in acts]),
            age_peak=age_peak,
            age_width=age_width,
            age_gain=age_gain,
            channel_ok=rules["channel_ok"],
            min_age=rules["min_age"],
            max_age=rules["max_age"],
            segment_ok=rules["segment_ok"],
            requires=rules["requires"],
            excludes=rules["excludes"],
            max_risk=rules["max_risk"],
            deposit=deposit,
            loan=loan,
            churn_gain=churn_gain,
            churn_tau=churn_tau,
            outbound=np.array([c in P.OUTBOUND_CHANNELS for c in channels]),
            opt_out_logit=_channel_logits(channels, P.OPT_OUT_BASE_RATE),
            complaint_logit=_channel_logits(channels, P.COMPLAINT_BASE_RATE),
            organic_gain=organic_gain,
            organic_credit=np.array([a.product in P.ORGANIC_CREDIT_CHECK for a in acts]),
            **_price_arrays(catalogue),
        )

    def eligible(
        self,
        age: np.ndarray,
        segment: np.ndarray,
        risk: np.ndarray,
        held: np.ndarray,
    ) -> np.ndarray:
        """(n, A) bool: which actions the catalogue allows for each customer (consent and channel apart)."""
        ok = (age[:, None] >= self.min_age[None, :]) & (age[:, None] <= self.max_age[None, :])
        ok &= self.segment_ok.T[segment]
        ok &= risk[:, None] <= self.max_risk[None, :]
        # requires: no required product missing; excludes: none of the excluded held. Boolean broadcasting, not a
        # matmul: BLAS threads on small matrices cost more than they save on a busy 2-core machine.
        held = held.astype(bool)
        ok &= ~((~held[:, None, :]) & self.requires[None, :, :]).any(axis=2)
        ok &= ~(held[:, None, :] & self.excludes[None, :, :]).any(axis=2)
        return ok


def _eligibility_arrays(catalogue: Catalogue) -> dict[str, np.ndarray]:
    """The catalogue's channels and eligibility rules per action as arrays (see `ActionTable.eligible`)."""
    acts, channels = catalogue.actions, catalogue.channels
    n_a = len(acts)
    channel_ok = np.zeros((n_a, len(channels)), dtype=bool)
    min_age = np.zeros(n_a)
    max_age = np.full(n_a, 200.0)
    segment_ok = np.ones((n_a, len(SEGMENTS)), dtype=bool)
    requires = np.zeros((n_a, len(PRODUCTS)), dtype=bool)
    excludes = np.zeros((n_a, len(PRODUCTS)), dtype=bool)
    max_risk = np.full(n_a, len(RISK_BANDS) - 1, dtype=np.int64)
    for i, a in enumerate(acts):
        for c in a.channels:
            channel_ok[i, channels.index(c)] = True
        e = a.eligibility
        if e.min_age is not None:
            min_age[i] = e.min_age
        if e.max_age is not None:
            max_age[i] = e.max_age
        if e.segments is not None:
            segment_ok[i] = [s in e.segments for s in SEGMENTS]
        for p in e.requires:
            requires[i, PRODUCTS.index(p)] = True
        for p in e.excludes:
            excludes[i, PRODUCTS.index(p)] = True
        if a.product is not None:
            # a customer never buys a product twice here: holding it makes the offer ineligible
            excludes[i, PRODUCTS.index(a.product)] = True
        if e.max_risk_band is not None:
            max_risk[i] = RISK_BANDS.index(e.max_risk_band)
    return {
        "channel_ok": channel_ok,
        "min_age": min_age,
        "max_age": max_age,
        "segment_ok": segment_ok,
        "requires": requires,
        "excludes": excludes,
        "max_risk": max_risk,
    }


def _price_arrays(catalogue: Catalogue) -> dict[str, np.ndarray]:
    """The catalogue's approved bands as (A, n_risk_bands) arrays and the world's elasticities (params)."""
    n_a, n_r = len(catalogue.actions), len(RISK_BANDS)
    out = {k: np.full((n_a, n_r), np.nan) for k in ("price_list", "price_min", "price_max", "price_step")}
    sign = np.zeros(n_a)
    elasticity = np.zeros((n_a, 2))
    for i, a in enumerate(catalogue.actions):
        spec = catalogue.pricing.get(a.id)
        if spec is None:
            continue
        sign[i] = 1.0 if spec.kind == "credit" else -1.0
        elasticity[i] = P.PRICE_ELASTICITY.get(a.id, (0.0, 0.0))
        for r, rb in enumerate(RISK_BANDS):
            band = spec.band_for(rb)
            if band is not None:
                out["price_list"][i, r], out["price_min"][i, r] = band.list_price, band.min
                out["price_max"][i, r], out["price_step"][i, r] = band.max, band.step
    return {**out, "price_sign": sign, "price_elasticity": elasticity}


def price_shift(
    table: ActionTable, action: np.ndarray, risk: np.ndarray, price: np.ndarray, sensitivity: np.ndarray
) -> np.ndarray:
    """The log-odds shift of offering `price` instead of the list price of the customer's band (0 at list price,
    for an unpriced action, or a NaN price): -sign x sensitivity x e x log(price / list), e below or above list."""
    listed = table.price_list[action, np.clip(risk, 0, len(RISK_BANDS) - 1)]
    ok = np.isfinite(price) & np.isfinite(listed) & (listed > 0) & (price > 0)
    x = np.log(np.where(ok, price, 1.0) / np.where(ok, listed, 1.0))
    e = np.where(x < 0, table.price_elasticity[action, 0], table.price_elasticity[action, 1])
    return np.where(ok, -table.price_sign[action] * sensitivity * e * x, 0.0)


def _churn_effects(kind: np.ndarray, product: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per action, what accepting it does to the daily churn logit and for how long (see `prevented_churn`)."""
    gain = np.where(
        kind == "retention",
        P.CHURN_RETENTION_GAIN,
        np.where(kind == "service", P.CHURN_SERVICE_GAIN, np.where(product >= 0, P.CHURN_PRODUCTS_GAIN, 0.0)),
    )
    tau = np.where(
        kind == "retention", P.CHURN_RETENTION_TAU_DAYS, np.where(kind == "service", P.CHURN_SERVICE_TAU_DAYS, np.inf)
    )
    return gain.astype(np.float64), tau.astype(np.float64)


def _channel_logits(channels: tuple[str, ...], rates: dict[str, float]) -> np.ndarray:
    return np.array([logit(rates[c]) if c in rates else -np.inf for c in channels])


@dataclass
class AcceptState:
    """Everything the true acceptance probability depends on, one row per (customer, action, channel, time)."""

    action: np.ndarray  # action index
    channel: np.ndarray  # channel index in the catalogue's channel list
    segment: np.ndarray
    age: np.ndarray
    income: np.ndarray
    affinity: np.ndarray  # latent affinity for the action's product (0 for non-product actions)
    price_sensitivity: np.ndarray
    fatigue_sensitivity: np.ndarray
    channel_affinity: np.ndarray  # the customer's latent affinity for this channel
    intent_level: np.ndarray  # (m, n_intents), decayed to the time of the decision
    signal_age_hours: np.ndarray  # (m, n_signals), inf if never seen
    fatigue_contacts: np.ndarray
    fatigue_dismissals: np.ndarray
    drift: np.ndarray  # logit shift from the active drift scenario
    noise: np.ndarray
    price_shift: np.ndarray | None = None  # the offered price's shift (`price_shift`); None: list price


def accept_logit(table: ActionTable, s: AcceptState) -> np.ndarray:
    """The true log-odds that the customer accepts the action shown on the channel at that time."""
    a = s.action
    channel_names = np.array(table.channels)
    channel_base = np.array([P.CHANNEL_EFFECT.get(c, 0.0) for c in channel_names])
    fit = (
        s.affinity
        + table.segment_gain[a, s.segment]
        + table.income_gain[a] * np.log(np.maximum(s.income, 100.0) / 2_500.0)
        + table.age_gain[a] * np.exp(-(((s.age - table.age_peak[a]) / table.age_width[a]) ** 2))
    )
    fit = fit + table.price_gain[a] * (s.price_sensitivity - 1.0)
    intent = np.einsum("mk,mk->m", table.intent_gain[a], s.intent_level)
    taus = np.array([P.SIGNAL_TAU_HOURS[x] for x in P.SIGNALS])
    with np.errstate(over="ignore", invalid="ignore"):
        recency = np.where(np.isfinite(s.signal_age_hours), np.exp(-np.maximum(s.signal_age_hours, 0.0) / taus), 0.0)
    context = np.einsum("mk,mk->m", table.context_gain[a], recency)
    channel = channel_base[s.channel] + s.channel_affinity
    fatigue = -s.fatigue_sensitivity * (
        P.FATIGUE_CONTACT_WEIGHT * s.fatigue_contacts + P.FATIGUE_DISMISS_WEIGHT * s.fatigue_dismissals
    )
    out = table.base_logit[a] + fit + intent + context + channel + fatigue + s.drift + s.noise
    return out if s.price_shift is None else out + s.price_shift


def accept_probability(table: ActionTable, s: AcceptState) -> np.ndarray:
    """The true probability of acceptance (the outcome is a Bernoulli draw from it)."""
    return sigmoid(accept_logit(table, s))


def drift_shift(
    table: ActionTable, action: np.ndarray, scenario: str | None, after_start: np.ndarray | bool
) -> np.ndarray:
    """Logit shift of each action's appetite under the scenario (rate shock: deposits up, loans down)."""
    if scenario != "rate_shock":
        return np.zeros(np.shape(action))
    shift = np.where(table.deposit[action], P.RATE_SHOCK_DEPOSIT_SHIFT, 0.0) + np.where(
        table.loan[action], P.RATE_SHOCK_LOAN_SHIFT, 0.0
    )
    return np.where(after_start, shift, 0.0)


def consequence_probabilities(
    table: ActionTable,
    channel: np.ndarray,
    recent_contacts: np.ndarray,
    p_accept: np.ndarray,
    dismissed: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """P(withdraw the channel's consent) and P(complain) after a delivered contact that was not accepted.

    Logistic in the channel's base rate, frequency (log(1 + recent contacts): the 7-day fatigue memory before
    today), irrelevance (decades of true acceptance below RELEVANT_P_ACCEPT, at most 3) and an explicit dismissal.
    Channels without a consent (ATM) have no opt-out; an accepted contact has neither.
    """
    irrelevance = np.clip(np.log10(P.RELEVANT_P_ACCEPT / np.maximum(p_accept, 1e-6)), 0.0, 3.0)
    shift = (
        P.CONSEQUENCE_FREQUENCY_GAIN * np.log1p(recent_contacts)
        + P.CONSEQUENCE_IRRELEVANCE_GAIN * irrelevance
        + P.CONSEQUENCE_DISMISS_GAIN * dismissed
    )
    with np.errstate(over="ignore"):
        p_opt = sigmoid(table.opt_out_logit[channel] + shift)
        p_complaint = sigmoid(table.complaint_logit[channel] + shift)
    return p_opt, p_complaint


def organic_daily_probability(gain: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Daily probability of organic uptake: sum over intents of gain * min(level, cap). gain and level (..., K)."""
    return np.sum(gain * np.minimum(level, P.ORGANIC_LEVEL_CAP), axis=-1)


def organic_within(gain: np.ndarray, level: np.ndarray, half_life: np.ndarray, days: int) -> np.ndarray:
    """P(organic uptake on at least one of the next `days` days) as intents decay and no new one arrives.

    gain (m, K): the product's organic gain per intent; level (m, K): intent levels at the first day's midnight.
    As in the simulator, a day on which no intent is above LIVE_INTENT_LEVEL has no uptake.
    """
    steps = np.arange(days, dtype=np.float64)
    decayed = level[:, None, :] * np.power(0.5, steps[None, :, None] / half_life[None, None, :])  # (m, H, K)
    daily = np.clip(organic_daily_probability(gain[:, None, :], decayed), 0.0, 1.0)
    daily = np.where(decayed.max(axis=2) > P.LIVE_INTENT_LEVEL, daily, 0.0)
    return 1.0 - np.exp(np.sum(np.log1p(-np.minimum(daily, 1.0 - 1e-12)), axis=1))


def prevented_churn(hazard: np.ndarray, gain: np.ndarray, tau: np.ndarray, horizon_days: int) -> np.ndarray:
    """Drop in P(close within the horizon) if the effect g_d = gain * exp(-d / tau) is added to the churn logit.

    prod_{d<H} (1 - sigmoid(logit(h) + g_d)) - (1 - h)^H, with the day's hazard h held constant.
    """
    days = np.arange(horizon_days, dtype=np.float64)
    effect = gain[:, None] * np.exp(-days[None, :] / tau[:, None])
    hc = np.clip(hazard, 1e-12, 1 - 1e-12)
    z = np.log(hc / (1.0 - hc))
    kept = np.exp(np.sum(np.log1p(-1.0 / (1.0 + np.exp(-(z[:, None] + effect)))), axis=1))
    base = np.power(1.0 - hazard, horizon_days)
    return np.where(hazard > 0, np.clip(kept - base, 0.0, 1.0), 0.0)


def decay(tau_days: float) -> float:
    """Daily multiplier of an exponentially decaying memory with time constant tau (days)."""
    return float(np.exp(-1.0 / tau_days))
