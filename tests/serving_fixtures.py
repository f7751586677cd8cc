"""A tiny served world for the serving tests: sources -> feature tables -> Feast online store -> champion models.

Built once per test session (one to two minutes on this machine): a seeded simulated bank of 300 customers over
100 days, features applied and materialized into SQLite, and `churn` / `nba` champions trained with one Optuna
trial and few boosting rounds into a temporary MLflow. Small on purpose: the serving tests check behaviour of the
service, not model quality.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


class BackgroundService:
    """A `ServiceProcess` that boots in a thread, so that servers of one test module boot side by side.

    A server's start-up is about 20 s of one core (imports, models, store): two booting together use both cores of
    the machine instead of one after the other. `ServiceProcess` hands its child the settings through
    `<home>/serving/settings.yaml`, one file for every server of a home: this one reads a copy of its own
    (`NEXTBEST_CONFIG` set on its command) in `folder`. Launch these before a server of the same home that is
    started the ordinary way, so that server's settings are the ones its child reads from the shared file.
    """

    def __init__(self, settings: Settings, folder: Path, name: str = "service") -> None:
        import os

        import yaml

        from serving.runner import ServiceProcess, free_port, service_command

        folder.mkdir(parents=True, exist_ok=True)
        own = folder / f"{name}-settings.yaml"
        fd = os.open(own, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the settings can hold secrets
        with os.fdopen(fd, "w") as out:
            out.write(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False))
        port = free_port()
        command = ["env", f"NEXTBEST_CONFIG={own}", *service_command("127.0.0.1", port)]
        self.service = ServiceProcess(settings, port=port, log_path=folder / f"{name}-{port}.log", command=command)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def launch(self) -> BackgroundService:
        """Start booting; returns once the child process exists (the shared settings file is written by then)."""

        def boot() -> None:
            try:
                self.service.start()
            except BaseException as exc:  # re-raised by ready(), in the test
                self._error = exc

        self._thread = threading.Thread(target=boot, name=f"boot-{self.service.port}", daemon=True)
        self._thread.start()
        while self.service.proc is None and self._thread.is_alive():
            time.sleep(0.05)
        return self

    def ready(self, timeout: float = 240.0) -> Any:
        """The `ServiceProcess`, once `/readyz` answers (launched now if it was not); the start's error if any."""
        if self._thread is None:
            self.launch()
        assert self._thread is not None
        self._thread.join(timeout)
        if self._error is not None:
            raise self._error
        assert not self._thread.is_alive(), f"the server is still starting after {timeout:.0f} s"
        return self.service

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.join(240)
        self.service.stop()


def selected(request: Any, test_name: str, **params: object) -> bool:
    """Whether this run has `test_name` (with these parametrize values) among its tests."""
    for item in request.session.items:
        if getattr(item, "originalname", None) != test_name:
            continue
        given = getattr(getattr(item, "callspec", None), "params", {})
        if all(given.get(k) == v for k, v in params.items()):
            return True
    return False
