"""The one training recipe, shared by the registered model and every validation fold, and the plain baseline.

The recipe, given tuned parameters and rows split into a fit part and a stop part (the trainer's train and
validation splits; a fold's older rows and its last period; a stratified 80/20 of a CV training fold):
1. early stopping: boost on the fit rows, stop when the stop rows' log-loss stops improving (`tune.fit_booster`);
   this decides the number of rounds;
2. refit: boost on ALL the rows (fit + stop) for exactly that many rounds, with the same parameters, seed and base
   score (the intercept the early-stopped booster started from). The refit booster is the model: it has seen the
   most recent rows before the holdout, which are the ones most like the rows it will score;
3. calibration, honestly: the calibrator is fitted on the early-stopped booster's margins of the stop rows (rows
   that booster never saw, the only out-of-sample margins there are) and applied to the refit booster, whose
   parameters, number of rounds and starting intercept are the same. The refit booster's own margins on the stop
   rows are in-sample and would make it overconfident. Whatever gap remains is measured, not assumed: the holdout
   (test split, seen by neither booster) reports the registered model's ECE and log-loss.

Small sets of independent rows (a few hundred loans, `TuningConfig.cv_folds`) use the CV recipe
(`fit_recipe_cv`): the rounds are where stratified k-fold CV's mean held-out log-loss is best, the model is refit
on all the rows, and the calibrator is fitted on out-of-fold margins (every row scored by a booster that never saw
it). A stop slice of 70 loans with 6 bad ones decided rounds, parameters and calibration by noise.

The plain baseline is what a data scientist would try first: XGBoost with its library defaults (100 rounds, no
tuning, no early stopping) fitted on the same rows (fit + stop) as the refit. The promotion gate refuses a model
that does worse than it on the holdout, and onboarding's validation reports both on the same folds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nextbest.errors import DataError

if TYPE_CHECKING:
    import xgboost as xgb

    from nextbest.models.calibration import CalibrationMethod, Calibrator
    from training.tune import CVData, TuningConfig

PLAIN_PARAMS: dict[str, Any] = {"objective": "binary:logistic", "tree_method": "hist", "verbosity": 0}
PLAIN_ROUNDS = 100


@dataclass(frozen=True)
class Rows:
    """Model inputs of one part of a data set: matrix, 0/1 labels, optional sample weights."""

    X: np.ndarray
    y: np.ndarray
    w: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)

    def plus(self, other: Rows) -> Rows:
        """These rows followed by `other`'s (weights kept only when both parts have them)."""
        w = None if self.w is None or other.w is None else np.concatenate([self.w, other.w])
        return Rows(np.vstack([self.X, other.X]), np.concatenate([self.y, other.y]), w)


@dataclass(frozen=True)
class RecipeFit:
    """What the recipe produced: the refit booster (the model), the early-stopped one (None for the CV recipe),
    rounds and calibrator; the CV recipe's out-of-fold margins of every row (what its calibrator was fitted on)."""

    booster: xgb.Booster
    stopped: xgb.Booster | None
    rounds: int
    calibrator: Calibrator | None
    oof_margin: np.ndarray | None = None

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of the refit booster (raw ones without a calibrator)."""
        if self.calibrator is None:
            return np.asarray(self.booster.inplace_predict(X), dtype=np.float64)
        predict_type = "margin" if self.calibrator.uses_margin else "value"
        raw = self.booster.inplace_predict(X, predict_type=predict_type)
        return self.calibrator.apply(np.asarray(raw, dtype=np.float64))


def refit_booster(
    params: dict[str, Any], rows: Rows, rounds: int, feature_names: list[str] | None = None
) -> xgb.Booster:
    """Boost `params` on `rows` for exactly `rounds` rounds (no early stopping: the rounds were decided before)."""
    import xgboost as xgb

    if rounds < 1:
        raise DataError(f"a refit needs at least one round, got {rounds}")
    if len(np.unique(rows.y)) < 2:
        raise DataError("refit rows hold one class only")
    nthread = params.get("nthread") or os.cpu_count() or 1
    data = xgb.QuantileDMatrix(
        rows.X, label=rows.y, weight=rows.w, feature_names=feature_names, max_bin=params.get("max_bin", 256),
        nthread=nthread,
    )  # fmt: skip
    booster = xgb.train(params, data, num_boost_round=rounds, verbose_eval=False)
    if feature_names is not None:
        booster.feature_names = feature_names
    return booster


def fit_recipe(
    params: dict[str, Any],
    fit: Rows,
    stop: Rows,
    config: TuningConfig,
    *,
    calibration: CalibrationMethod | None = "platt",
    feature_names: list[str] | None = None,
    stopped: xgb.Booster | None = None,
    refit: Callable[..., xgb.Booster] | None = None,
) -> RecipeFit:
    """Early-stop on `stop`, refit on `fit` + `stop` for the best iteration's rounds, calibrate (module docstring).

    `stopped`: an early-stopped booster already fitted on these rows (the trainer refits its study's best trial
    once and passes it), so step 1 is not repeated. `calibration=None` skips step 3 (ranking only). `refit`: what
    boosts step 2 (`refit_booster`'s arguments; the distributed path passes `xgboost.dask`'s)."""
    from nextbest.models.calibration import fit_calibrator
    from training.tune import fit_booster, make_tuning_data

    names = feature_names or [f"f{i}" for i in range(fit.X.shape[1])]
    if stopped is None:
        data = make_tuning_data(fit.X, fit.y, stop.X, stop.y, names, nthread=params.get("nthread"), w_train=fit.w,
                                w_valid=stop.w)  # fmt: skip
        stopped = fit_booster(params, data, config)
    rounds = int(stopped.best_iteration) + 1
    # The same starting point (intercept) as the early-stopped booster, so the refit's margins are on the scale the
    # calibrator was fitted on: XGBoost would otherwise start each booster from its own rows' base rate.
    refit_params = {**params, "base_score": base_score(stopped)}
    booster = (refit or refit_booster)(refit_params, fit.plus(stop), rounds, feature_names=feature_names)
    calibrator = None
    if calibration is not None:
        margin = stopped.inplace_predict(stop.X, predict_type="margin")
        calibrator = fit_calibrator(stop.y, margin, calibration, sample_weight=stop.w)
    return RecipeFit(booster=booster, stopped=stopped, rounds=rounds, calibrator=calibrator)


def fit_recipe_cv(
    params: dict[str, Any],
    rows: Rows,
    config: TuningConfig,
    *,
    seed: int,
    calibration: CalibrationMethod | None = "platt",
    feature_names: list[str] | None = None,
    cv: CVData | None = None,
) -> RecipeFit:
    """The recipe for small sets of independent rows (`TuningConfig.cv_folds`): the number of rounds where the mean
    held-out log-loss of stratified k-fold CV is best (`tune.cv_rounds`), the model refitted on all the rows for
    that many rounds, and the calibrator fitted on the out-of-fold margins (each row scored by a fold booster that
    never saw it; every booster starts from the rows' base rate, so margins share one scale)."""
    from nextbest.models.calibration import fit_calibrator
    from training.tune import cv_rounds, make_cv_data

    names = feature_names or [f"f{i}" for i in range(rows.X.shape[1])]
    cv = cv or make_cv_data(rows.X, rows.y, names, config.cv_folds or 5, seed, rows.w)
    params = {**params, "base_score": float(np.average(rows.y, weights=rows.w))}
    rounds = cv_rounds(params, cv, config)[0]
    oof = np.empty(len(rows), dtype=np.float64)
    for train, held_out in cv.folds:
        part = Rows(rows.X[train], rows.y[train], None if rows.w is None else rows.w[train])
        oof[held_out] = refit_booster(params, part, rounds).inplace_predict(rows.X[held_out], predict_type="margin")
    booster = refit_booster(params, rows, rounds, feature_names=feature_names)
    calibrator = None
    if calibration is not None:
        calibrator = fit_calibrator(rows.y, oof, calibration, sample_weight=rows.w)
    return RecipeFit(booster=booster, stopped=None, rounds=rounds, calibrator=calibrator, oof_margin=oof)


def base_score(booster: xgb.Booster) -> float:
    """The booster's base score (the probability its boosting started from; XGBoost stores it as '[1.2E-1]')."""
    raw = json.loads(booster.save_config())["learner"]["learner_model_param"]["base_score"]
    return float(str(raw).strip("[]"))


def plain_baseline(rows: Rows, seed: int, nthread: int | None = 1) -> xgb.Booster:
    """XGBoost with library defaults (`PLAIN_PARAMS`, `PLAIN_ROUNDS` rounds) on `rows`: the yardstick."""
    import xgboost as xgb

    params = {**PLAIN_PARAMS, "seed": seed, "nthread": nthread or os.cpu_count() or 1}
    return xgb.train(params, xgb.DMatrix(rows.X, label=rows.y, weight=rows.w), num_boost_round=PLAIN_ROUNDS)
