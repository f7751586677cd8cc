"""Labels and point-in-time training sets of an onboarded bank's models, retrieved through Feast.

Label timing (the part that decides whether a model is honest):
- `event_within`: at a calendar snapshot t (00:00 UTC), label = 1 if any listed event is stamped in [t, t + H).
  Features use rows stamped strictly before t, so an event on the snapshot day itself is future, never both a
  feature and the label. Snapshots whose horizon runs past the extract end are dropped (their label is censored),
  and with `exclude_prior_events` so are entities that already had an event before t ("first uptake").
  When some label window reaches a later snapshot (weekly snapshots with a 30-day horizon; event snapshots on
  daily dates), the rows carry `label_known_at` = t + H (`label_known_at`), so the trainer's split is
  `training.datasets.label_known_split`: a plain time split let one event label the same entity's snapshots on
  both sides of the test boundary (the simulated bank's churn leak). Quarterly snapshots with a 90-day horizon
  (Berka) or monthly ones with 30 days never reach past the next snapshot, so their time split was already exact.
- `outcome_column`: one row per entity at its own event time (a loan at its grant date), label from an outcome
  column observed later (the loan's status at the end of the extract). Features are from before that time.
The training frame comes only from `store.get_historical_features` with the model's feature service; this module
computes labels, never features. Erased keys (the project's tombstones, `nextbest.erasure`) are never rows.
Entity keys keep their type (int64, or strings for `key_type: str`) throughout.
It returns `training.datasets.TrainingSet`, the shared training code's type.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import duckdb
import pandas as pd

from nextbest.erasure import Tombstones
from nextbest.errors import DataError
from nextbest.onboarding.config import (
    EventWithinLabel,
    ModelConfig,
    OnboardingConfig,
    OutcomeColumnLabel,
    feature_names_of,
)
from nextbest.onboarding.features import TIMESTAMP_COLUMN, build_spine, project_paths, spine_table
from nextbest.onboarding.tables import KEY_SQL_TYPES, columns_of, connect, ident, key_column, literal
from nextbest.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore

    from training.datasets import TrainingSet

logger = logging.getLogger(__name__)

LABEL = "label"
#: the frame attribute (and lineage key) naming the entity key column, for the label-known split's entity groups
ENTITY_KEY = "entity_key"


def model_feature_names(config: OnboardingConfig, model: ModelConfig) -> list[str]:
    """The model's features in feature-service order (views in config order, features in view order)."""
    return [f for v in model.feature_views for f in feature_names_of(config.view(v))]


def _time_filter(model: ModelConfig) -> list[str]:
    conds = []
    if model.train_from:
        conds.append(f"s.{TIMESTAMP_COLUMN} >= TIMESTAMP {literal(str(model.train_from))}")
    if model.train_to:
        conds.append(f"s.{TIMESTAMP_COLUMN} < TIMESTAMP {literal(str(model.train_to))}")
    return conds


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    row = con.execute(f"SELECT count(*) FROM duckdb_tables() WHERE table_name = {literal(name)}").fetchone()
    return bool(row and row[0])


def label_frame(con: duckdb.DuckDBPyConnection, config: OnboardingConfig, model: ModelConfig) -> pd.DataFrame:
    """Entity rows for training: entity key, tz-aware `event_timestamp`, 0/1 `label`, sorted by time then key."""
    ent = config.entities[model.entity]
    key = ident(ent.key)
    spine = ident(spine_table(model.entity))
    if not _has_table(con, spine_table(model.entity)):
        build_spine(con, config, model.entity)
    label = model.label
    conds = _time_filter(model)
    if isinstance(label, EventWithinLabel):
        key_type = KEY_SQL_TYPES[ent.key_type]  # an event's key column is compared with the entity's key
        events = []
        for ev in label.events:
            cols = columns_of(con, ev.table)
            for c in (ev.key, ev.timestamp):
                if c not in cols:
                    raise DataError(f"model {model.name!r}: event column {c!r} not in table {ev.table!r}")
            events.append(
                f"SELECT CAST({ident(ev.key)} AS {key_type}) AS k, {ident(ev.timestamp)} AS ts FROM {ident(ev.table)} "
                f"WHERE {ident(ev.timestamp)} IS NOT NULL"
            )
        horizon = f"INTERVAL {int(label.horizon_days)} DAY"
        conds.append(f"s.{TIMESTAMP_COLUMN} + {horizon} <= TIMESTAMP {literal(str(config.data_end))}")
        if label.exclude_prior_events:
            conds.append(f"NOT EXISTS (SELECT 1 FROM _events e WHERE e.k = s.{key} AND e.ts < s.{TIMESTAMP_COLUMN})")
        sql = (
            f"WITH _events AS ({' UNION ALL '.join(events)}) "
            f"SELECT s.{key}, s.{TIMESTAMP_COLUMN}, CAST(EXISTS (SELECT 1 FROM _events e WHERE e.k = s.{key} "
            f"AND e.ts >= s.{TIMESTAMP_COLUMN} AND e.ts < s.{TIMESTAMP_COLUMN} + {horizon}) AS INTEGER) AS {LABEL} "
            f"FROM {spine} s"
        )
    else:
        assert isinstance(label, OutcomeColumnLabel)
        if label.column not in columns_of(con, ent.table):
            raise DataError(f"model {model.name!r}: label column {label.column!r} not in table {ent.table!r}")
        col = f"CAST(s.{ident(label.column)} AS VARCHAR)"
        positive = ", ".join(literal(str(v)) for v in label.positive)
        conds.append(f"s.{ident(label.column)} IS NOT NULL")
        if label.negative is not None:
            known = ", ".join(literal(str(v)) for v in [*label.positive, *label.negative])
            conds.append(f"{col} IN ({known})")
        sql = f"SELECT s.{key}, s.{TIMESTAMP_COLUMN}, CAST({col} IN ({positive}) AS INTEGER) AS {LABEL} FROM {spine} s"
    if conds:
        sql += " WHERE " + " AND ".join(conds)
    frame = con.execute(sql + f" ORDER BY s.{TIMESTAMP_COLUMN}, s.{key}").df()
    frame[TIMESTAMP_COLUMN] = (
        pd.to_datetime(frame[TIMESTAMP_COLUMN]).dt.tz_localize("UTC").astype("datetime64[us, UTC]")
    )
    frame[ent.key] = key_column(frame[ent.key], ent.key_type)
    if frame.empty:
        raise DataError(f"model {model.name!r}: no labelled rows (check train_from/train_to and the snapshots)")
    if frame[LABEL].nunique() < 2:
        raise DataError(f"model {model.name!r}: the label holds one class only ({frame[LABEL].iloc[0]})")
    logger.info(
        "labels %s: %d rows, %d positive (%.2f%%), %s .. %s",
        model.name,
        len(frame),
        int(frame[LABEL].sum()),
        100 * frame[LABEL].mean(),
        frame[TIMESTAMP_COLUMN].min(),
        frame[TIMESTAMP_COLUMN].max(),
    )
    return frame


def label_known_at(frame: pd.DataFrame, model: ModelConfig) -> pd.Series | None:
    """When each row's label became knowable, or None when the time split needs no such column.

    `event_within`: t + H for every row. Not min(t + H, the event's time): a positive is knowable at its event, but
    keeping rows by a label-dependent time would keep the last horizon's positives and drop its negatives. Returned
    only when some row's window [t, t + H) holds a later snapshot time, i.e. when a time split boundary can fall
    inside a label window; otherwise every label is known by the next snapshot and the time split is exact.
    `outcome_column`: None (one row per entity, labelled by a column of the extract).
    """
    if not isinstance(model.label, EventWithinLabel) or frame.empty:
        return None
    ts = pd.to_datetime(frame[TIMESTAMP_COLUMN], utc=True)
    horizon = pd.Timedelta(days=int(model.label.horizon_days))
    times = pd.Series(ts.unique()).sort_values(ignore_index=True)
    if not bool((times.iloc[:-1] + horizon > times.iloc[1:].to_numpy()).any()):
        return None
    return ts + horizon


def retrieve(store: FeatureStore, model: ModelConfig, entity_df: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time features of the model's feature service for `entity_df` rows, in the entity_df's order."""
    service = store.get_feature_service(model.feature_service)
    order = entity_df.reset_index(drop=True).assign(_row=lambda d: range(len(d)))
    out = store.get_historical_features(entity_df=order, features=service).to_df()
    if len(out) != len(order):
        raise DataError(f"Feast returned {len(out)} rows for {len(order)} entity rows of {model.name!r}")
    return out.sort_values("_row").drop(columns="_row").reset_index(drop=True)


def build_training_set(
    config: OnboardingConfig,
    settings: Settings,
    model_name: str,
    store: FeatureStore | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> TrainingSet:
    """The labelled, point-in-time training frame of one model, as the shared training code's `TrainingSet`."""
    from nextbest.onboarding.categories import project_config
    from nextbest.onboarding.feast_repo import get_project_store
    from training.datasets import LABEL_KNOWN, TrainingSet

    config = project_config(config, settings)  # the category lists the feature tables were built with
    model = config.model(model_name)
    erased = Tombstones.at(project_paths(config, settings).root)
    con = con or connect(config, erased)
    labels = label_frame(con, config, model)
    if erased:  # no erased customer (nor their contacts, loans...) is a training row
        labels = erased.drop(labels, config.entities[model.entity].key).reset_index(drop=True)
    store = store or get_project_store(config, settings, require_applied=True)
    frame = retrieve(store, model, labels)
    features = model_feature_names(config, model)
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise DataError(
            f"feature service {model.feature_service!r} lacks {missing}; run `nextbest features apply --project FILE`"
        )
    frame[features] = frame[features].astype("float64")
    known = label_known_at(frame, model)
    if known is not None:  # the trainer splits by `label_known_split` (module docstring)
        frame[LABEL_KNOWN] = known.astype("datetime64[us, UTC]")
    key = config.entities[model.entity].key
    frame.attrs[ENTITY_KEY] = key
    lineage: dict[str, Any] = {
        "project": config.project,
        "feature_service": model.feature_service,
        "entity": model.entity,
        ENTITY_KEY: key,
        "label_known_split": known is not None,
        "label": model.label.model_dump(mode="json"),
        "rows": len(frame),
        "positives": int(frame[LABEL].sum()),
        "snapshot_start": str(frame[TIMESTAMP_COLUMN].min()),
        "snapshot_end": str(frame[TIMESTAMP_COLUMN].max()),
        "data_dir": str(config.data_dir),
    }
    # TrainingSet's `model` is typed for the simulated bank's names; an onboarded model carries its own name.
    return TrainingSet(model=model.name, frame=frame, feature_names=features, lineage=lineage)  # type: ignore[arg-type]
