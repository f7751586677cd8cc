"""The one online read of the platform: an entity's features in one store round trip, with a timeout and a breaker.

`OnlineAccess` is what a decision engine holds: a small thread pool that bounds every read by `timeout_s`, and a
circuit breaker that, after `failures_to_open` consecutive store failures, skips the store for `reset_s` so that a
dead store costs nothing per request (the caller answers degraded). `OnlineReader` reads the views of one entity
(the served customer, or another entity a rule needs, such as a loan) for any project and any key type:

- the values are exactly what `FeatureStore.get_online_features` returns for those views (the same online tables or
  hashes, keys and value protos), but all views come in ONE round trip through Feast's own storage layout: one
  `UNION ALL` statement on Feast's SQLite connection, or one pipelined `HMGET` per view on its Redis client. On this
  machine that cost 1-2 ms where `get_online_features` cost 5-8 ms with an on-demand view. Any other online store
  type takes the provider's per-view `online_read`;
- a project with request-time features (the simulated bank's `request_context` on-demand view) gets them computed
  in-process by the feature repo's own function, the one the on-demand view runs.

Nothing else in the platform touches Feast internals. A key that cannot be encoded (wrong type, out of the int64
range) is the caller's error (`ValueError`) and never counts as a store failure: one bad request cannot open the
breaker for everyone. `tests/test_serving_service.py` checks the lean path against `get_online_features`.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from nextbest.errors import NextbestError

if TYPE_CHECKING:
    from feast import FeatureStore

    from nextbest.features.project import ContextFn

logger = logging.getLogger(__name__)

T = TypeVar("T")
INT64_MAX = 2**63 - 1


class FeatureStoreUnavailable(NextbestError):
    """The online read failed, timed out, or the breaker is open (the caller answers degraded)."""


class OnlineAccess:
    """A bounded pool and a circuit breaker shared by every online read of one engine."""

    def __init__(self, timeout_s: float, failures_to_open: int, reset_s: float, threads: int = 4) -> None:
        self.timeout_s = timeout_s
        self._failures_to_open = failures_to_open
        self._reset_s = reset_s
        self._failures = 0
        self._open_until = 0.0
        self._lock = threading.Lock()
        # A few threads: a hung store ties up at most these, and later reads then time out fast.
        self._pool = cf.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="feature-read")

    @property
    def breaker_open(self) -> bool:
        return time.monotonic() < self._open_until

    def _record(self, ok: bool) -> None:
        with self._lock:
            if ok:
                self._failures = 0
                return
            self._failures += 1
            if self._failures >= self._failures_to_open:
                self._open_until = time.monotonic() + self._reset_s
                self._failures = 0
                logger.warning("online store failing: circuit open for %.1f s", self._reset_s)

    def call(self, fn: Callable[..., T], *args: Any, timeout_s: float | None = None, record: bool = True) -> T:
        """Run one store call in the pool under the timeout and the breaker (FeatureStoreUnavailable otherwise).

        `record=False` (warm-up at startup) neither consults nor moves the breaker.
        """
        if record and self.breaker_open:
            raise FeatureStoreUnavailable("circuit open after repeated online-store failures")
        budget = timeout_s or self.timeout_s
        fut = self._pool.submit(fn, *args)
        try:
            out = fut.result(timeout=budget)
        except cf.TimeoutError as exc:
            if record:
                self._record(False)
            raise FeatureStoreUnavailable(f"online read exceeded {budget * 1000:.0f} ms") from exc
        except Exception as exc:  # any store error -> degraded answer, never a 500
            if record:
                self._record(False)
            raise FeatureStoreUnavailable(f"online read failed: {exc.__class__.__name__}: {exc}") from exc
        if record:
            self._record(True)
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def entity_key(join_key: str, key_type: str, value: object) -> Any:
    """Feast's `EntityKey` proto for one key (ValueError for a key of the wrong type or out of range)."""
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    if key_type == "int":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INT64_MAX:
            raise ValueError(f"{join_key}: an integer key in [0, 2^63) is expected, got {value!r}")
        return EntityKey(join_keys=[join_key], entity_values=[Value(int64_val=value)])
    if not isinstance(value, str) or not value:
        raise ValueError(f"{join_key}: a non-empty string key is expected, got {value!r}")
    return EntityKey(join_keys=[join_key], entity_values=[Value(string_val=value)])


class OnlineReader:
    """The features of one entity across `views`, plus request-time context when the project has it."""

    def __init__(
        self,
        store: FeatureStore,
        join_key: str,
        key_type: str,
        views: Sequence[tuple[str, Sequence[str]]],
        access: OnlineAccess,
        context: tuple[Sequence[str], ContextFn] | None = None,
    ) -> None:
        from feast.type_map import feast_value_type_to_python_type

        self.store = store
        self.join_key = join_key
        self.key_type = key_type
        self.access = access
        self._context = context
        self._to_python = feast_value_type_to_python_type
        self._provider = store._get_provider()
        self._views = [(store.get_feature_view(name), tuple(fields)) for name, fields in views]
        self.view_names = tuple(name for name, _fields in views)
        self._one_trip = self._one_trip_reader()
        if self._one_trip is None:
            logger.info("online store %s: reading view by view", store.config.online_store.type)

    @property
    def fields(self) -> tuple[str, ...]:
        """Every feature name the read returns (context features not included)."""
        return tuple(f for _view, names in self._views for f in names)

    # ------------------------------------------------------------ one round trip for all views
    def _one_trip_reader(self) -> Callable[[Any], dict[str, Any]] | None:
        kind = str(self.store.config.online_store.type)
        if kind == "sqlite" or kind.endswith("SqliteOnlineStore"):
            return self._sqlite_reader()
        if kind == "redis" or kind.endswith("RedisOnlineStore"):
            return self._redis_reader()
        return None

    def _sqlite_reader(self) -> Callable[[Any], dict[str, Any]]:
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.infra.online_stores.sqlite import _quote_id, _table_id
        from feast.protos.feast.types.Value_pb2 import Value

        config = self.store.config
        version = config.entity_key_serialization_version
        versioned = bool(getattr(config.registry, "enable_online_feature_view_versioning", False))
        views = self._views
        sql = " UNION ALL ".join(
            f"SELECT {i}, feature_name, value FROM {_quote_id(_table_id(config.project, view, versioned))} "
            "WHERE entity_key = ?"
            for i, (view, _names) in enumerate(views)
        )
        wanted = [frozenset(names) for _view, names in views]
        nulls = {name: None for _view, names in views for name in names}
        parse, to_python = Value.FromString, self._to_python
        path = str(config.online_store.path)
        if not Path(path).is_absolute():
            path = str(Path(str(config.repo_path or ".")) / path)
        local = threading.local()

        def connection() -> sqlite3.Connection:
            # One read-only connection per reading thread: Feast's own store keeps ONE connection for the process,
            # shared with the pushes' write transactions (interleaved statements of two threads on one connection
            # lost acknowledged pushes). A reader of its own sees what the writers commit, and never their work.
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
            return conn

        def read_sqlite(key: Any) -> dict[str, Any]:
            blob = serialize_entity_key(key, entity_key_serialization_version=version)
            rows = connection().execute(sql, [blob] * len(views)).fetchall()
            out = dict(nulls)
            for i, name, value in rows:
                if name in wanted[i]:
                    out[name] = to_python(parse(value)) if value is not None else None
            return out

        return read_sqlite

    def _redis_reader(self) -> Callable[[Any], dict[str, Any]]:
        from feast.infra.online_stores.redis import _versioned_fv_name
        from feast.protos.feast.types.Value_pb2 import Value

        config = self.store.config
        online = self._provider.online_store
        fields = []
        for view, names in self._views:
            # A fresh list per view: Feast's Redis store appends "_ts:<view>" to the list it is given.
            _requested, hset_keys = online._generate_hset_keys_for_features(
                view, list(names), fv_name_override=_versioned_fv_name(view, config)
            )
            fields.append((names, hset_keys[: len(names)]))  # the last field is the view's timestamp
        parse, to_python = Value.FromString, self._to_python

        def read_redis(key: Any) -> dict[str, Any]:
            redis_key = online._generate_redis_keys_for_entities(config, [key])[0]
            with online._get_client(config.online_store).pipeline(transaction=False) as pipe:
                for _names, hset_keys in fields:
                    pipe.hmget(redis_key, hset_keys)
                replies = pipe.execute()
            out: dict[str, Any] = {}
            for (names, _keys), reply in zip(fields, replies, strict=True):
                for name, value in zip(names, reply, strict=True):
                    out[name] = to_python(parse(value)) if value else None
            return out

        return read_redis

    def _view_by_view(self, key: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for view, names in self._views:
            # A fresh list per call: Feast's Redis store appends "_ts:<view>" to the list it is given; passing
            # ours grew it by one field per request (thousands of HMGET fields, reads of 17+ ms after a while).
            _ts, values = self._provider.online_read(
                config=self.store.config, table=view, entity_keys=[key], requested_features=list(names)
            )[0]
            for name in names:
                v = values.get(name) if values else None
                out[name] = self._to_python(v) if v is not None else None
        return out

    # ------------------------------------------------------------ reads
    def _read(self, key: Any, value: object, request: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {self.join_key: value}
        out.update(self._one_trip(key) if self._one_trip is not None else self._view_by_view(key))
        return self.with_context(out, request)

    def with_context(self, row: dict[str, Any], request: Mapping[str, Any]) -> dict[str, Any]:
        """`row` (the entity's features) with the request-time context features added, as a read returns them:
        the one place they are computed for a read and for rows a batch brings (campaigns, the policy twin)."""
        if self._context is not None:
            inputs_fields, fn = self._context
            inputs = {c: [row.get(c)] for c in inputs_fields}
            inputs.update({k: [v] for k, v in request.items()})
            for name, column in fn(inputs).items():
                row[name] = column[0]
        return row

    def with_context_many(
        self, rows: Sequence[dict[str, Any]], requests: Sequence[Mapping[str, Any]]
    ) -> frozenset[str] | None:
        """`with_context` of many rows in one call of the context function (it computes column-wise): the same
        values as row by row (rows whose requests name different fields are added row by row). Returns the names
        it set in every row (None when added row by row)."""
        if self._context is None or not rows:
            return frozenset()
        fields = set(requests[0])
        if len(rows) == 1 or any(set(r) != fields for r in requests):
            for row, request in zip(rows, requests, strict=True):
                self.with_context(row, request)
            return None
        inputs_fields, fn = self._context
        inputs: dict[str, list[Any]] = {c: [row.get(c) for row in rows] for c in inputs_fields}
        inputs.update({k: [r[k] for r in requests] for k in requests[0]})
        written = fn(inputs)
        for name, column in written.items():
            for row, value in zip(rows, column, strict=True):
                row[name] = value
        return frozenset(written)

    def read(self, value: object, request: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The entity's features (None for missing values), within the timeout; FeatureStoreUnavailable else.

        ValueError (the key is malformed) is raised before the store is touched and does not count as a failure.
        """
        key = entity_key(self.join_key, self.key_type, value)
        return self.access.call(self._read, key, value, dict(request or {}))

    def read_with_sdk(self, value: object, features: Any, request: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The same values through `FeatureStore.get_online_features(features=...)` (reference path, slower)."""
        resp = self.store.get_online_features(
            features=features, entity_rows=[{self.join_key: value, **(request or {})}]
        )
        return {k: v[0] for k, v in resp.to_dict().items()}

    def warm_up(self, value: object, request: Mapping[str, Any] | None = None) -> None:
        """First reads load the registry, on-demand views and connections: do them before taking traffic."""
        key = entity_key(self.join_key, self.key_type, value)
        try:
            for _ in range(3):
                # generous but bounded: a hung store must not hang startup either
                self.access.call(self._read, key, value, dict(request or {}), timeout_s=2.0, record=False)
        except FeatureStoreUnavailable as exc:  # a store down at startup must not stop the service: it is degraded
            logger.warning("online store warm-up failed (%s); answers will be degraded", exc)


# -------------------------------------------------------------------- erasure


def erase_entities(
    store: FeatureStore, join_key: str, key_type: str, values: Sequence[object], views: Sequence[str]
) -> int:
    """Delete entities' rows from the online store, keyed exactly as `OnlineReader` reads them; returns rows removed.

    SQLite: every row of `views`' tables with the entities' serialized keys, on a connection with `secure_delete`
    (freed pages are zeroed, so the key's bytes leave the file). Redis: the entity's hash (Feast keeps one hash per
    entity key and project, holding every view's fields), so all its views go at once; rows removed count hashes.
    Another online store type: ConfigError (Feast has no per-key delete for it).
    """
    from nextbest.errors import ConfigError

    if not values:
        return 0
    keys = [entity_key(join_key, key_type, v) for v in values]
    kind = str(store.config.online_store.type)
    if kind == "sqlite" or kind.endswith("SqliteOnlineStore"):
        return _erase_sqlite(store, keys, views)
    if kind == "redis" or kind.endswith("RedisOnlineStore"):
        online = store._get_provider().online_store
        redis_keys = online._generate_redis_keys_for_entities(store.config, keys)
        return int(online._get_client(store.config.online_store).delete(*redis_keys))
    raise ConfigError(f"erasing from a {kind} online store is not supported; use SQLite or Redis")


def _erase_sqlite(store: FeatureStore, keys: Sequence[Any], views: Sequence[str]) -> int:
    import sqlite3
    from pathlib import Path

    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.sqlite import SqliteOnlineStore, _quote_id, _table_id

    config = store.config
    version = config.entity_key_serialization_version
    versioned = bool(getattr(config.registry, "enable_online_feature_view_versioning", False))
    blobs = [serialize_entity_key(k, entity_key_serialization_version=version) for k in keys]
    path = SqliteOnlineStore._get_db_path(config)
    if not Path(path).is_file():
        return 0  # never materialized
    con = sqlite3.connect(path, timeout=30)
    removed = 0
    try:
        con.execute("PRAGMA secure_delete = ON")
        present = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        with con:
            for name in views:
                try:
                    table = _table_id(config.project, store.get_feature_view(name), versioned)
                except Exception:  # feast's FeatureViewNotFoundException: not applied, nothing materialized
                    continue
                if table not in present:
                    continue  # never materialized
                for lo in range(0, len(blobs), 500):
                    chunk = blobs[lo : lo + 500]
                    marks = ", ".join("?" * len(chunk))
                    cur = con.execute(f"DELETE FROM {_quote_id(table)} WHERE entity_key IN ({marks})", chunk)
                    removed += cur.rowcount
    finally:
        con.close()
    return removed
