"""The Feast store of an installation: configuration from settings, apply, build, materialize, online reads.

`get_store` builds the `FeatureStore` from typed settings (registry, SQLite file and offline tables under
`settings.features_dir`; SQLite or Redis online store), so a test with a tmp `home` gets its own store and the
`feast` CLI in `feature_repo/` (relative paths in feature_store.yaml) sees the same files for the default home.

Materialization has two methods that land the same values:
- "feast": `FeatureStore.materialize` per view over [end - ttl, end] (about 50k values/s here: Feast pulls the
  latest rows through its offline engine, then writes one SQL statement per feature value).
- "fast": the latest row per customer is taken with DuckDB straight from the feature table. For SQLite its values
  are serialized column-wise (vectorised) into exactly the bytes Feast writes, and upserted in key order with one
  `executemany` transaction into the table Feast reads (a test compares both online tables row for row); for Redis
  the rows go through Feast's converter and its pipelined writer. The registry records the materialized interval
  either way, so `feast materialize-incremental` continues from it.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
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
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    from feature_repo.definitions import Definitions

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
ProgressFn = Callable[[str, int, int], None]
#: Rows per bulk write: large enough to amortise Python overhead, small enough to bound memory at 1M customers.
WRITE_BATCH_ROWS = 50_000


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
        online = {"type": "redis", "connection_string": settings.features.redis_connection_string}
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


def build_feature_tables(
    settings: Settings, progress: ProgressFn | None = None, every_days: int = 1, chunk_customers: int = 10_000
) -> dict[str, Path]:
    """Build the feature tables from the world's source tables (`settings.sources_dir`) into `offline_dir`.

    `progress(step, done, total)` is called as views and customer chunks complete. `every_days` is the snapshot
    cadence (7 for 100k+ customers x 180 days); `chunk_customers` bounds memory.
    """
    from feature_repo.pipeline import build_feature_tables as build

    if not settings.sources_dir.is_dir():
        raise NotReadyError(f"no world at {settings.world_dir}: run `nextbest simulate` first")
    return build(
        settings.sources_dir,
        offline_dir(settings),
        every_days=every_days,
        progress=progress,
        chunk_customers=chunk_customers,
    )


def apply(settings: Settings, store: FeatureStore | None = None) -> None:
    """Register the entity, sources, views and feature services (what `feast apply` does), and create tables."""
    missing = [v for v in MATERIALIZED_VIEWS if not (offline_dir(settings) / f"{v}.parquet").is_file()]
    if missing:
        raise NotReadyError(
            f"feature tables {missing} not built under {offline_dir(settings)}: run `nextbest features build` first"
        )
    store = store or get_store(settings)
    store.apply(definitions(settings).objects())
    logger.info("applied feature repo %r to %s", settings.features.project, settings.features_dir / "registry.db")


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


def latest_rows(table: Path, start: datetime, end: datetime) -> pd.DataFrame:
    """The latest row per customer with start <= event_timestamp <= end (Feast's materialization semantics)."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(
            f"""
            SELECT * FROM read_parquet(?)
            WHERE {TIMESTAMP_FIELD} >= ? AND {TIMESTAMP_FIELD} <= ?
            QUALIFY row_number() OVER (PARTITION BY {JOIN_KEY} ORDER BY {TIMESTAMP_FIELD} DESC) = 1
            ORDER BY {JOIN_KEY}
            """,
            [str(table), start, end],
        ).df()
    finally:
        con.close()


def feature_tables_end(settings: Settings) -> datetime:
    """The newest event timestamp in the feature tables (the default materialization end)."""
    import pyarrow.parquet as pq

    newest: datetime | None = None
    for view in MATERIALIZED_VIEWS:
        path = offline_dir(settings) / f"{view}.parquet"
        if not path.is_file():
            raise NotReadyError(f"feature table {path} missing: run `nextbest features build` first")
        column = pq.read_table(path, columns=[TIMESTAMP_FIELD]).column(0)
        if len(column):
            import pyarrow.compute as pc

            value = pc.max(column).as_py()
            newest = value if newest is None or value > newest else newest
    if newest is None:
        raise DataError(f"the feature tables under {offline_dir(settings)} are empty")
    return newest.astimezone(UTC)


def _encode_column(values: pd.Series, kind: str) -> tuple[list[bytes], list[str | None]]:
    """Serialized Feast `Value` protos and their `value_text` for one column, vectorised.

    Byte-for-byte what Feast's converter and SQLite writer produce (a test compares the online tables of both
    paths): a double is its oneof tag plus 8 little-endian bytes, a missing value is an empty `Value`, and value_text
    is `str()` of the Python value. Integer columns hold few distinct values, so each is encoded once.
    """
    from feast.protos.feast.types.Value_pb2 import Value

    if kind == "float64":
        floats = values.to_numpy(dtype="float64")
        missing = np.isnan(floats)
        packed = np.empty(len(floats), dtype=[("tag", "u1"), ("value", "<f8")])
        packed["tag"] = Value(double_val=1.0).SerializeToString()[0]
        packed["value"] = floats
        buf = packed.tobytes()
        encoded = [b"" if missing[i] else buf[9 * i : 9 * i + 9] for i in range(len(floats))]
        text = [None if m else str(x) for x, m in zip(floats.tolist(), missing.tolist(), strict=True)]
        return encoded, text
    if kind == "int64":
        ints = values.to_numpy(dtype="int64").tolist()
        cache = {v: Value(int64_val=v).SerializeToString() for v in set(ints)}
        return [cache[v] for v in ints], [str(v) for v in ints]
    raise ConfigError(f"fast materialization supports int64 and float64 features, not {kind!r}")


def _sqlite_bulk_write(db_path: str, table_name: str, frame: pd.DataFrame, fields: dict[str, str]) -> None:
    """Upsert the rows of `frame` (latest row per customer) into Feast's SQLite table in one transaction."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.utils import to_naive_utc

    con = sqlite3.connect(db_path)
    try:
        columns = [r[1] for r in con.execute(f'PRAGMA table_info("{table_name}")')]
        expected = ["entity_key", "feature_name", "value", "value_text", "event_ts", "created_ts"]
        # vector_value stays NULL for scalar features, as Feast leaves it when vector search is off.
        if sorted(set(columns) - {"vector_value"}) != sorted(expected):
            raise ConfigError(f"SQLite online table {table_name} has columns {columns}; fast path expects {expected}")
        keys = [
            serialize_entity_key(
                EntityKey(join_keys=[JOIN_KEY], entity_values=[Value(int64_val=c)]), entity_key_serialization_version=3
            )
            for c in frame[JOIN_KEY].astype("int64").tolist()
        ]
        stamps: list[Any] = [to_naive_utc(t.to_pydatetime()) for t in pd.to_datetime(frame[TIMESTAMP_FIELD], utc=True)]
        # Adapt each row's timestamp once with the adapter Feast registered (not once per feature value).
        adapt = sqlite3.adapters.get((datetime, sqlite3.PrepareProtocol))
        if adapt is not None:
            stamps = [adapt(t) for t in stamps]
        encoded = {name: _encode_column(frame[name], kind) for name, kind in fields.items()}

        names = sorted(encoded)

        def rows() -> Iterable[tuple[Any, ...]]:
            # In primary-key order, so the upserts walk the B-tree instead of jumping around it.
            for i in sorted(range(len(keys)), key=keys.__getitem__):
                for name in names:
                    values, texts = encoded[name]
                    yield keys[i], name, values[i], texts[i], stamps[i], None

        # The online store is a cache rebuilt from the offline tables: trade fsync durability for load speed
        # (both settings last only for this connection).
        con.execute("PRAGMA synchronous = OFF")
        con.execute("PRAGMA journal_mode = MEMORY")
        con.execute("PRAGMA cache_size = -262144")
        sql = (
            f'INSERT INTO "{table_name}" (entity_key, feature_name, value, value_text, event_ts, created_ts) '
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE SET value = excluded.value, "
            "value_text = excluded.value_text, event_ts = excluded.event_ts, created_ts = excluded.created_ts"
        )
        with con:
            con.executemany(sql, rows())
    finally:
        con.close()


def _write_fast(store: FeatureStore, settings: Settings, view_name: str, frame: pd.DataFrame) -> None:
    """Write latest rows of one view to the online store: bulk SQLite upsert, or Feast's pipelined Redis writer."""
    import pyarrow as pa
    from feast.infra.online_stores.sqlite import _table_id
    from feast.utils import _convert_arrow_to_proto
    from feast.value_type import ValueType

    fv = store.get_feature_view(view_name)
    for lo in range(0, len(frame), WRITE_BATCH_ROWS):
        chunk = frame.iloc[lo : lo + WRITE_BATCH_ROWS]
        if settings.features.online_store == "sqlite":
            table = _table_id(store.config.project, fv, store.config.registry.enable_online_feature_view_versioning)
            _sqlite_bulk_write(str(settings.features_dir / "online_store.db"), table, chunk, VIEW_FIELDS[view_name])
        else:
            rows = _convert_arrow_to_proto(
                pa.Table.from_pandas(chunk, preserve_index=False), fv, {JOIN_KEY: ValueType.INT64}
            )
            store._get_provider().online_write_batch(store.config, fv, rows, progress=None)


def materialize(
    settings: Settings,
    end: datetime | None = None,
    method: MaterializeMethod = "fast",
    views: Iterable[str] | None = None,
    store: FeatureStore | None = None,
    progress: ProgressFn | None = None,
) -> MaterializeStats:
    """Load the latest feature row of every customer (within each view's TTL before `end`) into the online store."""
    if method not in ("fast", "feast"):
        raise ConfigError(f"unknown materialization method {method!r}; use 'fast' or 'feast'")
    store = store or get_store(settings)
    end = (end or feature_tables_end(settings)).astimezone(UTC)
    names = list(views or MATERIALIZED_VIEWS)
    unknown = [v for v in names if v not in VIEW_FIELDS]
    if unknown:
        raise ConfigError(f"unknown feature views {unknown}; known: {', '.join(VIEW_FIELDS)}")
    counts: dict[str, int] = {}
    n_values = 0
    seconds = 0.0
    for i, view in enumerate(names):
        if progress is not None:
            progress(view, i, len(names))
        try:
            fv = store.get_feature_view(view)
        except Exception as exc:  # feast raises FeatureViewNotFoundException
            raise NotReadyError(f"feature view {view!r} not registered: run `nextbest features apply` first") from exc
        start = end - fv.ttl
        table = offline_dir(settings) / f"{view}.parquet"
        started = time.perf_counter()
        if method == "feast":
            store.materialize(start_date=start, end_date=end, feature_views=[view])
            seconds += time.perf_counter() - started
            rows = len(latest_rows(table, start, end))  # counted outside the timing: Feast does not report it
        else:
            frame = latest_rows(table, start, end)
            rows = len(frame)
            if rows:
                _write_fast(store, settings, view, frame)
            store.registry.apply_materialization(fv, store.config.project, start, end)
            seconds += time.perf_counter() - started
        counts[view] = rows
        n_values += rows * len(VIEW_FIELDS[view])
    if progress is not None:
        progress("done", len(names), len(names))
    stats = MaterializeStats(
        method=method,
        online_store=settings.features.online_store,
        rows=sum(counts.values()),
        features=sum(len(VIEW_FIELDS[v]) for v in names),
        values=n_values,
        seconds=seconds,
        views=counts,
    )
    logger.info(
        "materialized %d values (%d rows) into %s with %s in %.2fs (%.0f values/s)",
        stats.values, stats.rows, stats.online_store, method, seconds, stats.values_per_s,
    )  # fmt: skip
    return stats


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
