"""The onboarding job: the training step, and what `nextbest onboard all` skips because it is up to date.

Build, apply and materialize are the project's `FeatureProject` steps (`nextbest.features.project.TableFeatures`,
`nextbest features build|apply|materialize --project FILE`); this module trains, and keeps the stamps that let
`onboard all` skip a step whose inputs did not change (`step_digest`, `is_up_to_date`, `mark_done`).

Training uses the shared training code unchanged: the model's point-in-time training set becomes a
`training.datasets.TrainingSet` and goes through `training.pipeline.fit_and_log` (the split its plan picks:
`nextbest.onboarding.plan`; seeded Optuna study, early stopping, the registered model refitted on train +
validation and calibrated, MLflow parent + nested trial runs, model logged with signature, registered as the
config's model name with alias `challenger`, the promotion gate's floor and comparison to `champion`). On top,
because bank data is often small, the plan's validation scheme (repeated stratified CV or rolling origin by
period) estimates quality with spread, for the same recipe as the registered model and a plain XGBoost on the
same folds, and logs it to the same MLflow run (`cv_*` metrics and `cv_folds.json`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from nextbest.onboarding.config import EventWithinLabel, OnboardingConfig
from nextbest.onboarding.datasets import LABEL, build_training_set
from nextbest.onboarding.plan import ModelPlan, plan_model
from nextbest.onboarding.validation import CVResult, repeated_cv, rolling_origin
from nextbest.settings import Settings

if TYPE_CHECKING:
    from pathlib import Path

    from training.datasets import TrainingSet
    from training.pipeline import TrainResult
    from training.registry import GateRule
    from training.tune import TuningConfig

logger = logging.getLogger(__name__)

#: Below this many rows XGBoost trains faster on one thread than on two busy cores (see validation.CV_NTHREAD).
SINGLE_THREAD_ROWS = 100_000
#: Stratified (independent, outcome-labelled) sets below this many rows are tuned by k-fold CV (`cv_folds`).
CV_TUNING_ROWS, CV_TUNING_FOLDS = 20_000, 5
STAMP_FILE = "onboard_stamps.json"
Step = Literal["build", "apply", "materialize", "train"]
STEPS: tuple[Step, ...] = ("build", "apply", "materialize", "train")


@dataclass(frozen=True)
class OnboardTrainResult:
    """One onboarded model's training job: the shared trainer's result, its plan and the small-data validation."""

    model: str
    train: TrainResult
    validation: list[CVResult] = field(default_factory=list)
    rows: int = 0
    positives: int = 0
    holdout_rows: int = 0
    holdout_positives: int = 0
    plan: ModelPlan | None = None

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
    plan: ModelPlan | None = None,
    tuning: TuningConfig | None = None,
) -> list[CVResult]:
    """The plan's honest validation scheme on a training set, for the tuned recipe and plain XGBoost."""
    model = config.model(model_name)
    val = model.validation
    plan = plan or plan_model(config, model_name, training_set.frame[training_set.timestamp])
    common = {"tuned_params": tuned_params, "folds": val.folds, "seed": seed, "config": tuning}
    frame, features = training_set.frame, training_set.feature_names
    if plan.validation == "repeated_cv":
        return repeated_cv(frame, features, LABEL, repeats=val.repeats, **common)  # type: ignore[arg-type]
    horizon = model.label.horizon_days if isinstance(model.label, EventWithinLabel) else 0
    return rolling_origin(
        frame,
        features,
        LABEL,
        training_set.timestamp,
        period=plan.period,
        horizon_days=horizon,
        **common,  # type: ignore[arg-type]
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
            cv.recipe: {
                "method": cv.method, "period": cv.period, "summary": cv.summary(),
                "folds": [asdict(f) for f in cv.folds],
            }
            for cv in results
        },
        "cv_folds.json",
    )  # fmt: skip
    client.set_tag(run_id, "validation.method", results[0].method if results else "none")


def table_fit_options(
    config: OnboardingConfig, settings: Settings, model_name: str, training_set: TrainingSet, trials: int | None
) -> dict[str, Any]:
    """The shared trainer's options a table model is trained with (onboarding and retraining alike): its trials,
    registered name, experiment, the split its plan picks, test fraction, one XGBoost thread below
    `SINGLE_THREAD_ROWS` rows, and CV tuning for stratified sets below `CV_TUNING_ROWS` rows."""
    from training.tune import TuningConfig

    model = config.model(model_name)
    plan = plan_model(config, model_name, training_set.frame[training_set.timestamp])
    return {
        "trials": trials or model.trials or settings.training.trials,
        "registered_name": model.name,
        "experiment_name": f"{settings.mlflow.experiment_prefix}-{config.project}-{model.name}",
        "test_fraction": model.validation.test_fraction,
        "split": plan.split,
        "config": TuningConfig(
            nthread=1 if len(training_set.frame) < SINGLE_THREAD_ROWS else None,
            # Small sets of independent rows: trials scored by CV over train + validation, not a split with a
            # handful of positives (`training.tune`).
            cv_folds=CV_TUNING_FOLDS
            if plan.split == "stratified" and len(training_set.frame) < CV_TUNING_ROWS
            else None,
        ),
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
    rule: GateRule | None = None,
) -> OnboardTrainResult:
    """Train, tune, track, register and gate one onboarded model with the shared trainer, then validate it
    (`rule`: the gate, default `GateRule()`; `nextbest train` passes the project file's `models[].gate`)."""
    from training.datasets import split_training_frame
    from training.pipeline import FitOptions, fit_and_log

    model = config.model(model_name)
    training_set = build_training_set(config, settings, model_name)
    plan = plan_model(config, model_name, training_set.frame[training_set.timestamp])
    logger.info("plan: %s", plan.describe())
    seed = settings.training.seed if seed is None else seed
    fit = table_fit_options(config, settings, model_name, training_set, trials)
    options = FitOptions(
        timeout=timeout, seed=seed, register=register, promote=promote,
        tags={"nextbest.project": config.project, "nextbest.onboarded": "true"}, **fit,
        **({"rule": rule} if rule is not None else {}),
    )  # fmt: skip
    result = fit_and_log(settings, training_set, options)
    cv: list[CVResult] = []
    if validate_model:
        cv = validate(config, model_name, training_set, result.best_params, seed, plan, fit["config"])
        _log_validation(settings, result.run_id, cv)
    frame = training_set.frame
    # The shared trainer's test split (same deterministic split): its size says how far its metrics can be trusted.
    holdout = split_training_frame(
        frame,
        training_set.timestamp,
        test_fraction=model.validation.test_fraction,
        method=plan.split,
        seed=seed,
        entity=training_set.lineage.get("entity_key"),  # as the trainer's split (a label-known set groups by it)
    ).test
    out = OnboardTrainResult(
        model=model.name,
        train=result,
        validation=cv,
        rows=len(frame),
        positives=int(frame[LABEL].sum()),
        holdout_rows=len(holdout),
        holdout_positives=int(holdout[LABEL].sum()),
        plan=plan,
    )
    logger.info("onboarded model %s: %s", model.name, out.summary())
    return out


# ------------------------------------------------------------------------------ what `onboard all` may skip


def _stamp_path(config: OnboardingConfig, settings: Settings) -> Path:
    from nextbest.onboarding.features import project_paths

    return project_paths(config, settings).root / STAMP_FILE


def _file_state(path: Path) -> list[Any]:
    stat = path.stat() if path.exists() else None
    return [str(path), stat.st_size if stat else None, stat.st_mtime_ns if stat else None]


def step_digest(config: OnboardingConfig, settings: Settings, step: Step, trials: int | None = None) -> str:
    """What a step's result depends on, hashed: the mapping, the bank's files (path, size, modification time), the
    erased keys, and for later steps the earlier ones' inputs (apply: the models' services; materialize: the online
    store; train: the trials and the seed)."""
    from nextbest.erasure import Tombstones
    from nextbest.onboarding.features import project_paths
    from nextbest.onboarding.tables import resolve_file

    root = project_paths(config, settings).root
    payload: dict[str, Any] = {
        "mapping": config.model_dump(mode="json", exclude={"models"}),
        "files": [_file_state(resolve_file(config.data_dir, t.file)) for t in config.tables.values()],
        "erased": _file_state(Tombstones.at(root).path),
    }
    if step in ("apply", "materialize", "train"):
        payload["models"] = [m.model_dump(mode="json") for m in config.models]
    if step in ("materialize",):
        payload["online"] = settings.features.online_store
    if step == "train":
        payload["train"] = [trials, settings.training.seed, settings.training.trials]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _outputs_exist(config: OnboardingConfig, settings: Settings, step: Step, stamp: dict[str, Any]) -> bool:
    from nextbest.onboarding.features import project_paths
    from training.registry import CHALLENGER, alias_version

    paths = project_paths(config, settings)
    if step == "build":
        return all(paths.table(v.name).is_file() for v in config.feature_views)
    if step == "apply":
        return paths.registry.is_file()
    if step == "materialize":
        return settings.features.online_store != "sqlite" or paths.online_db.is_file()
    versions = stamp.get("versions") or {}
    return all(alias_version(settings, m.name, CHALLENGER) == versions.get(m.name) for m in config.models)


def is_up_to_date(config: OnboardingConfig, settings: Settings, step: Step, trials: int | None = None) -> bool:
    """Did this step already run on exactly these inputs, and are its outputs still there?"""
    path = _stamp_path(config, settings)
    stamps = json.loads(path.read_text()) if path.is_file() else {}
    stamp = stamps.get(step) or {}
    if stamp.get("digest") != step_digest(config, settings, step, trials):
        return False
    return _outputs_exist(config, settings, step, stamp)


def mark_done(
    config: OnboardingConfig, settings: Settings, step: Step, trials: int | None = None, **extra: Any
) -> None:
    """Record that `step` ran on its current inputs (`extra`: e.g. the versions training left as challenger)."""
    path = _stamp_path(config, settings)
    stamps = json.loads(path.read_text()) if path.is_file() else {}
    stamps[step] = {"digest": step_digest(config, settings, step, trials), **extra}
    for later in STEPS[STEPS.index(step) + 1 :]:
        stamps.pop(later, None)  # a step that ran again invalidates what was built on it
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stamps, indent=1))
