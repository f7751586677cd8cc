"""The simulated retail bank: seeded, vectorized, chunked; sources for the platform and the truth to judge it by.

Modules: `config` (what world), `params` (its physics), `population` (who), `engine` (the day loop), `streams`
(counter-based random numbers: common random numbers across policies), `policy` (the `ContactPolicy` protocol and
the logging policy of historical contacts), `propensity` (true acceptance, consequences, organic uptake, churn),
`stepper` (the steppable `World` for the policy twin), `scenarios` (drift), `schema` + `writer` (the data contract
on disk), `world` (orchestration), `truth` (the oracle `TrueWorld`).
"""

from typing import Any

from nextbest.simulator.config import SimulationConfig
from nextbest.simulator.policy import ContactPolicy, DecisionPoints, Decisions, LoggingPolicy, NoContactPolicy
from nextbest.simulator.scenarios import SCENARIOS
from nextbest.simulator.world import WorldSummary, simulate_world


def __getattr__(name: str) -> Any:
    """`World` and `DayReport` on first use: the stepper needs pandas, which `nextbest simulate` does not."""
    if name in ("World", "DayReport"):
        from nextbest.simulator import stepper

        return getattr(stepper, name)
    raise AttributeError(f"module 'nextbest.simulator' has no attribute {name!r}")


__all__ = [
    "SCENARIOS",
    "ContactPolicy",
    "DayReport",
    "DecisionPoints",
    "Decisions",
    "LoggingPolicy",
    "NoContactPolicy",
    "SimulationConfig",
    "World",
    "WorldSummary",
    "simulate_world",
]
