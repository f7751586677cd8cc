"""The production online store: Redis on 127.0.0.1:6379, for real (fast path, Feast path, push, teardown).

Each test run uses its own Feast project name, so keys never collide with other tests or a running demo, and the
project's keys are deleted at the end. The raw-hash comparisons run in their own Redis db (`RAW_DB`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from nextbest.features import (
    CHURN_SERVICE,
    NBA_SERVICE,
    features_of,
    get_store,
    online_features,
    push_event,
    request_context,
)
from nextbest.settings import Settings
from tests.features_fixtures import write_sources

pytestmark = [pytest.mark.redis, pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::RuntimeWarning")]


def _redis_keys(project: str) -> int:
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379)
    return sum(1 for key in client.scan_iter(count=1000) if project.encode() in key)


def _applied_world(home: Path, project: str, connection: str) -> Settings:
    """A 30-customer world's feature tables built and applied to a Redis online store under its own project."""
    settings = Settings(
        home=home, features={"online_store": "redis", "redis_connection_string": connection, "project": project}
    )
    write_sources(settings.world_dir, customers=30, days=30, seed=5)
    features = features_of(settings)
    features.build()
    features.apply()
    return settings


@pytest.fixture()
def redis_world(tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = _applied_world(tmp_path, f"nbtest_features_{uuid.uuid4().hex[:10]}", "127.0.0.1:6379")
    yield settings
    get_store(settings).teardown()


def test_redis_fast_materialize_reads_back_the_same_features_as_feast_materialize(redis_world: Settings) -> None:
    features = features_of(redis_world)
    store = features.store()
    customers = list(range(1, 31))
    request = request_context("app", at=datetime(2026, 1, 31, 9, tzinfo=UTC))
    feast_stats = features.materialize(method="feast")
    via_feast = {s: online_features(store, customers, service=s, request=request) for s in (CHURN_SERVICE, NBA_SERVICE)}
    store.teardown()  # wipe this project's keys, then load them again with the fast path
    assert _redis_keys(redis_world.features.project) == 0
    features.apply()
    fast_stats = features.materialize(method="fast")
    assert fast_stats.values == feast_stats.values > 0
    for service, expected in via_feast.items():
        pd.testing.assert_frame_equal(online_features(store, customers, service=service, request=request), expected)
    assert expected["income_monthly"].notna().sum() > 20


RAW_DB = 13


def _client(db: int = RAW_DB):  # type: ignore[no-untyped-def]
    import redis

    return redis.Redis(host="127.0.0.1", port=6379, db=db)


def _hashes(project: str) -> dict[bytes, dict[bytes, bytes]]:
    """Every hash of this project's keys (key -> field -> value), raw bytes as Feast stored them."""
    client = _client()
    keys = [k for k in client.scan_iter(count=10_000) if k.endswith(project.encode())]
    return {k: client.hgetall(k) for k in keys}


def _perturb(project: str) -> None:
    """Two stored rows of customer_profile: one with a newer event time than the tables' (Feast will not overwrite
    it), one with an older one (Feast overwrites it); both with a changed feature value."""
    from feast.infra.online_stores.helpers import _mmh3
    from google.protobuf.timestamp_pb2 import Timestamp

    client = _client()
    keys = sorted(k for k in client.scan_iter(count=10_000) if k.endswith(project.encode()))
    field = _mmh3("customer_profile:income_monthly")
    for key, seconds in ((keys[0], 4_000_000_000), (keys[1], 1_000_000)):
        ts = Timestamp(seconds=seconds, nanos=5)
        client.hset(key, mapping={"_ts:customer_profile": ts.SerializeToString(), field: b")" + bytes(8)})


@pytest.fixture()
def raw_world(tmp_path: Path):  # type: ignore[no-untyped-def]
    project = f"nbtest_raw_{uuid.uuid4().hex[:10]}"
    settings = _applied_world(tmp_path, project, f"127.0.0.1:6379,db={RAW_DB}")
    yield settings
    get_store(settings).teardown()
    client = _client()
    leftover = [k for k in client.scan_iter(count=10_000) if k.endswith(project.encode())]
    if leftover:
        client.delete(*leftover)


def test_fast_materialize_writes_exactly_the_redis_hashes_feast_materialize_writes(raw_world: Settings) -> None:
    project = raw_world.features.project
    features = features_of(raw_world)
    store = features.store()
    written: dict[str, list[dict[bytes, dict[bytes, bytes]]]] = {}
    for method in ("feast", "fast"):
        features.apply()
        features.materialize(method=method)  # type: ignore[arg-type]
        first = _hashes(project)
        _perturb(project)  # Feast's rule on the stored event time, then a second materialization over it
        features.materialize(method=method)  # type: ignore[arg-type]
        written[method] = [first, _hashes(project)]
        store.teardown()
        assert _redis_keys_in(project) == 0
    assert written["fast"] == written["feast"]
    first, second = written["fast"]
    assert len(first) == 30 and sum(len(h) for h in first.values()) > 30 * 90
    assert second != first  # the newer stored row was kept, the older one overwritten


def _redis_keys_in(project: str) -> int:
    return sum(1 for k in _client().scan_iter(count=10_000) if k.endswith(project.encode()))


def test_fast_redis_writer_sets_feasts_key_ttl(raw_world: Settings) -> None:
    import numpy as np

    from nextbest.features.online_write import encode_column, entity_keys, write_redis_view

    client = _client()
    keys = entity_keys(pd.Series([1, 2]), "customer_id", "int")
    stamps = [datetime(2026, 1, 1, tzinfo=UTC)]
    columns = {"x": encode_column(pd.Series([1.0, None]), "float64")}
    project = raw_world.features.project
    out = write_redis_view(client, project, "v", keys, np.zeros(2, dtype=np.int64), stamps, columns, 600)
    assert out == {"rows": 2, "skipped": 0}
    assert all(0 < client.ttl(k + project.encode()) <= 600 for k in keys)
    again = write_redis_view(client, project, "v", keys, np.zeros(2, dtype=np.int64), stamps, columns, 600)
    assert again == {"rows": 0, "skipped": 2}  # the same event time is not newer: Feast skips it too
    client.delete(*[k + project.encode() for k in keys])


def test_redis_push_event_updates_the_online_context_and_teardown_removes_every_key(redis_world: Settings) -> None:
    features = features_of(redis_world)
    store = features.store()
    features.materialize(method="fast")
    now = datetime.now(UTC)
    push_event(store, {"customer_id": 4, "ts": now, "signal": "property_search"})
    row = online_features(store, [4], request=request_context("web", at=now))
    assert row["hours_since_property_search"].iloc[0] == pytest.approx(0.0, abs=1e-6)
    assert row["property_search_strength"].iloc[0] == pytest.approx(1.0)
    assert _redis_keys(redis_world.features.project) > 0
    store.teardown()
    assert _redis_keys(redis_world.features.project) == 0
