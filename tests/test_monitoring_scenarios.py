"""The drift verdict on simulated worlds, both ways: no alarm without drift, an alarm on each drift scenario.

Each world (1,000 customers x 200 days, scenario from day 140; at 400, World 2.0's sourced response rates leave too
few acceptances and savings-rate page views for a rate shock to show in 60 days: measured, no input moved and no
outcome shift was supported) goes through the real pipeline: simulator -> feature
tables -> Feast -> the training-set builders. Reference = training rows from day 92 (after the 90-day feature
windows have filled) to day 140; current = rows from day 140 on. The verdict for the world is drift if either
model's verdict is (as `nextbest monitor` decides).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from monitoring.drift import DriftPolicy, DriftVerdict, decide_drift, outcome_shifts
from monitoring.reports import build_drift_report
from nextbest.settings import Settings

pytestmark = pytest.mark.slow

CUSTOMERS, DAYS, START_DAY, REFERENCE_FROM_DAY, SEED = 1_000, 200, 140, 92, 11
ORIGIN = pd.Timestamp("2026-01-01", tz="UTC")


@dataclass
class WorldVerdicts:
    churn: DriftVerdict
    nba: DriftVerdict

    @property
    def drifted(self) -> bool:
        return self.churn.drifted or self.nba.drifted

    def reasons(self) -> dict[str, tuple[str, ...]]:
        return {"churn": self.churn.reasons, "nba": self.nba.reasons}


def _verdicts(home: Path, scenario: str | None) -> WorldVerdicts:
    from nextbest.features import features_of
    from nextbest.simulator import SimulationConfig, simulate_world
    from training.datasets import build_churn_training_set, build_nba_training_set

    settings = Settings(home=home)
    config = SimulationConfig(
        customers=CUSTOMERS,
        days=DAYS,
        seed=SEED,
        scenario=scenario,
        scenario_start_day=START_DAY if scenario else None,
    )
    simulate_world(config, settings.world_dir)
    features = features_of(settings)
    features.build()
    features.apply()
    policy = DriftPolicy()
    start = ORIGIN + pd.Timedelta(days=START_DAY)
    reference_from = ORIGIN + pd.Timedelta(days=REFERENCE_FROM_DAY)
    out = {}
    for training_set in (build_churn_training_set(settings), build_nba_training_set(settings)):
        frame = training_set.frame
        ts = pd.to_datetime(frame["event_timestamp"], utc=True)
        reference, current = frame[(ts >= reference_from) & (ts < start)], frame[ts >= start]
        # Action attributes of the NBA rows are the logging policy's choice, not the world's: not monitored.
        inputs = [f for f in training_set.feature_names if not f.startswith("action_")]
        report = build_drift_report(reference, current, inputs, policy=policy, reference_time="event_timestamp")
        group = "action_id" if training_set.model == "nba" else None
        outcomes = outcome_shifts(reference, current, "label", policy, group_by=group)
        out[training_set.model] = decide_drift(
            policy, report.columns, (), outcomes, reference_rows=len(reference), current_rows=len(current)
        )
    return WorldVerdicts(churn=out["churn"], nba=out["nba"])


@pytest.fixture(scope="module", params=[None, "rate_shock", "fee_change", "digital_cohort"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str | None, WorldVerdicts]:
    scenario = request.param
    return scenario, _verdicts(tmp_path_factory.mktemp(f"world-{scenario or 'none'}"), scenario)


def test_no_alarm_without_drift_and_an_alarm_on_each_drift_scenario(world: tuple[str | None, WorldVerdicts]) -> None:
    scenario, verdicts = world
    assert verdicts.churn.enough_data and verdicts.nba.enough_data
    if scenario is None:
        assert not verdicts.drifted, verdicts.reasons()
        return
    assert verdicts.drifted, verdicts.reasons()
    if scenario == "fee_change":
        # higher fees -> more closures: the churn outcome rate itself shifts upwards
        shift = next(o for o in verdicts.churn.outcomes if o.group == "all")
        assert shift.drifted and shift.current_rate > shift.reference_rate
    if scenario == "digital_cohort":
        # a new cohort changes who the customers are: the inputs show it
        assert verdicts.churn.drifted_features or verdicts.nba.drifted_features
