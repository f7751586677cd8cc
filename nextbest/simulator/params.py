"""The physics of the simulated bank: every constant that shapes behaviour, in one place.

The simulator and the oracle (`truth.TrueWorld`) both read these tables, so the probability the simulator drew an
outcome from and the probability the oracle reconstructs later are the same function of the same numbers. Effects
are keyed by catalogue action id; an action added to the catalogue without an entry here still simulates, with the
default effects of its kind (so the catalogue stays data, not code).
"""

from __future__ import annotations

SECONDS_PER_DAY = 86_400
DAY_END_SECOND = SECONDS_PER_DAY - 1  # closures and end-of-day statements happen at 23:59:59

INTENTS: tuple[str, ...] = (
    "home_purchase",
    "car_purchase",
    "travel",
    "new_child",
    "retirement",
    "financial_distress",
    "switching",
    "business_expansion",  # a small business plans an investment (premises, equipment): what a business loan needs
)
# Half-life of an intent's strength, days. Fixed per intent type so a customer's level of one intent is a single
# exponentially decaying sum (the simulator carries it as one number; the oracle recomputes it from the rows).
INTENT_HALF_LIFE_DAYS: dict[str, float] = {
    "home_purchase": 40.0,
    "car_purchase": 21.0,
    "travel": 10.0,
    "new_child": 60.0,
    "retirement": 90.0,
    "financial_distress": 30.0,
    "switching": 21.0,
    "business_expansion": 45.0,
}
# Base daily arrival rate of each life event / intent (Poisson); population.py and dynamics.py scale it per customer.
INTENT_BASE_RATE: dict[str, float] = {
    "home_purchase": 1 / 1200,
    "car_purchase": 1 / 900,
    "travel": 1 / 150,
    "new_child": 1 / 2500,
    "retirement": 1 / 600,
    "financial_distress": 1 / 1500,
    "switching": 1 / 1500,
    "business_expansion": 1 / 700,  # small businesses only (engine._static_intent_rates)
}

SIGNALS: tuple[str, ...] = (
    "airport_checkin",
    "car_dealership_visit",
    "property_search",
    "salary_credit",
    "card_lost",
    "complaint",
    "competitor_transfer",
    "large_purchase",
    "baby_store",
)
SIGNAL_LOCATION: dict[str, str] = {
    "airport_checkin": "airport",
    "car_dealership_visit": "dealership",
    "property_search": "home",
    "salary_credit": "other",
    "card_lost": "other",
    "complaint": "branch",
    "competitor_transfer": "home",
    "large_purchase": "store",
    "baby_store": "store",
}
LOCATION_TYPES: tuple[str, ...] = ("airport", "dealership", "home", "branch", "store", "other")
# How long a real-time signal moves propensity: its effect is gain * exp(-age_hours / tau_hours).
SIGNAL_TAU_HOURS: dict[str, float] = {
    "airport_checkin": 36.0,
    "car_dealership_visit": 72.0,
    "property_search": 120.0,
    "salary_credit": 48.0,
    "card_lost": 48.0,
    "complaint": 96.0,
    "competitor_transfer": 240.0,
    "large_purchase": 48.0,
    "baby_store": 120.0,
}
# Daily probability of a signal: base + gain * level of the intent that drives it (None: no intent behind it).
SIGNAL_DRIVER: dict[str, tuple[str | None, float, float]] = {
    "airport_checkin": ("travel", 0.0004, 0.10),
    "car_dealership_visit": ("car_purchase", 0.0002, 0.09),
    "property_search": ("home_purchase", 0.0005, 0.20),
    "salary_credit": (None, 0.0, 0.0),  # paid on the customer's pay day, not drawn
    "card_lost": (None, 0.0008, 0.0),
    "complaint": ("switching", 0.0006, 0.03),
    "competitor_transfer": ("switching", 0.0001, 0.06),
    "large_purchase": ("home_purchase", 0.0015, 0.02),
    "baby_store": ("new_child", 0.0002, 0.12),
}
# Signals that make the logging policy act in real time, and the probability that it does.
TRIGGER_PROBABILITY: dict[str, float] = {
    "airport_checkin": 0.6,
    "car_dealership_visit": 0.6,
    "property_search": 0.4,
    "salary_credit": 0.05,
    "card_lost": 0.8,
    "complaint": 0.7,
    "competitor_transfer": 0.5,
    "large_purchase": 0.3,
    "baby_store": 0.4,
}

CHANNEL_CONSENT: dict[str, str | None] = {
    "app": "consent_app",
    "web": "consent_app",
    "email": "consent_email",
    "sms": "consent_sms",
    "push": "consent_push",
    "call_centre": "consent_call",
    "atm": None,  # shown on the bank's own screen while the customer is present: no marketing consent needed
}
CONSENT_COLUMNS: tuple[str, ...] = ("consent_email", "consent_sms", "consent_push", "consent_app", "consent_call")
# Baseline response by channel (logit shift); the customer's own channel affinity adds to it.
# Order from the DMA response rate reports (phone and direct mail far above email: house-list mail 3.40% vs email
# 0.12% in 2012) and the UCI telemarketing study (term deposits by phone 11.3%); magnitudes are modelling choices
# (docs/simulator.md, sources table).
CHANNEL_EFFECT: dict[str, float] = {
    "app": 0.25,
    "web": 0.0,
    "email": -0.45,
    "sms": -0.55,
    "push": 0.05,
    "call_centre": 0.9,
    "atm": -0.35,
}
# Channels the bank pushes a message through (the customer is not in a session with the bank): the consequences of
# unwanted contact (opt-out, complaint, nuisance churn) weigh on these; app, web and ATM offers are shown in session.
OUTBOUND_CHANNELS: frozenset[str] = frozenset({"email", "sms", "push", "call_centre"})
DIGITAL_CHANNELS: frozenset[str] = frozenset({"app", "web", "push"})

REGIONS: tuple[str, ...] = ("capital", "north", "south", "east", "west")
HOME_COUNTRY = "NL"
TRAVEL_COUNTRIES: tuple[str, ...] = ("ES", "FR", "IT", "PT", "GR", "GB", "US", "DE")

# ---- true acceptance model: logit = base(kind, value) + fit + intent + context + channel + fatigue + drift + noise
# Untargeted acceptance of each product's offer on the reference channel (channel effect 0), for a customer with no
# particular need: logit(rate) is the action's base logit. Sources in docs/simulator.md ("Response rates"): card
# mailings 0.6-1.2% (Mail Monitor), hard offers to a list "below 1%", deposits by phone 11.3% (UCI, Moro et al.
# 2014). The big-ticket products are need-gated: without the matching intent or life event they are almost never
# taken (a mortgage offer to someone not buying a home), with it a timely offer converts at 15-30% (INTENT_EFFECT).
ACCEPT_BASE_RATE: dict[str, float] = {
    "travel_card": 0.005,
    "travel_insurance": 0.002,
    "credit_card": 0.008,
    "personal_loan": 0.005,
    "car_loan": 0.0008,
    "mortgage": 0.0005,
    "savings_account": 0.015,
    "term_deposit": 0.02,
    "investment_fund": 0.005,
    "home_insurance": 0.007,
    "bnpl": 0.005,
    "business_loan": 0.001,
    "merchant_acquiring": 0.005,
}
# Actions without an ACCEPT_BASE_RATE entry (retention, service, and any action a bank adds to its catalogue): base by
# kind and value. Retention and service acceptance is driven by their triggers (switching, complaint, card lost).
KIND_BASE_LOGIT: dict[str, float] = {"sales": -3.55, "retention": -3.9, "service": -5.6}
VALUE_SLOPE = -0.3  # per log(value / 100): bigger commitments are harder to sell
NOISE_SCALE = 0.35  # logistic noise per (customer, action, day), reproducible by hashing
FATIGUE_CONTACT_TAU_DAYS = 7.0
FATIGUE_DISMISS_TAU_DAYS = 14.0
FATIGUE_CONTACT_WEIGHT = 0.35
FATIGUE_DISMISS_WEIGHT = 0.9

# Action -> {intent: logit gain per unit of (decayed) intent level}
INTENT_EFFECT: dict[str, dict[str, float]] = {
    "travel_card": {"travel": 2.6},
    "travel_insurance": {"travel": 3.0},
    "credit_card": {"travel": 0.5, "new_child": 0.4},
    "personal_loan": {"new_child": 0.8, "financial_distress": 1.0, "home_purchase": 0.6},
    # need-gated: at a typical intent level (0.7) plus the matching signal a timely offer converts at 15-30%
    "car_loan": {"car_purchase": 5.0},
    "mortgage": {"home_purchase": 6.6},
    "savings_account": {"new_child": 1.2, "retirement": 0.6},
    "term_deposit": {"retirement": 1.8},
    "investment_fund": {"retirement": 1.6},
    "home_insurance": {"home_purchase": 2.2, "new_child": 0.9},
    "bnpl": {"financial_distress": 0.6},
    "business_loan": {"business_expansion": 5.5, "financial_distress": 0.5},
    "merchant_acquiring": {"business_expansion": 1.0},
    "fee_waiver": {"switching": 2.2, "financial_distress": 0.8},
    "loyalty_rate_boost": {"switching": 2.4},
    "card_replacement": {},
    "financial_health_check": {"financial_distress": 5.5},
    "complaint_callback": {"switching": 1.0},
}
# Action -> {signal: logit gain at age 0, decaying with SIGNAL_TAU_HOURS}
CONTEXT_EFFECT: dict[str, dict[str, float]] = {
    "travel_card": {"airport_checkin": 2.2},
    "travel_insurance": {"airport_checkin": 3.2},
    "car_loan": {"car_dealership_visit": 2.5},
    "mortgage": {"property_search": 1.6},
    "home_insurance": {"property_search": 1.0},
    "savings_account": {"salary_credit": 0.5, "baby_store": 0.8},
    "term_deposit": {"salary_credit": 0.4},
    "bnpl": {"large_purchase": 2.0},
    "personal_loan": {"large_purchase": 1.0},
    "fee_waiver": {"complaint": 1.2, "competitor_transfer": 1.2},
    "loyalty_rate_boost": {"competitor_transfer": 1.6},
    "card_replacement": {"card_lost": 6.3},
    "complaint_callback": {"complaint": 5.4},
}
# Action -> segment -> logit shift (mass, affluent, small_business)
SEGMENT_EFFECT: dict[str, dict[str, float]] = {
    "investment_fund": {"mass": -0.3, "affluent": 1.0},
    "term_deposit": {"affluent": 0.5},
    "mortgage": {"affluent": 0.3},
    "bnpl": {"mass": 0.3, "affluent": -0.6},
    "credit_card": {"affluent": 0.2},
    "business_loan": {"small_business": 0.4},
    "merchant_acquiring": {"small_business": 0.6},
    "travel_card": {"affluent": 0.4},
}
# Action -> logit gain per log(income / 2,500 EUR)
INCOME_EFFECT: dict[str, float] = {
    "investment_fund": 0.8,
    "term_deposit": 0.5,
    "mortgage": 0.3,
    "travel_card": 0.3,
    "bnpl": -0.6,
    "personal_loan": -0.3,
    "savings_account": 0.2,
}
# Action -> logit gain per unit of price sensitivity above average (fee waivers appeal to the price-sensitive)
PRICE_SENSITIVITY_EFFECT: dict[str, float] = {"fee_waiver": 0.6, "loyalty_rate_boost": 0.4}
# Action -> (age of peak appetite, width in years, gain at the peak)
AGE_EFFECT: dict[str, tuple[float, float, float]] = {
    "mortgage": (34.0, 9.0, 0.8),
    "car_loan": (38.0, 14.0, 0.3),
    "bnpl": (24.0, 8.0, 0.8),
    "investment_fund": (56.0, 12.0, 0.6),
    "term_deposit": (64.0, 12.0, 0.7),
    "travel_card": (33.0, 12.0, 0.3),
    "home_insurance": (38.0, 12.0, 0.3),
    "savings_account": (30.0, 15.0, 0.2),
}

# ---- products held at start: base probability by segment, then shifted by the customer's affinity
START_HOLDING_PROB: dict[str, dict[str, float]] = {
    "current_account": {"mass": 0.97, "affluent": 0.99, "small_business": 0.85},
    "savings": {"mass": 0.40, "affluent": 0.75, "small_business": 0.35},
    "term_deposit": {"mass": 0.06, "affluent": 0.25, "small_business": 0.08},
    "credit_card": {"mass": 0.35, "affluent": 0.65, "small_business": 0.40},
    "travel_card": {"mass": 0.06, "affluent": 0.18, "small_business": 0.10},
    "personal_loan": {"mass": 0.12, "affluent": 0.08, "small_business": 0.08},
    "car_loan": {"mass": 0.07, "affluent": 0.10, "small_business": 0.10},
    "mortgage": {"mass": 0.22, "affluent": 0.40, "small_business": 0.20},
    "investments": {"mass": 0.07, "affluent": 0.40, "small_business": 0.10},
    "home_insurance": {"mass": 0.18, "affluent": 0.35, "small_business": 0.15},
    "travel_insurance": {"mass": 0.05, "affluent": 0.15, "small_business": 0.05},
    "bnpl": {"mass": 0.10, "affluent": 0.03, "small_business": 0.02},
    "business_account": {"mass": 0.0, "affluent": 0.0, "small_business": 1.0},
    "business_loan": {"mass": 0.0, "affluent": 0.0, "small_business": 0.30},
    "merchant_acquiring": {"mass": 0.0, "affluent": 0.0, "small_business": 0.40},
}
# Mean latent affinity by segment (the customer's own affinity is this plus N(0, AFFINITY_SD)).
AFFINITY_SD = 0.7
# Typical amount (limit / principal / initial deposit) when a product is opened, EUR: lognormal median.
PRODUCT_AMOUNT: dict[str, float] = {
    "current_account": 0.0,
    "savings": 3_000.0,
    "term_deposit": 10_000.0,
    "credit_card": 2_500.0,
    "travel_card": 1_500.0,
    "personal_loan": 8_000.0,
    "car_loan": 18_000.0,
    "mortgage": 240_000.0,
    "investments": 15_000.0,
    "home_insurance": 0.0,
    "travel_insurance": 0.0,
    "bnpl": 600.0,
    "business_account": 0.0,
    "business_loan": 40_000.0,
    "merchant_acquiring": 0.0,
}
# Organic uptake without any contact: daily probability gain per unit intent level (capped at 1.5). Over an intent
# episode of strength 1 the uptake here is 1 - exp(-gain * half_life / ln 2): mortgage ~40% (Accenture UK 2010: 46%
# likely to buy their next product from their current provider), car loan ~15% (Experian: banks finance 24-28% of
# vehicles, about half of cars are financed), business loan ~32%, travel insurance ~13%.
ORGANIC_UPTAKE: dict[str, dict[str, float]] = {
    "mortgage": {"home_purchase": 0.0089},
    "car_loan": {"car_purchase": 0.0054},
    "travel_insurance": {"travel": 0.010},
    "home_insurance": {"home_purchase": 0.004},
    "savings": {"new_child": 0.003},
    "personal_loan": {"financial_distress": 0.004},
    "business_loan": {"business_expansion": 0.006},
}
# Horizon of the truth's organic probability (`TrueWorld.p_organic`, `contact_truth.p_organic`): the chance that the
# customer takes the product anyway within this many days, on their own, given the intents they have now.
ORGANIC_HORIZON_DAYS = 90
# Products only taken organically by customers in the low or medium risk band (the bank's own credit check).
ORGANIC_CREDIT_CHECK: frozenset[str] = frozenset({"mortgage", "personal_loan", "car_loan", "business_loan"})
ORGANIC_LEVEL_CAP = 1.5
LIVE_INTENT_LEVEL = 0.005  # below this on every intent a customer has no live need (no intent page views, no uptake)

# ---- churn hazard (daily), logit scale
CHURN_BASE_LOGIT = -7.45
CHURN_LATENT_SD = 0.6
CHURN_SWITCHING_GAIN = 2.6
CHURN_COMPLAINT_GAIN = 1.0
CHURN_COMPLAINT_TAU_DAYS = 21.0
CHURN_COMPETITOR_GAIN = 1.3
CHURN_FEE_GAIN = 0.4  # per fee charged in the last ~month (decayed), times price sensitivity
CHURN_FEE_TAU_DAYS = 30.0
CHURN_BALANCE_DROP_GAIN = 1.0
CHURN_NEW_CUSTOMER_GAIN = 0.7  # * exp(-tenure_years / 1.5)
CHURN_PRODUCTS_GAIN = -0.18  # per product held (stickiness)
CHURN_RETENTION_GAIN = -1.6  # per accepted retention action, decayed
CHURN_RETENTION_TAU_DAYS = 60.0
CHURN_SERVICE_GAIN = -0.6  # per accepted service action (complaint resolved, card replaced), decayed
CHURN_SERVICE_TAU_DAYS = 30.0
# Nuisance: each unwanted marketing contact (outbound, not accepted) adds to a memory decaying over 30 days; the churn
# logit rises by this gain per log(1 + memory). Direction from Localytics 2017 (22% of users stop using an app at 2-5
# pushes a week, 31% at 6-10); a bank relationship is far stickier than an app, so the gain is small (modelling choice).
CHURN_NUISANCE_GAIN = 0.25
CHURN_NUISANCE_TAU_DAYS = 30.0
# Horizon over which the evaluation credits churn an accepted action prevents (truth.churn_prevented): ~3 time
# constants of the retention effect, so nearly all of what the simulator does after an acceptance is counted.
CHURN_PREVENTION_HORIZON_DAYS = 180

# ---- logging policy
SCHEDULED_CONTACT_RATE = 0.07  # probability per customer-day of a scheduled campaign decision
EPSILON_SCHEDULED = 0.3
EPSILON_TRIGGERED = 0.2

# ---- consequences of a delivered contact that is not accepted (docs/simulator.md, "Contacts have consequences")
# P(withdraw that channel's consent) and P(complain) are logistic in: the channel's base rate, frequency
# (log(1 + recent contacts), the fatigue memory of 7 days), irrelevance (decades of true acceptance below 10%, at
# most 3) and an explicit dismissal.
OPT_OUT_BASE_RATE: dict[str, float] = {
    "email": 0.0017,  # Campaign Monitor 2019 benchmark: 0.17% unsubscribes per email
    "sms": 0.018,  # HelloWorld/Cellit study of 1,180 retail SMS campaigns: 1.8% per message on weekdays
    "push": 0.009,  # Localytics 2017: 10% disable push at one a week (~0.9% per push over ~12 weeks)
    "call_centre": 0.01,  # modelling choice: between push and SMS (a "do not call me" request)
    "app": 0.002,  # modelling choice: in-session messages are the least intrusive
    "web": 0.001,
}
COMPLAINT_BASE_RATE: dict[str, float] = {
    "email": 0.0003,  # Gmail sender guidelines: keep spam complaints below 0.1%, never at 0.3%
    "sms": 0.001,  # modelling choice: SMS is more intrusive than email
    "push": 0.0002,
    "call_centre": 0.002,  # modelling choice: unsolicited calls draw the most complaints
    "app": 0.0001,
    "web": 0.0001,
}
CONSEQUENCE_FREQUENCY_GAIN = 0.6  # Localytics 2017: 10% -> 37% -> +33% disable at 1, 2-5, 6-10 pushes a week
CONSEQUENCE_IRRELEVANCE_GAIN = 0.5  # modelling choice: per decade of p_accept below RELEVANT_P_ACCEPT
RELEVANT_P_ACCEPT = 0.10
CONSEQUENCE_DISMISS_GAIN = 0.7  # modelling choice: an explicit "not interested" weighs more than an ignored message
# The rule the logging policy follows before exploring: action priority per trigger and per segment.
TRIGGER_RULE: dict[str, tuple[str, ...]] = {
    "airport_checkin": ("travel_insurance", "travel_card"),
    "car_dealership_visit": ("car_loan", "personal_loan"),
    "property_search": ("mortgage", "home_insurance"),
    "salary_credit": ("savings_account", "term_deposit"),
    "card_lost": ("card_replacement",),
    "complaint": ("complaint_callback", "fee_waiver"),
    "competitor_transfer": ("loyalty_rate_boost", "fee_waiver"),
    "large_purchase": ("bnpl", "personal_loan"),
    "baby_store": ("savings_account", "home_insurance"),
}
SEGMENT_RULE: dict[str, tuple[str, ...]] = {
    "mass": ("credit_card", "savings_account", "personal_loan", "bnpl", "home_insurance"),
    "affluent": ("investment_fund", "term_deposit", "credit_card", "mortgage", "travel_card"),
    "small_business": ("merchant_acquiring", "business_loan", "credit_card", "savings_account"),
}

# ---- drift scenarios (effects from the start day on)
RATE_SHOCK_DEPOSIT_SHIFT = 1.0
RATE_SHOCK_LOAN_SHIFT = -1.0
DEPOSIT_PRODUCTS: frozenset[str] = frozenset({"savings", "term_deposit"})
LOAN_PRODUCTS: frozenset[str] = frozenset({"personal_loan", "car_loan", "mortgage", "business_loan", "bnpl"})
FEE_CHANGE_MULTIPLIER = 2.5  # account fees multiply by this
FEE_CHANGE_CHURN_GAIN = 0.9  # extra churn logit * price sensitivity
DIGITAL_COHORT_SHARE = 0.15  # new customers joining, as a share of the base population
DIGITAL_COHORT_JOIN_DAYS = 21  # they join spread over this many days from the start day

# ---- price response (docs/simulator.md, "Price response"; the bands are the catalogue's `pricing`)
# Action -> (elasticity below the list price, above it): the log-odds of acceptance move by
# -sign x price_sensitivity x e x log(price / list price) (sign +1 for credit, where a higher rate deters, -1 for a
# deposit, where a higher rate paid attracts), with e the first value below the list price and the second above.
# 0 at the list price, so an offer at list price is accepted exactly as without pricing. Sources and why: docs.
PRICE_ELASTICITY: dict[str, tuple[float, float]] = {
    "personal_loan": (0.35, 1.5),  # Karlan & Zinman 2008 AER: flat below the standard rate, steep above
    "car_loan": (0.3, 1.0),  # Adams, Einav & Levin 2009 AER; Attanasio, Goldberg & Kyriazidou 2008 IER
    "mortgage": (0.75, 1.5),  # modelling choice (few borrowers shop: CFPB, 77% apply with one lender)
    "credit_card": (1.3, 1.3),  # Gross & Souleles 2002 QJE: long-run elasticity of card debt to the APR -1.3
    "savings_account": (0.6, 0.6),  # modelling choice; deposit rates are sticky (Drechsler, Savov & Schnabl 2017)
    "term_deposit": (1.2, 1.2),  # modelling choice: time deposits follow rates more than savings (same source)
}
