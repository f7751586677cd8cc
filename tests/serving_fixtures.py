"""A tiny served world for the serving tests: sources -> feature tables -> Feast online store -> champion models.

Built once per test session (one to two minutes on this machine): a seeded simulated bank of 300 customers over
100 days, features applied and materialized into SQLite, and `churn` / `nba` champions trained with one Optuna
trial and few boosting rounds into a temporary MLflow. Small on purpose: the serving tests check behaviour of the
service, not model quality.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from nextbest.settings import Settings

logger = logging.getLogger(__name__)

CUSTOMERS = 300
DAYS = 100


@dataclass(frozen=True)
class ServedWorld:
    settings: Settings
    customer_ids: list[int]
    seconds: float


def build_served_world(home: Path, customers: int = CUSTOMERS, days: int = DAYS, seed: int = 11) -> ServedWorld:
    """Everything `/recommend` needs, under `home`."""
    from training_fixtures import promote_even_below_floor

    import nextbest.features as nbf
    from nextbest.simulator import SimulationConfig, simulate_world
    from training.pipeline import train_model
    from training.tune import TuningConfig

    t0 = time.perf_counter()
    settings = Settings(home=home)
    settings.ensure_dirs()
    simulate_world(SimulationConfig.build(customers=customers, days=days, seed=seed), settings.world_dir)
    nbf.features_of(settings).build()
    nbf.features_of(settings).apply()
    nbf.features_of(settings).materialize()
    config = TuningConfig(max_rounds=25, early_stopping_rounds=5, warmup_rounds=5)
    promote_even_below_floor(
        settings, "churn", train_model(settings, "churn", trials=1, horizon_days=14, config=config)
    )
    promote_even_below_floor(settings, "nba", train_model(settings, "nba", trials=1, config=config))
    seconds = time.perf_counter() - t0
    logger.info("served world built in %.1f s", seconds)
    import pandas as pd

    ids = sorted(
        int(i)
        for i in pd.read_parquet(settings.sources_dir / "customers", columns=["customer_id"])["customer_id"].unique()
    )
    return ServedWorld(settings=settings, customer_ids=ids, seconds=seconds)


def push_in_step(settings: Settings, signal: str, customer_ids: list[int], barrier: object, ts: str) -> None:
    """Child process body: for each customer, wait for the other pusher at the barrier, then push one `signal`.

    Two of these in separate processes push different signals for the same customers at the same instant, as two
    service workers handling two events of one customer would (tests/test_serving_service.py checks none is lost).
    """
    import nextbest.features as nbf

    store = nbf.get_store(settings)
    for customer_id in customer_ids:
        barrier.wait(timeout=60)  # type: ignore[attr-defined]
        nbf.push_event(store, {"customer_id": customer_id, "ts": ts, "signal": signal})
