"""The durable decision log: write-through contact state, write-behind records, feedback; SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from nextbest.decision_log import (
    DecisionLog,
    DecisionRecord,
    EventRecord,
    UnknownDecisionError,
    clean,
    json_column,
    new_decision_id,
)
from tests.environment import skip_unless_ci

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def record(decision_id: str, customer_id: int = 1, ts: datetime = NOW) -> DecisionRecord:
    return DecisionRecord(
        decision_id=decision_id,
        ts=ts,
        customer_id=customer_id,
        channel="app",
        context={"event": "airport_checkin"},
        features={"age": 40, "deposit_trend_30d": float("nan")},
        feature_service="nba_v1",
        model_versions={"churn": "1", "nba": "2"},
        policy_version="policy-test",
        churn_risk=0.1,
        scores={"travel_card": 0.2},
        chosen=[{"rank": 1, "action_id": "travel_card", "reason_codes": ["RECENT_TRAVEL_SIGNAL"]}],
        rejected=[{"action_id": "mortgage", "rule": "eligibility.max_age", "detail": ""}],
    )


@pytest.mark.parametrize(
    "value",
    [
        {"age": 40, "income": 4508.8, "name": "x", "flag": True, "none": None, "nested": {"a": [1, 2.5, "b"]}},
        {"nan": float("nan")},
        {"inf": [float("inf")], "ok": 1},
        {"big": 2**63, "small": -(2**63) - 1, "edge": 2**63 - 1},
        {"np_float": np.float64(1.5), "np_nan": np.float64("nan"), "np_int": np.int64(7), "np_bool": np.bool_(True)},
        {"when": datetime(2026, 9, 1, 9, tzinfo=UTC), "tuple": (1, 2), "set": {3}},
        {1: "int key", 2.5: "float key"},
        [{"action_id": "mortgage", "rule": "eligibility.max_age", "detail": "age 77.0 > 65"}],
        {"digits": "1234567890123456789012", "small float": 0.0001234567890123456},
        {"small float": 0.0006127405897031027, "long": 10**18, "negative": -(2**63) - 5},
        {"object": object(), "path": Path("/tmp/x")},
        0.25,
        float("nan"),
        None,
    ],
    ids=lambda v: type(v).__name__,
)
def test_a_json_column_is_what_clean_then_json_dumps_gives(value: object) -> None:
    """The decision log's one-pass encoding (no `clean` of a value that needs none) is exactly the `clean` path:
    a JSON-safe stored value and text that parses to the same values (whitespace and a float's notation aside), NaN /
    inf / out-of-range integers null, numpy and datetimes converted."""
    import json

    stored, text = json_column(value)
    want = clean(value)
    assert json.loads(text) == json.loads(json.dumps(want))
    assert json.loads(json.dumps(stored, allow_nan=False)) == json.loads(text)  # the row's value is JSON-safe


def test_a_json_column_round_trips_every_float_exactly() -> None:
    """The C encoder's floats parse back to the very same doubles: tiny, huge, negative, subnormal, the extremes."""
    import json
    import random

    rng = random.Random(7)
    values = [rng.uniform(-1, 1) * 10 ** rng.randint(-320, 308) for _ in range(20_000)]
    values += [5e-324, 1.7976931348623157e308, -0.0, 0.1, 1 / 3, 1e16, 123456789012345678.0]
    stored, text = json_column({"x": values})
    assert stored == {"x": values}
    assert json.loads(text)["x"] == values


def exercise_log(log: DecisionLog) -> None:
    """The behaviour both backends must show."""
    did = log.new_decision_id()
    log.record_contacts(did, 1, "app", NOW, [("travel_card", "sales"), ("card_replacement", "service")])
    # write-through: visible at once, before any flush
    history = log.contact_history(1, NOW - timedelta(days=7))
    assert [(c.action_id, c.kind) for c in history] == [("travel_card", "sales"), ("card_replacement", "service")]
    assert log.contact_history(1, NOW + timedelta(seconds=1)) == []
    assert log.contact_history(2, NOW - timedelta(days=7)) == []

    log.log_decision(record(did))
    # feedback on a decision still in the write-behind queue joins it
    out = log.record_feedback(did, "dismissed", action_id="travel_card", ts=NOW + timedelta(minutes=1))
    assert out["customer_id"] == 1
    history = {c.action_id: c for c in log.contact_history(1, NOW - timedelta(days=7))}
    assert history["travel_card"].outcome == "dismissed"
    assert history["travel_card"].outcome_ts == NOW + timedelta(minutes=1)
    assert history["card_replacement"].outcome is None
    # a later "shown" never overwrites a final outcome
    log.record_feedback(did, "shown")
    history = {c.action_id: c for c in log.contact_history(1, NOW - timedelta(days=7))}
    assert history["travel_card"].outcome == "dismissed" and history["card_replacement"].outcome == "shown"

    with pytest.raises(UnknownDecisionError, match="unknown decision_id"):
        log.record_feedback("0123456789abcdef", "accepted")
    with pytest.raises(UnknownDecisionError, match="did not deliver"):
        log.record_feedback(did, "accepted", action_id="mortgage")
    with pytest.raises(ValueError, match="outcome"):
        log.record_feedback(did, "loved")

    # a no-action decision (no contacts row) is joinable too, once logged
    quiet = log.new_decision_id()
    log.log_decision(record(quiet, customer_id=3))
    assert log.record_feedback(quiet, "ignored")["customer_id"] == 3

    log.flush()
    full = log.get_decision(did)
    assert full is not None
    assert full["features"] == {"age": 40, "deposit_trend_30d": None}  # NaN stored as null
    assert full["rejected"][0]["rule"] == "eligibility.max_age"
    assert [c["action_id"] for c in full["contacts"]] == ["travel_card", "card_replacement"]
    assert [f["outcome"] for f in full["feedback"]] == ["dismissed", "shown"]


def test_decision_log_on_sqlite(tmp_path: Path) -> None:
    log = DecisionLog(f"sqlite:///{tmp_path / 'decisions.db'}")
    log.start()
    try:
        exercise_log(log)
    finally:
        log.close()


def test_nothing_accepted_is_lost_when_closing_with_a_full_queue(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'decisions.db'}"
    log = DecisionLog(uri, queue_size=64, batch_size=50)
    log.start()
    for i in range(1000):
        log.log_decision(record(log.new_decision_id(), customer_id=i))
        log.log_event(EventRecord(customer_id=i, ts=NOW, event_type="login", payload={"i": i}))
    log.close()  # drains
    reopened = DecisionLog(uri)
    assert reopened.count("decisions") == 1000
    assert reopened.count("events") == 1000
    reopened.close()


def test_decision_ids_are_unique_time_ordered_and_signed() -> None:
    from nextbest.decision_log import genuine

    ids = [new_decision_id(b"secret") for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 for i in ids)
    assert ids[0][:12] <= ids[-1][:12]
    assert all(genuine(i, b"secret") for i in ids)
    assert not any(genuine(i, b"another secret") for i in ids[:50])  # another installation's ids
    forged = ids[0][:24] + "00000000"  # the right shape and a current time, not the signature
    assert not genuine(forged, b"secret")


@pytest.fixture
def postgres_uri() -> Iterator[str]:
    psycopg2 = pytest.importorskip("psycopg2")
    name = f"nextbest_serving_test_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test")
    except psycopg2.OperationalError as exc:
        skip_unless_ci(f"PostgreSQL not reachable: {exc}")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.mark.postgres
def test_decision_log_on_postgresql(postgres_uri: str) -> None:
    log = DecisionLog(postgres_uri)
    log.start()
    try:
        exercise_log(log)
    finally:
        log.close()
    # a second worker opening the same database sees the same state
    other = DecisionLog(postgres_uri)
    try:
        assert other.count("decisions") == 2 and other.count("decision_contacts") == 2
    finally:
        other.close()
