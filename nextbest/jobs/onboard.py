"""The onboarding job's training step: build, apply and materialize are the project's `FeatureProject` steps
(`nextbest.features.project.TableFeatures`, `nextbest features build|apply|materialize --project FILE`); this
module trains.

Training uses the shared training code unchanged: the model's point-in-time training set becomes a
`training.datasets.TrainingSet` and goes through `training.pipeline.fit_and_log` (time split, or the stratified
split a config asks for with `split: stratified`; seeded Optuna study,
early stopping, calibration, MLflow parent + nested trial runs, model logged with signature, registered as the
config's model name with alias `challenger`, promotion gate to `champion`). On top, because bank data is often
small, the config's validation scheme (repeated stratified CV or rolling-origin time splits) estimates quality
with spread, for the tuned recipe and a plain XGBoost, and logs it to the same MLflow run (`cv_*` metrics and
`cv_folds.json`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from nextbest.onboarding.config import EventWithinLabel, OnboardingConfig
from nextbest.onboarding.datasets import LABEL, build_training_set
from nextbest.onboarding.validation import CVResult, repeated_cv, rolling_origin
from nextbest.settings import Settings

if TYPE_CHECKING:
    from training.datasets import TrainingSet
    from training.pipeline import TrainResult

logger = logging.getLogger(__name__)

#: Below this many rows XGBoost trains faster on one thread than on two busy cores (see validation.CV_NTHREAD).
SINGLE_THREAD_ROWS = 100_000


@dataclass(frozen=True)
class OnboardTrainResult:
    """One onboarded model's training job: the shared trainer's result plus the small-data validation."""

    model: str
    train: TrainResult
    validation: list[CVResult] = field(default_factory=list)
    rows: int = 0
    positives: int = 0
    holdout_rows: int = 0
    holdout_positives: int = 0

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "rows": self.rows,
            "positives": self.positives,
            "holdout": f"{self.holdout_rows} rows, {self.holdout_positives} positive",
            **self.train.summary(),
        }
        for cv in self.validation:
            s = cv.summary()
            out[f"{cv.recipe}_auc"] = f"{s['roc_auc_mean']:.3f} +- {s['roc_auc_std']:.3f} ({cv.method})"
        return out


def validate(
    config: OnboardingConfig,
    model_name: str,
    training_set: TrainingSet,
    tuned_params: dict[str, Any] | None,
    seed: int,
) -> list[CVResult]:
    """The config's honest validation scheme on a training set, for the tuned recipe and plain XGBoost."""
    model = config.model(model_name)
    val = model.validation
    if val.method == "repeated_cv":
        return repeated_cv(
            training_set.frame,
            training_set.feature_names,
            LABEL,
            tuned_params=tuned_params,
            folds=val.folds,
            repeats=val.repeats,
            seed=seed,
        )
    horizon = model.label.horizon_days if isinstance(model.label, EventWithinLabel) else 0
    return rolling_origin(
        training_set.frame,
        training_set.feature_names,
        LABEL,
        training_set.timestamp,
        tuned_params=tuned_params,
        folds=val.folds,
        horizon_days=horizon,
        seed=seed,
    )


def _log_validation(settings: Settings, run_id: str, results: list[CVResult]) -> None:
    from nextbest.models.registry import mlflow_client

    client = mlflow_client(settings)
    for cv in results:
        for key, value in cv.summary().items():
            if value == value:  # skip NaN
                client.log_metric(run_id, f"cv_{cv.recipe}_{key}", value)
    client.log_dict(
        run_id,
        {
            cv.recipe: {"method": cv.method, "summary": cv.summary(), "folds": [asdict(f) for f in cv.folds]}
            for cv in results
        },
        "cv_folds.json",
    )
    client.set_tag(run_id, "validation.method", results[0].method if results else "none")


def table_fit_options(
    config: OnboardingConfig, settings: Settings, model_name: str, training_set: TrainingSet, trials: int | None
) -> dict[str, Any]:
    """The shared trainer's options a table model is trained with (onboarding and retraining alike): its trials,
    registered name, experiment, split, test fraction, and one XGBoost thread below `SINGLE_THREAD_ROWS` rows."""
    from training.tune import TuningConfig

    model = config.model(model_name)
    return {
        "trials": trials or model.trials or settings.training.trials,
        "registered_name": model.name,
        "experiment_name": f"{settings.mlflow.experiment_prefix}-{config.project}-{model.name}",
        "test_fraction": model.validation.test_fraction,
        "split": model.split,
        "config": TuningConfig(nthread=1 if len(training_set.frame) < SINGLE_THREAD_ROWS else None),
    }


def train(
    config: OnboardingConfig,
    settings: Settings,
    model_name: str,
    *,
    trials: int | None = None,
    seed: int | None = None,
    register: bool = True,
    promote: bool = True,
    validate_model: bool = True,
    timeout: float | None = None,
) -> OnboardTrainResult:
    """Train, tune, track, register and gate one onboarded model with the shared trainer, then validate it."""
    from training.datasets import split_training_frame
    from training.pipeline import FitOptions, fit_and_log

    model = config.model(model_name)
    training_set = build_training_set(config, settings, model_name)
    seed = settings.training.seed if seed is None else seed
    test_fraction = model.validation.test_fraction
    options = FitOptions(
        timeout=timeout,
        seed=seed,
        register=register,
        promote=promote,
        tags={"nextbest.project": config.project, "nextbest.onboarded": "true"},
        **table_fit_options(config, settings, model_name, training_set, trials),
    )
    result = fit_and_log(settings, training_set, options)
    cv: list[CVResult] = []
    if validate_model:
        cv = validate(config, model_name, training_set, result.best_params, seed)
        _log_validation(settings, result.run_id, cv)
    frame = training_set.frame
    # The shared trainer's test split (same deterministic split): its size says how far its metrics can be trusted.
    holdout = split_training_frame(
        frame, training_set.timestamp, test_fraction=test_fraction, method=model.split, seed=seed
    ).test
    out = OnboardTrainResult(
        model=model.name,
        train=result,
        validation=cv,
        rows=len(frame),
        positives=int(frame[LABEL].sum()),
        holdout_rows=len(holdout),
        holdout_positives=int(holdout[LABEL].sum()),
    )
    logger.info("onboarded model %s: %s", model.name, out.summary())
    return out
