"""Personalised pricing inside approved risk bands: the bands as data, the price response, the price choice.

On the floor, beside the policy: the catalogue declares, per priced action, the approved bands (`ProductPricing`:
per risk band a range [min, max], a step and a list price, with an owner and a version), validated when the
catalogue loads; the decision policy calls `Pricer.price` once, inside arbitration, so the service, campaigns, the
evaluation ladder and the twin price the same way. A price is a rate in % a year: an APR for credit, the rate paid
for a deposit.

The price choice: for each ranked priced action, the price on the band's grid that maximises the expected margin
`P(accept at price) x margin(price)` (the arbitration's priority with the action's value replaced by the margin at
that price), with P(accept at price) from the model's propensity at list price shifted by a price-response estimate
(`PriceResponse`, a per-action logistic elasticity fitted on logged contacts whose prices were randomised). The
margin is the bank's, from the catalogue alone: linear in the price, equal to the action's `value` at the band's
list price and 0 at the band's break-even rate (credit: the cost of funds plus the expected loss PD x LGD spread
over the term; a deposit: what the bank earns on the funds). Without an estimate, with `pricing.personalise: false`
in the policy (the list-price arm), for a customer with no risk band, or when a proposed price is not inside the
approved band, the action is offered at the band's list price (reason `PRICE_LIST`; a refused price adds
`PRICE_REFUSED_OUTSIDE_BAND` and a warning). A price outside the approved band is never served.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field, model_validator

from nextbest.base import Frozen

if TYPE_CHECKING:
    from nextbest.catalogue import Catalogue
    from nextbest.policy import RankedAction

logger = logging.getLogger(__name__)

PRICE_PERSONALISED = "PRICE_PERSONALISED"
PRICE_LIST = "PRICE_LIST"
PRICE_REFUSED = "PRICE_REFUSED_OUTSIDE_BAND"
#: the tolerance of grid and range checks (rates are given to a few decimals)
_EPS = 1e-9
PRICE_RESPONSE_FILE = "price_response.json"


# ---------------------------------------------------------------- the approved bands (catalogue data)


class PriceBand(Frozen):
    """One approved band: the risk bands it applies to, the range [min, max] on a grid of `step`, the list price."""

    risk_bands: tuple[str, ...] = Field(min_length=1)
    min: float = Field(ge=0)
    max: float = Field(ge=0)
    step: float = Field(gt=0)
    list_price: float = Field(ge=0)
    # Credit: the probability of default over the term of the band's customers (the expected loss is PD x LGD).
    pd: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _range(self) -> PriceBand:
        where = f"band {'/'.join(self.risk_bands)}"
        if self.min > self.max:
            raise ValueError(f"{where}: inverted range, min {self.min} > max {self.max}")
        if not self.min - _EPS <= self.list_price <= self.max + _EPS:
            raise ValueError(f"{where}: list_price {self.list_price} outside its band [{self.min}, {self.max}]")
        if not _on_grid(self.max - self.min, self.step):
            raise ValueError(f"{where}: step {self.step} does not divide the range [{self.min}, {self.max}]")
        if not _on_grid(self.list_price - self.min, self.step):
            raise ValueError(f"{where}: list_price {self.list_price} is not on the band's grid (min + k x step)")
        return self

    def contains(self, price: float) -> bool:
        """Inside [min, max] and on the grid."""
        return self.min - _EPS <= price <= self.max + _EPS and _on_grid(price - self.min, self.step)

    @property
    def grid(self) -> np.ndarray:
        n = int(round((self.max - self.min) / self.step))
        return np.round(self.min + self.step * np.arange(n + 1), 10)


class ProductPricing(Frozen):
    """The approved bands of one priced action, with their owner and version."""

    kind: Literal["credit", "deposit"]
    owner: str = Field(min_length=1)
    version: str = Field(min_length=1)
    # credit: the bank's cost of funds; deposit: what the bank earns on the deposited funds (% a year)
    funding_rate: float = Field(ge=0)
    lgd: float = Field(0.0, ge=0, le=1)  # credit: loss given default
    term_years: float = Field(1.0, gt=0)  # credit: the term the expected loss is spread over
    bands: tuple[PriceBand, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _bands(self) -> ProductPricing:
        seen: dict[str, int] = {}
        for i, b in enumerate(self.bands):
            for rb in b.risk_bands:
                if rb in seen:
                    raise ValueError(f"bands: risk band {rb!r} is in two bands ({seen[rb]} and {i}): overlapping")
                seen[rb] = i
        ordered = sorted(self.bands, key=lambda b: b.min)
        for lo, hi in zip(ordered, ordered[1:], strict=False):
            if hi.min < lo.max - _EPS:
                raise ValueError(
                    f"bands: [{lo.min}, {lo.max}] ({'/'.join(lo.risk_bands)}) and [{hi.min}, {hi.max}] "
                    f"({'/'.join(hi.risk_bands)}) overlap"
                )
        for b in self.bands:
            floor = self.break_even(b)
            better = b.list_price > floor if self.kind == "credit" else b.list_price < floor
            if not better:
                raise ValueError(
                    f"band {'/'.join(b.risk_bands)}: list_price {b.list_price} earns no margin (break-even {floor:.3f})"
                )
        return self

    def break_even(self, band: PriceBand) -> float:
        """The rate at which the margin is 0: credit, cost of funds + PD x LGD a year of the term; deposit, the
        rate the bank earns."""
        if self.kind == "credit":
            return self.funding_rate + 100.0 * band.pd * self.lgd / self.term_years
        return self.funding_rate

    def margin_factor(self, band: PriceBand, price: np.ndarray | float) -> np.ndarray:
        """margin(price) / margin(list price): linear, 1 at the list price, 0 at break-even."""
        floor = self.break_even(band)
        return (np.asarray(price, dtype=float) - floor) / (band.list_price - floor)

    def band_for(self, risk_band: str | None) -> PriceBand | None:
        """The band of a customer's risk band (None: no band applies, e.g. an unknown customer)."""
        if risk_band is None:
            return None
        for b in self.bands:
            if risk_band in b.risk_bands:
                return b
        return None


def margin_factors(
    pricing: Mapping[str, ProductPricing],
    action_ids: Sequence[str] | np.ndarray,
    risk_bands: Sequence[str | None] | np.ndarray,
    prices: Sequence[float] | np.ndarray,
) -> np.ndarray:
    """Per offer, margin(price) / margin(list price) of its action in the band of its risk band (`margin_factor`):
    1 for an unpriced action, a missing price (the list price) or a risk band without a band; what an accepted
    offer's catalogue value is multiplied by to be the margin at the price it was offered at."""
    price = np.asarray(prices, dtype=np.float64)
    out = np.ones(len(price))
    actions = np.asarray(action_ids, dtype=object)
    risks = np.asarray(risk_bands, dtype=object)
    for action_id, spec in pricing.items():
        for band in spec.bands:
            rows = np.nonzero((actions == action_id) & np.isin(risks, band.risk_bands) & np.isfinite(price))[0]
            if len(rows):
                out[rows] = spec.margin_factor(band, price[rows])
    return out


def list_prices(
    pricing: Mapping[str, ProductPricing],
    action_ids: Sequence[str] | np.ndarray,
    risk_bands: Sequence[str | None] | np.ndarray,
) -> np.ndarray:
    """Per offer, the list price of its action's band for its risk band (NaN: unpriced, or no band)."""
    out = np.full(len(action_ids), np.nan)
    actions = np.asarray(action_ids, dtype=object)
    risks = np.asarray(risk_bands, dtype=object)
    for action_id, spec in pricing.items():
        for band in spec.bands:
            out[(actions == action_id) & np.isin(risks, band.risk_bands)] = band.list_price
    return out


def check_pricing(pricing: Mapping[str, ProductPricing], catalogue: Catalogue) -> None:
    """ValueError naming the field when the bands name an unknown action or risk band, price a non-sale, or leave
    a risk band the action may be offered to without a band (called by `Catalogue` at load)."""
    bands = catalogue.risk_bands
    for action_id, spec in pricing.items():
        if action_id not in catalogue.action_ids:
            raise ValueError(f"pricing.{action_id}: unknown action; known: {', '.join(catalogue.action_ids)}")
        action = catalogue.action(action_id)
        if action.kind != "sales" or action.product is None:
            raise ValueError(f"pricing.{action_id}: only product sales are priced (kind {action.kind})")
        if (spec.kind == "credit") != action.credit:
            raise ValueError(f"pricing.{action_id}.kind: {spec.kind} but the action's credit flag is {action.credit}")
        for i, b in enumerate(spec.bands):
            unknown = [rb for rb in b.risk_bands if rb not in bands]
            if unknown:
                raise ValueError(
                    f"pricing.{action_id}.bands[{i}].risk_bands: unknown risk band(s) {unknown}; known: {bands}"
                )
        top = action.eligibility.max_risk_band
        allowed = bands[: bands.index(top) + 1] if top is not None else bands
        uncovered = [rb for rb in allowed if spec.band_for(rb) is None]
        if uncovered:
            raise ValueError(
                f"pricing.{action_id}.bands: no band for risk band(s) {uncovered} the action is offered to"
            )


def _on_grid(x: float, step: float) -> bool:
    k = x / step
    return abs(k - round(k)) < 1e-6


# ---------------------------------------------------------------- the policy's switch


class PricingPolicy(Frozen):
    """The policy's pricing section: `personalise: false` offers every priced action at its list price (the
    list-price arm); `estimate` names the price-response artefact (default: `<project home>/pricing/`)."""

    personalise: bool = True
    estimate: str | None = None


# ---------------------------------------------------------------- the price-response estimate


@dataclass(frozen=True)
class PriceResponse:
    """A per-action logistic elasticity: logit P(accept at r) = logit P(accept at list) + b_below x min(x, 0) +
    b_above x max(x, 0), x = log(r / list price). Fitted on logged contacts with randomised prices (`fit`)."""

    coefficients: Mapping[str, tuple[float, float]]  # action id -> (b_below, b_above)
    version: str = ""
    rows: Mapping[str, int] = field(default_factory=dict)

    def shift(self, action_id: str, price: np.ndarray, list_price: float) -> np.ndarray:
        b_below, b_above = self.coefficients[action_id]
        x = np.log(np.asarray(price, dtype=float) / list_price)
        return b_below * np.minimum(x, 0.0) + b_above * np.maximum(x, 0.0)

    def best_price(self, action_id: str, spec: ProductPricing, band: PriceBand, p_list: float) -> float:
        """The grid price maximising P(accept at r) x margin(r) (the list price when nothing beats it)."""
        grid = band.grid
        p = _sigmoid(_logit(p_list) + self.shift(action_id, grid, band.list_price))
        value = p * spec.margin_factor(band, grid)
        best = int(np.argmax(value))
        list_value = p_list  # margin factor 1 at list
        return float(grid[best]) if value[best] > list_value + 1e-12 else band.list_price

    def to_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "coefficients": {a: list(c) for a, c in self.coefficients.items()},
            "rows": dict(self.rows),
        }

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> PriceResponse:
        raw = json.loads(Path(path).read_text())
        return cls(
            coefficients={a: (float(c[0]), float(c[1])) for a, c in raw["coefficients"].items()},
            version=str(raw.get("version", "")),
            rows={a: int(n) for a, n in raw.get("rows", {}).items()},
        )


def fit_price_response(
    action_id: Sequence[str],
    price: np.ndarray,
    list_price: np.ndarray,
    accepted: np.ndarray,
    min_rows: int = 200,
    signs: Mapping[str, float] | None = None,
    min_z: float = 2.0,
) -> PriceResponse:
    """Per action, a logistic regression of acceptance on (1, min(x, 0), max(x, 0)), x = log(price / list price),
    by Newton's method with a small ridge. Only a response the data show is acted on: with `signs` (action -> -1
    for credit, where a dearer price must deter, +1 for a deposit), an action is left out (offered at list price)
    unless its slope above the list price has that sign at `min_z` standard errors; a slope below the list price
    of the wrong sign or under `min_z` is set to 0 (no gain from a cut). Actions with fewer than `min_rows` priced
    contacts, fewer than 20 acceptances or no price variation are left out."""
    acts = np.asarray(action_id)
    x_all = np.log(np.asarray(price, float) / np.asarray(list_price, float))
    y_all = np.asarray(accepted, float)
    coefficients: dict[str, tuple[float, float]] = {}
    rows: dict[str, int] = {}
    for a in sorted(set(acts.tolist())):
        sel = acts == a
        x, y = x_all[sel], y_all[sel]
        if sel.sum() < min_rows or np.ptp(x) < 1e-6 or y.sum() < 20:
            continue
        X = np.column_stack([np.ones_like(x), np.minimum(x, 0.0), np.maximum(x, 0.0)])
        beta, se = _newton_logistic(X, y)
        below, above = float(beta[1]), float(beta[2])
        if signs is not None and a in signs:
            sign = signs[a]
            if not (sign * above > 0 and abs(above) >= min_z * se[2]):
                logger.info(
                    "price response of %s not shown by the data (above-list slope %.2f, se %.2f)", a, above, se[2]
                )
                continue
            if not (sign * below > 0 and abs(below) >= min_z * se[1]):
                below = 0.0
        coefficients[a] = (below, above)
        rows[a] = int(sel.sum())
    version = "price-response-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return PriceResponse(coefficients=coefficients, version=version, rows=rows)


def _newton_logistic(
    X: np.ndarray, y: np.ndarray, ridge: float = 1e-3, iterations: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """The coefficients and their standard errors (the inverse Hessian's diagonal)."""
    beta = np.zeros(X.shape[1])
    beta[0] = _logit(float(np.clip(y.mean(), 1e-4, 1 - 1e-4)))
    hess = np.eye(X.shape[1])
    for _ in range(iterations):
        p = _sigmoid(X @ beta)
        grad = X.T @ (y - p) - ridge * beta
        hess = (X * (p * (1 - p))[:, None]).T @ X + ridge * np.eye(X.shape[1])
        step = np.linalg.solve(hess, grad)
        beta += step
        if np.max(np.abs(step)) < 1e-8:
            break
    return beta, np.sqrt(np.diag(np.linalg.inv(hess)))


def price_response_path(home: Path, config: PricingPolicy) -> Path:
    """Where a project's estimate lives: the policy's `pricing.estimate` (relative to the project home), else
    `<project home>/pricing/price_response.json` (what `nextbest pricing fit` writes)."""
    if config.estimate:
        p = Path(config.estimate)
        return p if p.is_absolute() else home / p
    return home / "pricing" / PRICE_RESPONSE_FILE


def load_price_response(path: Path | None) -> PriceResponse | None:
    """The estimate at `path` (None when there is none yet: list prices)."""
    if path is None or not Path(path).is_file():
        return None
    return PriceResponse.load(Path(path))


# ---------------------------------------------------------------- the price choice


class Pricer:
    """Prices a decision's ranked actions inside their bands (see the module docstring)."""

    def __init__(self, catalogue: Catalogue, config: PricingPolicy, response: PriceResponse | None = None) -> None:
        self.catalogue = catalogue
        self.config = config
        self.response = response

    @property
    def active(self) -> bool:
        return bool(self.catalogue.pricing)

    def price(
        self,
        ranked: Sequence[RankedAction],
        risk_band: str | None,
        contact_cost: float,
        requested: Mapping[str, float] | None = None,
    ) -> None:
        """Set price, band and band version of each priced ranked action, and its propensity and priority at that
        price (priority = P(accept at price) x margin(price) x weight - contact cost, as arbitration's)."""
        for r in ranked:
            spec = self.catalogue.pricing.get(r.action.id)
            if spec is None:
                continue
            band = spec.band_for(risk_band) or self._riskiest(spec)
            price, reasons = self._choose(r, spec, band, risk_band, requested)
            r.band = f"{r.action.id}/{'+'.join(band.risk_bands)}"
            r.band_version = spec.version
            r.price = price
            r.reasons.extend(reasons)
            if abs(price - band.list_price) > _EPS:
                shift = 0.0
                if self.response is not None and r.action.id in self.response.coefficients:
                    shift = float(self.response.shift(r.action.id, np.array([price]), band.list_price)[0])
                p = float(_sigmoid(_logit(r.propensity) + shift)) if shift else r.propensity
                factor = float(spec.margin_factor(band, price))
                r.priority = (r.priority + contact_cost) * (p / max(r.propensity, 1e-12)) * factor - contact_cost
                r.propensity = p

    def _riskiest(self, spec: ProductPricing) -> PriceBand:
        """The band of the riskiest risk band a product prices (a customer with no risk band gets its list price)."""
        for rb in reversed(self.catalogue.risk_bands):
            band = spec.band_for(rb)
            if band is not None:
                return band
        return spec.bands[-1]

    def _choose(
        self,
        r: RankedAction,
        spec: ProductPricing,
        band: PriceBand,
        risk_band: str | None,
        requested: Mapping[str, float] | None,
    ) -> tuple[float, list[str]]:
        action_id = r.action.id
        if requested and action_id in requested:
            asked = float(requested[action_id])
            if band.contains(asked):
                return asked, [PRICE_PERSONALISED]
            logger.warning("pricing: requested %s for %s outside band %s: list price", asked, action_id, band)
            return band.list_price, [PRICE_LIST, PRICE_REFUSED]
        if (
            not self.config.personalise
            or self.response is None
            or action_id not in self.response.coefficients
            or spec.band_for(risk_band) is None
        ):
            return band.list_price, [PRICE_LIST]
        proposed = self.response.best_price(action_id, spec, band, r.propensity)
        if not (isinstance(proposed, float) and math.isfinite(proposed) and band.contains(proposed)):
            logger.warning(
                "pricing: the estimate proposed %s for %s, outside its band: list price", proposed, action_id
            )
            return band.list_price, [PRICE_LIST, PRICE_REFUSED]
        if abs(proposed - band.list_price) <= _EPS:
            return band.list_price, [PRICE_LIST]
        return proposed, [PRICE_PERSONALISED]


def check_requested_prices(requested: Mapping[str, float], catalogue: Catalogue) -> None:
    """ValueError naming `prices.<action>` for a requested price of an unpriced action or inside none of the
    action's approved bands (the customer's own band is checked at decision time)."""
    for action_id, price in requested.items():
        spec = catalogue.pricing.get(action_id)
        if spec is None:
            raise ValueError(f"prices.{action_id}: the action has no approved price bands")
        if not any(b.contains(float(price)) for b in spec.bands):
            ranges = ", ".join(f"[{b.min}, {b.max}] step {b.step}" for b in spec.bands)
            raise ValueError(f"prices.{action_id}: {price} is outside every approved band ({ranges})")


def _sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def _logit(p: float) -> float:
    p = min(max(float(p), 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))
