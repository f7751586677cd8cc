"""Build a bank's feature tables from its onboarding config, point-in-time correct by construction.

Each entity gets a *spine*: its snapshot times (calendar period starts while the entity exists, or once at the
entity's own event time). Each feature view becomes one parquet table with a row per spine row, stamped with the
snapshot time t, computed only from source rows stamped strictly before t (`_before`, the single place that rule
is written). Feast's point-in-time join then picks exactly the row at t for a training row at t, and the latest
row for the online store. The spine also carries a final snapshot at the extract end so the online store serves
features computed from all the data.

Why snapshots at the label times rather than one row per source event: aggregates over windows change as time
passes even without new events (a 30-day count decays), so a feature is only exact at the time it is computed;
computing it at the times the models are trained and served avoids TTL guesswork.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pandas as pd

from nextbest.erasure import Tombstones
from nextbest.errors import ConfigError
from nextbest.onboarding.config import (
    OTHER,
    Aggregation,
    AttributeFeature,
    CalendarSnapshots,
    FeatureViewConfig,
    OnboardingConfig,
    aggregation_feature_names,
    attribute_feature_names,
    feature_names_of,
)
from nextbest.onboarding.tables import columns_of, connect, ident, key_column, literal
from nextbest.settings import Settings

if TYPE_CHECKING:
    from nextbest.features.store import ProgressFn

logger = logging.getLogger(__name__)

TIMESTAMP_COLUMN = "event_timestamp"
_INTERVALS = {"week": "INTERVAL 7 DAY", "month": "INTERVAL 1 MONTH", "quarter": "INTERVAL 3 MONTH"}


@dataclass(frozen=True)
class ProjectPaths:
    """Where one onboarded project's generated state lives (all under `settings.home`)."""

    root: Path

    @property
    def offline_dir(self) -> Path:
        return self.root / "offline"

    @property
    def registry(self) -> Path:
        return self.root / "registry.db"

    @property
    def online_db(self) -> Path:
        return self.root / "online_store.db"

    @property
    def repo_dir(self) -> Path:
        """A generated Feast repo folder (feature_store.yaml + definitions) so the `feast` CLI works on it."""
        return self.root / "feature_repo"

    def table(self, view: str) -> Path:
        return self.offline_dir / f"{view}.parquet"


def project_paths(config: OnboardingConfig, settings: Settings) -> ProjectPaths:
    """The state folder of an onboarded project: `<home>/projects/<project>/`."""
    return ProjectPaths(settings.home / "projects" / config.project)


def _before(source_ts: str, snapshot_ts: str) -> str:
    """The point-in-time rule as SQL: a source row counts at snapshot t only if stamped strictly before t."""
    return f"{source_ts} < {snapshot_ts}"


def spine_table(entity: str) -> str:
    return f"_spine_{entity}"


def build_spine(con: duckdb.DuckDBPyConnection, config: OnboardingConfig, entity: str) -> int:
    """Create the entity's spine table (entity columns + `event_timestamp`); returns its row count."""
    ent = config.entities[entity]
    cols = columns_of(con, ent.table)
    if TIMESTAMP_COLUMN in cols:
        raise ConfigError(f"entity table {ent.table!r} must not have a column named {TIMESTAMP_COLUMN!r}")
    snaps = ent.snapshots
    table = ident(ent.table)
    if isinstance(snaps, CalendarSnapshots):
        end = config.snapshot_end(entity)
        if snaps.start >= end:
            raise ConfigError(f"entity {entity!r}: snapshots start {snaps.start} is not before their end {end}")
        calendar = (
            f"SELECT range AS t FROM range(TIMESTAMP {literal(str(snaps.start))}, TIMESTAMP {literal(str(end))}, "
            f"{_INTERVALS[snaps.every]}) UNION SELECT TIMESTAMP {literal(str(end))}"
        )
        alive = f"WHERE {_before('e.' + ident(ent.valid_from), 'c.t')}" if ent.valid_from else ""
        sql = f"SELECT e.*, c.t AS {TIMESTAMP_COLUMN} FROM {table} e CROSS JOIN ({calendar}) c {alive}"
    else:
        if not ent.valid_from:
            raise ConfigError(f"entity {entity!r}: event snapshots need a valid_from column")
        sql = (
            f"SELECT e.*, e.{ident(ent.valid_from)} AS {TIMESTAMP_COLUMN} FROM {table} e "
            f"WHERE e.{ident(ent.valid_from)} IS NOT NULL"
        )
    con.execute(f"CREATE OR REPLACE TABLE {ident(spine_table(entity))} AS {sql}")
    row = con.execute(f"SELECT count(*) FROM {ident(spine_table(entity))}").fetchone()
    return int(row[0]) if row else 0


def _epoch_days(expr: str) -> str:
    return f"(epoch({expr}) / 86400.0)"


def _attribute_selects(attr: AttributeFeature, src_cols: dict[str, str], view: str) -> list[str]:
    if attr.column not in src_cols:
        raise ConfigError(f"feature view {view!r}: attribute column {attr.column!r} not in source ({sorted(src_cols)})")
    col = f"src.{ident(attr.column)}"
    kind = src_cols[attr.column]
    if attr.transform in ("days_since", "years_since"):
        if "TIMESTAMP" not in kind and "DATE" not in kind:
            raise ConfigError(f"feature view {view!r}: {attr.transform} needs a date column, {attr.column!r} is {kind}")
        days = f"({_epoch_days('s.' + TIMESTAMP_COLUMN)} - {_epoch_days(col)})"
        expr = days if attr.transform == "days_since" else f"({days} / 365.25)"
        return [f"CAST({expr} AS DOUBLE) AS {ident(attr.name)}"]
    if isinstance(attr.categories, list):
        listed = [v for _, v in attribute_feature_names(attr) if v != OTHER]
        return [
            f"CASE WHEN {col} IS NULL THEN NULL WHEN {_category_test(col, value, listed)} THEN 1.0 ELSE 0.0 END "
            f"AS {ident(name)}"
            for name, value in attribute_feature_names(attr)
        ]
    if kind == "VARCHAR":
        raise ConfigError(
            f"feature view {view!r}: {attr.column!r} is text and its categories are not resolved; build the project "
            "(`nextbest features build --project FILE`) to infer them, or list them under `categories`"
        )
    return [f"CAST({col} AS DOUBLE) AS {ident(attr.name)}"]


def _category_test(col: str, value: str | None, listed: list[str]) -> str:
    """SQL: the column holds `value`, or, for the `OTHER` bucket, a value not in `listed` (NULL is neither)."""
    if value == OTHER:
        return f"{col} IS NOT NULL AND CAST({col} AS VARCHAR) NOT IN ({', '.join(literal(v) for v in listed)})"
    return f"CAST({col} AS VARCHAR) = {literal(value)}"


def _aggregation_selects(agg: Aggregation, src_cols: dict[str, str], ts: str | None, view: str) -> list[str]:
    for needed in [c for c in (agg.column, agg.by.column if agg.by else None) if c]:
        if needed not in src_cols:
            raise ConfigError(f"feature view {view!r}: column {needed!r} not in source ({sorted(src_cols)})")
    col = f"src.{ident(agg.column)}" if agg.column else None
    snap = f"s.{TIMESTAMP_COLUMN}"
    selects = []
    for name, value, window in aggregation_feature_names(agg):
        # The join already keeps only rows before the snapshot; the filter adds the window and the category.
        conds = ["src._present"]
        if window is not None and ts is not None:
            conds.append(f"src.{ident(ts)} >= {snap} - INTERVAL {int(window)} DAY")
        if value is not None and agg.by is not None:
            listed = agg.by.values if isinstance(agg.by.values, list) else []
            conds.append(_category_test(f"src.{ident(agg.by.column)}", value, listed))
        where = " AND ".join(conds)
        src_ts = f"src.{ident(ts)}" if ts else None
        if agg.fn == "count":
            expr = f"count(*) FILTER (WHERE {where})"
        elif agg.fn == "sum":
            expr = f"coalesce(sum({col}) FILTER (WHERE {where}), 0)"
        elif agg.fn in ("mean", "min", "max"):
            fn = {"mean": "avg", "min": "min", "max": "max"}[agg.fn]
            expr = f"{fn}({col}) FILTER (WHERE {where})"
        elif agg.fn == "std":
            expr = f"stddev_samp({col}) FILTER (WHERE {where})"
        elif agg.fn == "last":
            if src_ts is None:
                raise ConfigError(f"feature view {view!r}: 'last' needs a dated source")
            expr = f"arg_max({col}, {src_ts}) FILTER (WHERE {where})"
        else:  # days_since_last / days_since_first
            if src_ts is None:
                raise ConfigError(f"feature view {view!r}: {agg.fn} needs a dated source")
            edge = "max" if agg.fn == "days_since_last" else "min"
            expr = f"{_epoch_days(snap)} - {_epoch_days(f'{edge}({src_ts}) FILTER (WHERE {where})')}"
        selects.append(f"CAST({expr} AS DOUBLE) AS {ident(name)}")
    return selects


def view_sql(con: duckdb.DuckDBPyConnection, config: OnboardingConfig, view: FeatureViewConfig) -> str:
    """The SQL that computes one feature view over its entity's spine (exposed for inspection and tests)."""
    ent = config.entities[view.entity]
    join = view.join_on or ent.key
    src_cols = columns_of(con, view.source)
    spine_cols = columns_of(con, spine_table(view.entity))
    for where, cols in (("source", src_cols), ("entity table", spine_cols)):
        if join not in cols:
            raise ConfigError(f"feature view {view.name!r}: join column {join!r} not in the {where}")
    if view.timestamp is not None and view.timestamp not in src_cols:
        raise ConfigError(f"feature view {view.name!r}: timestamp column {view.timestamp!r} not in {view.source!r}")
    key = ident(ent.key)
    spine = ident(spine_table(view.entity))
    source = ident(view.source)
    on = f"s.{ident(join)} = src.{ident(join)}"
    if view.attributes:
        selects = [s for a in view.attributes for s in _attribute_selects(a, src_cols, view.name)]
        if view.timestamp is None:
            _check_unique(con, view, join)
            joined = f"{spine} s LEFT JOIN {source} src ON {on}"
        else:
            # ASOF picks, per spine row, the latest source row satisfying the inequality: the state as of t.
            joined = (
                f"{spine} s ASOF LEFT JOIN {source} src ON {on} "
                f"AND {_before('src.' + ident(view.timestamp), 's.' + TIMESTAMP_COLUMN)}"
            )
        return f"SELECT s.{key}, s.{TIMESTAMP_COLUMN}, {', '.join(selects)} FROM {joined}"
    selects = [s for a in view.aggregations for s in _aggregation_selects(a, src_cols, view.timestamp, view.name)]
    cond = on
    if view.timestamp is not None:
        cond += f" AND {_before('src.' + ident(view.timestamp), 's.' + TIMESTAMP_COLUMN)}"
    # `_present` marks matched rows so count(*) does not count the LEFT JOIN's null row of an entity with no history.
    return (
        f"SELECT s.{key}, s.{TIMESTAMP_COLUMN}, {', '.join(selects)} "
        f"FROM {spine} s LEFT JOIN (SELECT *, TRUE AS _present FROM {source}) src ON {cond} "
        f"GROUP BY s.{key}, s.{TIMESTAMP_COLUMN}"
    )


def _check_unique(con: duckdb.DuckDBPyConnection, view: FeatureViewConfig, join: str) -> None:
    row = con.execute(
        f"SELECT count(*) - count(DISTINCT {ident(join)}) FROM {ident(view.source)} WHERE {ident(join)} IS NOT NULL"
    ).fetchone()
    if row and int(row[0]) > 0:
        raise ConfigError(
            f"feature view {view.name!r}: undated attribute source {view.source!r} has several rows per {join!r}; "
            "give it a timestamp (the latest row before each snapshot is used) or aggregate it"
        )


def compute_view(con: duckdb.DuckDBPyConnection, config: OnboardingConfig, view: FeatureViewConfig) -> pd.DataFrame:
    """One view's feature table: entity key, tz-aware UTC `event_timestamp`, float64 features, sorted."""
    ent = config.entities[view.entity]
    key = ent.key
    frame = con.execute(view_sql(con, config, view)).df()
    frame[key] = key_column(frame[key], ent.key_type)
    frame[TIMESTAMP_COLUMN] = (
        pd.to_datetime(frame[TIMESTAMP_COLUMN]).dt.tz_localize("UTC").astype("datetime64[us, UTC]")
    )
    features = feature_names_of(view)
    frame[features] = frame[features].astype("float64")
    return frame[[key, TIMESTAMP_COLUMN, *features]].sort_values([key, TIMESTAMP_COLUMN]).reset_index(drop=True)


def write_feature_tables(
    config: OnboardingConfig,
    settings: Settings,
    con: duckdb.DuckDBPyConnection | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Path]:
    """Compute every feature view and write it as parquet under the project's offline folder; view -> path.

    The table project's build step (`nextbest.features.project.TableFeatures.build`); `progress(view, done, total)`
    is called as views complete. Category lists the config leaves to the data are inferred at the first build and
    frozen (`nextbest.onboarding.categories`). Erased keys (the project's tombstones, `nextbest.erasure`) are in no
    table.
    """
    from nextbest.onboarding.categories import freeze

    paths = project_paths(config, settings)
    erased = Tombstones.at(paths.root)
    con = con or connect(config, erased)
    paths.offline_dir.mkdir(parents=True, exist_ok=True)
    config = freeze(con, config, paths.offline_dir)  # inferred category lists, frozen at the first build
    for entity in config.entities:
        rows = build_spine(con, config, entity)
        logger.info("spine %s: %d snapshot rows", entity, rows)
    written: dict[str, Path] = {}
    for done, view in enumerate(config.feature_views):
        if progress is not None:
            progress(view.name, done, len(config.feature_views))
        frame = compute_view(con, config, view)
        if erased:  # a connection the caller opened may still hold erased keys
            frame = erased.drop(frame, config.entities[view.entity].key).reset_index(drop=True)
        path = paths.table(view.name)
        # Write then rename: Feast may be reading the previous table (an online service materializing).
        tmp = path.with_suffix(".parquet.tmp")
        frame.to_parquet(tmp, index=False)
        tmp.replace(path)
        written[view.name] = path
        logger.info("feature view %s: %d rows x %d features -> %s", view.name, len(frame), frame.shape[1] - 2, path)
    if progress is not None:
        progress("done", len(config.feature_views), len(config.feature_views))
    return written


def snapshot_dates(config: OnboardingConfig, entity: str) -> tuple[date, date] | None:
    """(start, exclusive end) of an entity's calendar snapshots, None for event snapshots."""
    snaps = config.entities[entity].snapshots
    if isinstance(snaps, CalendarSnapshots):
        return snaps.start, config.snapshot_end(entity)
    return None
