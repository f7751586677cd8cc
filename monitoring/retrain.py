"""Retraining on a drift verdict: retrain, register a challenger, and let the promotion gate decide.

A thin step over `training.pipeline.train_model`: it rebuilds the training set from the current sources through
Feast (so it includes the most recent, drifted period), tunes and registers a `challenger`, and runs the gate on
the most recent holdout; `champion` moves only if the challenger wins (the gate's numbers and decision go to the
promotion log and MLflow). Each retrain is also appended to `<reports_dir>/retrains.jsonl` beside the verdicts.

Not done here (issue 5, second half): folding the served decisions and their feedback from the decision log into
the training set, and telling a running service to reload (the service polls the registry for a new champion).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from nextbest.errors import ConfigError

if TYPE_CHECKING:
    from nextbest.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainOutcome:
    """What retraining one model produced."""

    model: str
    version: str | None
    promoted: bool
    reason: str
    run_id: str
    metrics: dict[str, float]


def retrain_models(settings: Settings, models: Sequence[str], trials: int | None = None) -> list[RetrainOutcome]:
    """Retrain each model (tune, log, register as challenger, gate) and record the outcome."""
    from training.pipeline import MODELS, train_model

    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ConfigError(f"unknown model(s) {unknown}; known: {', '.join(MODELS)}")
    outcomes = []
    for model in models:
        logger.info("retraining %s", model)
        result = train_model(settings, model, trials or settings.training.trials)  # type: ignore[arg-type]
        outcome = RetrainOutcome(
            model=model,
            version=result.version,
            promoted=result.promoted,
            reason=result.decision.reason if result.decision else "not gated",
            run_id=result.run_id,
            metrics={k: float(v) for k, v in result.metrics.items() if k.startswith("test_")},
        )
        outcomes.append(outcome)
        settings.reports_dir.mkdir(parents=True, exist_ok=True)
        with (settings.reports_dir / "retrains.jsonl").open("a") as fh:
            fh.write(json.dumps({"ts": datetime.now(UTC).isoformat(), **asdict(outcome)}, default=str) + "\n")
    return outcomes
