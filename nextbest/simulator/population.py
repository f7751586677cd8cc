"""Who the bank's customers are: demographics, segment, credit, channels, consent, latent traits and starting products.

Everything is drawn vectorized for one chunk of customers from that chunk's RNG. Observable attributes go to the
`customers` and `holdings` sources; latent traits (product affinities, sensitivities) go to `truth/customer_latent`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nextbest.catalogue import PRODUCTS, SEGMENTS
from nextbest.simulator import params as P

SEG_MASS, SEG_AFFLUENT, SEG_SB = 0, 1, 2


@dataclass
class Population:
    """Arrays for one chunk of customers; dynamics mutate the state fields in place."""

    customer_id: np.ndarray
    birth_year: np.ndarray
    region: np.ndarray  # index into REGIONS
    segment: np.ndarray  # index into SEGMENTS
    income: np.ndarray
    credit_score: np.ndarray
    vulnerable: np.ndarray
    digital_first: np.ndarray
    engagement: np.ndarray  # 0-1, how much the customer uses app/web
    preferred_channel: np.ndarray  # index into catalogue channels
    consent: np.ndarray  # (n, 5) bool in CONSENT_COLUMNS order
    signup_s: np.ndarray  # seconds relative to world start (negative: joined before)
    # latent traits
    affinity: np.ndarray  # (n, n_products)
    price_sensitivity: np.ndarray
    fatigue_sensitivity: np.ndarray
    churn_propensity: np.ndarray
    channel_affinity: np.ndarray  # (n, n_channels)
    spend_level: np.ndarray
    travel_propensity: np.ndarray
    payday: np.ndarray  # day of month salary arrives
    # products held at start: (n, n_products) and the rows for the holdings table
    held: np.ndarray
    start_holdings: dict[str, np.ndarray]

    @property
    def n(self) -> int:
        return len(self.customer_id)


def risk_band(credit_score: np.ndarray) -> np.ndarray:
    """Index into RISK_BANDS: low >= 720, medium 640-719, high < 640."""
    return np.where(credit_score >= 720, 0, np.where(credit_score >= 640, 1, 2))


def generate_population(
    rng: np.random.Generator,
    customer_ids: np.ndarray,
    start_year: int,
    channels: tuple[str, ...],
    signup_s: np.ndarray | None = None,
    digital_cohort: bool = False,
) -> Population:
    """Draw `len(customer_ids)` customers. `digital_cohort` draws the young, app-first joiners of that scenario.

    The steps draw from `rng` in a fixed order (the order is part of the world): demographics, engagement,
    preferred channel, consent, signup, latent traits, starting products, region.
    """
    n = len(customer_ids)
    age, segment, income, credit_score, vulnerable = _demographics(rng, n, digital_cohort)
    engagement = _engagement(rng, age, digital_cohort)
    digital_first = engagement > 0.68
    preferred_channel = _preferred_channel(rng, digital_first, channels)
    consent = _consent(rng, digital_first, engagement)
    if signup_s is None:
        signup_s = _signup_times(rng, age)
    traits = _latent_traits(rng, segment, digital_first, channels)
    held, start_holdings = _starting_products(rng, segment, age, traits["affinity"], signup_s, digital_cohort)
    return Population(
        customer_id=np.asarray(customer_ids, dtype=np.int64),
        birth_year=(start_year - np.floor(age)).astype(np.int64),
        region=rng.choice(len(P.REGIONS), n, p=[0.3, 0.2, 0.2, 0.15, 0.15]),
        segment=segment,
        income=income,
        credit_score=credit_score,
        vulnerable=vulnerable,
        digital_first=digital_first,
        engagement=engagement,
        preferred_channel=preferred_channel.astype(np.int64),
        consent=consent,
        signup_s=signup_s,
        **traits,
        held=held,
        start_holdings=start_holdings,
    )


def _demographics(
    rng: np.random.Generator, n: int, digital_cohort: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Age, segment, monthly income, credit score and vulnerability, each following the ones before."""
    age = np.clip(rng.normal(29, 6, n), 18, 60) if digital_cohort else np.clip(rng.normal(46, 16, n), 18, 92)
    u = rng.random(n)
    p_sb = 0.04 if digital_cohort else 0.10
    p_aff = 0.08 if digital_cohort else np.clip(0.08 + 0.004 * (age - 25), 0.05, 0.30)
    segment = np.where(u < p_sb, SEG_SB, np.where(u < p_sb + p_aff, SEG_AFFLUENT, SEG_MASS)).astype(np.int64)
    median_income = np.array([2_600.0, 6_800.0, 5_200.0])[segment]
    age_income = 0.75 + 0.25 * np.exp(-(((age - 50) / 18) ** 2))  # earnings peak mid-career
    income = np.round(median_income * age_income * rng.lognormal(0.0, 0.35, n), 2)
    credit_score = np.clip(
        np.round(rng.normal(690, 65, n) + 40 * np.log(income / 3_000.0) + 0.8 * (age - 45)), 300, 850
    ).astype(np.int64)
    vulnerable = (rng.random(n) < 0.03 + 0.12 * (age > 78) + 0.05 * (credit_score < 560)).astype(bool)
    return age, segment, income, credit_score, vulnerable


def _engagement(rng: np.random.Generator, age: np.ndarray, digital_cohort: bool) -> np.ndarray:
    """0-1 use of app and web: high in the digital cohort, else falling with age."""
    n = len(age)
    if digital_cohort:
        return rng.beta(6, 1.5, n)
    return rng.beta(2.2, 2.2, n) * np.clip(1.25 - (age - 18) / 80, 0.25, 1.0)


def _preferred_channel(rng: np.random.Generator, digital_first: np.ndarray, channels: tuple[str, ...]) -> np.ndarray:
    """Preferred channel (index into the catalogue's channels): mostly app for the digital-first."""
    ch = {c: i for i, c in enumerate(channels)}
    pref_choices = np.array([ch.get(c, 0) for c in ("app", "web", "email", "sms", "call_centre")])
    w_digital = np.array([0.7, 0.2, 0.08, 0.01, 0.01])
    w_other = np.array([0.2, 0.15, 0.35, 0.1, 0.2])
    cum_d, cum_o = np.cumsum(w_digital), np.cumsum(w_other)
    r = rng.random(len(digital_first))
    pick = np.where(digital_first, np.searchsorted(cum_d, r * cum_d[-1]), np.searchsorted(cum_o, r * cum_o[-1]))
    return pref_choices[np.minimum(pick, len(pref_choices) - 1)]


def _consent(rng: np.random.Generator, digital_first: np.ndarray, engagement: np.ndarray) -> np.ndarray:
    """(n, 5) marketing consent per channel in CONSENT_COLUMNS order: email, sms, push, app, call."""
    n = len(engagement)
    consent_p = np.stack(
        [
            np.full(n, 0.82),
            np.full(n, 0.62),
            np.where(digital_first, 0.85, 0.35 * engagement + 0.1),
            np.where(engagement > 0.2, 0.92, 0.55),
            np.where(digital_first, 0.35, 0.6),
        ],
        axis=1,
    )
    return rng.random((n, len(P.CONSENT_COLUMNS))) < consent_p


def _signup_times(rng: np.random.Generator, age: np.ndarray) -> np.ndarray:
    """Signup second (negative: before the world starts) of customers already with the bank, tenure capped by age."""
    n = len(age)
    max_tenure_days = np.maximum((age - 18) * 365.25, 30)
    tenure_days = np.minimum(rng.exponential(8 * 365.25, n) + rng.uniform(7, 60, n), max_tenure_days)
    return -np.round(tenure_days * P.SECONDS_PER_DAY).astype(np.int64)


def _latent_traits(
    rng: np.random.Generator, segment: np.ndarray, digital_first: np.ndarray, channels: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """The latent traits (truth, never observed) and pay day, keyed by their `Population` field names."""
    n = len(segment)
    ch = {c: i for i, c in enumerate(channels)}
    affinity = rng.normal(0.0, P.AFFINITY_SD, (n, len(PRODUCTS)))
    price_sensitivity = rng.lognormal(0.0, 0.4, n)
    fatigue_sensitivity = rng.lognormal(0.0, 0.35, n)
    churn_propensity = rng.normal(0.0, P.CHURN_LATENT_SD, n)
    channel_affinity = rng.normal(0.0, 0.35, (n, len(channels)))
    for c in ("app", "push", "web"):
        if c in ch:
            channel_affinity[:, ch[c]] += np.where(digital_first, 0.4, -0.2)
    if "call_centre" in ch:
        channel_affinity[:, ch["call_centre"]] += np.where(digital_first, -0.5, 0.2)
    spend_level = rng.lognormal(0.0, 0.35, n) * np.where(segment == SEG_AFFLUENT, 1.5, 1.0)
    travel_propensity = rng.lognormal(0.0, 0.6, n) * np.where(segment == SEG_AFFLUENT, 1.8, 1.0)
    payday = rng.choice(np.array([1, 15, 20, 25, 28]), n)
    return {
        "affinity": affinity,
        "price_sensitivity": price_sensitivity,
        "fatigue_sensitivity": fatigue_sensitivity,
        "churn_propensity": churn_propensity,
        "channel_affinity": channel_affinity,
        "spend_level": spend_level,
        "travel_propensity": travel_propensity,
        "payday": payday,
    }


def _starting_products(
    rng: np.random.Generator,
    segment: np.ndarray,
    age: np.ndarray,
    affinity: np.ndarray,
    signup_s: np.ndarray,
    digital_cohort: bool,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Products held when the world starts (or when a joiner signs up), consistent with segment and age."""
    n = len(segment)
    held = np.zeros((n, len(PRODUCTS)), dtype=bool)
    seg_names = np.array(SEGMENTS)[segment]
    for j, prod in enumerate(PRODUCTS):
        base = np.array([P.START_HOLDING_PROB[prod][s] for s in SEGMENTS])[segment]
        if digital_cohort:
            base = base * {"mortgage": 0.2, "investments": 0.3, "term_deposit": 0.3, "bnpl": 3.0}.get(prod, 1.0)
            if prod == "travel_card":
                base = base * 2.5
        if prod == "mortgage":
            base = np.where((age < 24) | (age > 75), 0.02 * base, base)
        if prod == "bnpl":
            base = base * np.clip(1.6 - (age - 18) / 40, 0.2, 1.6)
        base = np.clip(base, 0.0, 0.999)
        logit = np.log(np.maximum(base, 1e-9) / np.maximum(1 - base, 1e-9)) + 0.6 * affinity[:, j]
        held[:, j] = (rng.random(n) < 1 / (1 + np.exp(-logit))) & (base > 0)
    ca = PRODUCTS.index("current_account")
    ba = PRODUCTS.index("business_account")
    held[:, ba] |= seg_names == "small_business"
    held[:, ca] |= seg_names != "small_business"
    rows_c, rows_p = np.nonzero(held)
    # opened some time between signup and the world start (joiners: at signup)
    span = np.maximum(-signup_s[rows_c], 0)
    opened = np.where(
        signup_s[rows_c] >= 0,
        signup_s[rows_c],
        signup_s[rows_c] + np.floor(rng.random(len(rows_c)) * span).astype(np.int64),
    )
    core = np.isin(rows_p, [ca, ba])
    opened = np.where(core, signup_s[rows_c], opened)  # the account is opened at signup
    median = np.array([P.PRODUCT_AMOUNT[p] for p in PRODUCTS])[rows_p]
    amount = np.where(median > 0, np.round(median * rng.lognormal(0.0, 0.5, len(rows_c)), 2), 0.0)
    return held, {"row": rows_c, "product": rows_p, "opened_s": opened, "amount": amount}
