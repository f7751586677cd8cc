"""The training job end to end: training set -> time split -> Optuna study -> early-stopped best trial -> refit on
train + validation -> calibration -> holdout metrics with a bootstrap interval, beside a plain XGBoost -> MLflow
model -> registry (`challenger`) -> promotion gate (`champion`).

`train_model(settings, model, trials)` trains one of the simulated bank's models (by its name in the project file) and
is what the CLI, the demo, experiments and serving tests call;
`fit_and_log(settings, training_set, FitOptions(...))` does the same from an already built `TrainingSet` (synthetic
frames in tests, ablations in experiments, retraining and onboarded projects). `FitOptions` holds the job's knobs
(budget, seed, split, calibration, study/experiment names, registration and gate); `fit_and_log` runs the steps
below it in order: prepare the splits and tuning data, resolve the names, log the params, run the study, fit the
recipe (`training.recipe`: early-stop the best trial on the validation split, refit it on every row before the test
split for that many rounds, calibrate with the early-stopped booster's validation margins), evaluate the registered
model on the test split, log artefacts and the model, register and gate.

The figures a run reports as `test_*` are the REGISTERED model's own, on rows no step of the job saw (the test
split): the refit booster with its calibrator, as serving loads it. `test_roc_auc_ci_low/high` is a 95% bootstrap
interval, `baseline_test_*` a plain XGBoost (defaults, 100 rounds) fitted on the same rows, and `stopped_test_*`
the early-stopped booster fitted on the training split alone (what the refit adds).

One MLflow parent run per call holds the study: every trial is a nested run (params + metrics only, no artefacts,
so it stays cheap), and the parent carries the final model, its test metrics, plots, data lineage and the gate's
decision. Its name is readable and unique: model, data fingerprint, UTC time (`churn-3f2a9c1b-20260501-120003`).

The default study name is the model plus a fingerprint of the training data (features, time range, rows, world
seed, options): re-running on the same data resumes the same study and adds trials (its best can only improve),
while new data starts a fresh study whose trials are comparable with each other. When the data (fingerprint of
every row) and the fitted recipe (best parameters and options) are exactly the champion's, nothing is registered:
the run says so (`registry.skipped`) and the registry keeps one version per distinct model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nextbest import distributed
from nextbest.errors import DataError
from nextbest.models.artefact import LoadedModel, matrix_from_frame
from nextbest.models.calibration import CalibrationMethod
from nextbest.models.registry import mlflow_client
from nextbest.project import project_of
from nextbest.settings import Settings
from training.datasets import (
    LABEL,
    OFFER_ACCEPTED,
    SplitMethod,
    Splits,
    TrainingSet,
    build_training_set,
    split_training_frame,
)
from training.metrics import auc_standard_error, binary_metrics, bootstrap_auc_interval
from training.recipe import RecipeFit, Rows, fit_recipe, fit_recipe_cv, plain_baseline
from training.registry import (
    GateRule,
    PromotionDecision,
    gate_rule,
    promote_if_better,
    register_version,
    unchanged_since,
)
from training.tune import (
    TuningConfig,
    TuningData,
    booster_params,
    fit_booster,
    make_cv_data,
    make_tuning_data,
    run_study,
    study_summary,
)
from training.weighting import nba_weights

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class TrainResult:
    """What one training job produced; `version` is None when the model was not registered (`unchanged` says why
    when it matched the champion)."""

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
    data_fingerprint: str = ""
    unchanged: str | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "promoted": self.promoted,
            "run_id": self.run_id,
            "study": self.study_name,
            "roc_auc": self.metrics.get("test_roc_auc"),
            "roc_auc_ci": (self.metrics.get("test_roc_auc_ci_low"), self.metrics.get("test_roc_auc_ci_high")),
            "baseline_roc_auc": self.metrics.get("baseline_test_roc_auc"),
            "log_loss": self.metrics.get("test_log_loss"),
            "ece": self.metrics.get("test_ece"),
            "reason": self.decision.reason if self.decision else self.unchanged,
        }


@dataclass(frozen=True)
class FitOptions:
    """How one training job runs, everything but the data: study budget and seed, tuning and calibration, the
    split, where the study and the MLflow run go, and whether (under which name, by which gate) it is registered.

    `None` means "from the settings" (`trials`, `seed`, `storage`) or "derived" (`study_name`: the model plus a
    data fingerprint; `experiment_name`: `<prefix>-<model>`; `registered_name`: the training set's model;
    `run_name`: model, data fingerprint and UTC time).
    """

    trials: int | None = None
    timeout: float | None = None
    seed: int | None = None
    config: TuningConfig = TuningConfig()
    calibration: CalibrationMethod = "platt"
    split: SplitMethod = "time"
    valid_fraction: float = 0.2
    test_fraction: float = 0.2
    purge_days: int = 0
    storage: str | None = None
    study_name: str | None = None
    experiment_name: str | None = None
    run_name: str | None = None
    tags: dict[str, str] | None = None
    registered_name: str | None = None
    register: bool = True
    promote: bool = True
    rule: GateRule = GateRule()


def champion_even_below_floor(settings: Settings, result: TrainResult, by: str) -> TrainResult:
    """Promote a first version the gate registered but left as challenger because it fell below the gate's floor
    (a small world has a few dozen positives), by hand, with the gate's verdict in the audited reason (as the
    closed loop does): what test fixtures and benchmarks call when they need a champion to serve. `by` names the
    caller in the reason. Only a first version (no champion yet) is promoted: one the gate found worse than a
    champion stays a challenger."""
    from training.registry import promote

    decision = result.decision
    if result.version is not None and not result.promoted and decision is not None and not decision.champion_version:
        promote(settings, result.model, result.version, reason=f"{by}, by hand ({decision.reason})")
    return result


def train_model(
    settings: Settings,
    model: str,
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
    rule: GateRule | None = None,
    config: TuningConfig = TuningConfig(),
    progress: ProgressFn | None = None,
    purge_days: int = 0,
) -> TrainResult:
    """Build the model's training set through Feast, then tune, log, register and gate it (`fit_and_log`).

    `rule`: the gate (default: the project file's `models[].gate` of this model, as retraining applies it).
    ConfigError for a name the project does not declare (the error lists its models)."""
    training_set = build_training_set(settings, model, horizon_days=horizon_days)
    if rule is None:
        rule = gate_rule(project_of(settings).model(model).gate)
    if exclude_features:
        training_set = training_set.without_features(exclude_features)
    options = FitOptions(
        trials=trials,
        timeout=timeout,
        seed=seed,
        config=config,
        calibration=calibration,
        purge_days=purge_days,
        storage=storage,
        study_name=study_name,
        experiment_name=experiment_name,
        run_name=run_name,
        tags=tags,
        register=register,
        promote=promote,
        rule=rule,
    )
    return fit_and_log(settings, training_set, options, progress=progress)


def fit_and_log(
    settings: Settings,
    training_set: TrainingSet,
    options: FitOptions = FitOptions(),
    *,
    progress: ProgressFn | None = None,
    holdout: pd.DataFrame | None = None,
) -> TrainResult:
    """Tune, fit, calibrate, evaluate and log a model on `training_set`; register and gate it if asked.

    Steps: split and build the tuning data (`_prepare`), resolve the names (`_resolve_job`); in one MLflow run log
    the params, run the study (`_tune`), fit the recipe with the best trial (`_fit_final_model`: early stopping on
    the validation split, refit on train + validation, calibration), score the registered model and the plain
    baseline on the test split (`_evaluate_on_test`), log plots, lineage and the model; then `_register_and_gate`.

    `options.registered_name` defaults to the training set's model ("churn" / "nba"); tests pass their own to keep
    registries apart. With `options.register=False` nothing touches the registry (experiments, ablations).
    `progress(done, total)` is called after each trial (the CLI draws a progress bar with it). `holdout` is the
    frame the gate scores challenger, champion and baseline on (default: this run's test split, the most recent
    data); pass one when the training set itself may be suspect, e.g. to show a corrupted challenger is rejected.
    `options.purge_days` drops rows within that many days before each split boundary. A churn set (rows carrying
    `label_known_at`) is split by `datasets.label_known_split` whatever the purge: train and validation only from
    labels known when the test split starts, validation by customer; a plain time split let the refit learn the
    test split's closures (a customer closing in March is positive at February and March snapshots; the default
    world's test AUC was 0.859 against a Bayes-optimal 0.767, docs/evaluation.md); an onboarded `event_within` set
    carries it when its label windows reach a later snapshot (`nextbest.onboarding.datasets.label_known_at`),
    grouped by its `lineage["entity_key"]`. `options.split="stratified"` replaces the time split by a seeded
    stratified one (`datasets.stratified_split`), for small sets of independent outcome-labelled entities whose
    time split leaves too few positives to validate on.
    """
    import mlflow

    started = time.perf_counter()
    seed = settings.training.seed if options.seed is None else options.seed
    data = _prepare(settings, training_set, options, seed)
    job = _resolve_job(settings, training_set, options, data.splits, seed)
    client = mlflow_client(settings)
    # compute: dask -> the trials on the cluster's workers, the recipe by xgboost.dask (training/dask_train.py)
    with distributed.client(settings) as dask, _start_study_run(job, training_set) as run:
        parent_id = run.info.run_id
        _log_job_params(job, training_set, data)
        study, trial_log = _tune(client, job, data, parent_id, progress, dask)
        best_params = dict(study.best_params)
        final = _fit_final_model(job, data, best_params, dask)
        fitted = LoadedModel(job.name, None, parent_id, final.booster, final.calibrator, list(data.features))
        baseline = plain_baseline(data.train.plus(data.valid), job.seed, job.options.config.nthread)
        metrics, p_test, raw_test = _evaluate_on_test(fitted, final, baseline, data, training_set.kind)
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)})
        _log_artefacts(training_set, data, p_test, raw_test, final.booster, study)
        model_uri = _log_model(job, training_set, data, fitted, best_params, metrics)
    gate = _GateInputs(data.splits.test if holdout is None else holdout, baseline, _recipe_digest(job, best_params))
    version, decision, unchanged = _register_and_gate(settings, client, job, training_set, model_uri, parent_id, gate)
    seconds = time.perf_counter() - started
    client.log_metric(parent_id, "job_seconds", seconds)
    result = TrainResult(
        model=training_set.model,
        run_id=parent_id,
        experiment_id=job.experiment_id,
        experiment_name=job.experiment_name,
        study_name=job.study_name,
        model_uri=model_uri,
        best_params=best_params,
        metrics={k: float(v) for k, v in metrics.items()},
        version=version,
        promoted=bool(decision and decision.promoted),
        decision=decision,
        trials_run=trial_log.count,
        trial_run_ids=list(trial_log.run_ids),
        seconds=seconds,
        lineage=training_set.lineage,
        data_fingerprint=job.data_fingerprint,
        unchanged=unchanged,
    )
    _log_outcome(result, job.name)
    return result


@dataclass(frozen=True)
class _Job:
    """`FitOptions` resolved against the settings and the data: the concrete values every step reads."""

    options: FitOptions
    name: str  # the registered model name
    trials: int
    seed: int
    study_name: str
    storage: str
    experiment_name: str
    experiment_id: str
    data_fingerprint: str


@dataclass(frozen=True)
class _Prepared:
    """The split training set as model inputs: the parts' rows (matrix, labels, weights) and the tuning data."""

    splits: Splits
    features: list[str]
    tuning: TuningData
    train: Rows
    valid: Rows
    test: Rows
    ips_clip: float | None  # the NBA weights' clip, None when the rows are unweighted

    # The names the evaluation steps read (kept for their readers).
    @property
    def X_valid(self) -> np.ndarray:
        return self.valid.X

    @property
    def X_test(self) -> np.ndarray:
        return self.test.X

    @property
    def y_valid(self) -> np.ndarray:
        return self.valid.y

    @property
    def y_test(self) -> np.ndarray:
        return self.test.y

    @property
    def w_valid(self) -> np.ndarray | None:
        return self.valid.w


def _prepare(settings: Settings, training_set: TrainingSet, options: FitOptions, seed: int) -> _Prepared:
    """Step 1: split the training set and turn the parts into matrices, labels, weights and tuning data."""
    features = training_set.feature_names
    splits = split_training_frame(
        training_set.frame,
        training_set.timestamp,
        options.valid_fraction,
        options.test_fraction,
        method=options.split,
        seed=seed,
        gap=timedelta(days=options.purge_days),
        entity=training_set.lineage.get("entity_key"),  # an onboarded set's key; the simulated bank's customer_id
    )
    X_tr, X_va, X_te = (matrix_from_frame(part, features) for part in (splits.train, splits.valid, splits.test))
    y_tr, y_va, y_te = (part[LABEL].to_numpy(dtype=np.float32) for part in (splits.train, splits.valid, splits.test))
    # NBA: clipped inverse-propensity weights undo the logging policy's choices (training/weighting.py).
    clip = settings.training.nba_ips_clip if training_set.kind == OFFER_ACCEPTED else 1.0
    w_tr, w_va = nba_weights(splits.train, clip), nba_weights(splits.valid, clip)
    nthread = options.config.nthread
    tuning = make_tuning_data(X_tr, y_tr, X_va, y_va, features, nthread=nthread, w_train=w_tr, w_valid=w_va)
    if options.config.cv_folds:  # small sets: every trial scored by stratified CV over train + validation
        rows = Rows(X_tr, y_tr, w_tr).plus(Rows(X_va, y_va, w_va))
        cv = make_cv_data(rows.X, rows.y, features, options.config.cv_folds, seed, rows.w)
        tuning = replace(tuning, cv=cv)
    return _Prepared(
        splits, features, tuning, Rows(X_tr, y_tr, w_tr), Rows(X_va, y_va, w_va), Rows(X_te, y_te),
        ips_clip=clip if w_tr is not None else None,
    )  # fmt: skip


def _resolve_job(settings: Settings, training_set: TrainingSet, options: FitOptions, splits: Splits, seed: int) -> _Job:
    """Step 2: the job's names (registered model, study, storage, experiment), creating the experiment if new."""
    from training import tracking

    name = options.registered_name or training_set.model
    study_name = options.study_name or f"{name}-{_fingerprint(training_set, splits, seed, options.config)}"
    experiment_name = options.experiment_name or tracking.experiment_name(settings, training_set.model)
    return _Job(
        options=options,
        name=name,
        trials=options.trials or settings.training.trials,
        seed=seed,
        study_name=study_name,
        storage=options.storage or settings.optuna_storage,
        experiment_name=experiment_name,
        experiment_id=tracking.ensure_experiment(settings, experiment_name),
        data_fingerprint=data_fingerprint(training_set),
    )


def _start_study_run(job: _Job, training_set: TrainingSet) -> Any:
    """The MLflow parent run of the job (nested when a run is already active), tagged with what it trains."""
    import mlflow

    from training import tracking

    tags = {
        "nextbest.kind": "study",
        "nextbest.model": training_set.model,
        "optuna.study_name": job.study_name,
        "feature_service": str(training_set.lineage.get("feature_service", "")),
        **{f"who.{k}": v for k, v in tracking.who().items()},
        **(job.options.tags or {}),
    }
    tags["nextbest.data_fingerprint"] = job.data_fingerprint
    return mlflow.start_run(
        experiment_id=job.experiment_id,
        run_name=job.options.run_name or run_name(job.name, job.data_fingerprint),
        tags=tags,
        nested=mlflow.active_run() is not None,
    )


def run_name(model: str, fingerprint: str, at: datetime | None = None) -> str:
    """A parent run's readable, unique name: model, short data fingerprint, UTC time to the second."""
    return f"{model}-{fingerprint[:8]}-{(at or datetime.now(UTC)):%Y%m%d-%H%M%S}"


def _log_job_params(job: _Job, training_set: TrainingSet, data: _Prepared) -> None:
    """Step 3: the job's options, the data lineage and the split ranges as params of the parent run."""
    import mlflow

    options = job.options
    mlflow.log_params(
        {
            "model": training_set.model,
            "registered_name": job.name,
            "trials_requested": job.trials,
            "timeout_s": options.timeout,
            "seed": job.seed,
            "study_name": job.study_name,
            "optuna_storage": _redact(job.storage),
            "calibration": options.calibration,
            "ips_clip": data.ips_clip,
            "n_features": len(data.features),
            "max_rounds": options.config.max_rounds,
            "early_stopping_rounds": options.config.early_stopping_rounds,
            "purge_days": options.purge_days,
            "split": options.split,
            "gate_min_auc_gain": options.rule.min_auc_gain,
            "gate_max_logloss_increase": options.rule.max_logloss_increase,
            "gate_floor_z": options.rule.floor_z,
            "gate_baseline_tolerance": options.rule.baseline_tolerance,
            "data_fingerprint": job.data_fingerprint,
            **{f"data.{k}": v for k, v in _flat_lineage(training_set.lineage).items()},
            **{f"split.{k}.{m}": v for k, r in data.splits.ranges().items() for m, v in r.items()},
        }
    )


def _tune(
    client: Any, job: _Job, data: _Prepared, parent_id: str, progress: ProgressFn | None, dask: Any = None
) -> tuple[Any, _TrialLogger]:
    """Step 4: run (or resume) the Optuna study, one nested run per trial; log its best params and summary.
    `dask`: a Dask client whose workers run the trials on the same study (`training.dask_train`)."""
    import mlflow

    trial_log = _TrialLogger(client, job.experiment_id, parent_id, job.trials, progress)
    mlflow.log_param("compute", "dask" if dask is not None else "local")
    if dask is not None:
        from training.dask_train import run_study_dask

        study = run_study_dask(
            dask, data.train, data.valid, data.features, job.trials, study_name=job.study_name, storage=job.storage,
            seed=job.seed, timeout=job.options.timeout, config=job.options.config, callbacks=[trial_log],
        )  # fmt: skip
    else:
        study = run_study(
            data.tuning, job.trials, study_name=job.study_name, storage=job.storage, seed=job.seed,
            timeout=job.options.timeout, config=job.options.config, callbacks=[trial_log],
        )  # fmt: skip
    mlflow.log_params({f"best.{k}": v for k, v in study.best_params.items()})
    summary = study_summary(study)
    mlflow.log_metrics({f"study_{k}": float(v) for k, v in summary.items()})
    return study, trial_log


def _fit_final_model(job: _Job, data: _Prepared, best_params: dict[str, Any], dask: Any = None) -> RecipeFit:
    """Step 5: the recipe (`training.recipe.fit_recipe`) with the best parameters: early stopping on the validation
    split (refit here: deterministic for a fixed seed, and the best trial may come from another worker process or
    an earlier session of a resumed study, so its booster is not in this process), then the model refitted on
    train + validation for the best iteration's rounds, calibrated with the early-stopped booster's validation
    margins. `dask`: both boosters fitted by `xgboost.dask` on the cluster (the CV recipe of small sets stays
    here)."""
    config = job.options.config
    params = booster_params(best_params, job.seed, config.nthread)
    if dask is not None and data.tuning.cv is None:
        from training.dask_train import fit_recipe_dask

        return fit_recipe_dask(
            dask, params, data.train, data.valid, config, calibration=job.options.calibration,
            feature_names=data.features,
        )  # fmt: skip
    if data.tuning.cv is not None:
        return fit_recipe_cv(
            params, data.train.plus(data.valid), config, seed=job.seed, calibration=job.options.calibration,
            feature_names=data.features, cv=data.tuning.cv,
        )  # fmt: skip
    stopped = fit_booster(params, data.tuning, config)
    return fit_recipe(
        params, data.train, data.valid, config, calibration=job.options.calibration, feature_names=data.features,
        stopped=stopped,
    )  # fmt: skip


def _evaluate_on_test(
    fitted: LoadedModel, final: RecipeFit, baseline: Any, data: _Prepared, kind: str
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Step 6: the registered model's test metrics with a bootstrap interval and the DeLong SE of its AUC; the
    plain baseline (`baseline_test_*`) and the early-stopped train-only booster (`stopped_test_*`) on the same
    rows; validation metrics of the early-stopped booster (the rows the refit has seen, so not the refit's); the
    raw booster's calibration; for NBA the greedy policy's value. Returns the metrics and the test predictions
    (calibrated, raw) of the registered model."""
    y_te = data.y_test
    p_te, raw_te = fitted.predict_proba(data.X_test), fitted.predict_raw(data.X_test)
    metrics = {f"test_{k}": v for k, v in binary_metrics(y_te, p_te).items()}
    metrics["test_roc_auc_se"] = auc_standard_error(y_te, p_te)[1]
    metrics["test_roc_auc_ci_low"], metrics["test_roc_auc_ci_high"] = bootstrap_auc_interval(y_te, p_te)
    metrics.update(_validation_metrics(fitted, final, data))
    for key, value in binary_metrics(y_te, baseline.inplace_predict(data.X_test)).items():
        if key in ("roc_auc", "pr_auc", "log_loss"):
            metrics[f"baseline_test_{key}"] = value
    raw = binary_metrics(y_te, raw_te)
    metrics.update(test_raw_ece=raw["ece"], test_raw_log_loss=raw["log_loss"])
    metrics.update(best_iteration=float(final.rounds - 1), refit_rounds=float(final.rounds))
    metrics["refit_rows"] = float(len(data.train) + len(data.valid))
    if kind == OFFER_ACCEPTED:
        metrics.update(_policy_value(fitted, data.splits.test))
    return metrics, p_te, raw_te


def _validation_metrics(fitted: LoadedModel, final: RecipeFit, data: _Prepared) -> dict[str, float]:
    """`valid_*`: the early-stopped booster on the validation split (the refit has seen those rows), or for the CV
    recipe the out-of-fold scores of train + validation; `stopped_test_roc_auc`: the early-stopped booster on the
    test split (what the refit adds)."""
    if final.stopped is None:
        assert final.oof_margin is not None
        rows = data.train.plus(data.valid)
        margin = final.oof_margin
        p_oof = fitted.calibrator.apply(margin if fitted.calibrator.uses_margin else 1 / (1 + np.exp(-margin)))
        return {f"valid_{k}": v for k, v in binary_metrics(rows.y, p_oof).items()}
    stopped = LoadedModel(fitted.name, None, None, final.stopped, fitted.calibrator, fitted.feature_names)
    out = {f"valid_{k}": v for k, v in binary_metrics(data.y_valid, stopped.predict_proba(data.X_valid)).items()}
    out["stopped_test_roc_auc"] = binary_metrics(data.y_test, stopped.predict_proba(data.X_test))["roc_auc"]
    return out


def _log_artefacts(
    training_set: TrainingSet, data: _Prepared, p_test: np.ndarray, raw_test: np.ndarray, booster: Any, study: Any
) -> None:
    """Step 7: the plots, the data lineage (with the split ranges) and the feature list as run artefacts."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix="nextbest-run-") as tmp:
        out = Path(tmp)
        _write_plots(out / "plots", data.y_test, p_test, raw_test, booster, study)
        mlflow.log_artifacts(str(out / "plots"), artifact_path="plots")
        (out / "lineage.json").write_text(
            json.dumps({**training_set.lineage, "splits": data.splits.ranges()}, default=str, indent=1)
        )
        (out / "features.json").write_text(json.dumps(data.features, indent=1))
        mlflow.log_artifact(str(out / "lineage.json"))
        mlflow.log_artifact(str(out / "features.json"))


def _log_model(
    job: _Job,
    training_set: TrainingSet,
    data: _Prepared,
    fitted: LoadedModel,
    best_params: dict[str, Any],
    metrics: dict[str, float],
) -> str:
    """Step 8: the refit booster, calibrator and features as the run's MLflow model, with what made it; its URI."""
    from training import tracking

    info = {
        "model": training_set.model,
        "registered_name": job.name,
        "feature_service": training_set.lineage.get("feature_service"),
        "study_name": job.study_name,
        "best_params": best_params,
        "calibration": fitted.calibrator.method,
        "seed": job.seed,
        "test_metrics": {
            k: metrics[k]
            for k in (
                "test_roc_auc",
                "test_roc_auc_ci_low",
                "test_roc_auc_ci_high",
                "test_log_loss",
                "test_ece",
                "baseline_test_roc_auc",
            )
        },  # fmt: skip
        "refit": {"rows": int(metrics["refit_rows"]), "rounds": int(metrics["refit_rounds"])},
        "data_fingerprint": job.data_fingerprint,
        "lineage": training_set.lineage,
    }
    example = data.splits.test[data.features].head(5)
    return tracking.log_model(fitted.booster, fitted.calibrator, list(data.features), example, info)


@dataclass(frozen=True)
class _GateInputs:
    """What the gate needs beside the registry: its holdout, the plain baseline fitted on the registered model's
    rows (scored on that holdout), and the digest of the fitted recipe (with the data fingerprint: "unchanged")."""

    holdout: pd.DataFrame
    baseline: Any
    recipe_digest: str

    def baseline_scores(self, features: list[str]) -> np.ndarray:
        return np.asarray(self.baseline.inplace_predict(matrix_from_frame(self.holdout, features)), dtype=float)


def _register_and_gate(
    settings: Settings,
    client: Any,
    job: _Job,
    training_set: TrainingSet,
    model_uri: str,
    parent_id: str,
    gate: _GateInputs,
) -> tuple[str | None, PromotionDecision | None, str | None]:
    """Step 9: register the model as a new `challenger` version and, if asked, let the gate promote it on the
    gate's holdout; the decision goes on the parent run. Nothing happens with `register=False`, and nothing is
    registered when the champion was made from the same data with the same recipe (the third value says so)."""
    if not job.options.register:
        return None, None, None
    unchanged = unchanged_since(settings, job.name, job.data_fingerprint, gate.recipe_digest)
    if unchanged is not None:
        client.set_tag(parent_id, "registry.skipped", unchanged[:4900])
        logger.info("%s: %s", job.name, unchanged)
        return None, None, unchanged
    feature_service = training_set.lineage.get("feature_service")
    version = register_version(
        settings,
        job.name,
        model_uri,
        run_id=parent_id,
        tags={
            "study_name": job.study_name, "feature_service": str(feature_service or ""),
            "data_fingerprint": job.data_fingerprint, "recipe_digest": gate.recipe_digest,
        },
        description=f"{training_set.model} model from study {job.study_name}",
    )  # fmt: skip
    decision = None
    if job.options.promote:
        baseline = gate.baseline_scores(training_set.feature_names)
        decision = promote_if_better(
            settings, job.name, version, gate.holdout, rule=job.options.rule, run_id=parent_id, baseline=baseline
        )
        client.set_tag(parent_id, "promotion.decision", "promoted" if decision.promoted else "rejected")
        client.set_tag(parent_id, "promotion.reason", decision.reason[:4900])
        client.log_metric(parent_id, "promoted", float(decision.promoted))
    client.set_tag(parent_id, "registered_version", version)
    return version, decision, None


def _log_outcome(result: TrainResult, name: str) -> None:
    metrics = result.metrics
    logger.info(
        "trained %s in %.0f s: test ROC-AUC %.4f [%.4f, %.4f] (plain XGBoost %.4f), log-loss %.4f, ECE %.4f; "
        "version %s%s",
        name,
        result.seconds,
        metrics.get("test_roc_auc", float("nan")),
        metrics.get("test_roc_auc_ci_low", float("nan")),
        metrics.get("test_roc_auc_ci_high", float("nan")),
        metrics.get("baseline_test_roc_auc", float("nan")),
        metrics.get("test_log_loss", float("nan")),
        metrics.get("test_ece", float("nan")),
        result.version or "not registered",
        " (champion)" if result.promoted else "",
    )


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
        "config": [config.max_rounds, config.early_stopping_rounds, *([config.cv_folds] if config.cv_folds else [])],
    }
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:10]


def data_fingerprint(training_set: TrainingSet) -> str:
    """Hash of every row of the training set (all columns, in order) and of its feature list: the same value
    means the same data, whatever built it."""
    frame = training_set.frame
    digest = hashlib.sha256(json.dumps([training_set.feature_names, list(frame.columns)]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def _recipe_digest(job: _Job, best_params: dict[str, Any]) -> str:
    """Hash of what turns the data into the model: the best parameters and every option that changes the fit."""
    o = job.options
    payload = {
        "params": best_params,
        "seed": job.seed,
        "calibration": o.calibration,
        "split": [o.split, o.valid_fraction, o.test_fraction, o.purge_days],
        "config": [o.config.max_rounds, o.config.early_stopping_rounds, o.config.cv_folds],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


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
