"""Where monitoring gets its two sides: the champion's training data (reference) and served traffic (current).

Reference: the champion model records the lineage of its training set (`LoadedModel.info["lineage"]`: feature
service, snapshot range, churn horizon). We rebuild the training set the way its project's kind builds it
(`training.datasets.build_project_training_set`: the simulated bank's genome builders, or the onboarding training
set of a bank's own tables; Feast point-in-time retrieval, no feature logic here) and keep the rows of that snapshot
range, so the reference is what the model learned from, not whatever the world holds today. The champion's own
scores on those rows are the reference for prediction drift.

Current: the project's decision log (`Project.decision_log_uri`) over a time window: one row per decision with the
feature snapshot of the served entity the models saw, the entity-level model scores (`model_scores`, by model name;
old rows only have `churn_risk`, read as the policy's churn model's score) and the per-action scores; one row per
delivered action with its propensity and, once feedback arrived, its outcome. Reading is plain SQL through
SQLAlchemy (SQLite or PostgreSQL), never the service's write path; customer keys are stored as text and typed back
with the project's key type."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nextbest.errors import DataError, NotReadyError

if TYPE_CHECKING:
    from nextbest.models.artefact import LoadedModel
    from nextbest.project import Project
    from nextbest.settings import Settings

logger = logging.getLogger(__name__)

SCORE = "score"
CHURN_RISK = "churn_risk"
NBA_PROPENSITY = "propensity"
# A rejection rule naming a contact cap (nextbest.policy: contact_policy.daily_channel_cap / window_cap).
CAP_RULE_MARK = "_cap"
DELIVERED_COLUMNS = [
    "decision_id",
    "customer_id",
    "action_id",
    "kind",
    "rank",
    NBA_PROPENSITY,
    "outcome",
    "accepted",
    "value",
]


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
    # Entity-level model scores, one column per model name, row-aligned with `decisions` (NaN: not scored).
    model_scores: pd.DataFrame | None = None

    def scores_of(self, model: str, churn_model: str | None = None) -> pd.Series:
        """The served score of `model` per decision (non-null only); for a window built without `model_scores`,
        `churn_risk` stands for the churn model's."""
        if self.model_scores is not None and model in self.model_scores.columns:
            return self.model_scores[model].dropna()
        if model == churn_model and CHURN_RISK in self.decisions.columns:
            return self.decisions[CHURN_RISK].dropna()
        return pd.Series(dtype=float)


def top_features(model: LoadedModel, k: int = 10) -> list[str]:
    """The model's `k` most important inputs by total gain (the ones whose drift matters most)."""
    try:
        gains = model.booster.get_score(importance_type="total_gain")
    except Exception:  # a booster without importance (e.g. no split) still monitors all inputs
        logger.warning("no feature importance for %s; key features unknown", model.name, exc_info=True)
        return []
    ranked = sorted(gains.items(), key=lambda kv: -kv[1])
    return [name for name, _ in ranked[:k] if name in model.feature_names]


def champion_reference(
    settings: Settings, model: str, loaded: LoadedModel | None = None, project: Project | None = None
) -> ReferenceData:
    """Rebuild the champion's training rows (its recorded snapshot range) and score them with the champion.

    `project` (default: the settings', `nextbest.project.project_of`) says how the training set is built.
    """
    from nextbest.models.artefact import load_model
    from nextbest.project import project_of
    from training.datasets import TIMESTAMP, build_project_training_set

    project = project or project_of(settings)
    loaded = loaded or load_model(model, "champion", settings)
    lineage = dict(loaded.info.get("lineage") or {})
    training_set = build_project_training_set(settings, project, model, horizon_days=lineage.get("horizon_days"))
    frame = _in_training_range(training_set.frame, TIMESTAMP, lineage, model)
    missing = [f for f in loaded.feature_names if f not in frame.columns]
    if missing:
        raise DataError(f"rebuilt {model} training set lacks champion features {missing[:10]}: feature repo changed?")
    frame = frame.copy()
    frame[SCORE] = loaded.predict_frame(frame)
    logger.info(
        "reference for %s v%s: %d rows (%s .. %s)",
        model,
        loaded.version,
        len(frame),
        lineage.get("snapshot_start"),
        lineage.get("snapshot_end"),
    )
    return ReferenceData(
        model=model,
        frame=frame,
        feature_names=list(loaded.feature_names),
        key_features=top_features(loaded),
        version=loaded.version,
        lineage=lineage,
    )


def _in_training_range(frame: pd.DataFrame, timestamp: str, lineage: Mapping[str, Any], model: str) -> pd.DataFrame:
    """The rows of the champion's recorded snapshot range (all rows when the lineage records none)."""
    start, end = lineage.get("snapshot_start"), lineage.get("snapshot_end")
    if not (start and end):
        return frame
    ts = pd.to_datetime(frame[timestamp], utc=True)
    keep = (ts >= pd.Timestamp(start)) & (ts <= pd.Timestamp(end))
    if not keep.any():
        raise DataError(
            f"none of the rebuilt {model} training rows falls in the champion's training range {start} .. {end}; "
            "was the world re-simulated since the champion was trained? Retrain or point NEXTBEST_HOME at its world"
        )
    return frame.loc[keep]


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return None
    return value


def read_served_window(
    uri: str,
    window_days: float = 7.0,
    end: datetime | None = None,
    catalogue_values: dict[str, float] | None = None,
    *,
    key_type: str = "int",
    churn_model: str | None = None,
) -> ServedWindow:
    """Decisions and delivered actions logged in the `window_days` before `end` (default: now).

    `catalogue_values` maps action id -> value for the business view (default: the shipped catalogue); `key_type`
    ("int" | "str") types the stored customer keys; `churn_model` names the model a row's `churn_risk` scores
    (rows logged before `model_scores` existed; without it `ServedWindow.scores_of` still reads `churn_risk` for
    the churn model it is asked about). `served_window(project, ...)` passes all three from a project.
    """
    if window_days <= 0:
        raise DataError(f"window_days must be > 0, got {window_days}")
    end = end or datetime.now(UTC)
    start = end - timedelta(days=window_days)
    if catalogue_values is None:
        from nextbest.catalogue import load_catalogue

        catalogue_values = {a.id: a.value for a in load_catalogue().actions}
    decision_rows, contact_rows = _read_log(uri, start, end)
    for row in (*decision_rows, *contact_rows):
        row["customer_id"] = _typed_key(row["customer_id"], key_type)
    return served_frames(decision_rows, contact_rows, start, end, catalogue_values, churn_model=churn_model)


def served_window(
    settings: Settings, project: Project, window_days: float = 7.0, end: datetime | None = None
) -> ServedWindow:
    """The project's served window: its decision log, catalogue values, key type and churn model."""
    return read_served_window(
        project.decision_log_uri(settings),
        window_days=window_days,
        end=end,
        catalogue_values={a.id: a.value for a in project.catalogue.actions},
        key_type=project.served.key_type,
        churn_model=project.policy.churn_model,
    )


def _typed_key(stored: Any, key_type: str) -> int | str:
    return int(stored) if key_type == "int" else str(stored)


def _read_log(uri: str, start: datetime, end: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The decision and delivered-action rows of [start, end), as plain dicts."""
    import sqlalchemy as sa

    from nextbest.decision_log import decision_contacts, decisions, make_engine

    engine = make_engine(uri)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("decisions"):
                raise NotReadyError(f"no decision log at {uri}: serve some traffic first (`nextbest serve`)")
            d, c = decisions.c, decision_contacts.c
            rows = conn.execute(sa.select(decisions).where(d.ts >= start, d.ts < end).order_by(d.ts)).mappings().all()
            contacts = (
                conn.execute(sa.select(decision_contacts).where(c.ts >= start, c.ts < end).order_by(c.ts))
                .mappings()
                .all()
            )
    finally:
        engine.dispose()
    return [dict(r) for r in rows], [dict(r) for r in contacts]


def served_frames(
    decision_rows: list[dict[str, Any]],
    contact_rows: list[dict[str, Any]],
    start: datetime,
    end: datetime,
    catalogue_values: dict[str, float],
    churn_model: str | None = None,
) -> ServedWindow:
    """Flatten decision-log rows into the frames monitoring compares (pure: rows in, frames out)."""
    if not decision_rows:
        raise DataError(f"no decisions logged between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} UTC")
    records = [_decision_record(r, churn_model) for r in decision_rows]
    frame = pd.DataFrame.from_records(records)
    # Degraded and cold-start decisions carry no (or default) features: they are not the model's input traffic.
    scored = frame[~frame["degraded"] & ~frame["cold_start"]].reset_index(drop=True)
    by_decision = {r["decision_id"]: r for r in records}
    delivered = _delivered_frame(contact_rows, by_decision, catalogue_values)
    model_scores = pd.DataFrame.from_records(list(scored["_model_scores"]), index=scored.index)
    return ServedWindow(
        start=start,
        end=end,
        decisions=scored.drop(columns=["_scores", "_chosen", "_model_scores"]),
        delivered=delivered,
        business=_business_frame(frame, delivered),
        model_scores=model_scores.astype(float),
    )


def _decision_record(row: Mapping[str, Any], churn_model: str | None) -> dict[str, Any]:
    """One decision row as flat columns: the numeric snapshot features, ids, churn risk, counts and flags."""
    feats = _json(row.get("features")) or {}
    chosen = _json(row.get("chosen")) or []
    rejected = _json(row.get("rejected")) or []
    model_scores = dict(_json(row.get("model_scores")) or {})
    if not model_scores and churn_model and row.get("churn_risk") is not None:
        model_scores = {churn_model: row["churn_risk"]}  # a row logged before model_scores existed
    ts = pd.Timestamp(row["ts"])
    return {
        **{k: v for k, v in feats.items() if isinstance(v, int | float | bool) or v is None},
        "decision_id": row["decision_id"],
        "customer_id": row["customer_id"],
        "ts": ts.tz_localize("UTC") if ts.tzinfo is None else row["ts"],
        "channel": row["channel"],
        CHURN_RISK: row.get("churn_risk"),
        "n_chosen": len(chosen),
        "cap_hit": any(CAP_RULE_MARK in str(x.get("rule", "")) for x in rejected),
        "degraded": bool(row.get("degraded")),
        "cold_start": bool(row.get("cold_start")),
        "_scores": _json(row.get("scores")) or {},
        "_chosen": chosen,
        "_model_scores": {k: (np.nan if v is None else float(v)) for k, v in model_scores.items()},
    }


def _delivered_frame(
    contact_rows: list[dict[str, Any]], by_decision: Mapping[str, Mapping[str, Any]], values: Mapping[str, float]
) -> pd.DataFrame:
    """One row per delivered action: its propensity (the decision's score for it), outcome, 0/1 accepted, value."""
    records = []
    for c in contact_rows:
        rec = by_decision.get(c["decision_id"])
        outcome = c.get("outcome")
        accepted = 1.0 if outcome == "accepted" else 0.0 if outcome in ("dismissed", "ignored") else np.nan
        records.append(
            {
                "decision_id": c["decision_id"],
                "customer_id": c["customer_id"],
                "action_id": c["action_id"],
                "kind": c.get("kind"),
                "rank": c.get("rank"),
                NBA_PROPENSITY: (rec or {}).get("_scores", {}).get(c["action_id"], np.nan),
                "outcome": outcome,
                "accepted": accepted,
                "value": values.get(c["action_id"], 0.0) * (accepted == 1.0),
            }
        )
    return pd.DataFrame.from_records(records, columns=DELIVERED_COLUMNS)


def _business_frame(decisions: pd.DataFrame, delivered: pd.DataFrame) -> pd.DataFrame:
    """Business view per decision: accepted = any delivered action accepted (NaN while no outcome is known)."""
    per_decision = delivered.groupby("decision_id").agg(
        accepted=("accepted", lambda s: np.nan if s.isna().all() else float(s.max())),
        value=("value", "sum"),
    )
    business = decisions[["decision_id", "n_chosen", "cap_hit"]].join(per_decision, on="decision_id")
    business["no_action"] = business["n_chosen"] == 0
    business["value"] = business["value"].fillna(0.0)
    return business[["decision_id", "accepted", "value", "no_action", "cap_hit"]].reset_index(drop=True)
