"""Fit the price-response estimate the decision policy prices with (`nextbest pricing fit`).

From the bank's own logged contacts: every contact of a priced action whose offered price is logged
(`contacts.offered_price`, randomised inside the band by the logging policy's price exploration,
`SimulationConfig.price_exploration`), the customer's risk band at the contact (the latest `customers` row at or
before it: the list price of that band is the reference), and whether it was accepted. Per action a logistic
elasticity (`nextbest.pricing.fit_price_response`), written as a versioned JSON artefact to
`<project home>/pricing/price_response.json` (or the policy's `pricing.estimate`), which the engine loads with its
policy. The prices are randomised independently of the customer, so the slope is the average effect of the price
on acceptance; the NBA model's propensity is read as the propensity at list price (docs/pricing.md says why that
is an approximation).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nextbest.catalogue import RISK_BANDS, Catalogue
from nextbest.errors import ConfigError, DataError
from nextbest.pricing import PriceResponse, fit_price_response, price_response_path
from nextbest.project import Project, project_of
from nextbest.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PriceFit:
    response: PriceResponse
    path: Path
    contacts: int


def priced_contacts(sources: Path, catalogue: Catalogue) -> pd.DataFrame:
    """The logged contacts with an offered price, each with the list price of the customer's band at the time."""
    contacts = pd.read_parquet(
        sources / "contacts", columns=["customer_id", "ts", "action_id", "offered_price", "accepted"]
    )
    if "offered_price" not in contacts.columns:
        raise DataError(f"{sources / 'contacts'} has no offered_price column: simulate with price exploration")
    priced = contacts[contacts["offered_price"].notna() & contacts["action_id"].isin(list(catalogue.pricing))]
    if priced.empty:
        return priced.assign(list_price=pd.Series(dtype=float))
    from nextbest.simulator.population import risk_band

    profiles = pd.read_parquet(sources / "customers", columns=["customer_id", "valid_from", "credit_score"])
    q = priced.sort_values("ts").reset_index(drop=True)
    merged = pd.merge_asof(
        q,
        profiles.sort_values("valid_from"),
        left_on="ts",
        right_on="valid_from",
        by="customer_id",
        direction="backward",
    )
    band = risk_band(merged["credit_score"].fillna(0).to_numpy(np.int64))
    lists = np.full(len(merged), np.nan)
    for action_id, spec in catalogue.pricing.items():
        for i, rb in enumerate(RISK_BANDS):
            b = spec.band_for(rb)
            if b is not None:
                lists[(merged["action_id"] == action_id).to_numpy() & (band == i)] = b.list_price
    return merged.assign(list_price=lists).dropna(subset=["list_price"])


def fit_project(settings: Settings, project: Project | None = None, min_rows: int = 200) -> PriceFit:
    """Fit the simulated bank's price response from its logged contacts and save it where the engine reads it."""
    project = project or project_of(settings)
    if project.kind != "genome":
        raise ConfigError(
            f"nextbest pricing fit reads the simulated bank's contacts.offered_price; project {project.name!r} has its "
            "own tables (log the offered prices of its contacts first)"
        )
    _serving, catalogue, policy = project.decisions()
    frame = priced_contacts(settings.sources_dir, catalogue)
    if frame.empty:
        raise DataError(
            "no logged contact has an offered price: simulate with price exploration "
            "(SimulationConfig.price_exploration, NEXTBEST_WORLD__PRICE_EXPLORATION=true) first"
        )
    response = fit_price_response(
        frame["action_id"].to_numpy(),
        frame["offered_price"].to_numpy(np.float64),
        frame["list_price"].to_numpy(np.float64),
        frame["accepted"].to_numpy(bool),
        min_rows=min_rows,
        signs={a: -1.0 if spec.kind == "credit" else 1.0 for a, spec in catalogue.pricing.items()},
    )
    path = response.save(price_response_path(project.home(settings), policy.pricing))
    logger.info("price response %s fitted on %d priced contacts: %s", response.version, len(frame), path)
    return PriceFit(response=response, path=path, contacts=len(frame))
