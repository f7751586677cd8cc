"""The evaluation job's building blocks on tiny frames: profiles at decision time, candidate screening through the
serving policy, the off-policy table, model quality rows, and the MLflow report (real MLflow in a temp dir)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nextbest.catalogue import load_catalogue
from nextbest.errors import DataError
from nextbest.settings import Settings
from training.evaluate import (
    STAGE_5,
    EvaluationReport,
    context_features,
    log_report,
    off_policy_table,
    profiles_at,
    quality_row,
    sample_decisions,
    screen_candidates,
)

UTC = "UTC"


def _ts(s: str) -> pd.Timestamp:
    return pd.Timestamp(s, tz=UTC)


def _customers() -> pd.DataFrame:
    base = {
        "region": "north",
        "income_monthly": 3000.0,
        "credit_score": 700,
        "digital_first": False,
        "preferred_channel": "app",
        "consent_app": True,
        "consent_sms": True,
        "consent_push": True,
        "consent_call": True,
        "signup_date": _ts("2020-01-01"),
    }
    rows = [
        # customer 1 changes segment on 2026-02-01 and has no email consent
        {
            "customer_id": 1,
            "valid_from": _ts("2020-01-01"),
            "birth_year": 1990,
            "segment": "mass",
            "risk_band": "low",
            "vulnerable": False,
            "consent_email": False,
        },
        {
            "customer_id": 1,
            "valid_from": _ts("2026-02-01"),
            "birth_year": 1990,
            "segment": "affluent",
            "risk_band": "low",
            "vulnerable": False,
            "consent_email": False,
        },
        # customer 2 is vulnerable
        {
            "customer_id": 2,
            "valid_from": _ts("2020-01-01"),
            "birth_year": 1960,
            "segment": "mass",
            "risk_band": "low",
            "vulnerable": True,
            "consent_email": True,
        },
    ]
    return pd.DataFrame([{**base, **r} for r in rows])


def _holdings() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [1, 1, 1, 2],
            "product": ["current_account", "mortgage", "savings", "current_account"],
            "opened_at": [_ts("2020-01-01"), _ts("2026-01-20"), _ts("2020-01-01"), _ts("2020-01-01")],
            "closed_at": [pd.NaT, pd.NaT, _ts("2026-01-10"), pd.NaT],
            "amount": 0.0,
        }
    )


def _decisions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "decision_id": [0, 1, 2],
            "customer_id": [1, 1, 2],
            "event_timestamp": [_ts("2026-01-15"), _ts("2026-02-15"), _ts("2026-02-15")],
            "channel": ["email", "app", "app"],
        }
    )


def test_profiles_at_uses_the_profile_and_holdings_valid_at_decision_time() -> None:
    prof = profiles_at(_decisions(), _customers(), _holdings()).set_index("decision_id")
    assert prof.loc[0, "segment"] == "mass"  # before the change on 2026-02-01
    assert prof.loc[1, "segment"] == "affluent"
    assert prof.loc[0, "age"] == 36
    assert prof.loc[0, "holdings"] == frozenset({"current_account"})  # savings closed, mortgage not yet opened
    assert prof.loc[1, "holdings"] == frozenset({"current_account", "mortgage"})


def test_screening_applies_consent_eligibility_and_suitability_from_the_serving_policy() -> None:
    from nextbest.policy import DecisionPolicy, load_policy

    policy = DecisionPolicy(load_catalogue(), load_policy())
    decisions = _decisions()
    prof = profiles_at(decisions, _customers(), _holdings())
    cands = screen_candidates(decisions, prof, policy)
    by_decision = cands.groupby("decision_id")["action_id"].agg(set)
    catalogue = load_catalogue()
    # Decision 0: email without marketing consent -> only service actions.
    assert {catalogue.action(a).kind for a in by_decision[0]} == {"service"}
    # Decision 1: already holds a mortgage -> no mortgage offer; app is inbound so marketing is allowed.
    assert "mortgage" not in by_decision[1]
    assert "credit_card" in by_decision[1]
    # Decision 2: vulnerable -> no credit sales.
    assert not any(catalogue.action(a).credit and catalogue.action(a).kind == "sales" for a in by_decision[2])
    assert set(cands.columns) == {"decision_id", "action_id", "kind", "value"}


def test_sample_decisions_is_seeded_and_maps_scheduled_triggers_to_no_signal() -> None:
    test = pd.DataFrame(
        {
            "event_timestamp": pd.date_range("2026-03-01", periods=50, freq="h", tz=UTC),
            "contact_id": np.arange(50),
            "trigger": ["scheduled", "airport_checkin"] * 25,
        }
    )
    a, b = sample_decisions(test, 10, seed=3), sample_decisions(test, 10, seed=3)
    assert a["contact_id"].tolist() == b["contact_id"].tolist()
    assert a["decision_id"].tolist() == list(range(10))
    assert set(a["signal"].dropna()) <= {"airport_checkin"}
    assert a.loc[a["trigger"] == "scheduled", "signal"].isna().all()


def test_off_policy_table_puts_estimates_beside_the_truth() -> None:
    values = {"a": 100.0, "b": 10.0}
    decisions = pd.DataFrame(
        {
            "decision_id": [0, 1, 2, 3],
            "action_id": ["a", "b", "a", "b"],
            "label": [1, 0, 0, 1],
            "logging_propensity": [0.5, 0.5, 0.25, 0.5],
        }
    )
    chosen = pd.Series({0: "a", 1: "a", 2: "a", 3: None})
    q_logged = np.array([20.0, 1.0, 20.0, 1.0])
    q_chosen = pd.Series({0: 20.0, 1: 20.0, 2: 20.0})
    table = off_policy_table(decisions, chosen, q_logged, q_chosen, values, truth_per_1000=25_000.0)
    ips = table.set_index("estimator").loc["ips"]
    # Matches: decisions 0 (a, accepted, w=2) and 2 (a, not accepted, w=4): IPS = (2*100 + 0) / 4 per decision.
    assert ips["estimate"] == pytest.approx(1000 * 200 / 4)
    assert ips["matched_logs"] == 2
    assert set(table["estimator"]) == {"ips", "snips", "dr"}
    assert (table["truth"] == 25_000.0).all()


def test_off_policy_rewards_pay_the_contact_cost_and_snips_counts_decisions_showing_nothing_as_zero() -> None:
    values = {"a": 100.0, "b": 10.0}
    decisions = pd.DataFrame(
        {
            "decision_id": [0, 1, 2, 3],
            "action_id": ["a", "b", "a", "b"],
            "label": [1, 0, 0, 1],
            "logging_propensity": [0.5, 0.5, 0.25, 0.5],
        }
    )
    chosen = pd.Series({0: "a", 1: "a", 2: "a", 3: None})
    cost = np.array([2.0, 2.0, 7.0, 0.0])
    q_logged = np.array([20.0, 1.0, 20.0, 1.0]) - cost
    q_chosen = pd.Series({0: 18.0, 1: 18.0, 2: 13.0})
    table = off_policy_table(decisions, chosen, q_logged, q_chosen, values, 25_000.0, contact_cost=cost)
    est = table.set_index("estimator")["estimate"]
    # rewards of the matched decisions: 0 (a accepted, cost 2): 98, w = 2; 2 (a declined, cost 7): -7, w = 4
    assert est["ips"] == pytest.approx(1000 * (2 * 98 + 4 * -7) / 4)
    # SNIPS over the 3 decisions that show something (mean per shown decision), x 3/4 for the one showing nothing
    assert est["snips"] == pytest.approx(1000 * 0.75 * (2 * 98 + 4 * -7) / 6)
    # DR: the reward model's value of the target policy (nothing: 0), corrected on the matched decisions
    dr_terms = [18.0 + 2 * (98 - 18.0), 18.0, 13.0 + 4 * (-7 - 13.0), 0.0]
    assert est["dr"] == pytest.approx(1000 * np.mean(dr_terms))
    with pytest.raises(DataError, match="contact_cost"):
        off_policy_table(decisions, chosen, q_logged, q_chosen, values, 1.0, contact_cost=np.zeros(2))


def test_quality_row_puts_the_model_beside_the_bayes_ceiling() -> None:
    rng = np.random.default_rng(0)
    p_true = rng.uniform(0.01, 0.5, 5000)
    y = (rng.random(5000) < p_true).astype(int)
    p_model = np.clip(p_true + rng.normal(0, 0.15, 5000), 0.001, 0.999)
    row = quality_row("nba", "3", y, p_model, p_true, "holdout")
    assert 0.5 < row["roc_auc"] < row["bayes_optimal_auc"] < 1.0
    assert row["gap_to_ceiling"] == pytest.approx(row["bayes_optimal_auc"] - row["roc_auc"])


def test_context_features_are_the_request_time_ones() -> None:
    names = [
        "age",
        "hours_since_airport_checkin",
        "airport_checkin_strength",
        "travel_intent",
        "location_airport",
        "request_hour",
        "channel_app",
        "has_mortgage",
        "action_value",
    ]
    assert context_features(names) == [
        "hours_since_airport_checkin",
        "airport_checkin_strength",
        "travel_intent",
        "location_airport",
        "request_hour",
    ]


def test_report_is_logged_to_mlflow_with_metrics_and_table_artefacts(tmp_path: Path) -> None:
    import mlflow

    settings = Settings(home=tmp_path)
    ladder = pd.DataFrame(
        {
            "stage": ["1 one offer for all", STAGE_5, "oracle (knows the truth)"],
            "decisions": [100, 100, 100],
            "offers_per_1000": [1000.0, 900.0, 1000.0],
            "conversions_per_1000": [20.0, 50.0, 80.0],
            "value_per_1000": [2000.0, 6000.0, 10000.0],
            "share_of_oracle_value": [0.2, 0.6, 1.0],
        }
    )
    ope = pd.DataFrame({"estimator": ["ips"], "estimate": [5500.0], "truth": [6000.0]})
    quality = pd.DataFrame({"model": ["nba"], "roc_auc": [0.7], "bayes_optimal_auc": [0.8]})
    report = EvaluationReport(
        decisions=100,
        ladder=ladder,
        ope=ope,
        model_quality=quality,
        experiment_name="nextbest-evaluation",
        params={"decisions": 100},
    )
    run_id = log_report(settings, report)
    run = mlflow.MlflowClient(tracking_uri=settings.mlflow_tracking_uri).get_run(run_id)
    assert run.data.metrics["ladder.5_full_model_plus_decision_policy.share_of_oracle"] == pytest.approx(0.6)
    assert run.data.metrics["ope.ips.abs_error_vs_truth"] == pytest.approx(500.0)
    assert run.data.metrics["quality.nba.bayes_auc"] == pytest.approx(0.8)
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id,
        artifact_path="evaluation",
        tracking_uri=settings.mlflow_tracking_uri,
        dst_path=str(tmp_path / "dl"),
    )
    assert {"ladder.csv", "ladder.md", "ladder.png", "ope.csv", "model_quality.csv", "report.json"} <= {
        p.name for p in Path(local).iterdir()
    }
    assert pd.read_csv(Path(local) / "ladder.csv")["value_per_1000"].tolist() == [2000.0, 6000.0, 10000.0]


def test_evaluate_cli_without_a_simulated_world_says_what_to_run(tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from nextbest.cli import app
    from nextbest.errors import NotReadyError

    monkeypatch.setenv("NEXTBEST_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["evaluate", "--no-mlflow"])
    assert isinstance(result.exception, NotReadyError)
    assert "nextbest simulate" in str(result.exception)


def test_choice_mix_shares_add_up_per_stage() -> None:
    from training.evaluate import choice_mix

    choices = {
        "a": pd.Series({0: "mortgage", 1: "card_replacement", 2: None, 3: "mortgage"}, dtype=object),
        "b": pd.Series({0: "fee_waiver", 1: "fee_waiver", 2: "fee_waiver", 3: "fee_waiver"}, dtype=object),
    }
    mix = choice_mix(choices, load_catalogue()).set_index("stage")
    assert mix.loc["a", ["sales", "retention", "service", "nothing"]].tolist() == [0.5, 0.0, 0.25, 0.25]
    assert mix.loc["a", "top_action"] == "mortgage (50%)"
    assert mix.loc["b", "retention"] == 1.0
