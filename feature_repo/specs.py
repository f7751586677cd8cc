"""Names and types of every feature in the customer genome: the one list the pipeline, Feast and tests share.

Plain Python (no Feast import) so the pipeline, training and serving can read the schema cheaply. Types are
"int64" or "float64" only: the models are XGBoost, so every feature is numeric; flags are 0/1 integers and "never"
is a missing float (NaN in training frames, None online), which XGBoost treats as its own branch.

Design: few, wide feature views. Each view is one online read, and the serving budget is a few milliseconds, so
the genome lives in three daily-snapshot views (profile + holdings, activity, contact history), one event-driven view
of real-time state (last time of each context signal / intent page), and one on-demand view that turns that state
and the request into recency and decayed strength at decision time.
"""

from __future__ import annotations

from nextbest.catalogue import PRODUCTS

ENTITY_NAME = "customer"
JOIN_KEY = "customer_id"
TIMESTAMP_FIELD = "event_timestamp"

PROFILE_VIEW = "customer_profile"
ACTIVITY_VIEW = "customer_activity"
CONTACT_VIEW = "contact_history"
REALTIME_VIEW = "realtime_state"
CONTEXT_VIEW = "request_context"
PUSH_SOURCE = "realtime_events"
REQUEST_SOURCE = "decision_request"

CHURN_SERVICE = "churn_v1"
NBA_SERVICE = "nba_v1"

#: Daily snapshot views, in the order they are built; the realtime view is event-driven.
SNAPSHOT_VIEWS: tuple[str, ...] = (PROFILE_VIEW, ACTIVITY_VIEW, CONTACT_VIEW)
#: Views that are materialized into the online store.
MATERIALIZED_VIEWS: tuple[str, ...] = (*SNAPSHOT_VIEWS, REALTIME_VIEW)

# ---- real-time state: last time of each context signal and intent page, decayed at request time ----
#: Context signal -> half-life in hours of its decayed strength (how long the moment lasts).
SIGNAL_HALF_LIFE_HOURS: dict[str, float] = {
    "airport_checkin": 24.0,
    "car_dealership_visit": 72.0,
    "property_search": 14 * 24.0,
    "baby_store": 30 * 24.0,
    "large_purchase": 7 * 24.0,
    "salary_credit": 15 * 24.0,
    "card_lost": 72.0,
    "complaint": 14 * 24.0,
    "competitor_transfer": 30 * 24.0,
}
#: App/web page -> half-life in hours: browsing the mortgage calculator is an intent proxy that fades.
PAGE_HALF_LIFE_HOURS: dict[str, float] = {
    "mortgage_calculator": 7 * 24.0,
    "loan_calculator": 7 * 24.0,
    "travel": 3 * 24.0,
    "close_account": 7 * 24.0,
}
#: Digital events of the data contract (`digital_events.event_type`) that a real-time event may carry.
DIGITAL_EVENTS: frozenset[str] = frozenset({"login", "page_view"})
#: Source value -> state column, shared by the offline pipeline and `push_event` (one transformation).
SIGNAL_COLUMNS: dict[str, str] = {s: f"last_{s}_ts" for s in SIGNAL_HALF_LIFE_HOURS}
PAGE_COLUMNS: dict[str, str] = {p: f"last_{p}_view_ts" for p in PAGE_HALF_LIFE_HOURS}
REALTIME_FIELDS: dict[str, str] = {c: "float64" for c in (*SIGNAL_COLUMNS.values(), *PAGE_COLUMNS.values())}

# ---- request context (the on-demand view's request source) ----
CHANNELS: tuple[str, ...] = ("app", "web", "email", "sms", "push", "call_centre", "atm")
LOCATION_TYPES: tuple[str, ...] = ("airport", "dealership", "home", "branch", "store")
#: Request fields the nba_v1 on-demand view needs, with their types. `request_ts` is epoch seconds (UTC).
REQUEST_FIELD_TYPES: dict[str, str] = {
    "channel": "string",
    "hour_of_day": "int64",
    "location_type": "string",
    "request_ts": "float64",
}
REQUEST_FIELDS: list[str] = list(REQUEST_FIELD_TYPES)
#: Hours reported for a signal never seen (a year): a finite cap keeps the online and offline types identical.
NEVER_HOURS = 24.0 * 365

CONTEXT_FIELDS: dict[str, str] = {
    **{f"hours_since_{s}": "float64" for s in SIGNAL_HALF_LIFE_HOURS},
    **{f"{s}_strength": "float64" for s in SIGNAL_HALF_LIFE_HOURS},
    **{f"{p}_intent": "float64" for p in PAGE_HALF_LIFE_HOURS},
    **{f"channel_{c}": "int64" for c in CHANNELS},
    **{f"location_{loc}": "int64" for loc in LOCATION_TYPES},
    "request_hour": "int64",
    "business_hours": "int64",
}
#: The context of the moment of decision: every request-time feature but the channel (a batch campaign also knows
#: where it will show). What a model "without real-time context" leaves out (the ladder's stage 3, the experiment
#: experiments/nba_realtime_context.yaml via `group:moment`); one list, used by both.
MOMENT_FIELDS: tuple[str, ...] = tuple(f for f in CONTEXT_FIELDS if not f.startswith("channel_"))
#: Named groups of features that experiment specs can exclude as `group:<name>`.
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {"moment": MOMENT_FIELDS}

# ---- daily snapshot views ----
CONSENT_CHANNELS: tuple[str, ...] = ("email", "sms", "push", "app", "call")
PROFILE_FIELDS: dict[str, str] = {
    "age": "int64",
    "tenure_days": "float64",
    "income_monthly": "float64",
    "credit_score": "int64",
    "risk_level": "int64",
    "segment_affluent": "int64",
    "segment_small_business": "int64",
    "is_vulnerable": "int64",
    "is_digital_first": "int64",
    "prefers_digital": "int64",
    **{f"consent_{c}": "int64" for c in CONSENT_CHANNELS},
    **{f"has_{p}": "int64" for p in PRODUCTS},
    "n_products": "int64",
    "days_since_product_opened": "float64",
}

#: Transaction category -> windows (days) of its amount aggregates.
TXN_CATEGORY_WINDOWS: dict[str, tuple[int, ...]] = {
    "travel": (7, 30, 90),
    "auto": (30, 90),
    "home": (30, 90),
    "childcare": (90,),
    "fees": (30, 90),
    "competitor_transfer": (30, 90),
}
#: Pages whose 30-day view counts are features (intent and dissatisfaction proxies).
PAGE_VIEW_PAGES: tuple[str, ...] = (
    "mortgage_calculator",
    "loan_calculator",
    "travel",
    "close_account",
    "fees",
    "investments",
    "savings_rates",
)
BALANCE_COLUMNS: tuple[str, ...] = (
    "current_balance",
    "savings_balance",
    "card_balance",
    "loan_balance",
    "mortgage_balance",
    "investment_balance",
)
ACTIVITY_FIELDS: dict[str, str] = {
    **{c: "float64" for c in BALANCE_COLUMNS},
    "deposit_trend_30d": "float64",
    "inflow_30d": "float64",
    "outflow_30d": "float64",
    "salary_credits_90d": "int64",
    "days_since_salary": "float64",
    **{f"{cat}_amount_{w}d": "float64" for cat, ws in TXN_CATEGORY_WINDOWS.items() for w in ws},
    "txn_count_30d": "int64",
    "logins_7d": "int64",
    "logins_30d": "int64",
    "days_since_login": "float64",
    **{f"{p}_views_30d": "int64" for p in PAGE_VIEW_PAGES},
    "complaints_90d": "int64",
    "card_lost_90d": "int64",
    "days_since_complaint": "float64",
    "days_since_competitor_transfer": "float64",
}

#: Channels through which the bank pushes a message (the customer is not in a session with it: app, web and ATM offers
#: are shown in session). A marketing contact on one of them that the customer did not accept is "unwanted".
OUTBOUND_CHANNELS: tuple[str, ...] = ("email", "sms", "push", "call_centre")
CONTACT_FIELDS: dict[str, str] = {
    "contacts_7d": "int64",
    "contacts_30d": "int64",
    "dismissals_30d": "int64",
    "ignored_30d": "int64",
    "acceptances_90d": "int64",
    "days_since_contact": "float64",
    "days_since_dismissal": "float64",
    "days_since_acceptance": "float64",
    "retention_acceptances_90d": "int64",
    "service_acceptances_30d": "int64",
    "unwanted_contacts_30d": "int64",
}

VIEW_FIELDS: dict[str, dict[str, str]] = {
    PROFILE_VIEW: PROFILE_FIELDS,
    ACTIVITY_VIEW: ACTIVITY_FIELDS,
    CONTACT_VIEW: CONTACT_FIELDS,
    REALTIME_VIEW: REALTIME_FIELDS,
}

#: Views (and the on-demand view) each feature service reads, in order.
SERVICE_VIEWS: dict[str, tuple[str, ...]] = {
    CHURN_SERVICE: SNAPSHOT_VIEWS,
    NBA_SERVICE: (*SNAPSHOT_VIEWS, CONTEXT_VIEW),
}


def service_features(service: str) -> list[str]:
    """Feature names (without view prefix) a feature service returns, in order: the model's input columns."""
    if service not in SERVICE_VIEWS:
        raise KeyError(f"unknown feature service {service!r}; known: {', '.join(SERVICE_VIEWS)}")
    names: list[str] = []
    for view in SERVICE_VIEWS[service]:
        names.extend(CONTEXT_FIELDS if view == CONTEXT_VIEW else VIEW_FIELDS[view])
    return names
