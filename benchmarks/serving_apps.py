"""The two comparison servers of `benchmarks/bench_serving.py`, beside our BentoML service.

* `floor_app` -- the SAME decision logic (`serving.engine.DecisionEngine`, async path) behind a bare Starlette app
  on uvicorn: what the framework-free floor costs. Run: `uvicorn benchmarks.serving_apps:floor_app --factory`.
* `NaiveService` -- how the service is often first written: a default BentoML service (sync handler, access log
  and metrics on) over a naive engine that reads features once per model (churn_v1, then nba_v1), scores each
  row through the scikit-learn API on a one-row DataFrame, and computes exact TreeSHAP for every scored row.
  Run: `bentoml serve benchmarks.serving_apps:NaiveService`.
Both read settings like the service (`NEXTBEST_CONFIG`), so the benchmark points all three at one world.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import bentoml
import numpy as np

from nextbest.models.artefact import LoadedModel
from nextbest.policy import DecisionContext
from nextbest.settings import load_settings
from serving.engine import DecisionEngine
from serving.lifecycle import freeze_heap
from serving.schemas import RecommendRequest, RecommendResponse

logger = logging.getLogger(__name__)


def floor_app() -> Any:
    """Starlette app factory: POST /recommend through the same engine, no framework extras."""
    from contextlib import asynccontextmanager

    from pydantic import ValidationError
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    engine = DecisionEngine(load_settings())

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> Any:
        engine.load()
        freeze_heap()  # as the service does
        yield
        engine.close()

    async def recommend(request: Request) -> Response:
        try:
            req = RecommendRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            return JSONResponse({"error": exc.errors(include_url=False)}, status_code=400)
        resp = await engine.recommend_async(req)
        return Response(resp.model_dump_json(), media_type="application/json")

    async def readyz(_request: Request) -> Response:
        return Response("ok" if engine.ready else "loading", status_code=200 if engine.ready else 503)

    return Starlette(
        routes=[Route("/recommend", recommend, methods=["POST"]), Route("/readyz", readyz)], lifespan=lifespan
    )


class NaiveDecisionEngine(DecisionEngine):
    """Same policy and log; the expensive habits the lean engine avoids."""

    def load(self) -> None:
        super().load()
        self._sklearn: dict[tuple[str, str], Any] = {}

    def _classifier(self, model: LoadedModel) -> Any:
        import xgboost as xgb

        key = (model.name, str(model.version))
        if key not in self._sklearn:
            clf = xgb.XGBClassifier()
            clf.load_model(bytearray(model.booster.save_raw("ubj")))
            self._sklearn[key] = clf
        return self._sklearn[key]

    def read_features(self, req: RecommendRequest, ctx: DecisionContext, now: datetime) -> dict[str, Any]:
        # one read per model: churn_v1 for churn, nba_v1 for the offers (the lean engine reads all views once)
        import nextbest.features as nbf

        assert self._store is not None
        churn = self._store.get_online_features(
            features=self._store.get_feature_service(nbf.CHURN_SERVICE), entity_rows=[{"customer_id": req.customer_id}]
        ).to_dict()
        request = self.features.request_row(req.channel, now, location_type=ctx.location_type)
        nba = self._store.get_online_features(
            features=self._store.get_feature_service(nbf.NBA_SERVICE),
            entity_rows=[{"customer_id": req.customer_id, **request}],
        ).to_dict()
        return {k: v[0] for k, v in {**churn, **nba}.items()}

    def _predict(self, model: LoadedModel, X: np.ndarray) -> np.ndarray:
        import pandas as pd

        clf = self._classifier(model)
        out = []
        for row in X:  # one sklearn call per row on a one-row DataFrame
            raw = clf.predict_proba(pd.DataFrame([row], columns=model.feature_names))[:, 1]
            if model.calibrator.uses_margin:
                raw = np.log(raw / (1 - raw))
            out.append(float(model.calibrator.apply(np.asarray(raw, dtype=np.float64))[0]))
        return np.asarray(out)

    def _contributions(self, model: LoadedModel, X: np.ndarray, rows: Sequence[int]) -> np.ndarray:
        exact = model.contributions(X, approx=False)  # exact TreeSHAP for every scored row
        return exact[list(rows)]


@bentoml.service(name="nextbest_naive", workers=1)
class NaiveService:
    """A default-configured BentoML service over the naive engine (sync handler, access log and metrics on)."""

    def __init__(self) -> None:
        self.engine = NaiveDecisionEngine(load_settings())
        self.engine.load()

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        self.engine.close()

    @bentoml.api(route="/recommend", input_spec=RecommendRequest)
    def recommend(self, **request: object) -> RecommendResponse:
        return self.engine.recommend(RecommendRequest.model_construct(**request))
