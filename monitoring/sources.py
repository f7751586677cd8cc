"""Where monitoring gets its two sides: the champion's training data (reference) and served traffic (current).

Reference: the champion model records the lineage of its training set (`LoadedModel.info["lineage"]`: feature
service, snapshot range, churn horizon). We rebuild the training set through the SAME training-set builders (Feast
point-in-time retrieval, no feature logic here) and keep the rows of that snapshot range, so the reference is what
the model learned from, not whatever the world holds today. The champion's own scores on those rows are the
reference for prediction drift.

Current: the decision log of the service (`settings.decision_log_uri`) over a time window: one row per decision
with the feature snapshot the models saw, the churn risk and the NBA scores; one row per delivered action with its
propensity and, once feedback arrived, its outcome. Reading is plain SQL through SQLAlchemy (SQLite or PostgreSQL),
never the service's write path.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nextbest.errors import DataError, NotReadyError

if TYPE_CHECKING:
    from nextbest.models.artefact import LoadedModel
    from nextbest.settings import Settings

logger = logging.getLogger(__name__)

SCORE = "score"
CHURN_RISK = "churn_risk"
NBA_PROPENSITY = "propensity"
# A rejection rule naming a contact cap (nextbest.policy: contact_policy.daily_channel_cap / window_cap).
CAP_RULE_MARK = "_cap"


@dataclass
class ReferenceData:
    """The champion's training rows (features, label, timestamp) with the champion's scores in `score`."""

    model: str
    frame: pd.DataFrame
    feature_names: list[str]
    key_features: list[str]
    version: str | None
    lineage: dict[str, Any] = field(default_factory=dict)


@dataclass
class ServedWindow:
    """Served traffic in [start, end): per-decision rows and per-delivered-action rows."""

    start: datetime
    end: datetime
    decisions: pd.DataFrame  # one row per decision: features (columns), churn_risk, n_chosen, cap_hit, ts, ...
    delivered: pd.DataFrame  # one row per delivered action: decision_id, action_id, propensity, outcome, accepted
    business: pd.DataFrame  # per decision: accepted, value, no_action, cap_hit (see monitoring.reports)


def top_features(model: LoadedModel, k: int = 10) -> list[str]:
    """The model's `k` most important inputs by total gain (the ones whose drift matters most)."""
    try:
        gains = model.booster.get_score(importance_type="total_gain")
    except Exception:  # a booster without importance (e.g. no split) still monitors all inputs
        logger.warning("no feature importance for %s; key features unknown", model.name, exc_info=True)
        return []
    ranked = sorted(gains.items(), key=lambda kv: -kv[1])
    return [name for name, _ in ranked[:k] if name in model.feature_names]


def champion_reference(settings: Settings, model: str, loaded: LoadedModel | None = None) -> ReferenceData:
    """Rebuild the champion's training rows (its recorded snapshot range) and score them with the champion."""
    from nextbest.models.artefact import load_model
    from training.datasets import TIMESTAMP, build_training_set

    loaded = loaded or load_model(model, "champion", settings)
    lineage = dict(loaded.info.get("lineage") or {})
    training_set = build_training_set(settings, model, horizon_days=lineage.get("horizon_days"))  # type: ignore[arg-type]
    frame = training_set.frame
    ts = pd.to_datetime(frame[TIMESTAMP], utc=True)
    start, end = lineage.get("snapshot_start"), lineage.get("snapshot_end")
    if start and end:
        keep = (ts >= pd.Timestamp(start)) & (ts <= pd.Timestamp(end))
        if not keep.any():
            raise DataError(
                f"none of the rebuilt {model} training rows falls in the champion's training range {start} .. {end}; "
                "was the world re-simulated since the champion was trained? Retrain or point NEXTBEST_HOME at its world"
            )
        frame = frame.loc[keep]
    missing = [f for f in loaded.feature_names if f not in frame.columns]
    if missing:
        raise DataError(f"rebuilt {model} training set lacks champion features {missing[:10]}: feature repo changed?")
    frame = frame.copy()
    frame[SCORE] = loaded.predict_frame(frame)
    logger.info("reference for %s v%s: %d rows (%s .. %s)", model, loaded.version, len(frame), start, end)
    return ReferenceData(
        model=model,
        frame=frame,
        feature_names=list(loaded.feature_names),
        key_features=top_features(loaded),
        version=loaded.version,
        lineage=lineage,
    )


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return None
    return value


def read_served_window(
    uri: str, window_days: float = 7.0, end: datetime | None = None, catalogue_values: dict[str, float] | None = None
) -> ServedWindow:
    """Decisions and delivered actions logged in the `window_days` before `end` (default: now).

    `catalogue_values` maps action id -> value (EUR) for the business view (default: the shipped catalogue).
    """
    import sqlalchemy as sa

    from nextbest.decision_log import decision_contacts, decisions, make_engine

    if window_days <= 0:
        raise DataError(f"window_days must be > 0, got {window_days}")
    end = end or datetime.now(UTC)
    start = end - timedelta(days=window_days)
    if catalogue_values is None:
        from nextbest.catalogue import load_catalogue

        catalogue_values = {a.id: a.value for a in load_catalogue().actions}
    engine = make_engine(uri)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("decisions"):
                raise NotReadyError(f"no decision log at {uri}: serve some traffic first (`nextbest serve`)")
            d = decisions.c
            rows = conn.execute(sa.select(decisions).where(d.ts >= start, d.ts < end).order_by(d.ts)).mappings().all()
            c = decision_contacts.c
            contacts = (
                conn.execute(sa.select(decision_contacts).where(c.ts >= start, c.ts < end).order_by(c.ts))
                .mappings()
                .all()
            )
    finally:
        engine.dispose()
    return served_frames([dict(r) for r in rows], [dict(r) for r in contacts], start, end, catalogue_values)


def served_frames(
    decision_rows: list[dict[str, Any]],
    contact_rows: list[dict[str, Any]],
    start: datetime,
    end: datetime,
    catalogue_values: dict[str, float],
) -> ServedWindow:
    """Flatten decision-log rows into the frames monitoring compares (pure: rows in, frames out)."""
    if not decision_rows:
        raise DataError(f"no decisions logged between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} UTC")
    records = []
    for r in decision_rows:
        feats = _json(r.get("features")) or {}
        chosen = _json(r.get("chosen")) or []
        rejected = _json(r.get("rejected")) or []
        records.append(
            {
                **{k: v for k, v in feats.items() if isinstance(v, int | float | bool) or v is None},
                "decision_id": r["decision_id"],
                "customer_id": r["customer_id"],
                "ts": pd.Timestamp(r["ts"]).tz_localize("UTC") if pd.Timestamp(r["ts"]).tzinfo is None else r["ts"],
                "channel": r["channel"],
                CHURN_RISK: r.get("churn_risk"),
                "n_chosen": len(chosen),
                "cap_hit": any(CAP_RULE_MARK in str(x.get("rule", "")) for x in rejected),
                "degraded": bool(r.get("degraded")),
                "cold_start": bool(r.get("cold_start")),
                "_scores": _json(r.get("scores")) or {},
                "_chosen": chosen,
            }
        )
    frame = pd.DataFrame.from_records(records)
    # Degraded and cold-start decisions carry no (or default) features: they are not the model's input traffic.
    scored = frame[~frame["degraded"] & ~frame["cold_start"]]

    by_decision = {r["decision_id"]: r for r in records}
    delivered_records = []
    for c in contact_rows:
        rec = by_decision.get(c["decision_id"])
        outcome = c.get("outcome")
        accepted = 1.0 if outcome == "accepted" else 0.0 if outcome in ("dismissed", "ignored") else np.nan
        delivered_records.append(
            {
                "decision_id": c["decision_id"],
                "customer_id": c["customer_id"],
                "action_id": c["action_id"],
                "kind": c.get("kind"),
                "rank": c.get("rank"),
                NBA_PROPENSITY: (rec or {}).get("_scores", {}).get(c["action_id"], np.nan),
                "outcome": outcome,
                "accepted": accepted,
                "value": catalogue_values.get(c["action_id"], 0.0) * (accepted == 1.0),
            }
        )
    delivered = pd.DataFrame.from_records(
        delivered_records,
        columns=[
            "decision_id",
            "customer_id",
            "action_id",
            "kind",
            "rank",
            NBA_PROPENSITY,
            "outcome",
            "accepted",
            "value",
        ],
    )
    # Business view per decision: accepted = any delivered action accepted (NaN while no outcome is known).
    per_decision = delivered.groupby("decision_id").agg(
        accepted=("accepted", lambda s: np.nan if s.isna().all() else float(s.max())),
        value=("value", "sum"),
    )
    business = frame[["decision_id", "n_chosen", "cap_hit"]].join(per_decision, on="decision_id")
    business["no_action"] = business["n_chosen"] == 0
    business["value"] = business["value"].fillna(0.0)
    business = business[["decision_id", "accepted", "value", "no_action", "cap_hit"]]
    return ServedWindow(
        start=start,
        end=end,
        decisions=scored.drop(columns=["_scores", "_chosen"]).reset_index(drop=True),
        delivered=delivered,
        business=business.reset_index(drop=True),
    )
