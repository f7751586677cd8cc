"""Monitoring: the drift policy (pure, both ways), the Evidently report builders and where reports are saved."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitoring.drift import (
    ColumnDrift,
    DriftPolicy,
    decide_drift,
    infer_column_kinds,
    outcome_shift,
    outcome_shifts,
    sample_rows,
)
from monitoring.reports import (
    build_business_report,
    build_drift_report,
    build_prediction_drift_report,
    build_quality_report,
    business_frame,
)
from monitoring.store import get_project, list_runs, open_workspace, save_report
from nextbest.drift_policy import load_drift_policy
from nextbest.errors import ConfigError, DataError


def _col(name: str, score: float, threshold: float = 0.1, kind: str = "numeric") -> ColumnDrift:
    return ColumnDrift(
        column=name, kind=kind, method="wasserstein", score=score, threshold=threshold, drifted=score >= threshold
    )


def _bank_like(n: int, rng: np.random.Generator, shift: float = 0.0, flag_rate: float = 0.1) -> pd.DataFrame:
    """Inputs shaped like the model's: balances (heavy tailed), counts, flags, a category; `shift` moves f0-f3."""
    data: dict[str, object] = {}
    for i in range(12):
        data[f"f{i}"] = rng.normal(shift if i < 4 else 0.0, 1.0, n)
    data["balance"] = rng.lognormal(7, 1.2, n)
    data["logins_30d"] = rng.poisson(4, n)
    data["has_card"] = (rng.uniform(size=n) < flag_rate).astype(float)
    data["segment"] = rng.choice(["mass", "affluent", "small_business"], n, p=[0.7, 0.2, 0.1])
    return pd.DataFrame(data)


# ---- the verdict policy (pure) ----


def test_few_drifted_inputs_do_not_raise_the_alarm() -> None:
    features = [_col("a", 0.15)] + [_col(f"x{i}", 0.02) for i in range(9)]
    verdict = decide_drift(DriftPolicy(drift_share=0.25), features, reference_rows=5000, current_rows=5000)
    assert not verdict.drifted
    assert verdict.exit_code == 0
    assert verdict.drifted_features == ["a"]
    assert verdict.reasons[0].startswith("no drift")


def test_a_large_share_of_drifted_inputs_raises_the_alarm_with_a_reason() -> None:
    features = [_col(f"a{i}", 0.3) for i in range(3)] + [_col(f"x{i}", 0.02) for i in range(7)]
    verdict = decide_drift(DriftPolicy(drift_share=0.25), features, reference_rows=5000, current_rows=5000)
    assert verdict.drifted
    assert verdict.exit_code == 1
    assert verdict.drifted_share == pytest.approx(0.3)
    assert "3 of 10 inputs drifted" in verdict.reasons[0]


def test_drift_of_the_key_features_alone_raises_the_alarm() -> None:
    features = [_col("top1", 0.2), _col("top2", 0.2)] + [_col(f"x{i}", 0.01) for i in range(28)]
    policy = DriftPolicy(key_features=("top1", "top2", "top3"), key_features_min_drifted=2)
    assert decide_drift(policy, features, reference_rows=1000, current_rows=1000).drifted
    # the same two columns are not key features: 2 of 30 is below the share rule
    assert not decide_drift(DriftPolicy(), features, reference_rows=1000, current_rows=1000).drifted


def test_prediction_drift_alone_raises_the_alarm() -> None:
    features = [_col(f"x{i}", 0.01) for i in range(10)]
    verdict = decide_drift(DriftPolicy(), features, [_col("score", 0.25)], reference_rows=1000, current_rows=1000)
    assert verdict.drifted
    assert any("prediction drift on score" in r for r in verdict.reasons)


def test_too_few_rows_never_raise_the_alarm() -> None:
    features = [_col(f"a{i}", 0.9) for i in range(10)]
    verdict = decide_drift(DriftPolicy(min_rows=200), features, reference_rows=5000, current_rows=50)
    assert not verdict.drifted
    assert not verdict.enough_data
    assert "not enough data" in verdict.reasons[0]


def test_outcome_shift_needs_both_a_large_effect_and_a_clear_signal() -> None:
    policy = DriftPolicy()
    # a million rows and a tiny change (3.0% -> 3.1%): significant as a p-value, but not drift
    tiny = outcome_shift("all", 30_000, 1_000_000, 31_000, 1_000_000, policy)
    assert abs(tiny.log_odds_ratio) < policy.outcome_log_odds_threshold
    assert not tiny.drifted
    # a large change on a handful of outcomes (3 -> 6 positives): noise, not drift
    noisy = outcome_shift("all", 3, 100, 6, 100, policy)
    assert not noisy.drifted
    # a large, clear change (3% -> 6% on 20k rows each)
    clear = outcome_shift("all", 600, 20_000, 1_200, 20_000, policy)
    assert clear.drifted
    assert clear.log_odds_ratio > 0.4
    verdict = decide_drift(policy, [_col("x", 0.0)], outcomes=[clear], reference_rows=20_000, current_rows=20_000)
    assert verdict.drifted
    assert "outcome rate shifted in all" in verdict.reasons[0]


def test_outcome_shifts_are_judged_per_group() -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    ref = pd.DataFrame({"action_id": rng.choice(["savings", "loan"], n)})
    ref["accepted"] = rng.uniform(size=n) < 0.05
    cur = pd.DataFrame({"action_id": rng.choice(["savings", "loan"], n)})
    # savings appetite doubles, loans unchanged
    cur["accepted"] = rng.uniform(size=n) < np.where(cur["action_id"] == "savings", 0.10, 0.05)
    shifts = {s.group: s for s in outcome_shifts(ref, cur, "accepted", DriftPolicy(), group_by="action_id")}
    assert set(shifts) == {"all", "action_id=loan", "action_id=savings"}
    assert shifts["action_id=savings"].drifted
    assert not shifts["action_id=loan"].drifted


def test_policy_loads_from_yaml_and_rejects_unknown_keys(tmp_path: Path) -> None:
    good = tmp_path / "policy.yaml"
    good.write_text("numeric_threshold: 0.15\nkey_features: [income, tenure]\n")
    policy = load_drift_policy(good, drift_share=0.4)
    assert policy.numeric_threshold == 0.15
    assert policy.key_features == ("income", "tenure")
    assert policy.drift_share == 0.4
    bad = tmp_path / "bad.yaml"
    bad.write_text("numeric_treshold: 0.15\n")
    with pytest.raises(ConfigError, match="numeric_treshold"):
        load_drift_policy(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_drift_policy(tmp_path / "missing.yaml")


def test_flags_and_categories_are_compared_as_categorical() -> None:
    rng = np.random.default_rng(0)
    frame = _bank_like(500, rng)
    kinds = infer_column_kinds(frame, ["f0", "has_card", "segment", "logins_30d"])
    assert kinds == {"f0": "numeric", "has_card": "categorical", "segment": "categorical", "logins_30d": "numeric"}


def test_a_flag_read_as_int_on_one_side_and_float_on_the_other_is_not_drift() -> None:
    """Training rows hold flags as int64, the decision log's JSON snapshots as float64: same categories."""
    rng = np.random.default_rng(1)
    reference = pd.DataFrame({"has_card": (rng.random(3_000) < 0.3).astype("int64"), "channel_atm": 0})
    current = pd.DataFrame({"has_card": (rng.random(800) < 0.3).astype("float64"), "channel_atm": 0.0})
    report = build_drift_report(reference, current, ["has_card", "channel_atm"], policy=DriftPolicy())
    assert {c.column: c.drifted for c in report.columns} == {"has_card": False, "channel_atm": False}
    assert max(c.score for c in report.columns) < 0.05


def test_seeded_sample_is_fixed_size_and_reproducible() -> None:
    frame = pd.DataFrame({"x": np.arange(10_000)})
    a, b = sample_rows(frame, 1_000, seed=5), sample_rows(frame, 1_000, seed=5)
    assert len(a) == 1_000
    assert a.equals(b)
    assert a["x"].is_monotonic_increasing
    assert sample_rows(frame, 20_000) is frame


# ---- Evidently report builders ----


def test_drift_report_flags_the_shifted_inputs_and_only_those() -> None:
    rng = np.random.default_rng(1)
    reference = _bank_like(2_000, rng)
    current = _bank_like(2_000, rng, shift=0.5, flag_rate=0.3)
    columns = list(reference.columns)
    report = build_drift_report(reference, current, columns)
    drifted = {c.column for c in report.columns if c.drifted}
    assert drifted == {"f0", "f1", "f2", "f3", "has_card"}
    by_name = {c.column: c for c in report.columns}
    assert by_name["f0"].method == "wasserstein"
    assert by_name["has_card"].method == "psi"
    assert by_name["segment"].method == "psi"
    assert report.summary["drifted_columns"] == 5
    verdict = decide_drift(DriftPolicy(), report.columns, reference_rows=2_000, current_rows=2_000)
    assert verdict.drifted


def test_drift_report_does_not_alarm_on_the_same_world() -> None:
    rng = np.random.default_rng(2)
    reference, current = _bank_like(2_000, rng), _bank_like(2_000, rng)
    report = build_drift_report(reference, current, list(reference.columns))
    verdict = decide_drift(DriftPolicy(), report.columns, reference_rows=2_000, current_rows=2_000)
    assert not verdict.drifted, verdict.reasons


def test_a_tiny_shift_on_a_large_sample_is_not_drift_although_a_p_value_test_flags_it() -> None:
    from scipy import stats

    rng = np.random.default_rng(4)
    n = 40_000
    reference = pd.DataFrame({"x": rng.normal(0.0, 1.0, n)})
    current = pd.DataFrame({"x": rng.normal(0.04, 1.0, n)})  # 0.04 standard deviations: operationally nothing
    assert stats.ks_2samp(reference["x"], current["x"]).pvalue < 0.05  # the p-value test cries wolf
    report = build_drift_report(reference, current, ["x"])
    assert not report.columns[0].drifted
    assert report.columns[0].score < 0.1


def test_results_are_read_by_column_name_not_position() -> None:
    rng = np.random.default_rng(5)
    reference, current = _bank_like(1_000, rng), _bank_like(1_000, rng, shift=0.6)
    cols = ["f0", "f1", "f5", "balance", "has_card", "segment"]
    a = build_drift_report(reference, current, cols)
    b = build_drift_report(reference, current, list(reversed(cols)))
    assert {c.column: c.score for c in a.columns} == pytest.approx({c.column: c.score for c in b.columns})


def test_a_column_empty_on_one_side_is_skipped_and_a_missing_one_is_an_error() -> None:
    rng = np.random.default_rng(6)
    reference, current = _bank_like(1_000, rng), _bank_like(1_000, rng)
    current["f5"] = np.nan
    report = build_drift_report(reference, current, ["f0", "f5"])
    assert report.skipped_columns == ("f5",)
    assert [c.column for c in report.columns] == ["f0"]
    with pytest.raises(DataError, match="lacks monitored column"):
        build_drift_report(reference, current.drop(columns=["f0"]), ["f0"])
    with pytest.raises(DataError, match="empty"):
        build_drift_report(reference, current.iloc[:0], ["f0"])


def test_sampled_and_full_verdicts_agree_on_planted_drift_and_on_none() -> None:
    rng = np.random.default_rng(7)
    reference = _bank_like(8_000, rng)
    drifted = _bank_like(8_000, rng, shift=0.4)
    stable = _bank_like(8_000, rng)
    cols = ["f0", "f1", "f2", "f3", "f4", "f5", "balance", "has_card", "segment"]
    full, sampled = DriftPolicy(sample_rows=None), DriftPolicy(sample_rows=2_000)
    for current, expected in ((drifted, True), (stable, False)):
        verdicts = []
        for policy in (full, sampled):
            report = build_drift_report(reference, current, cols, policy=policy)
            verdicts.append(decide_drift(policy, report.columns, reference_rows=8_000, current_rows=8_000).drifted)
        assert verdicts == [expected, expected]


def test_prediction_drift_report_catches_a_moved_score_distribution() -> None:
    rng = np.random.default_rng(8)
    reference = pd.DataFrame({"churn_score": rng.beta(1, 20, 3_000)})
    moved = pd.DataFrame({"churn_score": rng.beta(2, 20, 3_000)})
    same = pd.DataFrame({"churn_score": rng.beta(1, 20, 3_000)})
    assert build_prediction_drift_report(reference, moved, ["churn_score"]).columns[0].drifted
    report = build_prediction_drift_report(reference, same, ["churn_score"])
    assert not report.columns[0].drifted
    assert report.summary["mean_current"]["churn_score"] == pytest.approx(same["churn_score"].mean())


def test_quality_report_agrees_with_the_training_metrics_and_compares_to_reference() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(9)
    p = rng.uniform(0.0, 0.3, 4_000)
    current = pd.DataFrame({"accepted": rng.uniform(size=4_000) < p, "score": p})
    reference = current.sample(2_000, random_state=1)
    report = build_quality_report(current, "accepted", "score", reference=reference)
    auc = roc_auc_score(current["accepted"], current["score"])
    assert report.summary["current"]["roc_auc"] == pytest.approx(auc)
    assert report.summary["evidently_roc_auc"] == pytest.approx(auc)
    assert set(report.summary["delta"]) >= {"roc_auc", "log_loss", "ece", "pr_auc"}


def test_quality_report_without_outcomes_says_so() -> None:
    frame = pd.DataFrame({"accepted": [np.nan, np.nan], "score": [0.1, 0.2]})
    with pytest.raises(DataError, match="no rows with both an outcome and a score"):
        build_quality_report(frame, "accepted", "score")


def test_business_report_counts_acceptance_over_known_outcomes_and_value_per_1000() -> None:
    decisions = pd.DataFrame(
        {
            "accepted": [1, 0, 0, np.nan, 1, 0, np.nan, 0, 0, 0],
            "value": [120.0, 0, 0, 0, 600.0, 0, 0, 0, 0, 0],
            "no_action": [False, False, True, False, False, True, False, False, False, False],
            "cap_hit": [False, True, False, False, False, False, False, False, True, False],
        }
    )
    report = build_business_report(business_frame(decisions))
    assert report.summary["decisions"] == 10
    assert report.summary["decisions_with_outcome"] == 8
    assert report.summary["acceptance_rate"] == pytest.approx(2 / 8)
    assert report.summary["value_per_1000_decisions"] == pytest.approx(720.0 / 10 * 1000)
    assert report.summary["no_action_share"] == pytest.approx(0.2)
    assert report.summary["cap_hit_share"] == pytest.approx(0.2)
    with pytest.raises(DataError, match="cap_hit"):
        business_frame(decisions.drop(columns=["cap_hit"]))


# ---- persistence: Evidently workspace + standalone files ----


def test_reports_persist_in_one_workspace_project_per_model_with_html_and_json(tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    reference, current = _bank_like(1_000, rng), _bank_like(1_000, rng, shift=0.5)
    drift = build_drift_report(reference, current, ["f0", "f5", "segment"])
    verdict = decide_drift(DriftPolicy(), drift.columns, reference_rows=1_000, current_rows=1_000)
    ws_dir, reports_dir = tmp_path / "evidently", tmp_path / "reports"
    workspace = open_workspace(ws_dir)
    saved = save_report(
        drift, "nba", workspace=workspace, reports_dir=reports_dir, extra={"verdict": verdict.summary()}
    )
    save_report(drift, "nba", workspace=workspace, reports_dir=reports_dir)
    assert saved.html.is_file() and saved.html.stat().st_size > 10_000
    payload = json.loads(saved.json.read_text())
    assert payload["verdict"]["drifted"] == verdict.drifted
    assert payload["summary"]["scores"]["f0"] == pytest.approx(drift.summary["scores"]["f0"])
    assert any(t["name"] == "Value Drift for column f0" for t in payload["evidently"]["tests"])

    reopened = open_workspace(ws_dir)  # a fresh process (e.g. `evidently ui`) sees the history
    assert [p.name for p in reopened.list_projects()] == ["nba"]
    assert len(list_runs(reopened, "nba")) == 2
    assert list_runs(reopened, "churn") == []
    project = get_project(reopened, "nba")
    stored = reopened.get_run(project.id, saved.run_id)
    assert stored is not None
    dashboard = reopened.get_dashboard(project.id)
    assert len(dashboard.panels) >= 2
    assert len(dashboard.tabs[0].panels) == len(set(dashboard.tabs[0].panels))
    # any model's name is a project (a bank's own models); a name Evidently's UI would mangle is refused
    assert get_project(reopened, "berka_default").name == "berka_default"
    with pytest.raises(DataError, match="invalid monitoring project name"):
        get_project(reopened, "Fraud model!")


def test_one_input_moving_very_far_is_drift_on_its_own() -> None:
    features = [_col("fees", 0.45)] + [_col(f"x{i}", 0.01) for i in range(29)]
    verdict = decide_drift(DriftPolicy(severe_factor=3.0), features, reference_rows=1000, current_rows=1000)
    assert verdict.drifted
    assert "moved far" in verdict.reasons[0]
    assert not decide_drift(DriftPolicy(severe_factor=5.0), features, reference_rows=1000, current_rows=1000).drifted


def test_trend_guard_discounts_movement_the_reference_already_had() -> None:
    """A column that trends steadily through the training window (e.g. tenure, products held) is not news when
    it keeps trending; a column that jumps after training is."""
    rng = np.random.default_rng(12)
    n = 4_000
    days = np.sort(rng.uniform(0, 60, n))
    reference = pd.DataFrame(
        {
            "ts": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(days, unit="D"),
            "trending": rng.normal(0, 1, n) + days / 60 * 0.8,  # rises 0.8 sd across the training window
            "jumping": rng.normal(0, 1, n),
        }
    )
    cur_days = rng.uniform(60, 75, n)
    current = pd.DataFrame(
        {
            "trending": rng.normal(0, 1, n) + cur_days / 60 * 0.8,
            "jumping": rng.normal(0.5, 1, n),
        }
    )
    guarded = build_drift_report(reference, current, ["trending", "jumping"], reference_time="ts")
    by_name = {c.column: c for c in guarded.columns}
    assert not by_name["trending"].drifted
    assert by_name["trending"].trend > 0.1
    assert by_name["jumping"].drifted
    unguarded = build_drift_report(reference, current, ["trending", "jumping"])
    assert all(c.drifted for c in unguarded.columns)


def test_many_groups_do_not_raise_a_false_outcome_alarm_by_chance() -> None:
    from monitoring.drift import calibration_shifts, family_z

    assert family_z(1) == pytest.approx(1.96, abs=0.01)
    assert family_z(20) > 3.0
    rng = np.random.default_rng(13)
    n = 20_000
    frame = pd.DataFrame({"action_id": rng.choice([f"a{i}" for i in range(20)], n), "p": rng.uniform(0.02, 0.2, n)})
    frame["accepted"] = (rng.uniform(size=n) < frame["p"]).astype(float)
    assert not any(s.drifted for s in calibration_shifts(frame, "accepted", "p", DriftPolicy(), group_by="action_id"))
    frame.loc[frame["action_id"] == "a3", "accepted"] = rng.uniform(size=(frame["action_id"] == "a3").sum()) < 0.4
    drifted = [
        s.group for s in calibration_shifts(frame, "accepted", "p", DriftPolicy(), group_by="action_id") if s.drifted
    ]
    assert drifted == ["action_id=a3"]


def test_retrain_and_monitoring_refuse_unknown_models(tmp_path: Path) -> None:
    from monitoring.pipeline import run_monitoring
    from nextbest.jobs.retrain import retrain_models
    from nextbest.settings import Settings

    settings = Settings(home=tmp_path)
    with pytest.raises(ConfigError, match="unknown model"):
        retrain_models(settings, ["fraud"])
    with pytest.raises(ConfigError, match="unknown model.*simbank"):
        run_monitoring(settings, models=["fraud"])
