"""Served traffic folded into the NBA training set: labels from feedback, features point-in-time at decision time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nextbest.settings import Settings
from tests.training_fixtures import make_world, quiet_mlflow  # noqa: F401  (autouse fixture)
from training.served import LOGGED, SERVED, SOURCE, build_retraining_set, build_served_nba_rows, label_served

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _contacts(rows: list[tuple[str | None, float | None, float]]) -> pd.DataFrame:
    """(outcome, outcome delay in days or None, decision time in days after T0) -> decision_contacts-like rows."""
    out = []
    for i, (outcome, delay, at) in enumerate(rows):
        ts = T0 + timedelta(days=at)
        out.append(
            {
                "contact_id": -(i + 1),
                "ts": ts,
                "outcome": outcome,
                "outcome_ts": ts + timedelta(days=delay) if delay is not None else None,
            }
        )
    return pd.DataFrame(out)


def test_feedback_outcomes_become_labels_and_unknown_outcomes_are_left_out() -> None:
    as_of = T0 + timedelta(days=20)
    contacts = _contacts(
        [
            ("accepted", 0.1, 0),  # positive
            ("dismissed", 0.1, 1),  # negative
            ("ignored", 0.1, 2),  # negative
            ("shown", 0.1, 3),  # shown 17 days ago, no final outcome since: negative after the 7-day timeout
            ("shown", 0.1, 18),  # shown 2 days ago: may still be accepted -> left out
            (None, None, 4),  # no feedback at all -> left out
            ("accepted", 25.0, 5),  # accepted, but only after as_of: not known then -> left out
            ("accepted", 0.1, 21),  # decided after as_of -> left out
        ]
    )
    labelled = label_served(contacts, as_of, feedback_timeout_days=7)
    assert labelled["contact_id"].tolist() == [-1, -2, -3, -4]
    assert labelled["label"].tolist() == [1, 0, 0, 0]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_world(tmp_path_factory.mktemp("served-world"), customers=300, days=75, seed=5)


def _serve_logged_moments(settings: Settings, n: int = 40) -> tuple[pd.DataFrame, datetime]:
    """Log `n` decisions at the times of logged contacts (same customer, channel, context) with known feedback."""
    from nextbest.decision_log import DecisionLog, DecisionRecord
    from training.datasets import read_source

    contacts = read_source(settings, "contacts")
    contacts["ts"] = pd.to_datetime(contacts["ts"], utc=True)
    moments = contacts[contacts["ts"] >= contacts["ts"].max() - pd.Timedelta(days=20)].head(n).reset_index(drop=True)
    log = DecisionLog(settings.decision_log_uri)
    outcomes = ["accepted", "ignored", "dismissed", None]
    served = []
    try:
        for i, m in enumerate(moments.itertuples(index=False)):
            decision_id = f"{i:040x}"
            ts = m.ts.to_pydatetime()
            log.record_contacts(decision_id, m.customer_id, m.channel, ts, [(m.action_id, "offer")])
            log.log_decision(
                DecisionRecord(
                    decision_id=decision_id,
                    ts=ts,
                    customer_id=int(m.customer_id),
                    channel=m.channel,
                    context={"location_type": m.location_type},
                    features={},
                    feature_service="nba_v1",
                    model_versions={},
                    policy_version=None,
                    churn_risk=None,
                    scores={m.action_id: 0.1, "x": 0.2},
                    chosen=[],
                    rejected=[],
                )  # fmt: skip
            )
            outcome = outcomes[i % len(outcomes)]
            if outcome is not None:
                log.record_feedback(decision_id, outcome, action_id=m.action_id, ts=ts + timedelta(hours=1))
            served.append({"contact_id": int(m.contact_id), "decision_id": decision_id, "fed_back": outcome})
    finally:
        log.close()
    as_of = (moments["ts"].max() + pd.Timedelta(days=1)).to_pydatetime()
    return moments.merge(pd.DataFrame(served), on="contact_id"), as_of


@pytest.fixture(scope="module")
def served(world: Settings) -> tuple[pd.DataFrame, datetime]:
    return _serve_logged_moments(world)


def test_served_rows_get_labels_from_feedback_and_the_same_point_in_time_features_as_logged_rows(
    world: Settings, served: tuple[pd.DataFrame, datetime]
) -> None:
    from training.datasets import build_nba_training_set

    moments, as_of = served
    rows = build_served_nba_rows(world, as_of)
    expected = moments[moments["fed_back"].notna()]
    assert len(rows) == len(expected) > 0
    assert (rows[SOURCE] == SERVED).all() and (rows["logging_propensity"] == 1.0).all()
    by_decision = rows.set_index("decision_id")
    for m in expected.itertuples(index=False):
        row = by_decision.loc[m.decision_id]
        assert row["label"] == (1 if m.fed_back == "accepted" else 0)
        # leakage-safe: the row sits at the decision time, never at the (later) feedback time
        assert pd.Timestamp(row["event_timestamp"]) == m.ts
    # The served rows sit at the same (customer, time, channel, action) as logged contacts, so Feast's
    # point-in-time retrieval must give them exactly the logged rows' feature values.
    logged = build_nba_training_set(world, warmup_days=0)
    features = list(logged.feature_names)
    logged_rows = logged.frame.set_index("contact_id").loc[expected["contact_id"], features]
    served_rows = by_decision.loc[expected["decision_id"], features]
    np.testing.assert_allclose(
        served_rows.to_numpy(dtype=float), logged_rows.to_numpy(dtype=float), rtol=1e-6, equal_nan=True
    )


def test_retraining_set_is_cut_at_as_of_and_records_its_sources(
    world: Settings, served: tuple[pd.DataFrame, datetime]
) -> None:
    from training.datasets import read_source

    contacts = read_source(world, "contacts")
    as_of = (pd.to_datetime(contacts["ts"], utc=True).max() - pd.Timedelta(days=10)).to_pydatetime()
    training_set = build_retraining_set(world, "nba", as_of=as_of)
    frame = training_set.frame
    assert (pd.to_datetime(frame["event_timestamp"], utc=True) < as_of).all()
    moments = served[0]
    known = moments[moments["fed_back"].notna() & (moments["ts"] < as_of)]
    served_rows = frame[frame[SOURCE] == SERVED]
    assert len(served_rows) == training_set.lineage["rows_served"] == len(known) > 0
    assert (frame[SOURCE] == LOGGED).sum() == training_set.lineage["rows_logged"] > 0
    assert training_set.lineage["as_of"] == as_of.isoformat()
    churn = build_retraining_set(world, "churn", as_of=as_of)
    horizon = pd.Timedelta(days=churn.lineage["horizon_days"])
    assert (pd.to_datetime(churn.frame["event_timestamp"], utc=True) + horizon <= as_of).all()
    assert churn.lineage["rows_served"] == 0


def test_served_rows_carry_the_probability_the_service_logged_for_each_delivered_action(tmp_path: Path) -> None:
    """An explored decision's delivered actions keep their logged choice probabilities, a greedy one 1.0, a decision
    logged without probabilities 1.0; a probability outside (0, 1] in the log is refused, naming the decision."""
    from nextbest.decision_log import DecisionLog, DecisionRecord
    from nextbest.errors import DataError
    from training.served import read_served_contacts

    uri = f"sqlite:///{tmp_path / 'decisions.db'}"
    ts = datetime(2026, 3, 1, 12, tzinfo=UTC)
    logged = {
        "explored": {"travel_card": 0.55, "credit_card": 0.3},
        "greedy": {"travel_card": 1.0},
        "unrecorded": {},
    }
    log = DecisionLog(uri)
    log.start()
    try:
        for i, (name, probabilities) in enumerate(logged.items()):
            actions = list(probabilities) or ["savings_account"]
            log.log_decision(
                DecisionRecord(
                    decision_id=name, ts=ts, customer_id=i, channel="app", context={}, features={},
                    feature_service="nba_v1", model_versions={"nba": "1"}, policy_version="test", churn_risk=None,
                    scores={a: 0.1 for a in actions}, rejected=[], choice_probabilities=probabilities,
                    chosen=[{"rank": r, "action_id": a} for r, a in enumerate(actions, 1)],
                )
            )  # fmt: skip
            log.record_contacts(name, i, "app", ts, [(a, "sales") for a in actions])
        log.flush()
    finally:
        log.close()
    contacts = read_served_contacts(uri)
    got = {(r.decision_id, r.action_id): r.logging_propensity for r in contacts.itertuples()}
    assert got == {
        ("explored", "travel_card"): 0.55,
        ("explored", "credit_card"): 0.3,
        ("greedy", "travel_card"): 1.0,
        ("unrecorded", "savings_account"): 1.0,
    }
    import sqlalchemy as sa

    from nextbest.decision_log import decisions, make_engine

    engine = make_engine(uri)
    with engine.begin() as conn:
        conn.execute(
            sa.update(decisions)
            .where(decisions.c.decision_id == "greedy")
            .values(choice_probabilities={"travel_card": 0})
        )
    engine.dispose()
    with pytest.raises(DataError, match="decision greedy logged choice probability 0"):
        read_served_contacts(uri)
