"""Production path: an onboarded project's online store on the real Redis at 127.0.0.1:6379 (DB 11, own project):
the fast materialization writes it through Feast's Redis writer, int and string keys alike."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from nextbest.features.project import feature_project
from nextbest.project import load_project
from nextbest.settings import REPO_ROOT, FeatureSettings, Settings

FLAT = REPO_ROOT / "configs/examples/flat_contacts.yaml"
REDIS_DB = 11  # this area's Redis DB number, apart from the other areas' tests


@pytest.mark.redis
def test_flat_project_materializes_into_redis_and_reads_back_online(tmp_path: Path) -> None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    try:
        client.ping()
    except redis.ConnectionError as exc:  # pragma: no cover - the suite's Redis is expected to run
        pytest.fail(f"Redis on 127.0.0.1:6379 is not reachable: {exc}")
    name = f"flat_redis_{uuid.uuid4().hex[:8]}"
    project = load_project(FLAT)
    assert project.tables is not None
    project = project.model_copy(update={"tables": project.tables.model_copy(update={"project": name})})
    settings = Settings(
        home=tmp_path / "home",
        features=FeatureSettings(online_store="redis", redis_connection_string=f"127.0.0.1:6379,db={REDIS_DB}"),
    )
    features = feature_project(project, settings)
    features.build()
    features.apply()
    store = features.store()
    try:
        stats = features.materialize()
        assert stats.method == "fast" and stats.online_store == "redis" and stats.rows == 1980
        assert client.dbsize() > 0
        online = store.get_online_features(
            features=store.get_feature_service("flat_response_v1"), entity_rows=[{"contact_id": 2}, {"contact_id": 0}]
        ).to_dict()
        assert online["age"] == [70.0, None]  # a known contact, and an unknown one read as missing
        assert online["previous_contacts_all"] == [1.0, None]
        customers = store.get_online_features(
            features=store.get_feature_service("flat_propensity_v1"),
            entity_rows=[{"customer_id": "C-0001"}, {"customer_id": "C-9999"}],
        ).to_dict()
        assert customers["customer_age"] == [70.0, None]  # string keys through Feast's Redis writer
        assert customers["contacts_all"] == [3.0, None]
    finally:
        store.teardown()
        for key in client.scan_iter(match=f"*{name}*"):
            client.delete(key)
