"""Served traffic as training data: the decisions the service delivered, labelled by their feedback.

Retraining after drift must learn from what the service did in the drifted world, not only from the historical
contact log. One NBA row per delivered action of the decision log (`decision_contacts`, the actions the service
actually delivered) joined with its feedback outcome:

- label: `accepted` = 1; `dismissed` / `ignored` = 0; `shown` = 0 only once `feedback_timeout_days` have passed
  since the decision without a final outcome (before that it may still turn into an acceptance); no feedback at
  all = excluded (not yet known). An outcome recorded after `as_of` is not known at `as_of` and is excluded too,
  so a retrain "as of" a past day sees exactly what it could have seen then.
- features: the same `nba_v1` feature service through Feast point-in-time retrieval at the decision time (the
  decision's `ts` is the join key and the request timestamp, as for logged contacts), plus the catalogue's action
  attributes: no feature logic here, and no feature value from after the decision can enter the row.
- meta (never features): `source` = "served" (logged contacts get "logged"), `decision_id`, and `contact_id` =
  minus the decision_contacts row id (served rows never collide with the simulator's contact ids).
- `logging_propensity`: the probability with which the service served the delivered action, as the decision log
  recorded it (`decisions.choice_probabilities`, set by the policy's `exploration`: (1 - share) x [greedy pick] +
  share x [served when exploring]); 1.0 for a decision served greedily (or logged before probabilities were
  recorded). A probability outside (0, 1] in the log is a data error. With exploration on, served rows support
  inverse-propensity and doubly robust estimates of another policy (`training.ope`, the promotion gate); served
  greedily, only supervised training and the direct method: a different policy's actions were never served.

`build_retraining_set` is what `nextbest retrain` trains on, for any project (`nextbest.project`): the model's usual
training set built through its project's kind (`training.datasets.build_project_training_set`: the genome's builders
for the simulated bank, the onboarding training set of a bank's own tables), cut at `as_of` (rows whose label was
known by then), optionally restricted to a recent window, plus the served rows for a model that learns from offer
outcomes (`folds_served_decisions`: a genome model labelled `offer_accepted`, NBA). A table project's model is
labelled by an event of its own tables (a product taken up within 90 days, a loan gone bad), not by "the offer was
accepted", so its served decisions are never folded in: their feedback is another label; the lineage says so. The
lineage records how many rows came from each source."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nextbest.errors import DataError
from nextbest.settings import Settings
from training.datasets import (
    LABEL,
    OFFER_ACCEPTED,
    TIMESTAMP,
    TrainingSet,
    build_project_training_set,
    nba_feature_rows,
    without_erased,
)

if TYPE_CHECKING:
    from feast import FeatureStore

    from nextbest.project import Project

logger = logging.getLogger(__name__)

SOURCE = "source"
LOGGED, SERVED = "logged", "served"
DECISION_ID = "decision_id"
FINAL_NEGATIVE = ("dismissed", "ignored")
SERVED_COLUMNS = [
    "contact_id",
    DECISION_ID,
    "customer_id",
    "ts",
    "channel",
    "action_id",
    "rank",
    "location_type",
    "outcome",
    "outcome_ts",
    "n_eligible",
    "logging_propensity",
    LABEL,
]


def _utc(value: Any) -> pd.Series:
    return pd.to_datetime(value, utc=True)


def label_served(contacts: pd.DataFrame, as_of: datetime, feedback_timeout_days: float = 7.0) -> pd.DataFrame:
    """Labels for delivered actions known at `as_of` (pure). Rows without a known outcome are dropped.

    `contacts` needs ts, outcome, outcome_ts. See the module docstring for the rules.
    """
    if contacts.empty:
        return contacts.assign(**{LABEL: pd.Series(dtype="int8")})
    as_of_ts = pd.Timestamp(as_of).tz_convert("UTC") if pd.Timestamp(as_of).tzinfo else pd.Timestamp(as_of, tz="UTC")
    ts = _utc(contacts["ts"])
    outcome_ts = _utc(contacts["outcome_ts"])
    outcome = contacts["outcome"]
    known = outcome.notna() & outcome_ts.notna() & (outcome_ts <= as_of_ts) & (ts < as_of_ts)
    timed_out = ts <= as_of_ts - pd.Timedelta(days=feedback_timeout_days)
    positive = outcome == "accepted"
    negative = outcome.isin(FINAL_NEGATIVE) | ((outcome == "shown") & timed_out)
    keep = known & (positive | negative)
    out = contacts.loc[keep].copy()
    out[LABEL] = positive[keep].astype("int8").to_numpy()
    return out


def read_served_contacts(uri: str, as_of: datetime | None = None, key_type: str = "int") -> pd.DataFrame:
    """Delivered actions (decision_contacts) with their outcome and their decision's context, before `as_of`.

    The log stores customer keys as text; `key_type` ("int" | "str", the project's) types them back.
    """
    import sqlalchemy as sa

    from nextbest.decision_log import decision_contacts, decisions, make_engine

    engine = make_engine(uri)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("decision_contacts"):
                return pd.DataFrame(columns=[c for c in SERVED_COLUMNS if c != LABEL])
            c, d = decision_contacts.c, decisions.c
            stmt = sa.select(
                c.id, c.decision_id, c.customer_id, c.ts, c.channel, c.action_id, c.rank, c.outcome, c.outcome_ts,
                d.context, d.scores, d.choice_probabilities,
            ).select_from(decision_contacts.outerjoin(decisions, c.decision_id == d.decision_id))  # fmt: skip
            if as_of is not None:
                stmt = stmt.where(c.ts < as_of)
            rows = conn.execute(stmt.order_by(c.ts, c.id)).mappings().all()
    finally:
        engine.dispose()
    records = []
    for r in rows:
        context = r["context"] if not isinstance(r["context"], str) else json.loads(r["context"])
        scores = r["scores"] if not isinstance(r["scores"], str) else json.loads(r["scores"])
        probabilities = r["choice_probabilities"]
        if isinstance(probabilities, str):
            probabilities = json.loads(probabilities)
        records.append(
            {
                "contact_id": -int(r["id"]),
                DECISION_ID: r["decision_id"],
                "customer_id": int(r["customer_id"]) if key_type == "int" else str(r["customer_id"]),
                "ts": r["ts"],
                "channel": r["channel"],
                "action_id": r["action_id"],
                "rank": int(r["rank"]),
                "location_type": (context or {}).get("location_type"),
                "outcome": r["outcome"],
                "outcome_ts": r["outcome_ts"],
                "n_eligible": len(scores) if scores else np.nan,
                "logging_propensity": _choice_probability(probabilities, r["action_id"], r["decision_id"]),
            }
        )
    frame = pd.DataFrame.from_records(records, columns=[c for c in SERVED_COLUMNS if c != LABEL])
    for col in ("ts", "outcome_ts"):
        frame[col] = _utc(frame[col])
    return frame


def _choice_probability(probabilities: Any, action_id: str, decision_id: str) -> float:
    """The probability with which decision `decision_id` served `action_id`, as the service logged it; 1.0 when it
    logged none (a log from before exploration was recorded: such a decision was greedy)."""
    if not probabilities or action_id not in probabilities:
        return 1.0
    try:
        p = float(probabilities[action_id])
    except (TypeError, ValueError):
        p = float("nan")
    if not 0.0 < p <= 1.0:  # NaN included
        raise DataError(
            f"decision log: decision {decision_id} logged choice probability {probabilities[action_id]!r} for "
            f"{action_id!r}; a served action's probability lies in (0, 1]"
        )
    return p


def build_served_nba_rows(
    settings: Settings,
    as_of: datetime,
    feedback_timeout_days: float = 7.0,
    store: FeatureStore | None = None,
    uri: str | None = None,
) -> pd.DataFrame:
    """NBA rows for the served, delivered actions labelled by `as_of`: Feast point-in-time features at decision time.

    `uri`: the decision log (default `settings.decision_log_uri`, the simulated bank's).
    """
    from nextbest import features as nb_features

    contacts = without_erased(settings, read_served_contacts(uri or settings.decision_log_uri, as_of))
    labelled = label_served(contacts, as_of, feedback_timeout_days)
    if labelled.empty:
        return labelled
    labelled = labelled.reset_index(drop=True)
    entity = nb_features.request_frame(labelled, ts_column="ts")
    for col in ("contact_id", DECISION_ID, "action_id", "channel", "location_type", "n_eligible"):
        if col not in entity.columns:
            entity[col] = labelled[col].to_numpy()
    entity["logging_propensity"] = labelled["logging_propensity"].to_numpy(dtype=float)
    entity[LABEL] = labelled[LABEL].to_numpy()
    frame = nba_feature_rows(store or nb_features.get_store(settings), entity, settings.features.offline_retrieval)
    frame[SOURCE] = SERVED
    logger.info(
        "served rows: %d delivered actions with known outcomes (acceptance %.4f)", len(frame), frame[LABEL].mean()
    )
    return frame


def folds_served_decisions(project: Project, model: str) -> bool:
    """Whether served decisions and their feedback are training rows of `model`: only for a model whose label IS the
    offer's outcome, the genome's action-scoring model (NBA: one row per contact, label accepted). A table model's
    label is an event of the bank's own tables (a product taken up, a loan gone bad); an offer's feedback is not it.
    """
    return project.kind == "genome" and project.model(model).label == OFFER_ACCEPTED


def label_horizon_days(training_set: TrainingSet) -> int:
    """Days after a row's timestamp until its label is known (churn's horizon, an `event_within` label's; else 0)."""
    lineage = training_set.lineage
    label = lineage.get("label") if isinstance(lineage.get("label"), dict) else {}
    return int(lineage.get("horizon_days") or (label or {}).get("horizon_days") or 0)


def _cut(training_set: TrainingSet, as_of: datetime | None, window_days: float | None) -> pd.DataFrame:
    """Rows whose label was known at `as_of` (a horizon label: the whole horizon elapsed), within the recent window."""
    frame = training_set.frame
    ts = _utc(frame[TIMESTAMP])
    keep = pd.Series(True, index=frame.index)
    if as_of is not None:
        label_known = ts + pd.Timedelta(days=label_horizon_days(training_set))
        keep &= label_known <= pd.Timestamp(as_of)
    if window_days is not None:
        end = pd.Timestamp(as_of) if as_of is not None else ts.max()
        keep &= ts >= end - pd.Timedelta(days=window_days)
    return frame.loc[keep]


def build_retraining_set(
    settings: Settings,
    model: str,
    *,
    project: Project | None = None,
    as_of: datetime | None = None,
    include_served: bool = True,
    feedback_timeout_days: float = 7.0,
    window_days: float | None = None,
    horizon_days: int | None = None,
) -> TrainingSet:
    """The training set a retrain uses: the usual rows cut at `as_of` (+ recent window) and, for a model that learns
    from offer outcomes (`folds_served_decisions`), the served rows.

    `project` defaults to the settings' (`nextbest.project.project_of`). `as_of` defaults to now (a live retrain); a
    simulation passes its simulated day so no row from its future enters. Lineage gains `as_of`, `rows_logged`,
    `rows_served`, the feedback timeout and the decision log read (or why served decisions were not folded in).
    """
    from nextbest.project import project_of

    project = project or project_of(settings)
    as_of = (as_of or datetime.now(UTC)).astimezone(UTC)
    base = build_project_training_set(settings, project, model, horizon_days=horizon_days)
    frame = _cut(base, as_of, window_days).copy()
    frame[SOURCE] = LOGGED
    fold = include_served and folds_served_decisions(project, model)
    served = pd.DataFrame()
    if fold:
        uri = project.decision_log_uri(settings)
        served = build_served_nba_rows(settings, as_of, feedback_timeout_days, uri=uri)
        if window_days is not None and len(served):
            served = served[_utc(served[TIMESTAMP]) >= pd.Timestamp(as_of) - pd.Timedelta(days=window_days)]
    frame = _with_served(frame, served, base.feature_names)
    if frame.empty:
        raise DataError(f"no {model} training rows before {as_of:%Y-%m-%d %H:%M} UTC")
    lineage = {**base.lineage, **_sources_lineage(frame, served, as_of, window_days)}
    lineage.update(_served_lineage(settings, project, model, include_served, fold, feedback_timeout_days, served))
    logger.info(
        "%s retraining set as of %s: %d logged + %d served rows", model, as_of, lineage["rows_logged"], len(served)
    )
    return replace(base, frame=frame, lineage=lineage)


def _with_served(frame: pd.DataFrame, served: pd.DataFrame, feature_names: list[str]) -> pd.DataFrame:
    """The logged rows with the served rows appended (same columns), in time then contact order."""
    if not len(served):
        return frame
    missing = [f for f in feature_names if f not in served.columns]
    if missing:
        raise DataError(f"served rows lack feature(s) {missing[:10]} of the logged rows: feature repo changed?")
    columns = [c for c in frame.columns if c in served.columns] + [DECISION_ID]
    frame = pd.concat([frame, served[columns]], ignore_index=True)
    return frame.sort_values([TIMESTAMP, "contact_id"], kind="stable", ignore_index=True)


def _sources_lineage(
    frame: pd.DataFrame, served: pd.DataFrame, as_of: datetime, window_days: float | None
) -> dict[str, Any]:
    counts = frame[SOURCE].value_counts()
    return {
        "snapshot_start": str(frame[TIMESTAMP].min()),
        "snapshot_end": str(frame[TIMESTAMP].max()),
        "rows": len(frame),
        "positives": int(frame[LABEL].sum()),
        "as_of": as_of.isoformat(),
        "window_days": window_days,
        "rows_logged": int(counts.get(LOGGED, 0)),
        "rows_served": int(counts.get(SERVED, 0)),
        "served_acceptance": float(served[LABEL].mean()) if len(served) else None,
    }


def _served_lineage(
    settings: Settings,
    project: Project,
    model: str,
    include_served: bool,
    fold: bool,
    feedback_timeout_days: float,
    served: pd.DataFrame,
) -> dict[str, Any]:
    """What the lineage says about served decisions: the log read and its rules, or why none were folded in."""
    out: dict[str, Any] = {
        "feedback_timeout_days": feedback_timeout_days if fold else None,
        "served_decision_log": _redact(project.decision_log_uri(settings)) if fold else None,
        "served_logging_propensity": _propensity_note(served) if len(served) else None,
    }
    if include_served and not fold:
        out["served_not_folded"] = (
            f"{project.name}/{model}: its label is not the offer's outcome (served feedback is another label)"
        )
    return out


def _propensity_note(served: pd.DataFrame) -> str:
    explored = int((served["logging_propensity"] < 1).sum()) if "logging_propensity" in served else 0
    return (
        f"the decision log's choice probability of each delivered action (1.0 when served greedily); "
        f"{explored:,} of {len(served):,} served rows explored (< 1)"
    )


def _redact(uri: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(uri).render_as_string(hide_password=True)
    except Exception:  # not a SQLAlchemy URL: nothing to hide
        return uri


__all__ = [
    "DECISION_ID",
    "LOGGED",
    "SERVED",
    "SOURCE",
    "build_retraining_set",
    "build_served_nba_rows",
    "folds_served_decisions",
    "label_horizon_days",
    "label_served",
    "read_served_contacts",
]
