"""IPS sample weights of the NBA training set: clipped, normalised, applied to the booster and the calibrator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nextbest.errors import DataError
from nextbest.models.calibration import fit_calibrator
from training.tune import make_tuning_data
from training.weighting import ips_weights, nba_weights


def test_ips_weights_are_inverse_propensities_clipped_and_normalised_to_mean_one() -> None:
    w = ips_weights(np.array([1.0, 0.5, 0.1, 0.01]), clip=20.0)
    raw = np.array([1.0, 2.0, 10.0, 20.0])  # 1/0.01 = 100 is clipped to 20
    np.testing.assert_allclose(w, raw / raw.mean())
    assert w.mean() == pytest.approx(1.0)
    # clip 1 means every row weighs the same
    np.testing.assert_allclose(ips_weights(np.array([0.9, 0.02]), clip=1.0), [1.0, 1.0])


@pytest.mark.parametrize("p", [[0.0, 0.5], [1.2], [np.nan]])
def test_ips_weights_reject_impossible_propensities(p: list[float]) -> None:
    with pytest.raises(DataError, match="propensit"):
        ips_weights(np.array(p), clip=5.0)


def test_nba_weights_are_off_without_propensities_or_with_clip_one() -> None:
    frame = pd.DataFrame({"logging_propensity": [0.8, 0.02]})
    assert nba_weights(frame, 1.0) is None
    assert nba_weights(frame.rename(columns={"logging_propensity": "p"}), 5.0) is None
    np.testing.assert_allclose(nba_weights(frame, 5.0), np.array([1.25, 5.0]) / 3.125)


def test_weights_reach_the_training_matrices() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, 3)), (rng.random(200) < 0.3).astype(float)
    w = rng.uniform(0.5, 2.0, 200)
    data = make_tuning_data(x, y, x, y, ["a", "b", "c"], w_train=w, w_valid=w)
    np.testing.assert_allclose(data.dtrain.get_weight(), w, rtol=1e-6)
    np.testing.assert_allclose(data.dvalid.get_weight(), w, rtol=1e-6)
    with pytest.raises(DataError, match="w_train"):
        make_tuning_data(x, y, x, y, ["a", "b", "c"], w_train=w[:10])


def test_weighted_calibration_matches_the_population_the_weights_stand_for() -> None:
    # Margin 0 for every row; rows labelled 1 weigh 3x: the weighted rate is 3/(3+1) = 0.75, unweighted 0.5.
    y = np.array([1.0, 0.0] * 50)
    z = np.zeros(100)
    w = np.where(y == 1, 3.0, 1.0)
    assert fit_calibrator(y, z).apply(np.zeros(1))[0] == pytest.approx(0.5, abs=1e-3)
    assert fit_calibrator(y, z, sample_weight=w).apply(np.zeros(1))[0] == pytest.approx(0.75, abs=1e-3)


def test_nba_training_applies_the_ips_weights_when_enabled(tmp_path) -> None:
    """The logger showed half the rows to likely acceptors (propensity 0.9, 20% accept) and explored the rest
    (propensity 0.05, 4% accept), with nothing in the features to tell them apart: the unweighted model learns the
    logged rate (~12%), the weighted one the rate of the population the weights stand for (~7%). The calibrator is
    fitted on the validation split (~20% of rows), so 12,000 rows keep its weighted rate's standard error (~0.006;
    the explored 4% group carries weight 5) well inside the 0.02 tolerance."""
    from nextbest.settings import Settings, TrainingSettings
    from training.pipeline import FitOptions, fit_and_log
    from training.synthetic import synthetic_training_set
    from training.tune import TuningConfig

    base = synthetic_training_set(rows=12_000, features=6, seed=4, model="nba", kind="offer_accepted")
    rng = np.random.default_rng(4)
    favoured = rng.random(len(base.frame)) < 0.5
    frame = base.frame.assign(
        logging_propensity=np.where(favoured, 0.9, 0.05),
        label=(rng.random(len(base.frame)) < np.where(favoured, 0.20, 0.04)).astype(np.int8),
    )
    ts = type(base)(model="nba", frame=frame, feature_names=base.feature_names, lineage=base.lineage, kind=base.kind)
    config = TuningConfig(max_rounds=60, early_stopping_rounds=10)
    means = {}
    for clip in (1.0, 5.0):
        settings = Settings(home=tmp_path / f"clip{clip}", training=TrainingSettings(nba_ips_clip=clip))
        result = fit_and_log(settings, ts, FitOptions(trials=2, register=False, config=config, seed=1))
        means[clip] = result.metrics["test_mean_prediction"]
    w = np.minimum(1 / frame["logging_propensity"], 5.0)
    weighted_rate = float(np.average(frame["label"], weights=w))
    assert means[1.0] == pytest.approx(frame["label"].mean(), abs=0.02)
    assert means[5.0] == pytest.approx(weighted_rate, abs=0.02)
    assert means[5.0] < means[1.0] - 0.03
