"""Shared fixtures of the training tests: quiet MLflow, a small simulated world with its Feast repo applied."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from nextbest.settings import Settings

if TYPE_CHECKING:
    from training.pipeline import TrainResult


@pytest.fixture(scope="module", autouse=True)
def quiet_mlflow() -> Iterator[None]:
    """No artefact progress bars or migration chatter in test output."""
    saved = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    for name in ("mlflow", "alembic", "feast"):
        logging.getLogger(name).setLevel(logging.WARNING)
    yield
    if saved is None:
        os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
    else:
        os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = saved


def make_world(home: Path, customers: int = 500, days: int = 90, seed: int = 3) -> Settings:
    """Simulate a small world under `home`, build its feature tables and apply the Feast repo."""
    from nextbest import features
    from nextbest.simulator import SimulationConfig, simulate_world

    settings = Settings(home=home)
    config = SimulationConfig.build(customers=customers, days=days, seed=seed)
    simulate_world(config, settings.world_dir)
    features.features_of(settings).build()
    features.features_of(settings).apply()
    return settings


def promote_even_below_floor(settings: Settings, model: str, result: TrainResult) -> TrainResult:
    """A fixture's tiny world may leave a first version below the gate's floor (a few dozen positives), so it is
    registered but not promoted; fixtures that need a champion promote it by hand, with the floor's verdict in the
    audited reason (as the closed loop does), so tests of serving, evaluation and erasure run on a champion."""
    from training.registry import promote

    if result.version is not None and not result.promoted and result.decision is not None:
        promote(settings, model, result.version, reason=f"test fixture, by hand ({result.decision.reason})")
    return result
