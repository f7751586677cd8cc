"""Tiny seeded source tables in the shape of docs/data-contract.md, for the feature repo's tests.

Independent of the simulator on purpose: the point-in-time tests need a small world whose every row we can
recompute by brute force, with events placed on day boundaries and at odd minutes, profile changes, products
opened and closed, closures, and outcomes learnt days after the contact.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from nextbest.catalogue import PRODUCTS

START = datetime(2026, 1, 1, tzinfo=UTC)
CATEGORIES = ("groceries", "travel", "auto", "home", "childcare", "fees", "competitor_transfer", "salary", "cash")
PAGES = ("mortgage_calculator", "loan_calculator", "travel", "cards", "close_account", "fees", "savings_rates", "help")
SIGNALS = (
    "airport_checkin",
    "car_dealership_visit",
    "property_search",
    "card_lost",
    "complaint",
    "salary_credit",
    "competitor_transfer",
)


def _ts(values: np.ndarray) -> pd.Series:
    return pd.Series(pd.to_datetime(values, utc=True)).dt.as_unit("us")


def _events(rng: np.random.Generator, ids: np.ndarray, ends: np.ndarray, rate_per_day: float, days: int) -> tuple:
    """Random event times per customer in [START, end), as (customer ids, timestamps)."""
    counts = rng.poisson(rate_per_day * days, size=len(ids))
    cust = np.repeat(ids, counts)
    span = np.repeat(
        (ends - np.datetime64(START.replace(tzinfo=None), "s")).astype("timedelta64[s]").astype(float), counts
    )
    offs = (rng.random(cust.size) * span).astype("int64")
    # Put a share of events exactly on midnight: the boundary a point-in-time bug shows up on.
    on_midnight = rng.random(cust.size) < 0.1
    offs = np.where(on_midnight, (offs // 86400) * 86400, offs)
    ts = np.datetime64(START.replace(tzinfo=None), "s") + offs.astype("timedelta64[s]")
    return cust, ts


def write_sources(root: Path, customers: int = 40, days: int = 40, seed: int = 0) -> Path:
    """Write the eight source tables under `root/sources` and return that folder."""
    rng = np.random.default_rng(seed)
    out = root / "sources"
    out.mkdir(parents=True, exist_ok=True)
    ids = np.arange(1, customers + 1, dtype="int64")
    world_end = np.datetime64((START + timedelta(days=days)).replace(tzinfo=None), "s") - np.timedelta64(1, "s")
    # Some customers join during the world, some close.
    joins = np.where(
        rng.random(customers) < 0.2, rng.integers(2, days // 2, customers), -rng.integers(30, 2000, customers)
    )
    join_ts = np.datetime64(START.replace(tzinfo=None), "s") + (
        joins * 86400 + rng.integers(0, 86400, customers)
    ).astype("timedelta64[s]")
    closes = rng.random(customers) < 0.15
    close_ts = np.datetime64(START.replace(tzinfo=None), "s") + (
        rng.integers(days // 2, days - 1, customers) * 86400 + rng.integers(0, 86400, customers)
    ).astype("timedelta64[s]")
    close_ts = np.where(closes & (close_ts > join_ts + np.timedelta64(5 * 86400, "s")), close_ts, np.datetime64("NaT"))
    ends = np.where(np.isnat(close_ts), world_end, close_ts)
    first_seen = np.maximum(join_ts, np.datetime64(START.replace(tzinfo=None), "s") - np.timedelta64(1, "s"))

    def channel_choice(n: int) -> np.ndarray:
        return rng.choice(["app", "web", "email", "call_centre"], n)

    # customers: one row at first_seen, a second version for a third of them mid-world
    base = pd.DataFrame(
        {
            "customer_id": ids,
            "valid_from": _ts(np.minimum(join_ts, first_seen)),
            "birth_year": rng.integers(1950, 2004, customers),
            "region": rng.choice(["north", "south", "capital"], customers),
            "segment": rng.choice(["mass", "affluent", "small_business"], customers, p=[0.7, 0.2, 0.1]),
            "income_monthly": rng.gamma(4.0, 800.0, customers).round(2),
            "credit_score": rng.integers(350, 850, customers),
            "risk_band": rng.choice(["low", "medium", "high"], customers),
            "vulnerable": rng.random(customers) < 0.05,
            "digital_first": rng.random(customers) < 0.3,
            "preferred_channel": channel_choice(customers),
            **{f"consent_{c}": rng.random(customers) < 0.8 for c in ("email", "sms", "push", "app", "call")},
            "signup_date": _ts(join_ts),
        }
    )
    changed = base.sample(frac=0.35, random_state=seed).copy()
    change_day = rng.integers(5, days - 5, len(changed))
    changed["valid_from"] = _ts(
        np.datetime64(START.replace(tzinfo=None), "s") + (change_day * 86400).astype("timedelta64[s]")
    )
    changed = changed[changed["valid_from"] > changed["signup_date"]]
    changed["income_monthly"] = (changed["income_monthly"] * 1.3).round(2)
    changed["risk_band"] = "high"
    changed["consent_email"] = ~changed["consent_email"]
    pd.concat([base, changed]).sort_values(["customer_id", "valid_from"]).to_parquet(out / "customers.parquet")

    # holdings: a current account at signup, other products opened before or during the world, some closed
    rows = []
    for i, cid in enumerate(ids):
        rows.append((cid, "current_account", join_ts[i], np.datetime64("NaT"), 0.0))
        for product in rng.choice(PRODUCTS[1:], rng.integers(0, 4), replace=False):
            opened = join_ts[i] + np.timedelta64(int(rng.integers(0, 60 * 86400)), "s")
            closed = opened + np.timedelta64(int(rng.integers(86400, 40 * 86400)), "s") if rng.random() < 0.3 else None
            if opened < ends[i]:
                rows.append(
                    (
                        cid,
                        product,
                        opened,
                        closed if closed is not None and closed < ends[i] else np.datetime64("NaT"),
                        1000.0,
                    )
                )
    h = pd.DataFrame(rows, columns=["customer_id", "product", "opened_at", "closed_at", "amount"])
    h["opened_at"] = _ts(h["opened_at"].to_numpy())
    h["closed_at"] = _ts(h["closed_at"].to_numpy())
    h.to_parquet(out / "holdings.parquet")

    # balances: weekly statements at end of day
    bal = []
    for i, cid in enumerate(ids):
        for d in range(6, days, 7):
            as_of = np.datetime64(START.replace(tzinfo=None), "s") + np.timedelta64(d * 86400 + 86399, "s")
            if first_seen[i] < as_of < ends[i]:
                bal.append((cid, as_of, *(rng.gamma(2.0, 1500.0, 6).round(2))))
    b = pd.DataFrame(
        bal,
        columns=["customer_id", "as_of", "current_balance", "savings_balance", "card_balance", "loan_balance",
                 "mortgage_balance", "investment_balance"],
    )  # fmt: skip
    b["as_of"] = _ts(b["as_of"].to_numpy())
    b.to_parquet(out / "balances.parquet")

    cust, ts = _events(rng, ids, ends, 3.0, days)
    keep = ts > first_seen[cust - 1]
    cust, ts = cust[keep], ts[keep]
    cat = rng.choice(CATEGORIES, cust.size)
    tx = pd.DataFrame(
        {
            "transaction_id": np.arange(cust.size, dtype="int64"),
            "customer_id": cust,
            "ts": _ts(ts),
            "amount": rng.gamma(2.0, 40.0, cust.size).round(2) + 0.01,
            "direction": np.where(np.isin(cat, ["salary"]) | (rng.random(cust.size) < 0.1), "credit", "debit"),
            "category": cat,
            "channel": rng.choice(["card_present", "online", "atm", "transfer"], cust.size),
            "country": rng.choice(["NL", "NL", "NL", "ES"], cust.size),
        }
    )
    # Folder of parts: readers must accept both layouts.
    (out / "transactions").mkdir(exist_ok=True)
    half = len(tx) // 2
    tx.iloc[:half].to_parquet(out / "transactions" / "part-00000.parquet")
    tx.iloc[half:].to_parquet(out / "transactions" / "part-00001.parquet")

    cust, ts = _events(rng, ids, ends, 2.0, days)
    keep = ts > first_seen[cust - 1]
    cust, ts = cust[keep], ts[keep]
    is_login = rng.random(cust.size) < 0.5
    pd.DataFrame(
        {
            "customer_id": cust,
            "ts": _ts(ts),
            "channel": rng.choice(["app", "web"], cust.size),
            "event_type": np.where(is_login, "login", "page_view"),
            "page": pd.Series(np.where(is_login, None, rng.choice(PAGES, cust.size)), dtype="object"),
        }
    ).to_parquet(out / "digital_events.parquet")

    cust, ts = _events(rng, ids, ends, 0.3, days)
    keep = ts > first_seen[cust - 1]
    cust, ts = cust[keep], ts[keep]
    pd.DataFrame(
        {
            "customer_id": cust,
            "ts": _ts(ts),
            "signal": rng.choice(SIGNALS, cust.size),
            "location_type": rng.choice(["airport", "dealership", "home", "other"], cust.size),
        }
    ).to_parquet(out / "context_signals.parquet")

    cust, ts = _events(rng, ids, ends, 0.4, days)
    keep = ts > first_seen[cust - 1]
    cust, ts = cust[keep], ts[keep]
    outcome = rng.choice(["accepted", "dismissed", "ignored"], cust.size, p=[0.1, 0.4, 0.5])
    delay = np.where(outcome == "ignored", 3 * 86400, rng.integers(60, 2 * 86400, cust.size)).astype("timedelta64[s]")
    outcome_ts = np.minimum(ts + delay, world_end)
    pd.DataFrame(
        {
            "contact_id": np.arange(cust.size, dtype="int64"),
            "customer_id": cust,
            "ts": _ts(ts),
            # sales, retention (fee_waiver) and service (card_replacement) actions: the churn drivers count by kind
            "action_id": rng.choice(
                ["travel_card", "credit_card", "mortgage", "savings_account", "fee_waiver", "card_replacement"],
                cust.size,
            ),
            "channel": channel_choice(cust.size),
            "trigger": "scheduled",
            "location_type": "home",
            "hour_of_day": pd.Series(_ts(ts)).dt.hour.astype("int64"),
            "logging_propensity": rng.uniform(0.05, 0.5, cust.size),
            "n_eligible": rng.integers(3, 12, cust.size),
            "outcome": outcome,
            "outcome_ts": _ts(outcome_ts),
            "accepted": outcome == "accepted",
        }
    ).to_parquet(out / "contacts.parquet")

    closed = ~np.isnat(close_ts)
    pd.DataFrame(
        {
            "customer_id": ids[closed],
            "closed_at": _ts(close_ts[closed]),
            "reason": rng.choice(["competitor", "fees", "service"], int(closed.sum())),
        }
    ).to_parquet(out / "closures.parquet")
    return out
