"""The configuration of one simulated world: size, seed, calendar, drift scenario and chunking.

A world is a pure function of this object (and the catalogue): the same config gives the same bytes. The chunk
size is part of it because each chunk of customers draws from its own RNG stream (`SeedSequence(seed).spawn`).
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nextbest.errors import ConfigError
from nextbest.simulator.scenarios import SCENARIOS

GENERATOR_VERSION = "2.0"  # 2.0: sourced response rates, contact consequences, common random numbers


class SimulationConfig(BaseModel):
    """Validated parameters of `simulate_world`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customers: int = Field(3_000, gt=0, le=50_000_000)
    days: int = Field(120, gt=0, le=3_650)
    seed: int = Field(42, ge=0)
    start_date: dt.date = dt.date(2026, 1, 1)
    scenario: str | None = None
    scenario_start_day: int | None = Field(None, ge=0)
    chunk_size: int = Field(25_000, gt=0)
    statement_cadence_days: int = Field(7, gt=0)
    # None: daily hazard rows when customers x days is small, weekly otherwise (recorded in world.json)
    hazard_cadence_days: int | None = Field(None, gt=0)
    churn_horizons: tuple[int, ...] = (30, 60)
    # The logging policy's price exploration: a priced offer the policy gives no price is made at a uniform random
    # price on the grid of the customer's approved band (logged as `contacts.offered_price`), so a price response
    # can be learned (docs/pricing.md). Off: every offer at its list price, the world as before.
    price_exploration: bool = False

    @model_validator(mode="after")
    def _check(self) -> SimulationConfig:
        if self.scenario is not None:
            if self.scenario not in SCENARIOS:
                raise ValueError(f"unknown scenario {self.scenario!r}; known: {', '.join(SCENARIOS)}")
            if self.scenario_start_day is None:
                raise ValueError("a scenario needs scenario_start_day (the day index its effects begin)")
            if self.scenario_start_day >= self.days:
                raise ValueError(f"scenario_start_day {self.scenario_start_day} must be < days {self.days}")
        return self

    @property
    def effective_hazard_cadence(self) -> int:
        if self.hazard_cadence_days is not None:
            return self.hazard_cadence_days
        return 1 if self.customers * self.days <= 2_000_000 else 7

    @property
    def n_chunks(self) -> int:
        return -(-self.customers // self.chunk_size)

    @property
    def start_epoch_seconds(self) -> int:
        return int(dt.datetime.combine(self.start_date, dt.time(), tzinfo=dt.UTC).timestamp())

    def scenario_active(self, name: str) -> bool:
        return self.scenario == name

    @classmethod
    def build(cls, **kwargs: object) -> SimulationConfig:
        """Validate keyword arguments, turning pydantic's error into a ConfigError with a clear message."""
        try:
            return cls(**kwargs)  # type: ignore[arg-type]
        except ValidationError as exc:
            msgs = "; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"invalid simulation config: {msgs}") from None
