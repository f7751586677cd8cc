"""Drift scenarios: named changes to the world from a given day, for monitoring and retraining to catch.

A scenario is data (name, description, what it changes); the effects themselves live where the behaviour is
simulated (`propensity.drift_shift` for appetite, `engine` for fees, churn and the joining cohort), keyed by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from nextbest.errors import ConfigError


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "rate_shock",
            "Interest rates jump: appetite for deposits (savings, term deposits) rises and for loans "
            "(personal, car, mortgage, business, BNPL) falls from the start day; savings inflows grow.",
        ),
        Scenario(
            "fee_change",
            "Account fees rise 2.5x from the start day: more fee transactions and fee complaints, and a churn "
            "hazard that rises with each customer's price sensitivity.",
        ),
        Scenario(
            "digital_cohort",
            "A cohort of digital-first customers (15% of the base) joins over three weeks from the start day: "
            "young, app-heavy, push-consenting, with fewer legacy products and more BNPL and travel cards.",
        ),
    )
}


def get_scenario(name: str) -> Scenario:
    """The scenario called `name`, or a ConfigError listing the known ones."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ConfigError(f"unknown scenario {name!r}; known scenarios: {', '.join(SCENARIOS)}") from None
