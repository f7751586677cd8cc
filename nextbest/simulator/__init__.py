"""The simulated retail bank: seeded, vectorized, chunked; sources for the platform and the truth to judge it by.

Modules: `config` (what world), `params` (its physics), `population` (who), `engine` (the day loop), `policy`
(the logging policy of historical contacts), `propensity` (true acceptance and churn), `scenarios` (drift),
`schema` + `writer` (the data contract on disk), `world` (orchestration), `truth` (the oracle `TrueWorld`).
"""

from nextbest.simulator.config import SimulationConfig
from nextbest.simulator.scenarios import SCENARIOS
from nextbest.simulator.world import WorldSummary, simulate_world

__all__ = ["SCENARIOS", "SimulationConfig", "WorldSummary", "simulate_world"]
