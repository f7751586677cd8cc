"""`nextbest evaluate` end to end on a small trained world: the ladder against the truth, OPE, model quality."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from nextbest.settings import Settings
from tests.evaluation_fixtures import trained_world  # noqa: F401  (fixture)
from training.evaluate import (
    STAGE_3,
    STAGE_5,
    STAGE_LOGGED,
    STAGE_POLICY_CEILING,
    STAGE_RANDOM,
    EvaluationOptions,
    run_evaluation,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(trained_world: Settings):  # noqa: F811
    return run_evaluation(trained_world, EvaluationOptions(decisions=400, seed=1, stage3_trials=1))


def test_ladder_scores_every_stage_and_the_oracle_is_the_ceiling(report) -> None:
    table = report.ladder.set_index("stage")
    assert list(report.ladder["stage"]) == [
        STAGE_RANDOM,
        STAGE_LOGGED,
        "1 one offer for all",
        "2 segment rules",
        STAGE_3,
        STAGE_5,
        STAGE_POLICY_CEILING,
        "oracle (knows the truth)",
    ]
    oracle = table.loc["oracle (knows the truth)", "value_per_1000"]
    assert oracle > 0
    assert (table["value_per_1000"] <= oracle + 1e-6).all()
    assert table.loc["oracle (knows the truth)", "share_of_oracle_value"] == pytest.approx(1.0)
    assert (table["decisions"] == report.decisions).all()
    # Conversions per 1,000 are expectations of probabilities: never above the offers shown; the incremental ones
    # (organic uptake removed) never above the conversions.
    assert (table["conversions_per_1000"] <= table["offers_per_1000"] + 1e-9).all()
    assert (table["incremental_conversions_per_1000"] <= table["conversions_per_1000"] + 1e-9).all()
    # Contacts cost money (the catalogue's channel costs); a stage that always shows pays for every decision.
    assert (table["contact_cost_per_1000"] >= 0).all()
    assert table.loc["1 one offer for all", "contact_cost_per_1000"] > 0


def test_within_action_ranking_and_per_kind_calibration_are_reported(report) -> None:
    nba = report.model_quality.set_index("model").loc["nba"]
    assert -1.0 <= nba["within_action_spearman"] <= 1.0
    assert 0.0 <= nba["within_action_auc"] <= 1.0
    assert np.isfinite(nba["within_action_spearman_candidates"])
    actions = report.action_quality
    assert len(actions) >= 5 and (actions["weight"] > 0).all()
    assert set(report.kind_calibration["kind"]) <= {"sales", "retention", "service"}
    assert (report.kind_calibration["ece"] >= 0).all()
    assert "quality.nba.within_action_spearman" in report.metrics()


def test_every_stage_beats_a_random_eligible_offer(report) -> None:
    table = report.ladder.set_index("stage")["value_per_1000"]
    for stage in ("1 one offer for all", "2 segment rules", STAGE_3, STAGE_5):
        assert table[stage] > table[STAGE_RANDOM], stage


def test_off_policy_estimates_sit_beside_the_true_value(report) -> None:
    ope = report.ope.set_index("estimator")
    assert set(ope.index) == {"ips", "snips", "dr"}
    truth = ope["truth"].iloc[0]
    assert np.isfinite(truth) and truth > 0
    assert (ope["matched_logs"] > 0).all()
    # On a few hundred logged decisions the estimates are noisy, but DR (model + correction) is in the right range.
    assert 0.2 * truth < ope.loc["dr", "estimate"] < 5 * truth


def test_model_quality_stays_below_the_bayes_ceiling_of_the_same_holdout(report) -> None:
    quality = report.model_quality.set_index("model")
    assert "nba" in quality.index
    for _, row in quality.iterrows():
        assert 0.5 < row["bayes_optimal_auc"] < 1.0
        assert row["roc_auc"] < row["bayes_optimal_auc"] + 0.03  # a model cannot beat the truth (up to noise)


def test_report_is_logged_in_the_evaluation_experiment(report, trained_world: Settings) -> None:  # noqa: F811
    client = mlflow.MlflowClient(tracking_uri=trained_world.mlflow_tracking_uri)
    run = client.get_run(report.run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "nextbest-evaluation"
    assert "ladder.oracle.value_per_1000" in run.data.metrics
    assert {a.path for a in client.list_artifacts(report.run_id, "evaluation")} >= {
        "evaluation/ladder.csv",
        "evaluation/ope.csv",
        "evaluation/model_quality.csv",
        "evaluation/action_quality.csv",
        "evaluation/kind_calibration.csv",
        "evaluation/report.json",
    }
    assert "quality.nba.within_action_spearman" in run.data.metrics


def test_the_holdout_lies_after_every_model_training_window(report) -> None:
    assert not [n for n in report.notes if "inside the evaluation holdout" in n]
    assert not report.choice_mix.empty
    assert report.choice_mix[["sales", "retention", "service", "nothing"]].sum(axis=1).round(6).eq(1.0).all()


def test_evaluate_command_prints_the_new_tables_and_writes_the_json(
    trained_world: Settings,  # noqa: F811
    tmp_path,
    monkeypatch,
) -> None:
    import json

    from typer.testing import CliRunner

    from nextbest.cli import app

    monkeypatch.setenv("NEXTBEST_HOME", str(trained_world.home))
    monkeypatch.setenv("COLUMNS", "250")
    out = tmp_path / "report.json"
    result = CliRunner().invoke(
        app, ["evaluate", "--no-mlflow", "--decisions", "100", "--stage3-trials", "1", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    for title in ("incremental over doing nothing", "within each action", "calibration per action kind"):
        assert title in result.output
    report = json.loads(out.read_text())
    assert report["ladder"][-1]["stage"] == "oracle (knows the truth)"
    assert {"contact_cost_per_1000", "incremental_conversions_per_1000"} <= set(report["ladder"][0])
    assert report["action_quality"] and report["kind_calibration"]
    assert "within_action_spearman" in report["model_quality"][0]
