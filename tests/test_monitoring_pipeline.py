"""Monitoring on served traffic: reading the real decision log, and one whole monitoring run with its records."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from monitoring.drift import DriftPolicy
from monitoring.pipeline import run_monitoring
from monitoring.sources import ReferenceData, read_served_window
from monitoring.store import list_runs, open_workspace
from nextbest.errors import DataError, NotReadyError
from nextbest.settings import Settings
from tests.evaluation_fixtures import trained_world  # noqa: F401  (fixture)

END = datetime(2026, 6, 1, tzinfo=UTC)
INPUTS = ["age", "income_monthly", "logins_30d", "fees_amount_30d", "has_savings"]
ACTIONS = {"savings_account": ("sales", 90.0), "travel_card": ("sales", 120.0), "card_replacement": ("service", 5.0)}


def _customers(n: int, rng: np.random.Generator, shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": rng.normal(45 - 15 * shift, 12, n),
            "income_monthly": rng.lognormal(8 + 0.3 * shift, 0.5, n),
            "logins_30d": rng.poisson(6 + 10 * shift, n).astype(float),
            "fees_amount_30d": rng.gamma(2, 5 + 10 * shift, n),
            "has_savings": (rng.uniform(size=n) < 0.4 + 0.3 * shift).astype(float),
        }
    )


def _log_traffic(uri: str, n: int, seed: int, shift: float, acceptance_lift: float) -> None:
    """Write `n` decisions through the service's own DecisionLog, with feedback for most delivered actions."""
    from nextbest.decision_log import DecisionLog, DecisionRecord

    rng = np.random.default_rng(seed)
    feats = _customers(n, rng, shift)
    log = DecisionLog(uri)
    log.start()
    try:
        for i in range(n):
            ts = END - timedelta(hours=float(rng.uniform(1, 20 * 24)))
            decision_id = log.new_decision_id() + f"{i:06d}"[-6:]
            scores = {a: float(rng.uniform(0.02, 0.2)) for a in ACTIONS}
            no_action = rng.uniform() < 0.15
            chosen_id = max(scores, key=scores.get)
            chosen = [] if no_action else [{"rank": 1, "action_id": chosen_id, "propensity": scores[chosen_id]}]
            capped = rng.uniform() < 0.1
            rejected = (
                [{"action_id": "travel_card", "rule": "contact_policy.window_cap", "detail": ""}] if capped else []
            )
            log.log_decision(
                DecisionRecord(
                    decision_id=decision_id,
                    ts=ts,
                    customer_id=int(i),
                    channel="app",
                    context={},
                    features=feats.iloc[i].to_dict(),
                    feature_service="nba_v1",
                    model_versions={"nba": "1", "churn": "1"},
                    policy_version="test",
                    churn_risk=float(np.clip(rng.beta(1, 25) * (1 + 3 * shift), 0, 1)),
                    scores=scores,
                    chosen=chosen,
                    rejected=rejected,
                    degraded=bool(i % 50 == 0),  # a few degraded decisions: not model traffic
                )
            )
            if chosen:
                log.record_contacts(decision_id, i, "app", ts, [(chosen_id, ACTIONS[chosen_id][0])])
                log.flush()
                if rng.uniform() < 0.9:  # 10% still without outcome
                    accepted = rng.uniform() < min(1.0, scores[chosen_id] * acceptance_lift)
                    log.record_feedback(decision_id, "accepted" if accepted else "dismissed", chosen_id, ts=ts)
    finally:
        log.close()


def _reference(model: str, seed: int) -> ReferenceData:
    rng = np.random.default_rng(seed)
    n = 3_000
    frame = _customers(n, rng)
    frame["event_timestamp"] = pd.date_range(END - timedelta(days=120), END - timedelta(days=30), periods=n, tz="UTC")
    if model == "churn":
        frame["score"] = rng.beta(1, 25, n)
    else:
        frame["score"] = rng.uniform(0.02, 0.2, n)
    frame["label"] = (rng.uniform(size=n) < frame["score"]).astype(int)
    return ReferenceData(
        model=model, frame=frame, feature_names=INPUTS, key_features=["age", "logins_30d"], version="1"
    )


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("decision-logs")
    uris = {"stable": f"sqlite:///{base / 'stable.db'}", "drifted": f"sqlite:///{base / 'drifted.db'}"}
    _log_traffic(uris["stable"], 700, seed=1, shift=0.0, acceptance_lift=1.0)
    _log_traffic(uris["drifted"], 700, seed=2, shift=0.6, acceptance_lift=3.0)
    return uris


def test_served_window_reads_decisions_delivered_actions_and_outcomes(logs: dict[str, str]) -> None:
    served = read_served_window(logs["stable"], window_days=30, end=END)
    assert len(served.decisions) == 700 - 14  # 14 degraded decisions are not model traffic
    assert set(INPUTS) <= set(served.decisions.columns)
    assert served.decisions["churn_risk"].between(0, 1).all()
    assert len(served.business) == 700
    delivered = served.delivered
    assert set(delivered["action_id"]) <= set(ACTIONS)
    assert delivered["propensity"].between(0.02, 0.2).all()
    known = delivered["accepted"].notna()
    assert 0.8 < known.mean() < 0.97
    assert (delivered.loc[delivered["outcome"] == "accepted", "accepted"] == 1.0).all()
    assert served.business["no_action"].mean() == pytest.approx(1 - len(delivered) / 700)
    assert 0.05 < served.business["cap_hit"].mean() < 0.15
    # value only for accepted actions, at the catalogue's value
    assert served.business["value"].sum() == pytest.approx(
        sum(ACTIONS[a][1] for a in delivered.loc[delivered["accepted"] == 1.0, "action_id"]), rel=0.5
    )


def test_an_empty_window_or_missing_log_says_what_to_do(tmp_path: Path, logs: dict[str, str]) -> None:
    with pytest.raises(DataError, match="no decisions logged"):
        read_served_window(logs["stable"], window_days=1, end=END - timedelta(days=60))
    with pytest.raises(NotReadyError, match="serve some traffic first"):
        read_served_window(f"sqlite:///{tmp_path / 'none.db'}", window_days=1, end=END)


@pytest.mark.parametrize(("log", "expected"), [("stable", False), ("drifted", True)])
def test_monitoring_run_alarms_only_on_drifted_traffic_and_leaves_a_record(
    tmp_path: Path, logs: dict[str, str], log: str, expected: bool
) -> None:
    settings = Settings(home=tmp_path)
    served = read_served_window(logs[log], window_days=30, end=END)
    references = {"churn": _reference("churn", 10), "nba": _reference("nba", 11)}
    result = run_monitoring(settings, policy=DriftPolicy(), references=references, served=served)
    assert result.drifted is expected, result.summary()
    assert result.exit_code == int(expected)
    if expected:
        assert result.models["churn"].verdict.drifted  # inputs and churn risk moved
        nba = result.models["nba"].verdict
        assert nba.drifted
        assert any(o.drifted for o in nba.outcomes)  # acceptance x3 vs the propensities given
    # the record: reports in the workspace (one project per model), HTML/JSON files, verdict.json, verdicts.jsonl
    ws = open_workspace(result.workspace)
    assert len(list_runs(ws, "churn")) == 2  # input drift + churn-risk drift
    assert len(list_runs(ws, "nba")) == 3  # input drift + propensity + acceptance quality
    assert len(list_runs(ws, "business")) == 1
    assert all(r.html.is_file() and r.json.is_file() for m in result.models.values() for r in m.reports)
    verdict = json.loads((result.folder / "verdict.json").read_text())
    assert verdict["drifted"] is expected
    lines = (settings.reports_dir / "verdicts.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["drifted"] is expected
    business = json.loads(result.business.json.read_text())["summary"]
    assert 0.0 < business["acceptance_rate"] < 1.0
    assert result.ui_command == f"evidently ui --workspace {tmp_path / 'evidently'}"


def test_monitor_command_prints_the_verdict_and_exits_1_on_drift(
    tmp_path: Path, logs: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI wiring: served window from the configured decision log, verdict table, report paths, exit status.
    The champions' references are stubbed with synthetic training rows (training's own tests cover rebuilding)."""
    from typer.testing import CliRunner

    import monitoring.pipeline
    from nextbest.cli import app

    monkeypatch.setattr(monitoring.pipeline, "champion_reference", lambda settings, model, **_: _reference(model, 20))
    monkeypatch.setenv("NEXTBEST_HOME", str(tmp_path))
    runner = CliRunner()
    args = ["monitor", "--window-days", "30", "--end", "2026-06-01"]
    monkeypatch.setenv("NEXTBEST_SERVING__DECISION_LOG_URI", logs["drifted"])
    drifted = runner.invoke(app, args)
    assert drifted.exit_code == 1, drifted.output
    assert "DRIFT" in drifted.output
    assert "evidently ui --workspace" in drifted.output
    monkeypatch.setenv("NEXTBEST_SERVING__DECISION_LOG_URI", logs["stable"])
    stable = runner.invoke(app, args)
    assert stable.exit_code == 0, stable.output
    assert len((tmp_path / "reports" / "verdicts.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow
def test_monitoring_with_real_champions_rebuilds_their_training_rows_and_judges_served_traffic(
    trained_world: Settings,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Real champions (MLflow registry of a small trained world): the reference is rebuilt through the training-set
    builders for the champion's recorded training range and scored by the champion; served traffic replays the
    world's most recent feature rows through the decision log, scored by the same champions: no alarm."""
    from monitoring.sources import champion_reference
    from nextbest.decision_log import DecisionLog, DecisionRecord
    from nextbest.models.artefact import load_model

    references = {m: champion_reference(trained_world, m) for m in ("churn", "nba")}
    for model, ref in references.items():
        lineage = ref.lineage
        ts = pd.to_datetime(ref.frame["event_timestamp"], utc=True)
        assert ts.min() >= pd.Timestamp(lineage["snapshot_start"]) and ts.max() <= pd.Timestamp(lineage["snapshot_end"])
        assert ref.frame["score"].between(0, 1).all()
        assert ref.key_features and set(ref.key_features) <= set(ref.feature_names), model

    churn = load_model("churn", "champion", trained_world)
    nba = references["nba"].frame
    recent = nba.sort_values("event_timestamp").tail(800)
    uri = f"sqlite:///{tmp_path / 'decisions.db'}"
    log = DecisionLog(uri)
    log.start()
    from nextbest.features import RELEVANCE_FEATURES

    # the customer's own features: action attributes and the (customer, action) relevance are not monitored
    customer_inputs = [
        c for c in references["nba"].feature_names if not c.startswith("action_") and c not in RELEVANCE_FEATURES
    ]
    churn_risk = churn.predict_frame(recent)
    now = datetime(2026, 6, 1, tzinfo=UTC)
    feedback = []
    for i, (row, risk) in enumerate(zip(recent.itertuples(index=False), churn_risk, strict=True)):
        features = {c: getattr(row, c) for c in customer_inputs}
        decision_id = log.new_decision_id() + f"{i:06d}"
        ts = now - timedelta(minutes=len(recent) - i)
        log.log_decision(
            DecisionRecord(
                decision_id=decision_id,
                ts=ts,
                customer_id=int(row.customer_id),
                channel=str(row.channel),
                context={},
                features={k: (None if pd.isna(v) else float(v)) for k, v in features.items()},
                feature_service="nba_v1",
                model_versions={},
                policy_version="replay",
                churn_risk=float(risk),
                scores={str(row.action_id): float(row.score)},
                chosen=[{"rank": 1, "action_id": str(row.action_id)}],
                rejected=[],
            )
        )
        log.record_contacts(decision_id, int(row.customer_id), str(row.channel), ts, [(str(row.action_id), "sales")])
        feedback.append((decision_id, "accepted" if row.label else "dismissed", str(row.action_id), ts))
    log.flush()
    for decision_id, outcome, action_id, ts in feedback:
        log.record_feedback(decision_id, outcome, action_id, ts=ts)
    log.close()

    served = read_served_window(uri, window_days=30, end=now)
    settings = Settings(home=tmp_path / "home")
    result = run_monitoring(settings, references=references, served=served)
    assert set(result.models) == {"churn", "nba"}
    nba_verdict = result.models["nba"].verdict
    assert not any(o.drifted for o in nba_verdict.outcomes), nba_verdict.reasons  # champion scores its own rows
    assert len(result.models["nba"].monitored_columns) == len(customer_inputs)


def test_calendar_cycle_inputs_are_left_out_of_windows_shorter_than_the_cycle(tmp_path: Path) -> None:
    """A week sees one phase of the pay cycle: against a months-long reference that is not drift (DriftPolicy)."""
    from monitoring.pipeline import monitor_model
    from monitoring.sources import ServedWindow
    from monitoring.store import open_workspace

    rng = np.random.default_rng(5)
    reference = _reference("churn", 12)
    n = len(reference.frame)
    reference.frame["days_since_salary"] = rng.integers(0, 31, n).astype(float)  # every phase of the month
    reference.feature_names = [*INPUTS, "days_since_salary"]
    current = _customers(800, rng)
    current["days_since_salary"] = rng.integers(0, 7, 800).astype(float)  # one week: one phase
    current["churn_risk"] = rng.beta(1, 25, 800)
    empty = pd.DataFrame()
    # the simulated bank's project names its pay-cycle inputs (configs/simbank.yaml); the default names none
    assert DriftPolicy().calendar_skipped(["days_since_salary"], 7) == []
    policy = DriftPolicy(noise_resamples=0, trend_factor=0, calendar_cycle_features=("days_since_salary",))

    def run(days: float) -> Any:
        served = ServedWindow(END - timedelta(days=days), END, current, empty, empty)
        return monitor_model(
            "churn",
            reference,
            served,
            policy,
            workspace=open_workspace(tmp_path / f"ws{days}"),
            reports_dir=tmp_path / f"r{days}",
            stamp=END,
        )

    week = run(7)
    assert "days_since_salary" not in week.monitored_columns
    assert "days_since_salary" in week.verdict.skipped_columns
    assert not week.verdict.drifted, week.verdict.summary()
    # a window of a whole cycle judges the input, and the same one-phase sample is then drift
    month = run(31)
    assert "days_since_salary" in month.monitored_columns
    assert month.verdict.drifted, month.verdict.summary()
