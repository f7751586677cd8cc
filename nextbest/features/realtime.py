"""Real-time events into the online store through Feast's push source, with the offline pipeline's transformation.

An event (a context signal such as an airport check-in, or an app page view such as the mortgage calculator)
updates the customer's `realtime_state` row: the current row is read from the online store, folded with the event by
`feature_repo.pipeline.fold_realtime_state` (the same function that built the offline table, so online and offline
agree), and the merged row is pushed with `FeatureStore.push`. The on-demand view then turns it into recency and
decayed strength at the next request. Events that move no real-time state (a login, a grocery payment) are ignored.

The read-merge-write holds a per-customer lock (`customer_locks`), so two simultaneous pushes for one customer --
two service workers handling two events, or two threads -- cannot both read the old row and have the second write
drop the first one's signal. The lock lives where the race is: a byte-range lock on a file beside the SQLite online
store (every process sharing that file is on this host), a Redis lock on the Redis online store (every worker and
replica sharing that Redis), plus a process-local lock (file locks do not exclude threads of one process). Another
online store type gets the process-local lock only, with a warning.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from feature_repo.pipeline import event_column, fold_realtime_state
from feature_repo.specs import JOIN_KEY, PUSH_SOURCE, REALTIME_FIELDS, REALTIME_VIEW, TIMESTAMP_FIELD
from nextbest.errors import DataError

if TYPE_CHECKING:
    from feast import FeatureStore

logger = logging.getLogger(__name__)


def _event_time(value: Any) -> pd.Timestamp:
    if value is None:
        return pd.Timestamp(datetime.now(UTC))
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def current_state(store: FeatureStore, customer_ids: list[int]) -> pd.DataFrame:
    """The online real-time state rows of these customers (customers without state are left out)."""
    response = store.get_online_features(
        features=[f"{REALTIME_VIEW}:{c}" for c in REALTIME_FIELDS],
        entity_rows=[{JOIN_KEY: int(c)} for c in customer_ids],
    ).to_dict(include_event_timestamps=True)
    rows = []
    for i, customer_id in enumerate(response[JOIN_KEY]):
        values = {c: response[c][i] for c in REALTIME_FIELDS}
        stamps = [response[f"{c}__ts"][i] for c in REALTIME_FIELDS if response.get(f"{c}__ts")]
        stamps = [s for s in stamps if s is not None]
        if all(v is None for v in values.values()) or not stamps:
            continue
        stamp = max(
            pd.Timestamp(s, unit="s", tz="UTC") if isinstance(s, int | float) else _event_time(s) for s in stamps
        )
        rows.append({JOIN_KEY: int(customer_id), TIMESTAMP_FIELD: stamp, **values})
    frame = pd.DataFrame(rows, columns=[JOIN_KEY, TIMESTAMP_FIELD, *REALTIME_FIELDS])
    return frame.astype({c: "float64" for c in REALTIME_FIELDS})


def push_events(store: FeatureStore, events: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Fold events into the customers' real-time state and push the new rows online; returns the pushed rows.

    Each event is a mapping with `customer_id`, `ts` (datetime, ISO string or None for now) and either `signal`
    (context signal) or `event_type`/`page` (digital event), as in the source tables.
    """
    from feast.data_source import PushMode

    relevant = []
    for event in events:
        if JOIN_KEY not in event:
            raise DataError(f"event without {JOIN_KEY}: {dict(event)}")
        column = event_column(event)
        if column is None:
            logger.debug("event moves no real-time state, not pushed: %s", dict(event))
            continue
        relevant.append({JOIN_KEY: int(event[JOIN_KEY]), "ts": _event_time(event.get("ts")), "column": column})
    if not relevant:
        return pd.DataFrame(columns=[JOIN_KEY, TIMESTAMP_FIELD, *REALTIME_FIELDS])
    frame = pd.DataFrame(relevant)
    customers = sorted(set(frame[JOIN_KEY]))
    with _sqlite_writes(store), customer_locks(store, customers):  # one read-fold-write step per customer
        previous = current_state(store, customers)
        state = fold_realtime_state(frame, previous=previous if len(previous) else None)
        latest = state.groupby(JOIN_KEY, sort=False).tail(1).reset_index(drop=True)
        latest = _after_stored(latest, previous)
        store.push(PUSH_SOURCE, latest, to=PushMode.ONLINE)
    return latest


#: Feast's SQLite online store keeps one connection per process: its write transactions are serialized here, so two
#: threads' pushes (two events of two customers) never interleave statements on it.
_SQLITE_WRITE_LOCK = threading.Lock()


@contextlib.contextmanager
def _sqlite_writes(store: FeatureStore) -> Iterator[None]:
    kind = str(store.config.online_store.type)
    if kind == "sqlite" or kind.endswith("SqliteOnlineStore"):
        with _SQLITE_WRITE_LOCK:
            yield
    else:
        yield


def _after_stored(latest: pd.DataFrame, previous: pd.DataFrame) -> pd.DataFrame:
    """Stamp each merged row strictly after the stored row it replaces.

    The Redis online store keeps a write only if its event timestamp is newer than the stored one (same instant or
    older: silently skipped). A merged row is stamped with its newest event, which equals the stored stamp when two
    events share a time and is older for a late event: the new signal would be dropped. The row's stamp only says
    "state as of"; the signal times themselves are in the state columns, so a microsecond later changes no feature.
    """
    if not len(previous):
        return latest
    stored = previous.set_index(JOIN_KEY)[TIMESTAMP_FIELD]
    floor = latest[JOIN_KEY].map(stored) + pd.Timedelta(microseconds=1)
    stamps = pd.to_datetime(latest[TIMESTAMP_FIELD], utc=True)
    latest = latest.copy()
    latest[TIMESTAMP_FIELD] = stamps.where(floor.isna() | (stamps >= floor), floor)
    return latest


def push_event(store: FeatureStore, event: Mapping[str, Any]) -> dict[str, Any] | None:
    """Push one real-time event (see `push_events`); returns the customer's new state row, or None if ignored."""
    pushed = push_events(store, [event])
    return pushed.iloc[0].to_dict() if len(pushed) else None


# ---------------------------------------------------------------- per-customer locks for the read-merge-write

#: Customers hash onto this many lock stripes (in-process locks and byte ranges of the lock file): two customers
#: rarely share one, and when they do, one push just waits a few ms.
LOCK_STRIPES = 4096
#: A Redis lock expires after this long, so a worker killed while holding it cannot block the customer forever.
REDIS_LOCK_TTL_S = 10.0
#: How long a push waits for another push of the same customer before giving up with an error.
LOCK_WAIT_S = 10.0

_local_stripes = [threading.Lock() for _ in range(LOCK_STRIPES)]
_lock_files: dict[str, int] = {}
_lock_files_guard = threading.Lock()
_warned_types: set[str] = set()


def _stripes(customer_ids: Iterable[int]) -> list[int]:
    # sorted: every caller takes stripes in one order, so two multi-customer pushes cannot deadlock
    return sorted({int(c) % LOCK_STRIPES for c in customer_ids})


def _lock_file(path: str) -> int:
    with _lock_files_guard:
        fd = _lock_files.get(path)
        if fd is None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            _lock_files[path] = fd
        return fd


@contextlib.contextmanager
def _file_locks(path: str, stripes: list[int]) -> Iterator[None]:
    import fcntl

    fd = _lock_file(path)
    held: list[int] = []
    try:
        for stripe in stripes:
            fcntl.lockf(fd, fcntl.LOCK_EX, 1, stripe, os.SEEK_SET)  # blocks; released if the process dies
            held.append(stripe)
        yield
    finally:
        for stripe in reversed(held):
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, stripe, os.SEEK_SET)


@contextlib.contextmanager
def _redis_locks(store: FeatureStore, customer_ids: list[int]) -> Iterator[None]:
    from feast.infra.online_stores.redis import RedisOnlineStore

    online = store._get_provider().online_store  # Feast's own client: same server, options and connection pool
    assert isinstance(online, RedisOnlineStore)
    client = online._get_client(store.config.online_store)
    held = []
    try:
        for customer_id in sorted(set(customer_ids)):
            lock = client.lock(
                f"nextbest:{store.project}:realtime_push:{customer_id}",
                timeout=REDIS_LOCK_TTL_S,
                blocking_timeout=LOCK_WAIT_S,
                sleep=0.002,
            )
            if not lock.acquire():
                raise TimeoutError(f"customer {customer_id}: state locked by another push for {LOCK_WAIT_S} s")
            held.append(lock)
        yield
    finally:
        for lock in reversed(held):
            with contextlib.suppress(Exception):  # expired meanwhile: the TTL released it already
                lock.release()


@contextlib.contextmanager
def customer_locks(store: FeatureStore, customer_ids: Iterable[int]) -> Iterator[None]:
    """Hold the real-time state of these customers against other pushes (threads, processes, workers)."""
    ids = [int(c) for c in customer_ids]
    stripes = _stripes(ids)
    kind = str(store.config.online_store.type)
    with contextlib.ExitStack() as stack:
        for stripe in stripes:
            stack.enter_context(_local_stripes[stripe])
        if kind == "sqlite" or kind.endswith("SqliteOnlineStore"):
            from feast.infra.online_stores.sqlite import SqliteOnlineStore

            stack.enter_context(_file_locks(SqliteOnlineStore._get_db_path(store.config) + ".push-lock", stripes))
        elif kind == "redis" or kind.endswith("RedisOnlineStore"):
            stack.enter_context(_redis_locks(store, ids))
        elif kind not in _warned_types:
            _warned_types.add(kind)
            logger.warning(
                "online store %s: real-time pushes are locked per process only; simultaneous pushes for one "
                "customer from two processes may lose one signal",
                kind,
            )
        yield
