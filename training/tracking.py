"""MLflow plumbing for training: tracking/registry URIs from settings, experiments (tagged as model training for
MLflow 3's UI), trial runs, model logging.

URIs are set per call from `Settings` (never at import), so tests point MLflow at a temp dir by passing their own
settings. Trial runs are written through `MlflowClient.log_batch` (one round trip: params + metrics + tags, no
artefacts), which keeps a nested run per trial cheap enough to log every trial, also from several worker processes.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nextbest.models.artefact import CALIBRATOR_FILE, MODEL_INFO_FILE
from nextbest.models.registry import mlflow_client
from nextbest.settings import Settings

if TYPE_CHECKING:
    import pandas as pd
    import xgboost as xgb
    from mlflow import MlflowClient

    from nextbest.models.calibration import Calibrator

logger = logging.getLogger(__name__)

MODEL_ARTIFACT_NAME = "model"


def experiment_name(settings: Settings, model: str) -> str:
    """`nextbest-churn`, `nextbest-nba` (prefix from settings)."""
    return f"{settings.mlflow.experiment_prefix}-{model}"


#: MLflow 3's experiment-kind tag: its UI opens an experiment by kind, and an untagged one it may infer to be a
#: GenAI experiment (traces, token costs). Ours are model training, shown as runs, metrics and models.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"


def ensure_experiment(settings: Settings, name: str) -> str:
    """Experiment id for `name`, created with artefacts under `settings.mlflow_artifact_location` if new; tagged
    as a model-training experiment (`EXPERIMENT_KIND_TAG`), older ones included, so the UI opens on its runs."""
    from mlflow.exceptions import MlflowException

    client = mlflow_client(settings)
    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return client.create_experiment(
                name,
                artifact_location=f"{settings.mlflow_artifact_location}/{name}",
                tags={EXPERIMENT_KIND_TAG: TRAINING_KIND},
            )
        except MlflowException:
            # Another worker created it between our lookup and create: use theirs.
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    if (found.tags or {}).get(EXPERIMENT_KIND_TAG) is None:
        client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)
    return found.experiment_id


def who() -> dict[str, str]:
    """Who ran a job: OS user, host, and CI/job identifiers when present (for runs and the promotion log)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = os.environ.get("USER", "unknown")
    out = {"user": user, "host": socket.gethostname()}
    for key in ("CI", "GITHUB_RUN_ID", "GITHUB_ACTOR", "NEXTBEST_TRIGGER"):
        if os.environ.get(key):
            out[key.lower()] = os.environ[key]
    return out


def log_trial_run(
    client: MlflowClient,
    experiment_id: str,
    parent_run_id: str,
    trial_number: int,
    params: dict[str, Any],
    metrics: dict[str, float],
    state: str,
) -> str:
    """One nested run per Optuna trial: params + metrics + state tags in one batch, no artefacts."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.utils.time import get_current_time_millis

    run = client.create_run(
        experiment_id,
        run_name=f"trial-{trial_number:03d}",
        tags={"mlflow.parentRunId": parent_run_id, "nextbest.kind": "trial", "optuna.trial_state": state},
    )
    now = get_current_time_millis()
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None and np.isfinite(v)],
        params=[Param(k, str(v)) for k, v in params.items()],
        tags=[RunTag("optuna.trial_number", str(trial_number))],
    )
    client.set_terminated(run.info.run_id, status="FINISHED" if state == "COMPLETE" else "KILLED")
    return run.info.run_id


def aggregate_example(frame: pd.DataFrame, feature_names: list[str]) -> pd.DataFrame:
    """One input-example row of column medians (NaN for an all-missing column): the shape of the model's input
    without any customer's row in it, so an erased customer never lives on in a logged model."""
    import pandas as pd

    values = frame[feature_names].astype("float64")
    return pd.DataFrame([values.median(skipna=True).to_numpy()], columns=feature_names).astype("float64")


def log_model(
    booster: xgb.Booster,
    calibrator: Calibrator,
    feature_names: list[str],
    input_example: pd.DataFrame,
    info: dict[str, Any],
) -> str:
    """Log the booster (native xgboost flavour, signature, input example) with calibrator and info as extra files.

    `input_example` is the frame the model's signature describes (its column types, and which columns hold
    missing values); the logged example is not its rows but `aggregate_example` of it (column medians), so no
    customer data is stored with the model. Must be called inside an active run. Returns the model URI
    (`models:/<model id>`). The calibrator also goes to the run's artefacts as `calibrator.json` so it is visible
    in the UI; the copy inside the model folder is the one `load_model` applies, so a registered version always
    carries its own calibrator.
    """
    import mlflow
    import mlflow.xgboost
    from mlflow.models import infer_signature

    frame = input_example[feature_names].astype("float64")
    example = aggregate_example(frame, feature_names)
    predict_type = "margin" if calibrator.uses_margin else "value"
    raw = booster.inplace_predict(example.to_numpy(dtype=np.float32), predict_type=predict_type)
    proba = calibrator.apply(np.asarray(raw, dtype=np.float64))
    signature = infer_signature(frame, proba)  # the inputs' schema from the frame, as before the aggregate example
    with tempfile.TemporaryDirectory(prefix="nextbest-model-") as tmp:
        cal_path = calibrator.save(Path(tmp) / CALIBRATOR_FILE)
        info_path = Path(tmp) / MODEL_INFO_FILE
        info_path.write_text(json.dumps({**info, "feature_names": feature_names}, default=str, indent=1))
        mlflow.log_artifact(str(cal_path))
        model_info = mlflow.xgboost.log_model(
            booster,
            name=MODEL_ARTIFACT_NAME,
            signature=signature,
            input_example=example,
            # Explicit requirements skip MLflow's inference, which reloads the model in a subprocess (seconds).
            pip_requirements=mlflow.xgboost.get_default_pip_requirements(),
            extra_files=[str(cal_path), str(info_path)],
            metadata={"calibration": calibrator.method, "nextbest_model": info.get("model", "")},
        )
    return model_info.model_uri
