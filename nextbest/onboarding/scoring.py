"""Online scoring of an onboarded project's model: the building block a service uses to serve a bank's own model.

One object per (project, model): the Feast store of the project and the registered model at an alias, loaded once;
`score(keys)` reads the entities' features through the model's feature service (one online read for the batch),
scores them with the calibrated booster, and returns the top reason codes from approximate per-feature
contributions. No Berka-specific code: the project, feature service, entity key (int or string, as the entity's
`key_type` says) and model name all come from the onboarding config, so a service can pick the project by
configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from nextbest.errors import DataError
from nextbest.features.store import online_number
from nextbest.onboarding.config import OnboardingConfig
from nextbest.settings import Settings

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore

    from nextbest.models.artefact import LoadedModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EntityScore:
    key: int | str
    probability: float
    known: bool
    reasons: list[str] = field(default_factory=list)


class ProjectScorer:
    """Scores entities of one onboarded model from the online store (load once, call per request)."""

    def __init__(
        self,
        config: OnboardingConfig,
        settings: Settings,
        model_name: str,
        alias: str = "champion",
        store: FeatureStore | None = None,
        model: LoadedModel | None = None,
    ) -> None:
        from nextbest.models.artefact import load_model
        from nextbest.onboarding.feast_repo import get_project_store

        self.config = config
        self.model_config = config.model(model_name)
        entity = config.entities[self.model_config.entity]
        self.key = entity.key
        self.key_type = entity.key_type
        self.store = store or get_project_store(config, settings, require_applied=True)
        self.service = self.store.get_feature_service(self.model_config.feature_service)
        self.model = model or load_model(model_name, alias=alias, settings=settings, nthread=1)

    @property
    def version(self) -> str:
        return str(self.model.version)

    def entity_key(self, key: object) -> int | str:
        """A key as the entity types it (int64 or string); DataError for a key of the other type."""
        if self.key_type == "str":
            if not isinstance(key, str):
                raise DataError(f"{self.key} keys are strings, got {key!r}")
            return key
        try:
            number = int(key)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            number = None
        if isinstance(key, bool | str) or number is None or number != key:
            raise DataError(f"{self.key} keys are integers, got {key!r}")
        return number

    def features(self, keys: Sequence[int | str]) -> pd.DataFrame:
        """Online features of `keys` in the model's feature order (missing entities read as all-NaN rows)."""
        if not keys:
            raise DataError("score at least one entity")
        rows = [{self.key: self.entity_key(k)} for k in keys]
        frame = self.store.get_online_features(features=self.service, entity_rows=rows).to_df()
        return frame.astype({f: "float64" for f in self.model.feature_names})

    def score(self, keys: Sequence[int | str], reasons: int = 3) -> list[EntityScore]:
        """Calibrated probabilities and the top positive contributions as reason codes, per entity."""
        frame = self.features(keys)
        return self.score_matrix(self.model.frame_to_matrix(frame), keys, reasons)

    def matrix(self, rows: Sequence[Mapping[str, object]]) -> np.ndarray:
        """The model's input matrix from feature dicts (e.g. one online read of several views); None -> NaN."""
        return np.array(
            [[online_number(row.get(f)) for f in self.model.feature_names] for row in rows], dtype=np.float32
        ).reshape(len(rows), len(self.model.feature_names))

    def score_matrix(self, X: np.ndarray, keys: Sequence[int | str], reasons: int = 3) -> list[EntityScore]:
        """Score rows already in the model's feature order (the service reads once and scores several models)."""
        proba = self.model.predict_proba(X)
        known = ~np.isnan(X).all(axis=1)
        contrib = self.model.contributions(X, approx=True)[:, :-1] if reasons else None
        out = []
        for i, k in enumerate(keys):
            codes: list[str] = []
            if contrib is not None:
                order = np.argsort(-contrib[i], kind="stable")[:reasons]
                codes = [self.model.feature_names[j] for j in order if contrib[i, j] > 0]
            out.append(EntityScore(self.entity_key(k), float(proba[i]), bool(known[i]), codes))
        return out
