"""The Feast store of the simulated bank's genome, the one materialization of every project, and online reads.

`get_store` builds the genome's `FeatureStore` from typed settings (registry, SQLite file and offline tables under
`settings.features_dir`; SQLite or Redis online store), so a test with a tmp `home` gets its own store and the
`feast` CLI in `feature_repo/` (relative paths in feature_store.yaml) sees the same files for the default home.
Building, applying and materializing a project go through `nextbest.features.project` (`GenomeFeatures`,
`TableFeatures`); this module holds what they share.

Materialization (`materialize_views`, for any project's views: int64 or string entity keys, float64 and int64
features) has two methods that land the same values:
- "feast": `FeatureStore.materialize` per view over [end - ttl, end] (about 50k values/s here: Feast pulls the
  latest rows through its offline engine, then writes one SQL statement per feature value).
- "fast": the latest row per entity is taken with DuckDB straight from the feature table and written in Feast's
  own layout by `nextbest.features.online_write`: each distinct value encoded once into the bytes Feast writes,
  SQLite tables rewritten whole (dropped and recreated with Feast's DDL in one transaction, carrying over the rows
  Feast's upsert would keep) and Redis hashes written as raw pipelined HSETs under Feast's timestamp rule. Tests
  compare both stores' raw contents with Feast's materialization byte for byte (genome and a string-keyed table
  project). The registry records the materialized interval either way, so `feast materialize-incremental`
  continues from it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from feature_repo.specs import (
    JOIN_KEY,
    MATERIALIZED_VIEWS,
    NBA_SERVICE,
    REQUEST_FIELDS,
    SERVICE_VIEWS,
    TIMESTAMP_FIELD,
    VIEW_FIELDS,
    service_features,
)
from nextbest.errors import ConfigError, DataError, NotReadyError
from nextbest.settings import FEATURE_REPO_DIR, Settings, load_settings

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView
    from feast.repo_config import RepoConfig

    from feature_repo.definitions import Definitions
    from nextbest.erasure import Tombstones

logger = logging.getLogger(__name__)


def online_number(value: object) -> float:
    """An online-store value as a model input: numbers as float; missing, text and unparsable values as NaN.

    XGBoost treats NaN as missing (its learned default direction), which is what an absent feature is; one rule for
    every engine and scorer, so the simulated bank and an onboarded one read values the same way.
    """
    if value is None or isinstance(value, str):
        return math.nan
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


MaterializeMethod = Literal["fast", "feast"]
KeyType = Literal["int", "str"]
ProgressFn = Callable[[str, int, int], None]
#: Rows per bulk write: large enough to amortise Python overhead, small enough to bound memory at 1M customers.
WRITE_BATCH_ROWS = 50_000
#: Where a view that never expires (ttl 0) is materialized from: Feast's own earliest start.
EPOCH = datetime(1970, 1, 2, tzinfo=UTC)


def offline_dir(settings: Settings) -> Path:
    """Where the feature tables (the offline store's parquet files) live."""
    return settings.features_dir / "offline"


def repo_config(settings: Settings) -> RepoConfig:
    """The Feast configuration for these settings (what feature_store.yaml says, with absolute paths)."""
    from feast.repo_config import RepoConfig

    features_dir = settings.features_dir
    if settings.features.online_store == "sqlite":
        online: dict[str, Any] = {"type": "sqlite", "path": str(features_dir / "online_store.db")}
    elif settings.features.online_store == "redis":
        online = {"type": "redis", "connection_string": settings.features.redis_connection}
    else:  # pragma: no cover - the settings Literal rejects anything else
        raise ConfigError(f"unknown online store {settings.features.online_store!r}")
    return RepoConfig(
        project=settings.features.project,
        provider="local",
        registry={"registry_type": "file", "path": str(features_dir / "registry.db"), "cache_ttl_seconds": 60},
        online_store=online,
        offline_store={"type": "duckdb"},
        entity_key_serialization_version=3,
        repo_path=FEATURE_REPO_DIR,
    )


def get_store(settings: Settings | None = None) -> FeatureStore:
    """A Feast `FeatureStore` for the installation (`settings.features_dir`, configured online store)."""
    from feast import FeatureStore

    settings = settings or load_settings()
    settings.features_dir.mkdir(parents=True, exist_ok=True)
    return FeatureStore(repo_path=str(FEATURE_REPO_DIR), config=repo_config(settings))


def definitions(settings: Settings) -> Definitions:
    """The Feast objects of the repo, pointing at this installation's feature tables."""
    from feature_repo.definitions import build_definitions

    return build_definitions(offline_dir(settings))


@dataclass(frozen=True)
class MaterializeStats:
    """What a materialization wrote: rows (entity rows summed over views), values (rows x features), speed."""

    method: str
    online_store: str
    rows: int
    features: int
    values: int
    seconds: float
    views: dict[str, int] = field(default_factory=dict)

    @property
    def values_per_s(self) -> float:
        return self.values / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class ViewTable:
    """One materialized view as the writer sees it: its offline table, its entity key and the features' types.

    Any project's views: the genome's (int64 `customer_id`, float64 and int64 features) and a table project's
    (int64 or string keys, float64 features).
    """

    name: str
    path: Path
    key: str
    key_type: KeyType
    fields: Mapping[str, str]  # feature name -> "float64" | "int64"
    timestamp: str = TIMESTAMP_FIELD


def latest_rows(
    table: Path, key: str, start: datetime, end: datetime, timestamp: str = TIMESTAMP_FIELD
) -> pd.DataFrame:
    """The latest row per entity with start <= timestamp <= end (Feast's materialization semantics)."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(
            f"""
            SELECT * FROM read_parquet(?)
            WHERE "{timestamp}" >= ? AND "{timestamp}" <= ?
            QUALIFY row_number() OVER (PARTITION BY "{key}" ORDER BY "{timestamp}" DESC) = 1
            ORDER BY "{key}"
            """,
            [str(table), start, end],
        ).df()
    finally:
        con.close()


def feature_tables_end(settings: Settings) -> datetime:
    """The newest event timestamp in the genome's feature tables (its default materialization end)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    newest: datetime | None = None
    for view in MATERIALIZED_VIEWS:
        path = offline_dir(settings) / f"{view}.parquet"
        if not path.is_file():
            raise NotReadyError(f"feature table {path} missing: run `nextbest features build` first")
        column = pq.read_table(path, columns=[TIMESTAMP_FIELD]).column(0)
        if len(column):
            value = pc.max(column).as_py()
            newest = value if newest is None or value > newest else newest
    if newest is None:
        raise DataError(f"the feature tables under {offline_dir(settings)} are empty")
    return newest.astimezone(UTC)


def _encoded(frame: pd.DataFrame, view: ViewTable) -> dict[str, Any]:
    """The view's rows as the bulk writers take them: serialized keys, their byte order, stamps and columns."""
    from nextbest.features.online_write import encode_column, entity_keys, key_order, unique_codes

    keys = entity_keys(frame[view.key], view.key, view.key_type)
    stamp_codes, stamps = unique_codes(frame[view.timestamp])
    return {
        "keys": keys,
        "order": key_order(frame[view.key], keys, view.key_type),
        "stamp_codes": stamp_codes,
        "stamps": stamps,
        "columns": {name: encode_column(frame[name], kind) for name, kind in view.fields.items()},
    }


def _write_fast(store: FeatureStore, fv: FeatureView, view: ViewTable, frame: pd.DataFrame) -> None:
    """Write the latest rows of one view to the online store (SQLite or Redis) in Feast's layout, in bulk."""
    from nextbest.features import online_write

    config = store.config
    if config.entity_key_serialization_version != 3:
        raise ConfigError("fast materialization writes entity keys of serialization version 3 only")
    if frame[view.key].duplicated().any():
        raise DataError(f"view {view.name} has several latest rows for one {view.key}")
    encoded = _encoded(frame, view)
    if config.online_store.type == "sqlite":
        from feast.infra.online_stores.sqlite import SqliteOnlineStore, _table_id

        table = _table_id(config.project, fv, config.registry.enable_online_feature_view_versioning)
        db_path = SqliteOnlineStore._get_db_path(config)
        online_write.write_sqlite_view(db_path, table, **encoded)
        return
    from feast.infra.online_stores.redis import RedisType, _versioned_fv_name

    online = config.online_store
    if online.redis_type != RedisType.redis:  # cluster / sentinel: Feast's own pipelined writer
        _write_through_feast(store, fv, view, frame)
        return
    client = store._get_provider().online_store._get_client(online)
    del encoded["order"]
    online_write.write_redis_view(
        client, config.project, _versioned_fv_name(fv, config), **encoded,
        key_ttl_seconds=online.key_ttl_seconds, skip_dedup=online.skip_dedup,
    )  # fmt: skip


def _write_through_feast(store: FeatureStore, fv: FeatureView, view: ViewTable, frame: pd.DataFrame) -> None:
    """Feast's converter and provider writer, in batches (online stores the bulk writers do not cover)."""
    import pyarrow as pa
    from feast.utils import _convert_arrow_to_proto
    from feast.value_type import ValueType

    key_type = ValueType.INT64 if view.key_type == "int" else ValueType.STRING
    columns = [view.key, view.timestamp, *view.fields]
    for lo in range(0, len(frame), WRITE_BATCH_ROWS):
        arrow = pa.Table.from_pandas(frame.iloc[lo : lo + WRITE_BATCH_ROWS][columns], preserve_index=False)
        rows = _convert_arrow_to_proto(arrow, fv, {view.key: key_type})
        store._get_provider().online_write_batch(store.config, fv, rows, progress=None)


def _registered(store: FeatureStore, view: str) -> FeatureView:
    try:
        return store.get_feature_view(view)
    except Exception as exc:  # feast raises FeatureViewNotFoundException
        raise NotReadyError(
            f"feature view {view!r} is not registered in Feast project {store.config.project!r}: "
            "run `nextbest features apply` (with the project's --project) first"
        ) from exc


def _materialize_view(
    store: FeatureStore, view: ViewTable, end: datetime, method: MaterializeMethod, erased: Tombstones | None = None
) -> tuple[int, float]:
    """Materialize one view over [end - ttl, end] (from the epoch for a view that never expires); (rows, seconds).

    With `erased` tombstones, their keys are never written (fast) or deleted right after Feast wrote them (feast).
    """
    if not view.path.is_file():
        raise NotReadyError(f"feature table {view.path} missing: run `nextbest features build` first")
    fv = _registered(store, view.name)
    start = end - fv.ttl if fv.ttl else EPOCH
    started = time.perf_counter()
    if method == "feast":
        store.materialize(start_date=start, end_date=end, feature_views=[view.name])
        frame = latest_rows(view.path, view.key, start, end, view.timestamp)  # Feast reports no count
        if erased:
            from nextbest.features.online import erase_entities

            gone = sorted(erased.matching(view.key, frame[view.key].tolist()))
            erase_entities(store, view.key, view.key_type, gone, [view.name])
            frame = frame[~frame[view.key].isin(gone)]
        return len(frame), time.perf_counter() - started
    frame = latest_rows(view.path, view.key, start, end, view.timestamp)
    if erased:
        frame = erased.drop(frame, view.key)
    if len(frame):
        _write_fast(store, fv, view, frame)
    store.registry.apply_materialization(fv, store.config.project, start, end)
    return len(frame), time.perf_counter() - started


def materialize_views(
    store: FeatureStore,
    views: Sequence[ViewTable],
    end: datetime,
    method: MaterializeMethod = "fast",
    progress: ProgressFn | None = None,
    erased: Tombstones | None = None,
) -> MaterializeStats:
    """Load the latest row of every entity of each view (within the view's TTL before `end`) into the online store.

    The one materialization of every project (the module docstring describes both methods); `end` is inclusive,
    a naive `end` is UTC. Keys in `erased` (the project's tombstones, `nextbest.erasure`) are left out.
    """
    if method not in ("fast", "feast"):
        raise ConfigError(f"unknown materialization method {method!r}; use 'fast' or 'feast'")
    end = end.replace(tzinfo=UTC) if end.tzinfo is None else end.astimezone(UTC)
    counts: dict[str, int] = {}
    n_values, seconds = 0, 0.0
    for i, view in enumerate(views):
        if progress is not None:
            progress(view.name, i, len(views))
        rows, took = _materialize_view(store, view, end, method, erased)
        counts[view.name] = rows
        n_values += rows * len(view.fields)
        seconds += took
    if progress is not None:
        progress("done", len(views), len(views))
    stats = MaterializeStats(
        method=method,
        online_store=str(store.config.online_store.type),
        rows=sum(counts.values()),
        features=sum(len(v.fields) for v in views),
        values=n_values,
        seconds=seconds,
        views=counts,
    )
    logger.info(
        "materialized %d values (%d rows) of %s into %s with %s in %.2fs (%.0f values/s)",
        stats.values, stats.rows, store.config.project, stats.online_store, method, seconds, stats.values_per_s,
    )  # fmt: skip
    return stats


def genome_views(settings: Settings) -> list[ViewTable]:
    """The simulated bank's materialized views as the writer sees them (tables under `offline_dir(settings)`)."""
    return [
        ViewTable(view, offline_dir(settings) / f"{view}.parquet", JOIN_KEY, "int", VIEW_FIELDS[view])
        for view in MATERIALIZED_VIEWS
    ]


def request_context(
    channel: str,
    at: datetime | None = None,
    location_type: str | None = None,
    hour_of_day: int | None = None,
) -> dict[str, Any]:
    """The request fields (`REQUEST_FIELDS`) of a decision at `at` (default now) on `channel`."""
    at = (at or datetime.now(UTC)).astimezone(UTC)
    return {
        "channel": channel,
        "hour_of_day": at.hour if hour_of_day is None else int(hour_of_day),
        "location_type": location_type or "other",
        "request_ts": at.timestamp(),
    }


def request_frame(frame: pd.DataFrame, ts_column: str = "ts") -> pd.DataFrame:
    """Entity rows for `get_historical_features` with nba_v1 from decision rows (e.g. logged contacts).

    Needs customer_id, `ts_column`, channel; uses hour_of_day / location_type when present. The decision time is
    both the point-in-time join key (event_timestamp) and the request timestamp, as at serving.
    """
    missing = [c for c in (JOIN_KEY, ts_column, "channel") if c not in frame.columns]
    if missing:
        raise DataError(f"decision rows need columns {missing}")
    ts = pd.to_datetime(frame[ts_column], utc=True)
    out = pd.DataFrame({JOIN_KEY: frame[JOIN_KEY].astype("int64").to_numpy(), TIMESTAMP_FIELD: ts.to_numpy()})
    out[TIMESTAMP_FIELD] = pd.to_datetime(out[TIMESTAMP_FIELD], utc=True)
    out["channel"] = frame["channel"].astype(str).to_numpy()
    hours = frame["hour_of_day"] if "hour_of_day" in frame.columns else ts.dt.hour
    out["hour_of_day"] = hours.fillna(-1).astype("int64").to_numpy()
    location = frame["location_type"] if "location_type" in frame.columns else None
    out["location_type"] = location.fillna("other").astype(str).to_numpy() if location is not None else "other"
    out["request_ts"] = (ts - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    return out[[JOIN_KEY, TIMESTAMP_FIELD, *REQUEST_FIELDS]]


def online_features(
    store: FeatureStore,
    customer_ids: list[int],
    service: str = NBA_SERVICE,
    request: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Online features of customers through a feature service (nba_v1 needs `request`, default: app, now)."""
    from feature_repo.specs import CONTEXT_VIEW

    rows: list[dict[str, Any]] = [{JOIN_KEY: int(c)} for c in customer_ids]
    if CONTEXT_VIEW in SERVICE_VIEWS.get(service, ()):
        context = request or request_context("app")
        rows = [{**r, **context} for r in rows]
    response = store.get_online_features(features=store.get_feature_service(service), entity_rows=rows)
    frame = response.to_df()
    # Feast returns columns in no stable order: give the model's order (service_features) after the key.
    return frame[[JOIN_KEY, *service_features(service)]]


def online_rows(
    store: FeatureStore,
    customer_ids: list[int],
    service: str = NBA_SERVICE,
    request: dict[str, Any] | None = None,
) -> dict[str, list[Any]]:
    """Serving's hot path: the same values as `online_features`, as a dict of lists, without Feast's ODFV step.

    Reads the service's materialized views (and, for nba_v1, the raw real-time state) with one
    `get_online_features` call, then applies `feature_repo.context.context_features` (the function the
    `request_context` on-demand view runs) in-process. Feast's on-demand step converts every output through its
    proto types, which costs several milliseconds per request here; a test checks both paths agree.
    Keys: customer_id, then `service_features(service)` in order; missing values are None.
    """
    from feature_repo.context import context_features
    from feature_repo.specs import CONTEXT_VIEW, REALTIME_FIELDS, REALTIME_VIEW

    if service not in SERVICE_VIEWS:
        raise ConfigError(f"unknown feature service {service!r}; known: {', '.join(SERVICE_VIEWS)}")
    views = SERVICE_VIEWS[service]
    needs_context = CONTEXT_VIEW in views
    refs = [f"{v}:{f}" for v in views if v != CONTEXT_VIEW for f in VIEW_FIELDS[v]]
    if needs_context:
        refs += [f"{REALTIME_VIEW}:{f}" for f in REALTIME_FIELDS]
    ids = [int(c) for c in customer_ids]
    data = store.get_online_features(features=refs, entity_rows=[{JOIN_KEY: c} for c in ids]).to_dict()
    if needs_context:
        context = request or request_context("app")
        inputs: dict[str, list[Any]] = {c: data[c] for c in REALTIME_FIELDS}
        inputs.update({k: [context[k]] * len(ids) for k in REQUEST_FIELDS})
        data.update(context_features(inputs))
    return {JOIN_KEY: ids, **{f: data[f] for f in service_features(service)}}
