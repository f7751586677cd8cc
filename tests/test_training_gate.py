"""Honest models: the registered model is the refit on train + validation, its own holdout score is what the job
reports (with a bootstrap interval), and the promotion gate's floor refuses a below-chance first version that the
old gate promoted ("first version: no champion to beat"). Synthetic frames, real MLflow on SQLite in a temp dir."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nextbest.settings import Settings
from tests.training_fixtures import quiet_mlflow  # noqa: F401  (autouse fixture)
from training.datasets import LABEL, TIMESTAMP, TrainingSet, time_split

FLIP_DAY = 70


def flipping_training_set(rows: int = 6_000, days: int = 100, seed: int = 5) -> TrainingSet:
    """A date-ordered table whose relation flips at `FLIP_DAY`: before it f00 raises the odds, from it f00 lowers
    them. The time split's test period (the last 20% of days) lies wholly after the flip; most training rows before.
    """
    rng = np.random.default_rng(seed)
    day = np.sort(rng.integers(0, days, size=rows))
    X = rng.normal(size=(rows, 6)).astype(np.float32)
    sign = np.where(day < FLIP_DAY, 1.0, -1.0)
    p = 1 / (1 + np.exp(-(-1.5 + 1.6 * sign * X[:, 0] + 0.2 * X[:, 1])))
    frame = pd.DataFrame(X, columns=[f"f{i:02d}" for i in range(6)])
    frame.insert(0, TIMESTAMP, pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(day, unit="D"))
    frame[LABEL] = (rng.random(rows) < p).astype(np.int8)
    lineage = {"feature_service": "synthetic_flip", "world_seed": seed}
    return TrainingSet(model="flip", frame=frame, feature_names=list(frame.columns[1:7]), lineage=lineage)


def _fit(home: Path, name: str, training_set: TrainingSet, **options: object):
    from training.pipeline import FitOptions, fit_and_log
    from training.tune import TuningConfig

    config = TuningConfig(max_rounds=120, early_stopping_rounds=15)
    settings = Settings(home=home)
    return settings, fit_and_log(settings, training_set, FitOptions(trials=3, registered_name=name, config=config,
                                                                  seed=4, **options))  # fmt: skip


@pytest.fixture(scope="module")
def flipped(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from training.registry import GateRule

    data = flipping_training_set()
    legacy = GateRule(floor_z=None, baseline_tolerance=None)  # the gate before the floor
    old_settings, old = _fit(tmp_path_factory.mktemp("old-gate"), "flip", data, rule=legacy)
    new_settings, new = _fit(tmp_path_factory.mktemp("new-gate"), "flip", data)
    return {"data": data, "old": old, "old_settings": old_settings, "new": new, "new_settings": new_settings}


def test_the_old_gate_promotes_a_below_chance_first_version_and_the_floor_refuses_it(flipped: dict) -> None:
    from training.registry import CHALLENGER, CHAMPION, alias_version

    old, new, settings = flipped["old"], flipped["new"], flipped["new_settings"]
    assert old.metrics["test_roc_auc"] < 0.5  # the relation flipped: the model ranks the holdout backwards
    assert old.promoted and old.decision.reason == "first version: no champion to beat"
    assert new.version == "1" and not new.promoted
    assert new.decision.reason.startswith("first version: below the floor: AUC")
    assert "not above chance (0.5)" in new.decision.reason and "registered, not promoted" in new.decision.reason
    assert new.decision.floor["lower"] < 0.5 and new.decision.floor["roc_auc_se"] > 0
    assert alias_version(settings, "flip", CHAMPION) is None  # registered, not promoted
    assert alias_version(settings, "flip", CHALLENGER) == "1"


def test_the_registered_model_is_the_refit_on_train_and_validation_with_the_best_rounds(flipped: dict) -> None:
    import xgboost as xgb

    from nextbest.models.artefact import load_model, matrix_from_frame
    from training.recipe import base_score
    from training.tune import booster_params

    new, data, settings = flipped["new"], flipped["data"], flipped["new_settings"]
    splits = time_split(data.frame)
    refit_rows = pd.concat([splits.train, splits.valid])
    rounds = int(new.metrics["refit_rounds"])
    assert new.metrics["refit_rows"] == len(refit_rows) and rounds == new.metrics["best_iteration"] + 1
    registered = load_model("flip", settings=settings, version="1")
    assert registered.booster.num_boosted_rounds() == rounds
    # The same booster by hand: the best parameters boosted on train + validation for exactly those rounds, from the
    # early-stopped booster's intercept (the training split's base rate, not the refit rows').
    start = base_score(registered.booster)
    assert start == pytest.approx(splits.train[LABEL].mean(), abs=0.01)
    params = {**booster_params(new.best_params, seed=4, nthread=1), "base_score": start}
    X = matrix_from_frame(refit_rows, data.feature_names)
    dtrain = xgb.QuantileDMatrix(X, label=refit_rows[LABEL].to_numpy(), max_bin=params["max_bin"], nthread=1)
    by_hand = xgb.train(params, dtrain, num_boost_round=rounds)
    X_test = matrix_from_frame(splits.test, data.feature_names)
    np.testing.assert_allclose(
        registered.booster.inplace_predict(X_test, validate_features=False), by_hand.inplace_predict(X_test), rtol=1e-5
    )
    # The figure the job reports (and the CLI prints) is the registered model's own on the holdout, as the gate saw.
    from training.metrics import binary_metrics

    own = binary_metrics(splits.test[LABEL].to_numpy(), registered.predict_proba(X_test))["roc_auc"]
    assert new.metrics["test_roc_auc"] == pytest.approx(own)
    assert new.decision.challenger_metrics["roc_auc"] == pytest.approx(own)
    assert new.metrics["test_roc_auc_ci_low"] < own < new.metrics["test_roc_auc_ci_high"]
    assert "baseline_test_roc_auc" in new.metrics and "stopped_test_roc_auc" in new.metrics


def test_an_unchanged_retrain_registers_no_new_version(tmp_path: Path) -> None:
    from training.synthetic import synthetic_training_set

    data = synthetic_training_set(rows=3_000, features=6, seed=8)
    settings, first = _fit(tmp_path, "same", data, study_name="same-a")
    assert first.version == "1" and first.promoted  # a learnable relation clears the floor
    assert "clears the floor" in first.decision.reason and first.decision.floor["baseline_roc_auc"] is not None
    _, again = _fit(tmp_path, "same", data, study_name="same-b")  # a fresh study, same seed: the same best trial
    assert again.best_params == first.best_params
    assert again.version is None and not again.promoted
    assert again.unchanged and "unchanged: champion v1" in again.unchanged
    changed = synthetic_training_set(rows=3_000, features=6, seed=9)
    _, third = _fit(tmp_path, "same", changed, study_name="same-c")
    assert third.version == "2" and third.data_fingerprint != first.data_fingerprint


def test_parent_runs_have_unique_readable_names_and_experiments_open_as_training(flipped: dict) -> None:
    from nextbest.models.registry import mlflow_client
    from training.tracking import EXPERIMENT_KIND_TAG, TRAINING_KIND

    new, settings = flipped["new"], flipped["new_settings"]
    client = mlflow_client(settings)
    run = client.get_run(new.run_id)
    assert run.info.run_name.startswith(f"flip-{new.data_fingerprint[:8]}-20")
    assert client.get_experiment(new.experiment_id).tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND


def test_auc_standard_error_and_bootstrap_interval_agree_with_each_other() -> None:
    from sklearn.metrics import roc_auc_score

    from training.metrics import auc_standard_error, bootstrap_auc_interval

    rng = np.random.default_rng(0)
    y = (rng.random(4_000) < 0.1).astype(float)
    p = rng.random(4_000) + 0.4 * y
    auc, se = auc_standard_error(y, p)
    assert auc == pytest.approx(roc_auc_score(y, p))
    low, high = bootstrap_auc_interval(y, p, resamples=400)
    assert low < auc < high and (high - low) / 2 == pytest.approx(1.96 * se, rel=0.2)
    assert np.isnan(auc_standard_error(np.zeros(10), rng.random(10))[1])


def test_the_baseline_check_allows_for_the_noise_of_a_small_holdout() -> None:
    from training.metrics import binary_metrics
    from training.registry import GateRule, baseline_on, floor_verdict

    rng = np.random.default_rng(3)
    y = np.r_[np.ones(6), np.zeros(65)]
    baseline = y * 0.5 + rng.random(71) * 0.45  # perfect on six positives
    challenger = baseline.copy()
    challenger[0] = 0.05  # one positive ranked low: AUC about 0.02 lower, one swapped pair's worth of noise
    metrics = {**binary_metrics(y, challenger), "roc_auc_se": 0.03}
    base = baseline_on(y, challenger, baseline)
    assert base["roc_auc"] - metrics["roc_auc"] > 0.02 and base["difference_se"] > 0.01
    cleared, floor = floor_verdict(metrics, GateRule(), base)
    assert cleared and floor["baseline_allowed_gap"] > 0.02
    worse = np.where(y == 1, 0.4 + rng.random(71) * 0.6, rng.random(71))  # better than chance, far from the baseline
    cleared, floor = floor_verdict(
        {**binary_metrics(y, worse), "roc_auc_se": 0.01}, GateRule(), baseline_on(y, worse, baseline)
    )
    assert not cleared and "worse than a plain XGBoost" in floor["reason"]


def test_a_small_stratified_set_is_tuned_and_calibrated_by_cross_validation(tmp_path: Path) -> None:
    """`TuningConfig.cv_folds`: trials scored by 5-fold CV over train + validation, the model refit on all of those
    rows for the CV's best number of rounds, the calibrator fitted on out-of-fold margins."""
    from nextbest.models.artefact import load_model
    from training.pipeline import FitOptions, fit_and_log
    from training.synthetic import synthetic_training_set
    from training.tune import TuningConfig

    data = synthetic_training_set(rows=700, features=6, seed=13, base_rate=0.12)
    config = TuningConfig(max_rounds=150, early_stopping_rounds=15, cv_folds=5)
    settings = Settings(home=tmp_path)
    options = FitOptions(trials=3, registered_name="small", config=config, seed=2, split="stratified")
    result = fit_and_log(settings, data, options)
    assert result.promoted and result.metrics["refit_rows"] == 560  # 80% of the rows: train + validation
    assert "stopped_test_roc_auc" not in result.metrics and np.isfinite(result.metrics["valid_roc_auc"])
    registered = load_model("small", settings=settings, version=result.version)
    assert registered.booster.num_boosted_rounds() == result.metrics["refit_rounds"]
    # Out-of-fold calibration: the validation (out-of-fold) mean prediction matches the rows' base rate.
    assert result.metrics["valid_mean_prediction"] == pytest.approx(result.metrics["valid_base_rate"], abs=0.01)


def test_the_project_files_gate_is_the_rule_train_and_retrain_apply() -> None:
    """`models[].gate` in the project file sets the floor as well as the champion margins; a negative one is a
    config error naming the field."""
    import pydantic

    from nextbest.project import GateSpec
    from training.registry import GateRule, gate_rule

    assert gate_rule(GateSpec()) == GateRule()
    loose = gate_rule(GateSpec.model_validate({"floor_z": None, "baseline_tolerance": 0.05, "min_auc_gain": 0.01}))
    assert (loose.floor_z, loose.baseline_tolerance, loose.min_auc_gain) == (None, 0.05, 0.01)
    with pytest.raises(pydantic.ValidationError, match="floor_z"):
        GateSpec.model_validate({"floor_z": -1})
