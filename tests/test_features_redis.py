"""The production online store: Redis on 127.0.0.1:6379, for real (fast path, Feast path, push, teardown).

Each test run uses its own Feast project name, so keys never collide with other tests or a running demo, and the
project's keys are deleted at the end.
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


@pytest.fixture()
def redis_world(tmp_path: Path):  # type: ignore[no-untyped-def]
    project = f"nbtest_features_{uuid.uuid4().hex[:10]}"
    settings = Settings(
        home=tmp_path,
        features={"online_store": "redis", "redis_connection_string": "127.0.0.1:6379", "project": project},
    )
    write_sources(settings.world_dir, customers=30, days=30, seed=5)
    features = features_of(settings)
    features.build()
    features.apply()
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
