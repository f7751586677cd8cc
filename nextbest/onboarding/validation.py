"""Honest quality estimates for small data: repeated stratified CV or rolling-origin folds by period, with spread.

A single holdout of a few hundred loans holds a handful of defaults, so its AUC swings by +-0.1 from one random
split to the next. We report the mean and standard deviation over many held-out folds instead:
- `repeated_cv`: repeated stratified k-fold (each repeat a different shuffle). For entities scored once at their
  own event time (a loan at its grant date) whose label is an outcome observed later, and for tables with no date.
- `time_split`: rolling origin by PERIOD (week, month or quarter; calendar snapshots default to their own period):
  each of the last `folds` periods that hold rows is a test period in turn, and the model is trained on
  everything before it whose label window closed before the period starts (purged by the label's horizon). A
  period, not a distinct timestamp: daily dates made one-day test folds of a few rows each.
Every fold trains THE SAME RECIPE as the registered model (`training.recipe`): the tuned parameters early-stopped
on the most recent quarter of the fold's training rows (a stratified quarter for `repeated_cv`: the trainer's
validation share of train + validation), refitted on all of them for the best iteration's rounds, and calibrated
with the early-stopped booster's margins; for small independent sets (`TuningConfig.cv_folds`) the CV recipe
inside the fold's training rows (rounds by inner CV, refit, out-of-fold calibration). Beside it, on the same
folds, the plain baseline: XGBoost with library defaults (100 rounds) fitted on all the fold's training rows
(`training.recipe.plain_baseline`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from nextbest.errors import DataError

if TYPE_CHECKING:
    from training.tune import TuningConfig

logger = logging.getLogger(__name__)

# One thread: on a few thousand rows a boosting round costs ~2 ms single-threaded, while OpenMP threads on a busy
# 2-core machine were measured at 40 ms a round (they spin waiting for each other); folds are cheap, run serially.
CV_NTHREAD = 1
#: The share of a fold's training rows that early-stops the tuned recipe: the trainer's validation split (20% of
#: all rows) as a share of train + validation (80%).
STOP_FRACTION = 0.25
Period = Literal["week", "month", "quarter"]
_PANDAS_PERIOD = {"week": "W", "month": "M", "quarter": "Q"}
TUNED, PLAIN = "tuned", "plain_xgboost"


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
    period: str | None = None

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


def _score(y: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

    p = np.clip(p, 1e-7, 1 - 1e-7)
    ll = float(log_loss(y, p, labels=[0, 1]))
    if len(np.unique(y)) < 2:
        return float("nan"), float("nan"), ll
    return float(roc_auc_score(y, p)), float(average_precision_score(y, p)), ll


@dataclass(frozen=True)
class _Fold:
    """Row masks of one fold: the tuned recipe fits on `fit`, early-stops on `stop`; the baseline fits on both."""

    fit: np.ndarray
    stop: np.ndarray
    test: np.ndarray


def _evaluate_fold(
    X: np.ndarray, y: np.ndarray, fold: _Fold, tuned_params: dict[str, Any] | None, seed: int, config: TuningConfig
) -> dict[str, tuple[float, float, float]] | None:
    """Both recipes fitted on one fold and scored on its test rows; None when a part holds one class only."""
    from training.recipe import Rows, fit_recipe, fit_recipe_cv, plain_baseline
    from training.tune import booster_params

    fit, stop = Rows(X[fold.fit], y[fold.fit]), Rows(X[fold.stop], y[fold.stop])
    if len(np.unique(fit.y)) < 2 or len(np.unique(stop.y)) < 2:
        return None
    X_test, y_test = X[fold.test], y[fold.test]
    scores = {PLAIN: _score(y_test, plain_baseline(fit.plus(stop), seed, CV_NTHREAD).inplace_predict(X_test))}
    if tuned_params is not None:
        params = booster_params(tuned_params, seed=seed, nthread=CV_NTHREAD)
        if config.cv_folds:  # the CV recipe of small independent sets, inside the fold's training rows
            recipe = fit_recipe_cv(params, fit.plus(stop), config, seed=seed)
        else:
            recipe = fit_recipe(params, fit, stop, config)
        scores = {TUNED: _score(y_test, recipe.predict_proba(X_test)), **scores}
    return scores


def _matrices(frame: pd.DataFrame, features: list[str], label: str) -> tuple[np.ndarray, np.ndarray]:
    X = frame[features].to_numpy(dtype=np.float32, na_value=np.nan)
    return X, frame[label].to_numpy(dtype=np.float32)


def _config(config: TuningConfig | None) -> TuningConfig:
    from training.tune import TuningConfig

    return config or TuningConfig(nthread=CV_NTHREAD)


def repeated_cv(
    frame: pd.DataFrame,
    features: list[str],
    label: str,
    *,
    tuned_params: dict[str, Any] | None,
    folds: int = 5,
    repeats: int = 3,
    seed: int = 7,
    config: TuningConfig | None = None,
) -> list[CVResult]:
    """Repeated stratified k-fold of the tuned recipe (a stratified quarter of each training fold early-stops it)
    and plain XGBoost."""
    from sklearn.model_selection import RepeatedStratifiedKFold, train_test_split

    X, y = _matrices(frame, features, label)
    if int(y.sum()) < folds or int((1 - y).sum()) < folds:
        raise DataError(f"{int(y.sum())} positives among {len(y)} rows: too few for {folds}-fold stratified CV")
    results = {name: CVResult("repeated_cv", name) for name in _recipes(tuned_params)}
    splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    for i, (train_idx, test_idx) in enumerate(splitter.split(X, y)):
        fit_idx, stop_idx = train_test_split(
            train_idx, test_size=STOP_FRACTION, stratify=y[train_idx], random_state=seed + i
        )
        fold = _Fold(*(np.isin(np.arange(len(y)), idx) for idx in (fit_idx, stop_idx, test_idx)))
        scores = _evaluate_fold(X, y, fold, tuned_params, seed, _config(config))
        for name, (auc, pr, ll) in (scores or {}).items():
            results[name].folds.append(
                FoldScore(i % folds, i // folds, len(test_idx), int(y[test_idx].sum()), auc, pr, ll)
            )
    for r in results.values():
        logger.info("repeated %dx%d CV %s", repeats, folds, r.describe())
    return list(results.values())


def _recipes(tuned_params: dict[str, Any] | None) -> list[str]:
    return [TUNED, PLAIN] if tuned_params is not None else [PLAIN]


def period_starts(ts: pd.Series, period: Period) -> pd.Series:
    """The start (00:00 UTC) of the week (Monday), month or quarter each timestamp falls in."""
    naive = pd.to_datetime(ts, utc=True).dt.tz_convert(None)
    return naive.dt.to_period(_PANDAS_PERIOD[period]).dt.start_time.dt.tz_localize("UTC")


def _stop_mask(ts: pd.Series, train: np.ndarray) -> np.ndarray:
    """The most recent `STOP_FRACTION` of the training rows, snapped so rows sharing a timestamp stay together."""
    times = np.sort(ts[train].to_numpy())
    unique = np.unique(times)
    if unique.size < 2:
        return np.zeros(len(ts), dtype=bool)
    boundary = times[min(int(len(times) * (1 - STOP_FRACTION)), len(times) - 1)]
    cut = unique[int(np.clip(np.searchsorted(unique, boundary), 1, unique.size - 1))]
    return train & (ts >= cut).to_numpy()


def rolling_origin(
    frame: pd.DataFrame,
    features: list[str],
    label: str,
    timestamp: str,
    *,
    tuned_params: dict[str, Any] | None,
    folds: int = 5,
    period: Period = "month",
    horizon_days: int = 0,
    seed: int = 7,
    config: TuningConfig | None = None,
) -> list[CVResult]:
    """Each of the last `folds` periods as a test period, trained on every earlier row whose label window closed
    before it (the recipe's stop slice: the most recent quarter of those rows)."""
    ts = pd.to_datetime(frame[timestamp], utc=True)
    starts = period_starts(ts, period)
    periods = np.sort(starts.unique())
    if periods.size < folds + 2:
        raise DataError(
            f"the rows span {periods.size} {period}(s): too few for {folds} rolling-origin test periods "
            f"(validation: {{method: repeated_cv}}, a shorter `period`, or fewer `folds`)"
        )
    X, y = _matrices(frame, features, label)
    horizon = pd.Timedelta(timedelta(days=horizon_days))
    results = {name: CVResult("time_split", name, period=period) for name in _recipes(tuned_params)}
    for i, start in enumerate(periods[-folds:]):
        start = pd.Timestamp(start)
        train = ((ts + horizon <= start) & (ts < start)).to_numpy()  # purged: the label was known before the period
        if not train.any():
            raise DataError(f"no purged training history before the test period starting {start.date()}")
        stop = _stop_mask(ts, train)
        fold = _Fold(train & ~stop, stop, (starts == start).to_numpy())
        scores = _evaluate_fold(X, y, fold, tuned_params, seed, _config(config))
        if scores is None:
            logger.info("rolling origin: period %s skipped (a training part holds one class only)", start.date())
        for name, (auc, pr, ll) in (scores or {}).items():
            results[name].folds.append(
                FoldScore(i, 0, int(fold.test.sum()), int(y[fold.test].sum()), auc, pr, ll, str(start.date()))
            )
    for r in results.values():
        logger.info("rolling-origin by %s %s", period, r.describe())
    return list(results.values())
