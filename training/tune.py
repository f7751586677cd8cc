"""The Optuna study: seeded TPE over XGBoost `hist` parameters, median pruning, resumable on RDB storage.

Design choices, and why:
- Native `xgb.train` on a `QuantileDMatrix` built ONCE per study: the histogram cuts are computed once and every
  trial reuses them (the fastest way to run many trials on 2 cores). `max_bin` is therefore fixed, not tuned.
- Objective: validation log-loss at the early-stopping iteration (minimised); the booster stops after
  `early_stopping_rounds` rounds without improvement on the time-based validation split. Validation AUC at that
  iteration is kept as a trial attribute (the gate ranks by AUC on the test split, with a log-loss guard).
- Pruning through `optuna_integration.XGBoostPruningCallback`, reporting every `report_every` rounds: on RDB
  storage each report is a database write, and reporting every round costs more than the trees on small data.
- The first trial of a fresh study with a budget of 5 trials or more is XGBoost's own defaults (`DEFAULT_TRIAL`),
  so the study starts where a plain XGBoost is; the objective is named (`OBJECTIVE_NAME`) for optuna-dashboard
  (`optuna-dashboard sqlite:///.nextbest/optuna.db`).
- Small sets of independent rows (`TuningConfig.cv_folds`): each trial is scored by stratified k-fold CV over
  train + validation (`cv_rounds`, `xgb.cv`): a validation split of 71 loans with 6 bad ones chose parameters that
  did worse than XGBoost's defaults in cross-validation.
- Resumable: `load_if_exists=True` on the storage URI (SQLite by default, PostgreSQL in production). The TPE seed
  is offset by the number of trials already in the study so a resumed study does not replay its first random
  candidates; with several workers on one study pass each a different `seed` (TPE's constant liar is on).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nextbest.errors import ConfigError, DataError

if TYPE_CHECKING:
    import optuna
    import xgboost as xgb

logger = logging.getLogger(__name__)

OBJECTIVE_METRIC = "logloss"
#: The study's objective as optuna-dashboard and the trial runs name it (instead of "Objective 0").
OBJECTIVE_NAME = "validation log-loss"
OBSERVATION_KEY = f"validation-{OBJECTIVE_METRIC}"
BASE_PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "tree_method": "hist",
    # The last metric drives early stopping. Log-loss, not AUC: it is smooth and proper, so boosting stops when
    # probabilities stop improving; AUC plateaus early and noisily on rare positives and stopped after a few trees.
    "eval_metric": ["auc", OBJECTIVE_METRIC],
    "max_bin": 256,
}


@dataclass(frozen=True)
class TuningConfig:
    """Knobs of one tuning run; defaults suit the demo world (tens of thousands of rows, ~60 features)."""

    max_rounds: int = 400
    early_stopping_rounds: int = 30
    report_every: int = 5
    warmup_rounds: int = 20
    # Small sets of independent rows (a few hundred loans): every trial is scored by stratified k-fold CV over
    # train + validation (`cv_rounds`) instead of one validation split with a handful of positives. None: off.
    cv_folds: int | None = None
    # The first trial of a fresh study is XGBoost's defaults (`DEFAULT_TRIAL`), from this many trials on; smaller
    # budgets are all TPE's seeded random start-up candidates.
    defaults_from_trials: int = 5
    # One thread by default: on this shared 2-core machine a 2-thread `hist` fit ran 15-25x SLOWER than 1 thread
    # while other jobs were busy (OpenMP threads spin at every barrier); raise it on a dedicated box (None: all).
    nthread: int | None = 1

    def __post_init__(self) -> None:
        if self.max_rounds < 1 or self.early_stopping_rounds < 1 or self.report_every < 1:
            raise ConfigError("max_rounds, early_stopping_rounds and report_every must be >= 1")


@dataclass(frozen=True)
class TuningData:
    """Train and validation matrices shared by every trial of a study; with `cv` (`TuningConfig.cv_folds`), the
    rows of both as one matrix and the stratified folds every trial is scored on."""

    dtrain: xgb.DMatrix
    dvalid: xgb.DMatrix
    feature_names: list[str]
    cv: CVData | None = None


@dataclass(frozen=True)
class CVData:
    """Train + validation rows as one matrix, and seeded stratified folds over them (index arrays)."""

    dall: xgb.DMatrix
    folds: list[tuple[np.ndarray, np.ndarray]]


def make_cv_data(
    X: np.ndarray, y: np.ndarray, feature_names: Sequence[str], folds: int, seed: int, w: np.ndarray | None = None
) -> CVData:
    """Stratified `folds`-fold CV data over rows (seeded; each fold keeps the class shares)."""
    import xgboost as xgb
    from sklearn.model_selection import StratifiedKFold

    if int(y.sum()) < folds or int((1 - y).sum()) < folds:
        raise DataError(f"{int(y.sum())} positives among {len(y)} rows: too few for {folds}-fold tuning")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    dall = xgb.DMatrix(X, label=y, weight=w, feature_names=list(feature_names), nthread=1)
    return CVData(dall=dall, folds=[(tr, te) for tr, te in splitter.split(X, y)])


def cv_rounds(params: dict[str, Any], cv: CVData, config: TuningConfig) -> tuple[int, float, float]:
    """(rounds, mean held-out log-loss, mean held-out AUC) at the round where the folds' mean log-loss is best:
    `xgb.cv` with early stopping on the mean curve (one number of rounds for the whole set, not one per fold)."""
    import xgboost as xgb

    history = xgb.cv(
        params, cv.dall, num_boost_round=config.max_rounds, folds=cv.folds,
        early_stopping_rounds=config.early_stopping_rounds, verbose_eval=False,
    )  # fmt: skip
    best = len(history) - 1  # xgb.cv keeps the rounds up to the best one
    row = history.iloc[best]
    return best + 1, float(row[f"test-{OBJECTIVE_METRIC}-mean"]), float(row["test-auc-mean"])


def make_tuning_data(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    feature_names: Sequence[str],
    max_bin: int = BASE_PARAMS["max_bin"],
    nthread: int | None = 1,
    w_train: np.ndarray | None = None,
    w_valid: np.ndarray | None = None,
) -> TuningData:
    """Quantised training matrix (cuts computed once) and the validation matrix on the same cuts.

    `w_train` / `w_valid`: optional sample weights (e.g. IPS weights of the NBA set), so that early stopping and the
    study's objective judge the same weighted loss the trees are fitted to.
    """
    import xgboost as xgb

    if X_train.shape[1] != len(feature_names) or X_valid.shape[1] != len(feature_names):
        raise DataError("matrix widths do not match the feature names")
    if len(np.unique(y_train)) < 2:
        raise DataError("training labels hold one class only")
    names = list(feature_names)
    nthread = nthread or os.cpu_count() or 1
    for w, x, what in ((w_train, X_train, "w_train"), (w_valid, X_valid, "w_valid")):
        if w is not None and np.shape(w) != (len(x),):
            raise DataError(f"{what} has shape {np.shape(w)}; expected ({len(x)},)")
    dtrain = xgb.QuantileDMatrix(
        X_train, label=y_train, weight=w_train, feature_names=names, max_bin=max_bin, nthread=nthread
    )
    dvalid = xgb.QuantileDMatrix(
        X_valid, label=y_valid, weight=w_valid, feature_names=names, ref=dtrain, nthread=nthread
    )
    return TuningData(dtrain=dtrain, dvalid=dvalid, feature_names=names)


def suggest_params(trial: optuna.Trial) -> dict[str, Any]:
    """The search space: tree shape, regularisation, sampling and learning rate."""
    return {
        "eta": trial.suggest_float("eta", 0.02, 0.3, log=True),
        "max_depth": trial.suggest_int("max_depth", 2, 8),
        "min_child_weight": trial.suggest_float("min_child_weight", 0.5, 50.0, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
        "lambda": trial.suggest_float("lambda", 1e-3, 20.0, log=True),
        "alpha": trial.suggest_float("alpha", 1e-3, 5.0, log=True),
        "gamma": trial.suggest_float("gamma", 1e-4, 2.0, log=True),
    }


#: XGBoost's library defaults in the search space's terms (alpha and gamma at their lower bounds, ~0).
DEFAULT_TRIAL: dict[str, Any] = {
    "eta": 0.3, "max_depth": 6, "min_child_weight": 1.0, "subsample": 1.0, "colsample_bytree": 1.0,
    "lambda": 1.0, "alpha": 1e-3, "gamma": 1e-4,
}  # fmt: skip


def booster_params(tuned: dict[str, Any], seed: int, nthread: int | None = 1) -> dict[str, Any]:
    """Full XGBoost parameters: fixed base + tuned values + seed/threads (deterministic for a given seed)."""
    return {**BASE_PARAMS, **tuned, "seed": seed, "nthread": nthread or os.cpu_count() or 1, "verbosity": 0}


def fit_booster(
    params: dict[str, Any],
    data: TuningData,
    config: TuningConfig,
    callbacks: Sequence[xgb.callback.TrainingCallback] = (),
) -> xgb.Booster:
    """Train with early stopping on the validation split; the returned booster keeps only the best rounds."""
    import xgboost as xgb

    history: dict[str, dict[str, list[float]]] = {}
    booster = xgb.train(
        params,
        data.dtrain,
        num_boost_round=config.max_rounds,
        evals=[(data.dvalid, "validation")],
        early_stopping_rounds=config.early_stopping_rounds,
        callbacks=list(callbacks),
        evals_result=history,
        verbose_eval=False,
    )
    return keep_best_rounds(booster, history, data.feature_names)


def keep_best_rounds(
    booster: xgb.Booster, history: dict[str, dict[str, list[float]]], feature_names: list[str]
) -> xgb.Booster:
    """The early-stopped booster sliced to its best iteration (so inplace_predict and the logged model use exactly
    those trees), with the validation AUC at that iteration as attribute `best_auc`."""
    best = booster.best_iteration
    booster.set_attr(best_auc=str(history["validation"]["auc"][best]))
    if best + 1 < booster.num_boosted_rounds():
        sliced = booster[: best + 1]
        sliced.set_attr(
            best_iteration=str(best), best_score=booster.attr("best_score"), best_auc=booster.attr("best_auc")
        )
        sliced.feature_names = feature_names
        return sliced
    return booster


def _pruning_callback(trial: optuna.Trial, every: int) -> xgb.callback.TrainingCallback:
    from optuna_integration import XGBoostPruningCallback

    class ThrottledPruningCallback(XGBoostPruningCallback):
        """Optuna's XGBoost pruning callback, reporting every `every` rounds (each report is a storage write)."""

        def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
            if epoch % every:
                return False
            return super().after_iteration(model, epoch, evals_log)

    return ThrottledPruningCallback(trial, OBSERVATION_KEY)


def make_pruner(config: TuningConfig) -> optuna.pruners.BasePruner:
    """The study's pruner: median of the trials so far at the same round, after the warm-up rounds."""
    import optuna

    return optuna.pruners.MedianPruner(
        n_startup_trials=3, n_warmup_steps=config.warmup_rounds, interval_steps=config.report_every
    )


def create_study(
    study_name: str,
    storage: str | optuna.storages.BaseStorage | None,
    seed: int,
    config: TuningConfig = TuningConfig(),
    n_startup_trials: int = 5,
    trials: int = 0,
) -> optuna.Study:
    """Create or load (resume) a study; the sampler seed is offset by the trials it already holds. A fresh study
    with a budget of `trials` >= `config.defaults_from_trials` starts with XGBoost's defaults. `storage`: a URI
    or an Optuna storage object (the distributed path's `DaskStorage`)."""
    import optuna

    from nextbest.models.registry import database_uri

    storage = database_uri(storage) if isinstance(storage, str) else storage
    study = _create_or_load(
        study_name,
        storage,
        pruner=make_pruner(config),
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials),
    )
    with warnings.catch_warnings():  # "experimental" since Optuna 3.2, and what optuna-dashboard reads
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([OBJECTIVE_NAME])
    existing = len(study.get_trials(deepcopy=False))
    if existing:
        study.sampler = optuna.samplers.TPESampler(seed=seed + existing, n_startup_trials=n_startup_trials)
        logger.info("resuming study %s with %d existing trial(s)", study_name, existing)
    elif trials >= config.defaults_from_trials:
        # The first trial of a fresh study is XGBoost's defaults: the tuned recipe starts where a plain XGBoost is,
        # so the study can only find better on the validation objective, never settle on worse.
        study.enqueue_trial(DEFAULT_TRIAL)
    return study


def _create_or_load(
    study_name: str,
    storage: str | optuna.storages.BaseStorage | None,
    pruner: optuna.pruners.BasePruner,
    sampler: optuna.samplers.BaseSampler,
) -> optuna.Study:
    """`optuna.create_study(load_if_exists=True)`, retried when workers race to create the schema.

    Several workers starting at once on an EMPTY database all try to create Optuna's tables and enum types; the
    losers fail with a duplicate-object error. The schema exists once the winner commits, so a retry succeeds.
    """
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    # A storage object (the distributed path's DaskStorage) logs a duplicate-study error on its server before
    # create_study(load_if_exists=True) recovers from it: load an existing study instead.
    existing = set() if storage is None or isinstance(storage, str) else storage.get_all_studies()
    if study_name in {s.study_name for s in existing}:
        return optuna.load_study(study_name=study_name, storage=storage, pruner=pruner, sampler=sampler)
    for attempt in range(4):
        try:
            return optuna.create_study(
                study_name=study_name,
                storage=storage,
                direction="minimize",
                pruner=pruner,
                sampler=sampler,
                load_if_exists=True,
            )
        except SQLAlchemyError as exc:
            if attempt == 3:
                raise
            logger.info("study storage busy or being initialised (%s); retrying", type(exc).__name__)
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


TrialCallback = Callable[["optuna.Study", "optuna.trial.FrozenTrial"], None]


def run_study(
    data: TuningData,
    trials: int,
    *,
    study_name: str,
    storage: str | None,
    seed: int,
    timeout: float | None = None,
    config: TuningConfig = TuningConfig(),
    callbacks: Sequence[TrialCallback] = (),
) -> optuna.Study:
    """Run `trials` more trials (or until `timeout` seconds) on the study `study_name` in `storage`."""
    import optuna

    if trials < 1:
        raise ConfigError("trials must be >= 1")
    study = create_study(study_name, storage, seed, config, n_startup_trials=min(5, max(2, trials // 2)), trials=trials)

    def objective(trial: optuna.Trial) -> float:
        return trial_objective(trial, data, seed, config)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=trials, timeout=timeout, callbacks=list(callbacks), gc_after_trial=False)
    return check_study(study, study_name)


def trial_objective(trial: optuna.Trial, data: TuningData, seed: int, config: TuningConfig) -> float:
    """One trial: the suggested parameters' validation log-loss at the early-stopping round (or CV's mean)."""
    params = booster_params(suggest_params(trial), seed=seed, nthread=config.nthread)
    t0 = time.perf_counter()
    if data.cv is not None:
        rounds, loss, auc = cv_rounds(params, data.cv, config)
        trial.set_user_attr("best_iteration", rounds - 1)
        trial.set_user_attr("valid_auc", auc)
        trial.set_user_attr("fit_seconds", round(time.perf_counter() - t0, 3))
        return loss
    booster = fit_booster(params, data, config, callbacks=[_pruning_callback(trial, config.report_every)])
    trial.set_user_attr("best_iteration", int(booster.best_iteration))
    trial.set_user_attr("valid_auc", float(booster.attr("best_auc") or "nan"))
    trial.set_user_attr("fit_seconds", round(time.perf_counter() - t0, 3))
    return float(booster.best_score)


def check_study(study: optuna.Study, study_name: str) -> optuna.Study:
    """The study, once it holds a completed trial (DataError otherwise: all pruned or failed)."""
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise DataError(f"study {study_name} has no completed trial (all pruned or failed); raise --trials")
    logger.info("study %s: best validation %s %.4f", study_name, OBJECTIVE_METRIC, study.best_value)
    return study


def study_summary(study: optuna.Study) -> dict[str, Any]:
    """Counts and the best trial, for logging."""
    import optuna

    states = [t.state for t in study.get_trials(deepcopy=False)]
    return {
        "trials_total": len(states),
        "trials_complete": sum(s == optuna.trial.TrialState.COMPLETE for s in states),
        "trials_pruned": sum(s == optuna.trial.TrialState.PRUNED for s in states),
        "best_trial": study.best_trial.number,
        "best_value": study.best_value,
    }
