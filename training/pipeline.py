"""The training job end to end: training set -> time split -> Optuna study -> final model -> calibration ->
test metrics and plots -> MLflow model -> registry (`challenger`) -> promotion gate (`champion`).

`train_model(settings, "churn" | "nba", trials)` is what the CLI, the demo, experiments and serving tests call;
`fit_and_log(settings, training_set, trials)` does the same from an already built `TrainingSet` (synthetic frames in
tests, ablations in experiments). One MLflow parent run per call holds the study: every trial is a nested run
(params + metrics only, no artefacts, so it stays cheap), and the parent carries the final model, its test metrics,
plots, data lineage and the gate's decision.

The default study name is the model plus a fingerprint of the training data (features, time range, rows, world
seed, options): re-running on the same data resumes the same study and adds trials (its best can only improve),
while new data starts a fresh study whose trials are comparable with each other.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from nextbest.errors import ConfigError, DataError
from nextbest.models.artefact import LoadedModel, matrix_from_frame
from nextbest.models.calibration import CalibrationMethod, fit_calibrator
from nextbest.models.registry import mlflow_client
from nextbest.settings import Settings
from training.datasets import LABEL, SplitMethod, Splits, TrainingSet, build_training_set, split_training_frame
from training.metrics import binary_metrics
from training.registry import GateRule, PromotionDecision, promote_if_better, register_version
from training.tune import TuningConfig, booster_params, fit_booster, make_tuning_data, run_study, study_summary
from training.weighting import nba_weights

logger = logging.getLogger(__name__)

ModelName = Literal["churn", "nba"]
ProgressFn = Callable[[int, int], None]
MODELS: tuple[str, ...] = ("churn", "nba")


@dataclass(frozen=True)
class TrainResult:
    """What one training job produced; `version` is None when the model was not registered."""

    model: str
    run_id: str
    experiment_id: str
    experiment_name: str
    study_name: str
    model_uri: str
    best_params: dict[str, Any]
    metrics: dict[str, float]
    version: str | None = None
    promoted: bool = False
    decision: PromotionDecision | None = None
    trials_run: int = 0
    seconds: float = 0.0
    lineage: dict[str, Any] = field(default_factory=dict)
    trial_run_ids: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "promoted": self.promoted,
            "run_id": self.run_id,
            "study": self.study_name,
            "roc_auc": self.metrics.get("test_roc_auc"),
            "log_loss": self.metrics.get("test_log_loss"),
            "ece": self.metrics.get("test_ece"),
            "reason": self.decision.reason if self.decision else None,
        }


def train_model(
    settings: Settings,
    model: ModelName,
    trials: int | None = None,
    *,
    timeout: float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    horizon_days: int | None = None,
    seed: int | None = None,
    register: bool = True,
    promote: bool = True,
    exclude_features: list[str] | None = None,
    experiment_name: str | None = None,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    calibration: CalibrationMethod = "platt",
    rule: GateRule = GateRule(),
    config: TuningConfig = TuningConfig(),
    progress: ProgressFn | None = None,
    purge_days: int = 0,
) -> TrainResult:
    """Build the model's training set through Feast, then tune, log, register and gate it (`fit_and_log`)."""
    if model not in MODELS:
        raise ConfigError(f"unknown model {model!r}: expected one of {', '.join(MODELS)}")
    training_set = build_training_set(settings, model, horizon_days=horizon_days)
    if exclude_features:
        training_set = training_set.without_features(exclude_features)
    return fit_and_log(
        settings,
        training_set,
        trials,
        timeout=timeout,
        storage=storage,
        study_name=study_name,
        seed=seed,
        register=register,
        promote=promote,
        experiment_name=experiment_name,
        run_name=run_name,
        tags=tags,
        calibration=calibration,
        rule=rule,
        config=config,
        progress=progress,
        purge_days=purge_days,
    )


def fit_and_log(
    settings: Settings,
    training_set: TrainingSet,
    trials: int | None = None,
    *,
    timeout: float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    seed: int | None = None,
    register: bool = True,
    promote: bool = True,
    experiment_name: str | None = None,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    calibration: CalibrationMethod = "platt",
    rule: GateRule = GateRule(),
    config: TuningConfig = TuningConfig(),
    registered_name: str | None = None,
    valid_fraction: float = 0.2,
    test_fraction: float = 0.2,
    progress: ProgressFn | None = None,
    holdout: pd.DataFrame | None = None,
    purge_days: int = 0,
    split: SplitMethod = "time",
) -> TrainResult:
    """Tune, fit, calibrate, evaluate and log a model on `training_set`; register and gate it if asked.

    `registered_name` defaults to the training set's model ("churn" / "nba"); tests pass their own to keep
    registries apart. With `register=False` nothing touches the registry (experiments, ablations).
    `progress(done, total)` is called after each trial (the CLI draws a progress bar with it). `holdout` is the
    frame the gate scores challenger and champion on (default: this run's test split, the most recent data);
    pass one when the training set itself may be suspect, e.g. to show a corrupted challenger is rejected.
    `purge_days` drops rows within that many days before each split boundary. For churn, label windows of the
    last training snapshots reach into the validation period (a customer closing in March is positive at February
    and March snapshots), which inflates validation AUC; a purge of the horizon removes that, at the cost of data
    the default 120-day world cannot spare (measured there: validation AUC 0.77 vs test 0.64 without purge).
    `split="stratified"` replaces the time split by a seeded stratified one (`datasets.stratified_split`), for
    small sets of independent outcome-labelled entities whose time split leaves too few positives to validate on.
    """
    import mlflow

    from training import tracking

    started = time.perf_counter()
    trials = trials or settings.training.trials
    seed = settings.training.seed if seed is None else seed
    name = registered_name or training_set.model
    features = training_set.feature_names
    splits = split_training_frame(
        training_set.frame,
        training_set.timestamp,
        valid_fraction,
        test_fraction,
        method=split,
        seed=seed,
        gap=timedelta(days=purge_days),
    )
    X_tr, X_va, X_te = (matrix_from_frame(part, features) for part in (splits.train, splits.valid, splits.test))
    y_tr, y_va, y_te = (part[LABEL].to_numpy(dtype=np.float32) for part in (splits.train, splits.valid, splits.test))
    # NBA: clipped inverse-propensity weights undo the logging policy's choices (training/weighting.py).
    clip = settings.training.nba_ips_clip if training_set.model == "nba" else 1.0
    w_tr, w_va = nba_weights(splits.train, clip), nba_weights(splits.valid, clip)
    data = make_tuning_data(X_tr, y_tr, X_va, y_va, features, nthread=config.nthread, w_train=w_tr, w_valid=w_va)

    study_name = study_name or f"{name}-{_fingerprint(training_set, splits, seed, config)}"
    storage_uri = storage or settings.optuna_storage
    exp_name = experiment_name or tracking.experiment_name(settings, training_set.model)
    experiment_id = tracking.ensure_experiment(settings, exp_name)
    client = mlflow_client(settings)
    run_tags = {
        "nextbest.kind": "study",
        "nextbest.model": training_set.model,
        "optuna.study_name": study_name,
        "feature_service": str(training_set.lineage.get("feature_service", "")),
        **{f"who.{k}": v for k, v in tracking.who().items()},
        **(tags or {}),
    }
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=run_name or study_name,
        tags=run_tags,
        nested=mlflow.active_run() is not None,
    ) as run:
        parent_id = run.info.run_id
        mlflow.log_params(
            {
                "model": training_set.model,
                "registered_name": name,
                "trials_requested": trials,
                "timeout_s": timeout,
                "seed": seed,
                "study_name": study_name,
                "optuna_storage": _redact(storage_uri),
                "calibration": calibration,
                "ips_clip": clip if w_tr is not None else None,
                "n_features": len(features),
                "max_rounds": config.max_rounds,
                "early_stopping_rounds": config.early_stopping_rounds,
                "purge_days": purge_days,
                "split": split,
                "gate_min_auc_gain": rule.min_auc_gain,
                "gate_max_logloss_increase": rule.max_logloss_increase,
                **{f"data.{k}": v for k, v in _flat_lineage(training_set.lineage).items()},
                **{f"split.{k}.{m}": v for k, r in splits.ranges().items() for m, v in r.items()},
            }
        )
        callback = _TrialLogger(client, experiment_id, parent_id, trials, progress)
        study = run_study(
            data, trials, study_name=study_name, storage=storage_uri, seed=seed, timeout=timeout, config=config,
            callbacks=[callback],
        )  # fmt: skip
        best_params = dict(study.best_params)
        mlflow.log_params({f"best.{k}": v for k, v in best_params.items()})
        summary = study_summary(study)
        mlflow.log_metrics({f"study_{k}": float(v) for k, v in summary.items()})

        # Refit the best parameters: deterministic for a fixed seed, and the best trial may come from another
        # worker process or an earlier session of a resumed study, so its booster is not in this process.
        booster = fit_booster(booster_params(best_params, seed, config.nthread), data, config)
        calibrator = fit_calibrator(
            y_va, booster.inplace_predict(X_va, predict_type="margin"), calibration, sample_weight=w_va
        )
        fitted = LoadedModel(name, None, parent_id, booster, calibrator, list(features))
        p_te, raw_te, p_va = fitted.predict_proba(X_te), fitted.predict_raw(X_te), fitted.predict_proba(X_va)
        metrics = {f"test_{k}": v for k, v in binary_metrics(y_te, p_te).items()}
        metrics.update({f"valid_{k}": v for k, v in binary_metrics(y_va, p_va).items()})
        raw = binary_metrics(y_te, raw_te)
        metrics.update(test_raw_ece=raw["ece"], test_raw_log_loss=raw["log_loss"])
        metrics["best_iteration"] = float(booster.best_iteration)
        if training_set.model == "nba":
            metrics.update(_policy_value(fitted, splits.test))
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)})

        with tempfile.TemporaryDirectory(prefix="nextbest-run-") as tmp:
            out = Path(tmp)
            _write_plots(out / "plots", y_te, p_te, raw_te, booster, study)
            mlflow.log_artifacts(str(out / "plots"), artifact_path="plots")
            (out / "lineage.json").write_text(
                json.dumps({**training_set.lineage, "splits": splits.ranges()}, default=str, indent=1)
            )
            (out / "features.json").write_text(json.dumps(features, indent=1))
            mlflow.log_artifact(str(out / "lineage.json"))
            mlflow.log_artifact(str(out / "features.json"))
        info = {
            "model": training_set.model,
            "registered_name": name,
            "feature_service": training_set.lineage.get("feature_service"),
            "study_name": study_name,
            "best_params": best_params,
            "calibration": calibrator.method,
            "seed": seed,
            "test_metrics": {k: metrics[k] for k in ("test_roc_auc", "test_log_loss", "test_ece")},
            "lineage": training_set.lineage,
        }
        example = splits.test[features].head(5)
        model_uri = tracking.log_model(booster, calibrator, list(features), example, info)

    version, decision = None, None
    if register:
        version = register_version(
            settings,
            name,
            model_uri,
            run_id=parent_id,
            tags={"study_name": study_name, "feature_service": str(info["feature_service"] or "")},
            description=f"{training_set.model} model from study {study_name}",
        )
        if promote:
            gate_holdout = splits.test if holdout is None else holdout
            decision = promote_if_better(settings, name, version, gate_holdout, rule=rule, run_id=parent_id)
            client.set_tag(parent_id, "promotion.decision", "promoted" if decision.promoted else "rejected")
            client.set_tag(parent_id, "promotion.reason", decision.reason[:4900])
            client.log_metric(parent_id, "promoted", float(decision.promoted))
        client.set_tag(parent_id, "registered_version", version)
    seconds = time.perf_counter() - started
    client.log_metric(parent_id, "job_seconds", seconds)
    result = TrainResult(
        model=training_set.model,
        run_id=parent_id,
        experiment_id=experiment_id,
        experiment_name=exp_name,
        study_name=study_name,
        model_uri=model_uri,
        best_params=best_params,
        metrics={k: float(v) for k, v in metrics.items()},
        version=version,
        promoted=bool(decision and decision.promoted),
        decision=decision,
        trials_run=callback.count,
        trial_run_ids=list(callback.run_ids),
        seconds=seconds,
        lineage=training_set.lineage,
    )
    logger.info(
        "trained %s in %.0f s: test ROC-AUC %.4f, log-loss %.4f, ECE %.4f; version %s%s",
        name,
        seconds,
        metrics.get("test_roc_auc", float("nan")),
        metrics.get("test_log_loss", float("nan")),
        metrics.get("test_ece", float("nan")),
        version or "not registered",
        " (champion)" if result.promoted else "",
    )
    return result


class _TrialLogger:
    """Optuna callback: one nested MLflow run per finished trial, plus the trial value as a parent-run series."""

    def __init__(
        self, client: Any, experiment_id: str, parent_run_id: str, total: int, progress: ProgressFn | None
    ) -> None:
        self.client, self.experiment_id, self.parent_run_id = client, experiment_id, parent_run_id
        self.total, self.progress = total, progress
        self.count = 0
        self.run_ids: list[str] = []

    def __call__(self, study: Any, trial: Any) -> None:
        import optuna

        self.count += 1
        state = trial.state.name
        metrics: dict[str, float] = {}
        if trial.state == optuna.trial.TrialState.COMPLETE:
            metrics["valid_log_loss"] = float(trial.value)
            for key in ("valid_auc", "best_iteration", "fit_seconds"):
                if key in trial.user_attrs:
                    metrics[key] = float(trial.user_attrs[key])
        elif trial.intermediate_values:
            last = max(trial.intermediate_values)
            metrics["valid_log_loss_at_prune"] = float(trial.intermediate_values[last])
            metrics["pruned_at_round"] = float(last)
        if trial.duration is not None:
            metrics["trial_seconds"] = trial.duration.total_seconds()
        from training.tracking import log_trial_run

        run_id = log_trial_run(
            self.client, self.experiment_id, self.parent_run_id, trial.number, trial.params, metrics, state
        )
        self.run_ids.append(run_id)
        if "valid_log_loss" in metrics:
            self.client.log_metric(
                self.parent_run_id, "trial_valid_log_loss", metrics["valid_log_loss"], step=trial.number
            )
        if self.progress is not None:
            self.progress(self.count, self.total)


def _policy_value(model: LoadedModel, test: pd.DataFrame) -> dict[str, float]:
    from nextbest.catalogue import load_catalogue
    from training.policy_value import REQUIRED_COLUMNS, greedy_policy_value

    if any(c not in test.columns for c in REQUIRED_COLUMNS):
        logger.info("no policy value: test frame lacks logged-decision columns")
        return {}
    try:
        return greedy_policy_value(model, test, load_catalogue())
    except DataError as exc:
        logger.warning("no policy value: %s", exc)
        return {}


def _write_plots(folder: Path, y: np.ndarray, p: np.ndarray, raw: np.ndarray, booster: Any, study: Any) -> list[Path]:
    from training import plots

    folder.mkdir(parents=True, exist_ok=True)
    written = [
        plots.roc_plot(y, p, folder / "roc.png", "ROC (test split)"),
        plots.pr_plot(y, p, folder / "pr.png", "Precision-recall (test split)"),
        plots.calibration_plot(y, {"booster (raw)": raw, "calibrated": p}, folder / "calibration.png"),
        plots.lift_plot(y, p, folder / "lift.png", "Cumulative lift (test split)"),
        plots.importance_plot(booster, folder / "feature_importance.png"),
        plots.optuna_history_plot(study, folder / "optuna_history.png"),
    ]
    importance = plots.optuna_importance_plot(study, folder / "optuna_param_importance.png")
    if importance is not None:
        written.append(importance)
    return written


def _fingerprint(training_set: TrainingSet, splits: Splits, seed: int, config: TuningConfig) -> str:
    """Short hash of everything that makes trial values comparable: same hash -> resume the same study."""
    payload = {
        "model": training_set.model,
        "features": training_set.feature_names,
        "splits": splits.ranges(),
        "lineage": {k: training_set.lineage.get(k) for k in ("feature_service", "world_seed", "horizon_days")},
        "seed": seed,
        "config": [config.max_rounds, config.early_stopping_rounds],
    }
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _flat_lineage(lineage: dict[str, Any]) -> dict[str, Any]:
    """Scalar lineage entries as run params (lists go to lineage.json only: params are capped at 6000 chars)."""
    return {k: v for k, v in lineage.items() if isinstance(v, str | int | float | bool) or v is None}


def _redact(uri: str) -> str:
    """Storage URI without its password, fit for a run param."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(uri).render_as_string(hide_password=True)
    except Exception:  # not a SQLAlchemy URL (e.g. a journal file): nothing to hide
        return uri
