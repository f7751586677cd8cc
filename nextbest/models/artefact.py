"""The trained model as serving and evaluation use it: a native XGBoost booster plus its calibrator.

`load_model("nba")` resolves a registry alias (default `champion`) to a model version, downloads that version's
MLflow model folder once (native xgboost flavour + `extra_files/calibrator.json` + `extra_files/model_info.json`)
and returns a `LoadedModel`. The hot path is numpy only: `predict_proba` calls `Booster.inplace_predict` (no
DMatrix, no DataFrame) and applies the calibrator, about 0.3 ms for 20 rows on this machine. Feature order is the
booster's own `feature_names`; `frame_to_matrix` builds the matrix in that order from any DataFrame that holds the
columns, so callers never depend on column order.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nextbest.errors import DataError, NotReadyError
from nextbest.models.calibration import Calibrator
from nextbest.settings import Settings, load_settings

if TYPE_CHECKING:
    import pandas as pd
    import xgboost as xgb

logger = logging.getLogger(__name__)

CALIBRATOR_FILE = "calibrator.json"
MODEL_INFO_FILE = "model_info.json"


def matrix_from_frame(frame: pd.DataFrame, feature_names: list[str]) -> np.ndarray:
    """Float32 matrix of `feature_names` columns in that order (bools -> 0/1, missing values -> NaN)."""
    missing = [c for c in feature_names if c not in frame.columns]
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise DataError(f"frame lacks {len(missing)} model feature(s): {shown}")
    try:
        return frame[feature_names].to_numpy(dtype=np.float32, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise DataError(f"model features must be numeric or boolean: {exc}") from exc


@dataclass
class LoadedModel:
    """A calibrated binary propensity model ready to score numpy matrices."""

    name: str
    version: str | None
    run_id: str | None
    booster: xgb.Booster
    calibrator: Calibrator
    feature_names: list[str]
    info: dict[str, Any] = field(default_factory=dict)
    # Threads for the DMatrix that `contributions` builds: with the default (all cores) a 20-row DMatrix took
    # ~40 ms instead of ~1 ms on a busy 2-core host (OpenMP barriers), so it follows the booster's 1 thread.
    nthread: int = 1

    def __post_init__(self) -> None:
        self._n_features = len(self.feature_names)
        self._predict_type = "margin" if self.calibrator.uses_margin else "value"

    def _check_matrix(self, X: np.ndarray) -> np.ndarray:
        if X.ndim == 1:
            X = X.reshape(1, -1)
        if X.shape[1] != self._n_features:
            raise DataError(
                f"model {self.name} v{self.version} expects {self._n_features} features, got {X.shape[1]}; "
                "build the matrix with frame_to_matrix()"
            )
        return X

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Calibrated probability of the positive class for each row of X (columns in `feature_names` order)."""
        X = self._check_matrix(X)
        raw = self.booster.inplace_predict(X, predict_type=self._predict_type, validate_features=False)
        return self.calibrator.apply(np.asarray(raw, dtype=np.float64))

    def predict_raw(self, X: np.ndarray) -> np.ndarray:
        """The booster's uncalibrated probability (for diagnostics and calibration plots)."""
        X = self._check_matrix(X)
        return np.asarray(self.booster.inplace_predict(X, validate_features=False), dtype=np.float64)

    def contributions(self, X: np.ndarray, approx: bool = True) -> np.ndarray:
        """Per-feature contributions to the margin (log-odds), shape (rows, features + 1); the last column is bias.

        Approximate contributions (Saabas) cost ~0.5 ms a row; exact TreeSHAP costs ~4 ms a row here, so serving
        uses approx for reason codes. Contributions explain the uncalibrated margin; the calibrator is monotone,
        so their signs and ranking carry over to the calibrated probability.
        """
        import xgboost as xgb

        X = self._check_matrix(X)
        dm = xgb.DMatrix(X, feature_names=self.feature_names, nthread=self.nthread)
        return np.asarray(self.booster.predict(dm, pred_contribs=True, approx_contribs=approx, validate_features=False))

    def frame_to_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """The model's input matrix from a DataFrame, columns ordered by `feature_names` (extra columns ignored)."""
        return matrix_from_frame(frame, self.feature_names)

    def predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Convenience for batch jobs: calibrated probabilities for a DataFrame (not for the hot path)."""
        return self.predict_proba(self.frame_to_matrix(frame))

    @classmethod
    def from_dir(cls, path: Path, name: str, version: str | None = None, run_id: str | None = None) -> LoadedModel:
        """Load from a local MLflow xgboost model folder (as logged by `training.tracking.log_model`)."""
        import mlflow.xgboost

        booster = mlflow.xgboost.load_model(str(path))
        extra = path / "extra_files"
        if not (extra / CALIBRATOR_FILE).is_file():
            raise DataError(f"model folder {path} has no {CALIBRATOR_FILE}; was it logged by nextbest training?")
        calibrator = Calibrator.load(extra / CALIBRATOR_FILE)
        info = json.loads((extra / MODEL_INFO_FILE).read_text()) if (extra / MODEL_INFO_FILE).is_file() else {}
        feature_names = list(booster.feature_names or info.get("feature_names") or [])
        if not feature_names:
            raise DataError(f"model folder {path} records no feature names")
        return cls(
            name=name,
            version=version,
            run_id=run_id,
            booster=booster,
            calibrator=calibrator,
            feature_names=feature_names,
            info=info,
        )


def load_model(
    name: str,
    alias: str = "champion",
    settings: Settings | None = None,
    *,
    version: str | int | None = None,
    nthread: int | None = 1,
) -> LoadedModel:
    """Load registered model `name` at `alias` (or an explicit `version`) from the MLflow registry.

    `nthread` sets the booster's scoring threads. Default 1: a request scores tens of rows, too few to gain from
    threads, and on a busy 2-core host OpenMP barriers cost far more than they save (None: XGBoost's default).
    Raises NotReadyError when the model or alias does not exist yet (train first: `nextbest train <model>`).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from nextbest.models.registry import mlflow_client, registry_uri, tracking_uri

    settings = settings or load_settings()
    client = mlflow_client(settings)
    try:
        mv = client.get_model_version(name, str(version)) if version is not None else None
        if mv is None:
            mv = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        what = f"version {version}" if version is not None else f"alias {alias!r}"
        raise NotReadyError(
            f"no registered model {name!r} with {what} in {settings.mlflow_tracking_uri}; "
            f"run `nextbest train {name}` first"
        ) from exc
    with tempfile.TemporaryDirectory(prefix=f"nextbest-{name}-") as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{mv.version}",
            dst_path=tmp,
            tracking_uri=tracking_uri(settings),
            registry_uri=registry_uri(settings),
        )
        loaded = LoadedModel.from_dir(Path(local), name=name, version=str(mv.version), run_id=mv.run_id)
    if nthread is not None:
        loaded.booster.set_param({"nthread": nthread})
        loaded.nthread = nthread
    logger.info("loaded model %s v%s (%s, %d features)", name, mv.version, alias, len(loaded.feature_names))
    return loaded
