"""A deliberately naive recompute of every feature from the source rows, for the point-in-time tests.

Row by row in pandas, straight from the definitions in feature_repo/pipeline.py's docstring: a snapshot at
midnight c sees source rows with timestamp < c (outcomes from outcome_ts < c); real-time state at T sees events
with ts <= T. Nothing is shared with the pipeline's SQL, so a leak there shows up as a mismatch here.
"""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from feature_repo.specs import (
    NEVER_HOURS,
    PAGE_COLUMNS,
    PAGE_VIEW_PAGES,
    SIGNAL_COLUMNS,
    TXN_CATEGORY_WINDOWS,
    VIEW_FIELDS,
)
from nextbest.catalogue import PRODUCTS, load_catalogue


def load_sources(sources_dir: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for name in ("customers", "holdings", "balances", "digital_events", "context_signals", "contacts", "closures"):
        out[name] = pd.read_parquet(sources_dir / f"{name}.parquet")
    out["transactions"] = pd.concat(
        pd.read_parquet(p) for p in sorted((sources_dir / "transactions").glob("*.parquet"))
    )
    return out


def _days(c: pd.Timestamp, ts: pd.Series) -> float:
    return (c - ts.max()).total_seconds() / 86400.0 if len(ts) else math.nan


def expected_snapshot(src: dict[str, pd.DataFrame], customer_id: int, c: pd.Timestamp) -> dict[str, float]:
    """Every snapshot feature of one customer at snapshot time c (a UTC midnight), from rows strictly before c."""
    out: dict[str, float] = {}
    prof = src["customers"]
    p = prof[(prof.customer_id == customer_id) & (prof.valid_from < c)].sort_values("valid_from").iloc[-1]
    out["age"] = c.year - p.birth_year
    out["tenure_days"] = (c - p.signup_date).total_seconds() / 86400.0
    out["income_monthly"] = p.income_monthly
    out["credit_score"] = p.credit_score
    out["risk_level"] = {"low": 0, "medium": 1, "high": 2}[p.risk_band]
    out["segment_affluent"] = int(p.segment == "affluent")
    out["segment_small_business"] = int(p.segment == "small_business")
    out["is_vulnerable"] = int(p.vulnerable)
    out["is_digital_first"] = int(p.digital_first)
    out["prefers_digital"] = int(p.preferred_channel in ("app", "web", "push"))
    for ch in ("email", "sms", "push", "app", "call"):
        out[f"consent_{ch}"] = int(p[f"consent_{ch}"])
    h = src["holdings"]
    held = h[(h.customer_id == customer_id) & (h.opened_at < c) & (h.closed_at.isna() | (h.closed_at >= c))]
    for product in PRODUCTS:
        out[f"has_{product}"] = int((held["product"] == product).any())
    out["n_products"] = held["product"].nunique()
    out["days_since_product_opened"] = _days(c, held.opened_at)

    def window(frame: pd.DataFrame, days: int | None, col: str = "ts") -> pd.DataFrame:
        mine = frame[(frame.customer_id == customer_id) & (frame[col] < c)]
        return mine if days is None else mine[mine[col] >= c - timedelta(days=days)]

    b = src["balances"]
    mine_b = b[b.customer_id == customer_id]
    now_b = mine_b[mine_b.as_of < c].sort_values("as_of")
    then_b = mine_b[mine_b.as_of < c - timedelta(days=30)].sort_values("as_of")
    for col in ("current_balance", "savings_balance", "card_balance", "loan_balance", "mortgage_balance",
                "investment_balance"):  # fmt: skip
        out[col] = now_b[col].iloc[-1] if len(now_b) else math.nan
    if len(now_b) and len(then_b):
        now_dep = now_b.current_balance.iloc[-1] + now_b.savings_balance.iloc[-1]
        out["deposit_trend_30d"] = now_dep - (then_b.current_balance.iloc[-1] + then_b.savings_balance.iloc[-1])
    else:
        out["deposit_trend_30d"] = math.nan
    tx = src["transactions"]
    t30 = window(tx, 30)
    out["inflow_30d"] = t30[t30.direction == "credit"].amount.sum()
    out["outflow_30d"] = t30[t30.direction == "debit"].amount.sum()
    out["salary_credits_90d"] = int((window(tx, 90).category == "salary").sum())
    all_tx = window(tx, None)
    out["days_since_salary"] = _days(c, all_tx[all_tx.category == "salary"].ts)
    for cat, ws in TXN_CATEGORY_WINDOWS.items():
        for w in ws:
            t = window(tx, w)
            out[f"{cat}_amount_{w}d"] = t[t.category == cat].amount.sum()
    out["txn_count_30d"] = len(t30)
    d = src["digital_events"]
    logins = d[d.event_type == "login"]
    out["logins_7d"] = len(window(logins, 7))
    out["logins_30d"] = len(window(logins, 30))
    out["days_since_login"] = _days(c, window(logins, None).ts)
    d30 = window(d, 30)
    for page in PAGE_VIEW_PAGES:
        out[f"{page}_views_30d"] = int(((d30.event_type == "page_view") & (d30.page == page)).sum())
    s90 = window(src["context_signals"], 90)
    out["complaints_90d"] = int((s90.signal == "complaint").sum())
    out["card_lost_90d"] = int((s90.signal == "card_lost").sum())
    out["days_since_complaint"] = _days(c, s90[s90.signal == "complaint"].ts)
    out["days_since_competitor_transfer"] = _days(c, s90[s90.signal == "competitor_transfer"].ts)
    ct = src["contacts"]
    out["contacts_7d"] = len(window(ct, 7))
    out["contacts_30d"] = len(window(ct, 30))
    o30 = window(ct, 30, "outcome_ts")
    out["dismissals_30d"] = int((o30.outcome == "dismissed").sum())
    out["ignored_30d"] = int((o30.outcome == "ignored").sum())
    out["acceptances_90d"] = int((window(ct, 90, "outcome_ts").outcome == "accepted").sum())
    out["days_since_contact"] = _days(c, window(ct, None).ts)
    o_all = window(ct, None, "outcome_ts")
    out["days_since_dismissal"] = _days(c, o_all[o_all.outcome == "dismissed"].outcome_ts)
    out["days_since_acceptance"] = _days(c, o_all[o_all.outcome == "accepted"].outcome_ts)
    kind = {a.id: a.kind for a in load_catalogue().actions}
    o90 = window(ct, 90, "outcome_ts")
    o90_kind = o90.action_id.map(kind)
    out["retention_acceptances_90d"] = int(((o90.outcome == "accepted") & (o90_kind == "retention")).sum())
    o30_kind = o30.action_id.map(kind)
    out["service_acceptances_30d"] = int(((o30.outcome == "accepted") & (o30_kind == "service")).sum())
    outbound = o30.channel.isin(["email", "sms", "push", "call_centre"])
    marketing = o30_kind.isin(["sales", "retention"])
    out["unwanted_contacts_30d"] = int((outbound & marketing & (o30.outcome != "accepted")).sum())
    return out


def expected_realtime(src: dict[str, pd.DataFrame], customer_id: int, t: pd.Timestamp) -> dict[str, float]:
    """Last epoch second of each signal / intent page with ts <= t, and hours since it at t."""
    out: dict[str, float] = {}
    s = src["context_signals"]
    s = s[(s.customer_id == customer_id) & (s.ts <= t)]
    d = src["digital_events"]
    d = d[(d.customer_id == customer_id) & (d.ts <= t) & (d.event_type == "page_view")]
    for signal, column in SIGNAL_COLUMNS.items():
        ts = s[s.signal == signal].ts
        out[column] = ts.max().timestamp() if len(ts) else math.nan
        hours = (t.timestamp() - out[column]) / 3600.0 if len(ts) else NEVER_HOURS
        out[f"hours_since_{signal}"] = min(hours, NEVER_HOURS)
    for page, column in PAGE_COLUMNS.items():
        ts = d[d.page == page].ts
        out[column] = ts.max().timestamp() if len(ts) else math.nan
    return out


def alive_at(src: dict[str, pd.DataFrame], customer_id: int, c: pd.Timestamp) -> bool:
    """Whether the pipeline emits a snapshot for this customer at midnight c."""
    first = src["customers"].loc[src["customers"].customer_id == customer_id, "valid_from"].min()
    closed = src["closures"].loc[src["closures"].customer_id == customer_id, "closed_at"]
    return bool(first < c and (closed.empty or c <= closed.min()))


def mismatches(row: pd.Series | dict, expected: dict[str, float], where: str) -> list[str]:
    """Feature names (with both values) where a row disagrees with the recompute."""
    bad = []
    for name, want in expected.items():
        got = row[name]
        got = np.nan if got is None else float(got)
        want = float(want)
        if math.isnan(want) and math.isnan(got):
            continue
        if not np.isclose(got, want, rtol=1e-9, atol=1e-6):
            bad.append(f"{where} {name}: got {got}, expected {want}")
    return bad


SNAPSHOT_FEATURES = [n for v in ("customer_profile", "customer_activity", "contact_history") for n in VIEW_FIELDS[v]]
