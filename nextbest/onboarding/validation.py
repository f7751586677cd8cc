"""Honest quality estimates for small data: repeated stratified CV or rolling-origin time splits, with spread.

A single holdout of a few hundred loans holds a handful of defaults, so its AUC swings by +-0.1 from one random
split to the next. We report the mean and standard deviation over many held-out folds instead:
- `repeated_cv`: repeated stratified k-fold (each repeat a different shuffle). For entities scored once at their
  own event time (a loan at its grant date) whose label is an outcome observed later. Inside each training fold a
  stratified 20% slice drives early stopping, so the held-out fold is never used to choose anything.
- `time_split`: rolling origin. For calendar snapshots of the same entities: each of the last `folds` snapshot
  dates is a test period in turn, trained on every earlier snapshot whose label window [t, t + horizon) closed
  before the test date (purged), with the latest training snapshot as the early-stopping slice.
Both evaluate the tuned recipe (parameters from the Optuna study) and, for orientation, a plain XGBoost with
library defaults (100 rounds), side by side on the same folds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd

from nextbest.errors import DataError

logger = logging.getLogger(__name__)

PLAIN_PARAMS: dict[str, Any] = {"objective": "binary:logistic", "tree_method": "hist", "verbosity": 0}
PLAIN_ROUNDS = 100
# One thread: on a few thousand rows a boosting round costs ~2 ms single-threaded, while OpenMP threads on a busy
# 2-core machine were measured at 40 ms a round (they spin waiting for each other); folds are cheap, run serially.
CV_NTHREAD = 1


@dataclass(frozen=True)
class FoldScore:
    fold: int
    repeat: int
    rows: int
    positives: int
    roc_auc: float
    pr_auc: float
    log_loss: float
    test_period: str | None = None


@dataclass(frozen=True)
class CVResult:
    """Scores per held-out fold of one recipe, and their mean and standard deviation."""

    method: Literal["repeated_cv", "time_split"]
    recipe: str
    folds: list[FoldScore] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        out: dict[str, float] = {"n_folds": float(len(self.folds))}
        for metric in ("roc_auc", "pr_auc", "log_loss"):
            values = np.array([getattr(f, metric) for f in self.folds], dtype=float)
            values = values[np.isfinite(values)]
            out[f"{metric}_mean"] = float(values.mean()) if values.size else float("nan")
            out[f"{metric}_std"] = float(values.std(ddof=1)) if values.size > 1 else float("nan")
        return out

    def describe(self) -> str:
        s = self.summary()
        return f"{self.recipe}: AUC {s['roc_auc_mean']:.3f} +- {s['roc_auc_std']:.3f} over {len(self.folds)} folds"


def _fit_predict(
    params: dict[str, Any],
    rounds: int,
    X_fit: np.ndarray,
    y_fit: np.ndarray,
    X_stop: np.ndarray | None,
    y_stop: np.ndarray | None,
    X_test: np.ndarray,
    early_stopping_rounds: int,
) -> np.ndarray:
    import xgboost as xgb

    dfit = xgb.DMatrix(X_fit, label=y_fit)
    if X_stop is None or y_stop is None or len(np.unique(y_stop)) < 2:
        booster = xgb.train(params, dfit, num_boost_round=rounds, verbose_eval=False)
        return booster.inplace_predict(X_test)
    dstop = xgb.DMatrix(X_stop, label=y_stop)
    booster = xgb.train(
        {**params, "eval_metric": "logloss"},
        dfit,
        num_boost_round=rounds,
        evals=[(dstop, "stop")],
        early_stopping_rounds=early_stopping_rounds,
        verbose_eval=False,
    )
    return booster.inplace_predict(X_test, iteration_range=(0, booster.best_iteration + 1))


def _score(y: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

    if len(np.unique(y)) < 2:
        return float("nan"), float("nan"), float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1]))
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(roc_auc_score(y, p)), float(average_precision_score(y, p)), float(log_loss(y, p))


def _evaluate_recipes(
    recipes: list[tuple[str, dict[str, Any], int]],
    X: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    fit: np.ndarray,
    stop: np.ndarray,
    test: np.ndarray,
    early_stopping_rounds: int,
) -> dict[str, tuple[float, float, float]]:
    """Fit every recipe on one fold and score it on the fold's test rows.

    The tuned recipe early-stops on `stop` and fits on `fit`; the plain baseline fits on all of `train`.
    Index arguments may be integer positions or boolean masks.
    """
    scores = {}
    for name, params, rounds in recipes:
        stopping = name == "tuned"
        p = _fit_predict(
            params,
            rounds,
            X[fit if stopping else train],
            y[fit if stopping else train],
            X[stop] if stopping else None,
            y[stop] if stopping else None,
            X[test],
            early_stopping_rounds,
        )
        scores[name] = _score(y[test], p)
    return scores


def _recipes(tuned_params: dict[str, Any] | None, seed: int, max_rounds: int) -> list[tuple[str, dict[str, Any], int]]:
    from training.tune import booster_params

    recipes = [("plain_xgboost", {**PLAIN_PARAMS, "seed": seed, "nthread": CV_NTHREAD}, PLAIN_ROUNDS)]
    if tuned_params is not None:
        params = booster_params(tuned_params, seed=seed, nthread=CV_NTHREAD)
        params.pop("eval_metric", None)
        recipes.insert(0, ("tuned", params, max_rounds))
    return recipes


def repeated_cv(
    frame: pd.DataFrame,
    features: list[str],
    label: str,
    *,
    tuned_params: dict[str, Any] | None,
    folds: int = 5,
    repeats: int = 3,
    seed: int = 7,
    max_rounds: int = 400,
    early_stopping_rounds: int = 30,
) -> list[CVResult]:
    """Repeated stratified k-fold of the tuned recipe (early stopping inside each training fold) and plain XGBoost."""
    from sklearn.model_selection import RepeatedStratifiedKFold, train_test_split

    X = frame[features].to_numpy(dtype=np.float32, na_value=np.nan)
    y = frame[label].to_numpy(dtype=np.float32)
    if int(y.sum()) < folds or int((1 - y).sum()) < folds:
        raise DataError(f"{int(y.sum())} positives among {len(y)} rows: too few for {folds}-fold stratified CV")
    results = {name: CVResult("repeated_cv", name) for name, _, _ in _recipes(tuned_params, seed, max_rounds)}
    splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    for i, (train_idx, test_idx) in enumerate(splitter.split(X, y)):
        fit_idx, stop_idx = train_test_split(train_idx, test_size=0.2, stratify=y[train_idx], random_state=seed + i)
        recipes = _recipes(tuned_params, seed, max_rounds)
        scores = _evaluate_recipes(recipes, X, y, train_idx, fit_idx, stop_idx, test_idx, early_stopping_rounds)
        for name, (auc, pr, ll) in scores.items():
            results[name].folds.append(
                FoldScore(i % folds, i // folds, len(test_idx), int(y[test_idx].sum()), auc, pr, ll)
            )
    for r in results.values():
        logger.info("repeated %dx%d CV %s", repeats, folds, r.describe())
    return list(results.values())


def rolling_origin(
    frame: pd.DataFrame,
    features: list[str],
    label: str,
    timestamp: str,
    *,
    tuned_params: dict[str, Any] | None,
    folds: int = 4,
    horizon_days: int = 0,
    seed: int = 7,
    max_rounds: int = 400,
    early_stopping_rounds: int = 30,
) -> list[CVResult]:
    """Each of the last `folds` snapshot dates as a test period, trained on earlier, purged snapshots."""
    times = np.sort(frame[timestamp].unique())
    if times.size < folds + 2:
        raise DataError(f"{times.size} snapshot dates: too few for {folds} rolling-origin test periods")
    X = frame[features].to_numpy(dtype=np.float32, na_value=np.nan)
    y = frame[label].to_numpy(dtype=np.float32)
    ts = frame[timestamp]
    horizon = pd.Timedelta(timedelta(days=horizon_days))
    results = {name: CVResult("time_split", name) for name, _, _ in _recipes(tuned_params, seed, max_rounds)}
    for i, test_time in enumerate(times[-folds:]):
        test_time = pd.Timestamp(test_time)
        # Purge: a training row's label window must close before the test period starts.
        train_mask = (ts + horizon <= test_time).to_numpy() & (ts < test_time).to_numpy()
        train_times = np.sort(ts[train_mask].unique())
        if train_times.size < 2:
            raise DataError(f"no purged training history before test period {test_time}")
        stop_mask = train_mask & (ts == train_times[-1]).to_numpy()
        fit_mask = train_mask & ~stop_mask
        test_mask = (ts == test_time).to_numpy()
        recipes = _recipes(tuned_params, seed, max_rounds)
        scores = _evaluate_recipes(recipes, X, y, train_mask, fit_mask, stop_mask, test_mask, early_stopping_rounds)
        for name, (auc, pr, ll) in scores.items():
            results[name].folds.append(
                FoldScore(i, 0, int(test_mask.sum()), int(y[test_mask].sum()), auc, pr, ll, str(test_time.date()))
            )
    for r in results.values():
        logger.info("rolling-origin %s", r.describe())
    return list(results.values())
