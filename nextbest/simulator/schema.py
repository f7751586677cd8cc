"""The data contract (`docs/data-contract.md`) as pyarrow schemas: what the simulator writes, column by column.

Tests check the written files against these and these against the document, so the three cannot drift apart.
"""

from __future__ import annotations

import pyarrow as pa

from nextbest.catalogue import PRODUCTS

TS = pa.timestamp("us", tz="UTC")

SOURCE_SCHEMAS: dict[str, pa.Schema] = {
    "customers": pa.schema(
        [
            ("customer_id", pa.int64()),
            ("valid_from", TS),
            ("birth_year", pa.int64()),
            ("region", pa.string()),
            ("segment", pa.string()),
            ("income_monthly", pa.float64()),
            ("credit_score", pa.int64()),
            ("risk_band", pa.string()),
            ("vulnerable", pa.bool_()),
            ("digital_first", pa.bool_()),
            ("preferred_channel", pa.string()),
            ("consent_email", pa.bool_()),
            ("consent_sms", pa.bool_()),
            ("consent_push", pa.bool_()),
            ("consent_app", pa.bool_()),
            ("consent_call", pa.bool_()),
            ("signup_date", TS),
        ]
    ),
    "holdings": pa.schema(
        [
            ("customer_id", pa.int64()),
            ("product", pa.string()),
            ("opened_at", TS),
            ("closed_at", TS),
            ("amount", pa.float64()),
        ]
    ),
    "balances": pa.schema(
        [
            ("customer_id", pa.int64()),
            ("as_of", TS),
            ("current_balance", pa.float64()),
            ("savings_balance", pa.float64()),
            ("card_balance", pa.float64()),
            ("loan_balance", pa.float64()),
            ("mortgage_balance", pa.float64()),
            ("investment_balance", pa.float64()),
        ]
    ),
    "transactions": pa.schema(
        [
            ("transaction_id", pa.int64()),
            ("customer_id", pa.int64()),
            ("ts", TS),
            ("amount", pa.float64()),
            ("direction", pa.string()),
            ("category", pa.string()),
            ("channel", pa.string()),
            ("country", pa.string()),
        ]
    ),
    "digital_events": pa.schema(
        [
            ("customer_id", pa.int64()),
            ("ts", TS),
            ("channel", pa.string()),
            ("event_type", pa.string()),
            ("page", pa.string()),
        ]
    ),
    "context_signals": pa.schema(
        [
            ("customer_id", pa.int64()),
            ("ts", TS),
            ("signal", pa.string()),
            ("location_type", pa.string()),
        ]
    ),
    "contacts": pa.schema(
        [
            ("contact_id", pa.int64()),
            ("customer_id", pa.int64()),
            ("ts", TS),
            ("action_id", pa.string()),
            ("channel", pa.string()),
            ("trigger", pa.string()),
            ("location_type", pa.string()),
            ("hour_of_day", pa.int64()),
            ("logging_propensity", pa.float64()),
            ("n_eligible", pa.int64()),
            ("outcome", pa.string()),
            ("outcome_ts", TS),
            ("accepted", pa.bool_()),
            ("offered_price", pa.float64()),  # the rate offered (% a year) inside the approved band; null: list
        ]
    ),
    "closures": pa.schema(
        [
            ("customer_id", pa.int64()),
            ("closed_at", TS),
            ("reason", pa.string()),
        ]
    ),
    "complaints": pa.schema(
        [
            ("customer_id", pa.int64()),
            ("ts", TS),
            ("cause", pa.string()),
            ("channel", pa.string()),
            ("contact_id", pa.int64()),
        ]
    ),
}


def latent_schema(channels: tuple[str, ...]) -> pa.Schema:
    """`truth/customer_latent`: the traits that drive a customer's behaviour, never features."""
    fields = [("customer_id", pa.int64())]
    fields += [(f"affinity_{p}", pa.float64()) for p in PRODUCTS]
    fields += [
        ("price_sensitivity", pa.float64()),
        ("fatigue_sensitivity", pa.float64()),
        ("churn_propensity", pa.float64()),
        ("engagement", pa.float64()),
        ("spend_level", pa.float64()),
        ("travel_propensity", pa.float64()),
    ]
    fields += [(f"channel_affinity_{c}", pa.float64()) for c in channels]
    return pa.schema(fields)


TRUTH_SCHEMAS: dict[str, pa.Schema] = {
    "intents": pa.schema(
        [
            ("customer_id", pa.int64()),
            ("intent", pa.string()),
            ("start_ts", TS),
            ("strength", pa.float64()),
            ("half_life_days", pa.float64()),
        ]
    ),
    "contact_truth": pa.schema(
        [
            ("contact_id", pa.int64()),
            ("p_accept", pa.float64()),
            ("p_organic", pa.float64()),
            ("p_opt_out", pa.float64()),
            ("p_complaint", pa.float64()),
        ]
    ),
    "churn_hazard": pa.schema([("customer_id", pa.int64()), ("date", TS), ("hazard", pa.float64())]),
}
