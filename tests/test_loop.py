"""The closed loop: simulated time only where allowed, seeded decision moments, and one end-to-end run."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from nextbest.jobs.loop import LoopConfig, decision_moments
from nextbest.settings import Settings
from serving.schemas import RecommendRequest
from tests.training_fixtures import quiet_mlflow  # noqa: F401  (autouse fixture)

SIM_TS = datetime(2026, 4, 1, 9, 30, tzinfo=UTC)


def test_a_channel_cannot_move_the_decision_clock_unless_simulated_time_is_on(tmp_path: Path) -> None:
    from serving.engine import DecisionEngine

    req = RecommendRequest(customer_id=1, channel="app", ts=SIM_TS)
    live = DecisionEngine(Settings(home=tmp_path))
    with pytest.raises(ValueError, match="ts: .*simulated_time"):
        live.decision_time(req)
    now = live.decision_time(RecommendRequest(customer_id=1, channel="app"))
    assert abs((now - datetime.now(UTC)).total_seconds()) < 5
    simulation = DecisionEngine(Settings(home=tmp_path, serving={"simulated_time": True}))
    assert simulation.decision_time(req) == SIM_TS


def test_the_production_profile_refuses_simulated_time(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="simulated_time"):
        Settings(home=tmp_path, profile="production", serving={"simulated_time": True, "api_keys": {"k": "admin"}})


def test_retrain_without_a_service_url_says_it_relies_on_the_registry_poll(tmp_path: Path) -> None:
    from nextbest.jobs.retrain import reload_service

    polled = reload_service(Settings(home=tmp_path))
    assert polled.mode == "poller" and "registry poll (every 30 s)" in polled.detail
    off = reload_service(Settings(home=tmp_path, serving={"reload_interval_s": 0}))
    assert off.mode == "none" and not off.ok


def test_decision_moments_are_a_seeded_per_day_sample_of_the_loop_period() -> None:
    origin = pd.Timestamp("2026-01-01", tz="UTC")
    ts = origin + pd.to_timedelta([d + h / 24 for d in range(60) for h in range(10)], unit="D")
    contacts = pd.DataFrame(
        {"customer_id": range(len(ts)), "ts": ts, "channel": "app", "location_type": None, "trigger": None}
    )
    config = LoopConfig(days=60, loop_start_day=50, drift_day=55, decisions_per_day=4)
    moments = decision_moments(contacts, origin, config)
    assert moments["day"].value_counts().to_dict() == {d: 4 for d in range(50, 60)}
    assert moments["ts"].is_monotonic_increasing
    assert moments.equals(decision_moments(contacts, origin, config))


@pytest.mark.slow
def test_the_closed_loop_serves_in_simulated_time_feeds_back_truth_and_monitors(tmp_path: Path) -> None:
    """A tiny loop against the real service (one subprocess): every step leaves its record."""
    import sqlalchemy as sa

    from nextbest.decision_log import decision_contacts, decisions, feedback, make_engine
    from nextbest.jobs.loop import run_loop

    config = LoopConfig(
        customers=500,
        days=70,
        loop_start_day=49,
        drift_day=56,
        decisions_per_day=25,
        monitor_every_days=3,
        window_days=5,
        trials=1,
        churn_horizon_days=7,
        retrain_window_days=28,
        retrain_cooldown_days=3,
    )
    result = run_loop(Settings(home=tmp_path), config)
    loop_home = tmp_path / "loop"
    engine = make_engine(f"sqlite:///{loop_home / 'decisions.db'}")
    with engine.connect() as conn:
        ts = pd.to_datetime([r[0] for r in conn.execute(sa.select(decisions.c.ts))], utc=True)
        delivered = conn.execute(sa.select(sa.func.count()).select_from(decision_contacts)).scalar_one()
        fed_back = conn.execute(sa.select(sa.func.count()).select_from(feedback)).scalar_one()
    engine.dispose()
    origin = pd.Timestamp("2026-01-01", tz="UTC")
    # decisions are stamped with simulated time (the loop period), not the wall clock
    assert len(ts) == result.decisions == 21 * 25
    assert ts.min() >= origin + pd.Timedelta(days=49) and ts.max() < origin + pd.Timedelta(days=70)
    assert delivered > 0 and fed_back == delivered  # every delivered action got its outcome through /feedback
    assert sum(p.decisions for p in result.phases) == result.decisions
    # monitoring ran on schedule (a full 5-day window, then every 3 days) and left its verdicts
    assert [m["day"] for m in result.monitoring] == [49 + d for d in range(5, 22, 3)]
    verdicts = (loop_home / "reports" / "verdicts.jsonl").read_text().splitlines()
    assert len(verdicts) == len(result.monitoring)
    for r in (r for r in result.retrains if "error" not in r):
        assert r["sources"]["served"] > 0  # the served decisions are in the retraining set
        if r["promoted"]:
            reload = r["reload"]
            assert reload["mode"] == "admin_reload" and reload["ok"]
            assert reload["served_versions"]["nba"] == r["version"]
    assert result.summary_file.is_file()
