"""List price vs personalised pricing on the ladder's held-out decision points, under the truth (issue 18).

Three arms of stage 5 (the NBA champion with the decision policy), side by side:

- **list price**: the policy with `pricing.personalise: false`, every priced offer at its band's list price (the
  platform before pricing: its choices and value are the ladder's stage 5);
- **personalised**: the same policy pricing with the fitted price-response estimate (`nextbest pricing fit`);
- **oracle price** (reference): the list-price arm's offers at the truth's optimal price of each (customer,
  product) (`TrueWorld.optimal_price`): what pricing alone could add with a perfect price response.

Every decision is credited as the ladder credits it (`ladder.expected_value`), with the priced offer's true
acceptance at its price (`TrueWorld.p_accept` with the price) and the margin at that price (the catalogue's, the
action's value at list price): p_true(price) x (value x margin(price) / margin(list) + prevented churn loss) x
(1 - p_organic) - contact cost. Per arm: value and acceptances per 1,000 decisions, priced offers, the mean price
over list, and the fairness check of the arm's decision set (`nextbest.fairness`, the lowest adverse-impact ratio
across age bands and the project's protected attributes: credit offer rate and mean price).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from training import ladder

if TYPE_CHECKING:
    from nextbest.catalogue import Catalogue
    from nextbest.policy import DecisionPolicy, PolicyConfig
    from nextbest.pricing import PriceResponse

logger = logging.getLogger(__name__)

ARM_LIST = "list price"
ARM_PERSONALISED = "personalised price"
ARM_ORACLE = "list-price offers at the truth's optimal price (reference)"


def priced_choices(
    scored: pd.DataFrame,
    decisions: pd.DataFrame,
    policy: DecisionPolicy,
    p_model: np.ndarray,
    churn_risk: pd.Series | None,
) -> pd.DataFrame:
    """Stage 5's choice and price per decision point (`evaluate.stage5_picks` with the price kept)."""
    from training.evaluate import stage5_picks

    rows = [
        {
            ladder.DECISION_ID: decision_id,
            ladder.ACTION_ID: pick.action_id if pick else None,
            "price": pick.price if pick else None,
            "band": pick.band if pick else "",
        }
        for decision_id, pick in stage5_picks(scored, decisions, policy, p_model, churn_risk)
    ]
    return pd.DataFrame(rows)


def credit_priced(cands: pd.DataFrame, picks: pd.DataFrame, world: Any, catalogue: Catalogue) -> pd.DataFrame:
    """Each pick with its true acceptance at its price and the value the ladder credits (see module docstring)."""
    shown = picks.dropna(subset=[ladder.ACTION_ID])
    merged = shown.merge(cands, how="left", on=[ladder.DECISION_ID, ladder.ACTION_ID])
    price = pd.to_numeric(merged["price"], errors="coerce").to_numpy(dtype=float)
    p = merged["p_true"].to_numpy(dtype=float).copy()
    factor = np.ones(len(merged))
    priced = np.isfinite(price)
    if priced.any():
        frame = pd.DataFrame(
            {
                "customer_id": merged.loc[priced, "customer_id"].to_numpy(),
                "action_id": merged.loc[priced, ladder.ACTION_ID].to_numpy(),
                "channel": merged.loc[priced, "channel"].to_numpy(),
                "ts": pd.to_datetime(merged.loc[priced, "event_timestamp"], utc=True).to_numpy(),
                "price": price[priced],
            }
        )
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
        p[priced] = world.p_accept(frame)
        factor[priced] = [_margin_factor(catalogue, a, b, r) for a, b, r in _triples(merged, priced, price)]
    held = merged.assign(p_true=p, value=merged["value"].to_numpy(dtype=float) * factor)
    return merged.assign(p_at_price=p, credited=ladder.expected_value(held), margin_factor=factor)


def _triples(merged: pd.DataFrame, priced: np.ndarray, price: np.ndarray) -> list[tuple[str, str, float]]:
    return list(zip(merged.loc[priced, ladder.ACTION_ID], merged.loc[priced, "band"], price[priced], strict=True))


def _margin_factor(catalogue: Catalogue, action_id: str, band_name: str, price: float) -> float:
    spec = catalogue.pricing[action_id]
    band = next(b for b in spec.bands if band_name == f"{action_id}/{'+'.join(b.risk_bands)}")
    return float(spec.margin_factor(band, price))


def pricing_arms(
    cands: pd.DataFrame,
    decisions: pd.DataFrame,
    config: PolicyConfig,
    catalogue: Catalogue,
    response: PriceResponse | None,
    p_model: np.ndarray,
    churn_risk: pd.Series | None,
    world: Any,
    fairness: Callable[[pd.DataFrame], float] | None = None,
) -> pd.DataFrame:
    """The three arms' figures per 1,000 decisions (module docstring); `fairness(offers)` gives an arm's lowest
    adverse-impact ratio from its offers (`decision_id`, `customer_id`, `action_id`, `price`), None: not computed."""
    from nextbest.policy import DecisionPolicy

    n = int(decisions[ladder.DECISION_ID].nunique())
    off = config.model_copy(update={"pricing": config.pricing.model_copy(update={"personalise": False})})
    listed = priced_choices(cands, decisions, DecisionPolicy(catalogue, off), p_model, churn_risk)
    arms = {ARM_LIST: listed}
    if response is not None:
        arms[ARM_PERSONALISED] = priced_choices(
            cands, decisions, DecisionPolicy(catalogue, config, price_response=response), p_model, churn_risk
        )
    arms[ARM_ORACLE] = _at_optimal_price(listed, cands, world)
    rows = []
    for name, picks in arms.items():
        credited = credit_priced(cands, picks, world, catalogue)
        priced = credited[pd.to_numeric(credited["price"], errors="coerce").notna()]
        lists = [_list_price(catalogue, a, b) for a, b in zip(priced[ladder.ACTION_ID], priced["band"], strict=True)]
        offers = credited[[ladder.DECISION_ID, "customer_id", ladder.ACTION_ID, "price"]]
        rows.append(
            {
                "arm": name,
                "value_per_1000": 1000 * float(credited["credited"].sum()) / n,
                "acceptances_per_1000": 1000 * float(credited["p_at_price"].sum()) / n,
                "priced_offers_per_1000": 1000 * len(priced) / n,
                "priced_acceptance": float(priced["p_at_price"].mean()) if len(priced) else float("nan"),
                "mean_price_over_list": float(np.mean(priced["price"].astype(float) / np.array(lists)))
                if len(priced)
                else float("nan"),
                "fairness_min_ratio": fairness(offers) if fairness is not None else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def _list_price(catalogue: Catalogue, action_id: str, band_name: str) -> float:
    spec = catalogue.pricing[action_id]
    return next(b.list_price for b in spec.bands if band_name == f"{action_id}/{'+'.join(b.risk_bands)}")


def _at_optimal_price(listed: pd.DataFrame, cands: pd.DataFrame, world: Any) -> pd.DataFrame:
    """The list-price arm's offers with the truth's optimal price in place of the list price."""
    merged = listed.merge(cands, how="left", on=[ladder.DECISION_ID, ladder.ACTION_ID])
    priced = pd.to_numeric(merged["price"], errors="coerce").notna().to_numpy()
    out = listed.copy()
    if priced.any():
        frame = pd.DataFrame(
            {
                "customer_id": merged.loc[priced, "customer_id"].to_numpy(),
                "action_id": merged.loc[priced, ladder.ACTION_ID].to_numpy(),
                "channel": merged.loc[priced, "channel"].to_numpy(),
                "ts": pd.to_datetime(merged.loc[priced, "event_timestamp"], utc=True),
            }
        )
        best = world.optimal_price(frame.reset_index(drop=True))
        current = out.loc[priced, "price"].to_numpy(dtype=float)
        out.loc[priced, "price"] = np.where(np.isfinite(best), best, current)
    return out


def evaluate_pricing(
    settings: Any,
    cands: pd.DataFrame,
    decisions: pd.DataFrame,
    policy: DecisionPolicy,
    p_model: np.ndarray,
    churn_risk: pd.Series | None,
    world: Any,
    notes: list[str],
) -> pd.DataFrame:
    """The ladder's pricing table for the settings' project (its estimate, its fairness spec); empty when the
    catalogue prices nothing."""
    from nextbest.pricing import load_price_response, price_response_path
    from nextbest.project import project_of

    catalogue = policy.catalogue
    if not catalogue.pricing:
        return pd.DataFrame()
    project = project_of(settings)
    config = policy.config
    response = load_price_response(price_response_path(project.home(settings), config.pricing))
    if response is None:
        notes.append("pricing: no price-response estimate (nextbest pricing fit): the personalised arm is not shown")
    elif not config.pricing.personalise:
        notes.append("pricing: the policy's pricing.personalise is off; the personalised arm shows what it would do")
    return pricing_arms(
        cands, decisions, config, catalogue, response, p_model, churn_risk, world, _fairness_hook(project, decisions)
    )


def _fairness_hook(project: Any, decisions: pd.DataFrame) -> Callable[[pd.DataFrame], float] | None:
    """An arm's lowest adverse-impact ratio (`nextbest.fairness.decision_set_report`, age bands of the decision
    points' `age` and the project's protected attributes), None when the decision points carry no age."""
    if "age" not in decisions.columns:
        return None
    from nextbest.fairness import decision_set_report, protected_values

    try:
        protected = protected_values(project.fairness, project)
    except Exception as exc:  # the protected attributes' own source is optional for the ladder
        logger.warning("fairness: protected attributes not read (%s); age bands only", exc)
        protected = None
    units = decisions[["customer_id", "age"]].assign(customer_id=decisions["customer_id"].astype(str))

    def ratio(offers: pd.DataFrame) -> float:
        shown = offers.dropna(subset=[ladder.ACTION_ID])
        try:
            return decision_set_report(units, shown, project.decisions()[1], project.fairness, protected).min_ratio
        except Exception as exc:  # the pricing figures stand without the fairness column
            logger.warning("fairness check of a pricing arm failed: %s", exc)
            return float("nan")

    return ratio
