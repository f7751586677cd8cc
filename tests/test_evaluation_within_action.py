"""Models judged on what decides value: ranking within each action and calibration per action kind, beside the
pooled AUC, on constructed cases where the pooled AUC and the within-action ranking disagree."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nextbest.catalogue import load_catalogue
from nextbest.errors import DataError
from training.evaluate import EvaluationReport, kind_calibration, quality_row, within_action_quality
from training.metrics import calibration_by_group, weighted_mean, within_group_ranking

N = 4000  # rows per action


def _two_actions(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A frequent cheap action (travel card, true p 0.2-0.6) and a rare expensive one (mortgage, 0.1-2%)."""
    rng = np.random.default_rng(seed)
    actions = np.repeat(["travel_card", "mortgage"], N)
    p_true = np.concatenate([rng.uniform(0.2, 0.6, N), rng.uniform(0.001, 0.02, N)])
    y = (rng.random(2 * N) < p_true).astype(int)
    return actions, p_true, y


def test_pooled_auc_high_but_within_action_ranking_random_is_caught() -> None:
    actions, p_true, y = _two_actions()
    rng = np.random.default_rng(1)
    # The model knows each action's base rate and nothing about who needs it: noise unrelated to the truth.
    base = np.where(actions == "travel_card", 0.4, 0.01)
    p_model = base * np.exp(rng.normal(0, 0.3, actions.size))
    pooled = quality_row("nba", "1", y, p_model, p_true, "constructed")
    # looks fine, close to the truth's own pooled AUC: it mostly measures which action a row is about
    assert pooled["roc_auc"] > 0.75 and pooled["gap_to_ceiling"] < 0.1
    table, summary = within_action_quality(actions, y, p_model, p_true, load_catalogue())
    assert abs(summary["within_action_spearman"]) < 0.1
    assert abs(summary["within_action_auc"] - 0.5) < 0.1
    assert summary["within_action_bayes_auc"] > 0.6  # the truth does rank within the action
    assert set(table["action_id"]) == {"travel_card", "mortgage"}
    mortgage = table.set_index("action_id").loc["mortgage"]
    assert mortgage["weight"] == pytest.approx(2500.0 * N) and mortgage["kind"] == "sales"


def test_pooled_auc_poor_but_within_action_ranking_perfect_is_credited() -> None:
    actions, p_true, y = _two_actions()
    # The model ranks each action's customers exactly as the truth but puts the levels of the two actions upside
    # down: the rare action's scores above the frequent one's.
    p_model = np.where(actions == "travel_card", p_true / 100, p_true * 20)
    pooled = quality_row("nba", "1", y, p_model, p_true, "constructed")
    assert pooled["roc_auc"] < 0.5
    table, summary = within_action_quality(actions, y, p_model, p_true, load_catalogue())
    assert summary["within_action_spearman"] == pytest.approx(1.0)
    assert summary["within_action_auc"] == pytest.approx(summary["within_action_bayes_auc"])
    np.testing.assert_allclose(table["spearman_vs_truth"], 1.0)


def test_within_action_spearman_on_the_candidates_and_value_weighting() -> None:
    actions, p_true, y = _two_actions()
    # travel card ranked perfectly, mortgage reversed: the value-weighted mean leans to the mortgage (2,500 vs 120)
    p_model = np.where(actions == "travel_card", p_true, 1 - p_true)
    cands = pd.DataFrame({"action_id": actions[::4], "p_true": p_true[::4]})
    table, summary = within_action_quality(
        actions, y, p_model, p_true, load_catalogue(), cands=cands, p_cands=p_model[::4]
    )
    rho = table.set_index("action_id")["spearman_vs_truth"]
    assert rho["travel_card"] == pytest.approx(1.0) and rho["mortgage"] == pytest.approx(-1.0)
    expected = (120 * 1.0 - 2500 * 1.0) / (120 + 2500)
    assert summary["within_action_spearman"] == pytest.approx(expected)
    assert summary["within_action_spearman_candidates"] == pytest.approx(expected)
    assert (table["candidates"] == N // 4).all()


def test_calibration_per_kind_finds_the_miscalibrated_kind() -> None:
    rng = np.random.default_rng(2)
    actions = np.repeat(["credit_card", "fee_waiver"], N)  # sales, retention
    p_true = rng.uniform(0.02, 0.3, 2 * N)
    y = (rng.random(2 * N) < p_true).astype(int)
    p_model = np.where(actions == "fee_waiver", np.minimum(2 * p_true, 0.99), p_true)  # retention over-predicted
    table = kind_calibration(actions, y, p_model, p_true, load_catalogue()).set_index("kind")
    assert set(table.index) == {"sales", "retention"}
    assert table.loc["sales", "ece_vs_truth"] == pytest.approx(0.0, abs=1e-12)
    assert table.loc["sales", "ece"] < 0.02
    assert table.loc["retention", "ece"] > 0.1 and table.loc["retention", "ece_vs_truth"] > 0.1
    assert table.loc["retention", "mean_prediction"] == pytest.approx(2 * table.loc["retention", "mean_truth"])


def test_group_metrics_are_nan_where_undefined_and_check_their_inputs() -> None:
    rows = within_group_ranking(
        np.array(["a", "a", "b", "b", "b"]), [0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.3, 0.3], [0.1] * 5
    )
    by = {r["group"]: r for r in rows}
    assert np.isnan(by["a"]["roc_auc"]) and np.isnan(by["a"]["spearman_vs_truth"])  # one class; 2 rows
    assert np.isnan(by["b"]["spearman_vs_truth"])  # constant scores
    assert weighted_mean(np.array([1.0, np.nan, 3.0]), np.array([1.0, 5.0, 3.0])) == pytest.approx(2.5)
    assert np.isnan(weighted_mean(np.array([np.nan]), np.array([1.0])))
    with pytest.raises(DataError, match="length"):
        calibration_by_group(np.array(["a"]), [0, 1], [0.1, 0.2])
    with pytest.raises(DataError, match="not in the offer catalogue"):
        within_action_quality(np.array(["nope"] * 3), [0, 1, 0], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], load_catalogue())


def test_report_exports_the_within_action_and_per_kind_figures() -> None:
    report = EvaluationReport(
        decisions=10,
        ladder=pd.DataFrame(),
        ope=pd.DataFrame(),
        model_quality=pd.DataFrame(
            [{"model": "nba", "roc_auc": 0.8, "bayes_optimal_auc": 0.9, "within_action_spearman": 0.3}]
        ),
        action_quality=pd.DataFrame([{"action_id": "mortgage", "spearman_vs_truth": 0.25, "roc_auc": 0.6}]),
        kind_calibration=pd.DataFrame([{"kind": "sales", "ece": 0.01, "ece_vs_truth": 0.004}]),
    )
    metrics = report.metrics()
    assert metrics["quality.nba.within_action_spearman"] == pytest.approx(0.3)
    assert metrics["quality.nba.action.mortgage.spearman_vs_truth"] == pytest.approx(0.25)
    assert metrics["quality.nba.kind.sales.ece_vs_truth"] == pytest.approx(0.004)
    as_json = report.as_json()
    assert as_json["action_quality"][0]["action_id"] == "mortgage"
    assert as_json["kind_calibration"][0]["kind"] == "sales"


def test_report_json_file_is_strict_json_with_every_table(tmp_path) -> None:
    import json

    report = EvaluationReport(
        decisions=10,
        ladder=pd.DataFrame([{"stage": "oracle (knows the truth)", "value_per_1000": 5.0, "share": float("nan")}]),
        ope=pd.DataFrame(),
        model_quality=pd.DataFrame([{"model": "nba", "within_action_auc": np.float64("nan")}]),
        kind_calibration=pd.DataFrame([{"kind": "sales", "ece": np.float64(0.01), "rows": np.int64(3)}]),
        run_id="abc",
    )
    path = report.write_json(tmp_path / "out" / "report.json")
    loaded = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert loaded["run_id"] == "abc"
    assert loaded["ladder"][0]["share"] is None and loaded["model_quality"][0]["within_action_auc"] is None
    assert loaded["kind_calibration"][0] == {"kind": "sales", "ece": 0.01, "rows": 3}
    assert set(loaded) >= {"ladder", "ope", "model_quality", "action_quality", "kind_calibration", "differences"}
