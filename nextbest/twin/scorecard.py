"""The twin's scorecard: what each policy did to the same customers, per customer, then the KPIs with paired errors.

A `Ledger` follows one world under one policy, customer by customer (the cohort: every customer live when the twin
starts), from the world's day reports: decision points, delivered contacts and their cost, acceptances (sales,
retention, service), dismissals, withdrawn consents, complaints, products taken up on their own, closures, logins,
and at the end the products held. What a customer is worth over the twin's days (`value`):

    value = margin of the accepted actions + catalogue value of the products taken up on their own
            - relationship value x closed

The margin of an accepted action is its catalogue value times the catalogue's margin factor at the price the world
offered it at, in the customer's band (`nextbest.pricing.margin_factors`, the function the ladder's pricing table
and `TrueWorld.optimal_price` use): exactly the catalogue value at list price and for an unpriced action.

The relationship value of a customer is the decision policy's value at risk (a share of the balances, capped:
`nextbest.policy.customer_view`) at the twin's start, the same number in every world. Organic uptake is in every
world, the no-contact control's included, so a policy's *incremental value* -- its customers' value minus the same
customers' value under no contact -- credits an offer only with what it added: a sale the customer would have made
anyway within the twin's days is in the control too. *Net value* = incremental value - contact cost.

KPIs (`KPIS`) are means over customers, or ratios of sums (acceptance among delivered contacts, ...). Every
customer's life is independent of the others' and the worlds share their random numbers (CRN), so the standard
error of a difference between two policies is paired per customer: the differences' standard deviation / sqrt(N)
(ratios linearised: (a - R b) / mean(b) per customer). Seeds add independent customers (pooled); the spread
between seeds is reported beside.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from nextbest.catalogue import PRODUCTS, Catalogue

if TYPE_CHECKING:
    import pyarrow as pa

    from nextbest.simulator.stepper import DayReport, World

#: per-customer counters a ledger keeps
COUNTERS: tuple[str, ...] = (
    "points",
    "asked",
    "contacts",
    "cost",
    "accepted",
    "sales",
    "dismissed",
    "opted_out",
    "complained",
    "offer_value",
    "priced_offers",
    "priced_accepted",
    "organic_value",
    "closed",
    "logins",
    "products_end",
    "active_end",
    "wallet_end",
)
CONTROL = "control"


def product_values(catalogue: Catalogue) -> dict[str, float]:
    """What a product taken up on its own is worth: the catalogue value of the sale of it (the first sales action)."""
    out: dict[str, float] = {}
    for a in catalogue.actions:
        if a.kind == "sales" and a.product and a.product not in out:
            out[a.product] = float(a.value)
    return out


def offered_products(catalogue: Catalogue) -> np.ndarray:
    """(segments, products) what the bank offers a segment: the current account and every product a sales action
    of the catalogue may sell to it (the denominator of wallet share)."""
    out = np.zeros((len(catalogue.segments), len(PRODUCTS)), dtype=bool)
    out[:, PRODUCTS.index("current_account")] = True
    for a in catalogue.actions:
        if a.kind == "sales" and a.product in PRODUCTS:
            for s, seg in enumerate(catalogue.segments):
                if a.eligibility.segments is None or seg in a.eligibility.segments:
                    out[s, PRODUCTS.index(a.product)] = True
    return out


@dataclass
class Ledger:
    """One world under one policy, per customer of the cohort (see the module docstring)."""

    policy: str
    seed: int
    ids: np.ndarray  # the cohort's keys, sorted
    relationship_value: np.ndarray
    catalogue: Catalogue
    counters: dict[str, np.ndarray] = field(default_factory=dict)
    daily: list[dict[str, float]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    refused: int = 0
    #: each cohort customer's age at the twin's start (the fairness check's age bands; None: unknown)
    ages: np.ndarray | None = None
    #: the priced offers the engine made (the fairness check's mean prices): cohort position, action, price
    priced: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    #: the delivered priced contacts as the world offered them: action, price (the band's list price when the
    #: world got none), list price, accepted, the margin credited
    offered: list[pd.DataFrame] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in (*COUNTERS, "credit_offers"):
            self.counters.setdefault(name, np.zeros(len(self.ids)))
        self._credit = np.array(sorted(a.id for a in self.catalogue.actions if a.credit), dtype=object)
        self._action = {a.id: a for a in self.catalogue.actions}
        self._product_value = product_values(self.catalogue)
        self._priced_ids = np.array(sorted(self.catalogue.pricing), dtype=object)

    def _rows(self, keys: Any) -> tuple[np.ndarray, np.ndarray]:
        """(positions in the cohort, mask of the keys that are in it)."""
        keys = np.asarray(keys, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.ids, keys), len(self.ids) - 1)
        inside = self.ids[pos] == keys if len(self.ids) else np.zeros(len(keys), dtype=bool)
        return pos[inside], inside

    def _count(self, name: str, keys: Any, weights: Any = 1.0) -> None:
        pos, inside = self._rows(keys)
        w = np.broadcast_to(np.asarray(weights, dtype=np.float64), np.shape(keys))[inside]
        np.add.at(self.counters[name], pos, w)

    def add_day(self, report: DayReport, tables: Mapping[str, pa.Table], asked: np.ndarray) -> None:
        """One lived day: its decision points (`asked`: the customers the engine was asked about), contacts and what
        followed, organic uptake, closures and logins."""
        c = report.contacts
        self._count("points", report.points.customer_id)
        self._count("asked", asked)
        value = np.zeros(len(c))
        if len(c):
            kind = c["kind"].to_numpy()
            accepted = c["accepted"].to_numpy(dtype=bool)
            value = np.where(accepted, self._margins(c), 0.0)
            ids = c["customer_id"].to_numpy()
            priced = np.isin(c["action_id"].to_numpy(), self._priced_ids)
            for name, w in (
                ("contacts", 1.0),
                ("cost", c["cost"].to_numpy(dtype=np.float64)),
                ("accepted", accepted),
                ("sales", accepted & (kind == "sales")),
                ("dismissed", c["dismissed"].to_numpy(dtype=bool)),
                ("opted_out", c["opted_out"].to_numpy(dtype=bool)),
                ("complained", c["complained"].to_numpy(dtype=bool)),
                ("offer_value", value),
                ("priced_offers", priced),
                ("priced_accepted", priced & accepted),
                ("credit_offers", np.isin(c["action_id"].to_numpy(), self._credit)),
            ):
                self._count(name, ids, w)
        organic = report.organic
        organic_value = organic["product"].map(self._product_value).fillna(0.0).to_numpy(dtype=np.float64)
        self._count("organic_value", organic["customer_id"].to_numpy(), organic_value)
        self._count("closed", report.closed)
        lost = float(self.relationship_value[self._rows(report.closed)[0]].sum())
        events = tables.get("digital_events")
        if events is not None and events.num_rows:
            frame = events.select(["customer_id", "event_type"]).to_pandas()
            self._count("logins", frame.loc[frame["event_type"] == "login", "customer_id"].to_numpy())
        self.refused += int(report.refused)
        cost = float(c["cost"].sum()) if len(c) else 0.0
        self.daily.append(
            {
                "day": float(report.day),
                "gross_value": float(value.sum()) + float(organic_value.sum()) - lost,
                "cost": cost,
                "contacts": float(len(c)),
                "accepted": float(c["accepted"].sum()) if len(c) else 0.0,
                "closed": float(len(report.closed)),
            }
        )

    def _margins(self, c: pd.DataFrame) -> np.ndarray:
        """Each delivered contact's value if accepted: the margin at the price the world offered (the catalogue
        value times `margin_factor` in the customer's band; exactly the catalogue value at list price or unpriced),
        and the delivered priced contacts kept for the pricing table."""
        from nextbest.pricing import list_prices, margin_factors

        value = c["value"].to_numpy(dtype=np.float64)
        if "price" not in c.columns or not self.catalogue.pricing:
            return value
        actions, risks = c["action_id"].to_numpy(), c["risk_band"].to_numpy()
        price = c["price"].to_numpy(dtype=np.float64)
        factor = margin_factors(self.catalogue.pricing, actions, risks, price)
        margin = value * factor  # factor 1.0 at list price: exactly the catalogue value
        priced = np.isin(actions, self._priced_ids)
        if priced.any():
            listed = list_prices(self.catalogue.pricing, actions[priced], risks[priced])
            self.offered.append(
                pd.DataFrame(
                    {
                        "action_id": actions[priced],
                        "price": np.where(np.isfinite(price[priced]), price[priced], listed),
                        "list_price": listed,
                        "accepted": c["accepted"].to_numpy(dtype=bool)[priced],
                        "margin": margin[priced],
                    }
                )
            )
        return margin

    def add_prices(self, ids: np.ndarray, actions: np.ndarray, prices: np.ndarray) -> None:
        """The day's priced offers (customer, action, the engine's price) for the fairness check's mean prices."""
        prices = np.asarray(prices, dtype=np.float64)
        priced = np.isfinite(prices)
        pos, inside = self._rows(np.asarray(ids)[priced])
        if len(pos):
            self.priced.append((pos, np.asarray(actions, dtype=object)[priced][inside], prices[priced][inside]))

    def finish(self, world: World) -> None:
        """The relationship at the end: products held by the customers still with the bank, and their wallet share."""
        state = world.state().set_index("customer_id")
        segment = pd.Series(
            np.concatenate([p.segment for p in world.pops]), index=np.concatenate([p.customer_id for p in world.pops])
        )
        cohort = state.reindex(self.ids)
        active = cohort["active"].fillna(False).to_numpy(dtype=bool)
        held = cohort[[f"holds_{p}" for p in PRODUCTS]].fillna(False).to_numpy(dtype=bool)
        offered = offered_products(self.catalogue)[segment.reindex(self.ids).fillna(0).to_numpy(dtype=np.int64)]
        share = (held & offered).sum(axis=1) / np.maximum(offered.sum(axis=1), 1)
        self.counters["active_end"] = active.astype(np.float64)
        self.counters["products_end"] = np.where(active, held.sum(axis=1), 0).astype(np.float64)
        self.counters["wallet_end"] = np.where(active, share, 0.0)

    @property
    def value(self) -> np.ndarray:
        """Each customer's value over the twin's days (see the module docstring)."""
        c = self.counters
        return c["offer_value"] + c["organic_value"] - c["closed"] * self.relationship_value


# ---------------------------------------------------------------- KPIs


@dataclass(frozen=True)
class Kpi:
    """One scorecard figure: a mean per customer (`num`) or a ratio of sums (`num` / `den`), times `scale`."""

    name: str
    label: str
    num: str
    den: str | None = None
    scale: float = 1.0
    better: Literal["higher", "lower"] | None = "higher"
    unit: str = ""


#: per-customer series a KPI can name besides the counters: value minus the control's, and net of contact cost
DERIVED = ("incremental", "net")
KPIS: tuple[Kpi, ...] = (
    Kpi("net_value", "net value", "net", scale=1000.0, unit="EUR / 1,000 customers"),
    Kpi(
        "net_value_per_point",
        "net value per decision point",
        "net",
        "points",
        scale=1000.0,
        unit="EUR / 1,000 decision points",
    ),  # fmt: skip
    Kpi("incremental_value", "incremental value", "incremental", scale=1000.0, unit="EUR / 1,000 customers"),
    Kpi("contact_cost", "contact cost", "cost", scale=1000.0, better="lower", unit="EUR / 1,000 customers"),
    Kpi("conversion", "conversions", "sales", "points", scale=1000.0, unit="sales / 1,000 decision points"),
    Kpi("acceptance", "accepted / shown", "accepted", "contacts", unit="share of delivered actions"),
    Kpi(
        "priced_acceptance",
        "accepted / priced shown",
        "priced_accepted",
        "priced_offers",
        unit="acceptance of delivered priced offers",
    ),  # fmt: skip
    Kpi("dismissals", "dismissed / shown", "dismissed", "contacts", better="lower", unit="share of delivered"),
    Kpi("contacts", "contacts", "contacts", scale=1.0, better=None, unit="per customer"),
    Kpi("churn", "churn", "closed", better="lower", unit="share of customers closed"),
    Kpi("products", "products / customer", "products_end", "active_end", unit="at the end, active customers"),
    Kpi("wallet_share", "wallet share", "wallet_end", "active_end", unit="held / offered to the segment, at the end"),
    Kpi("opt_outs", "opt-outs", "opted_out", scale=1000.0, better="lower", unit="withdrawn consents / 1,000 cust."),
    Kpi("complaints", "complaints", "complained", scale=1000.0, better="lower", unit="per 1,000 customers"),
    Kpi("engaged", "engaged", "engaged", unit="share of customers accepting any action"),
    Kpi("logins", "logins", "logins", scale=1.0, unit="per customer over the twin"),
)


@dataclass
class PolicyData:
    """One policy's per-customer series over every seed (customers of all seeds pooled, in seed order)."""

    name: str
    label: str
    series: dict[str, np.ndarray]
    seed: np.ndarray


def pooled(ledgers: Sequence[Ledger], control: Sequence[Ledger]) -> PolicyData:
    """A policy's ledgers of every seed (in the control's seed order), with value minus the control's and net."""
    by_seed = {lg.seed: lg for lg in ledgers}
    series: dict[str, list[np.ndarray]] = {name: [] for name in (*COUNTERS, *DERIVED, "engaged", "value")}
    seeds = []
    for ctrl in control:
        lg = by_seed[ctrl.seed]
        if not np.array_equal(lg.ids, ctrl.ids):
            raise ValueError(f"policy {lg.policy} seed {lg.seed}: not the control's customers")
        for name in COUNTERS:
            series[name].append(lg.counters[name])
        incremental = lg.value - ctrl.value
        series["value"].append(lg.value)
        series["incremental"].append(incremental)
        series["net"].append(incremental - lg.counters["cost"])
        series["engaged"].append((lg.counters["accepted"] > 0).astype(np.float64))
        seeds.append(np.full(len(lg.ids), lg.seed))
    name = ledgers[0].policy
    return PolicyData(name, name, {k: np.concatenate(v) for k, v in series.items()}, np.concatenate(seeds))


def _linear(data: PolicyData, kpi: Kpi) -> tuple[float, np.ndarray]:
    """The KPI and each customer's linearised contribution (mean: the value itself; ratio: (a - R b) / mean(b))."""
    a = data.series[kpi.num]
    if kpi.den is None:
        return float(a.mean()) * kpi.scale, a * kpi.scale
    b = data.series[kpi.den]
    if b.sum() <= 0:
        return math.nan, np.full(len(a), math.nan)
    r = float(a.sum() / b.sum())
    return r * kpi.scale, (a - r * b) / b.mean() * kpi.scale


def _se(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan


def kpi_table(policies: Sequence[PolicyData]) -> pd.DataFrame:
    """Per policy and KPI: the value, its standard error, and the lowest and highest value of a single seed."""
    rows = []
    for data in policies:
        for kpi in KPIS:
            value, contrib = _linear(data, kpi)
            seeds = []
            for s in np.unique(data.seed):
                part = PolicyData(data.name, data.label, {k: v[data.seed == s] for k, v in data.series.items()}, s)
                seeds.append(_linear(part, kpi)[0])
            se = _se(contrib)
            finite = [v for v in seeds if math.isfinite(v)]
            rows.append(
                {
                    "policy": data.name,
                    "kpi": kpi.name,
                    "value": value,
                    "std_error": se,
                    "seed_min": min(finite) if finite else math.nan,
                    "seed_max": max(finite) if finite else math.nan,
                    "seeds": len(seeds),
                }
            )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Margin:
    """`policy` minus `baseline` on one KPI, paired per customer, with which side wins (None: within 1.96 SE)."""

    kpi: str
    policy: str
    baseline: str
    margin: float
    std_error: float
    winner: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kpi": self.kpi,
            "policy": self.policy,
            "baseline": self.baseline,
            "margin": self.margin,
            "std_error": self.std_error,
            "z": self.margin / self.std_error if self.std_error and self.std_error > 0 else math.nan,
            "winner": self.winner,
        }


def compare(policy: PolicyData, baseline: PolicyData, z: float = 1.96) -> list[Margin]:
    """Every KPI of `policy` minus `baseline` on the same customers, with the winner where the margin exceeds `z`
    paired standard errors (direction from the KPI: higher or lower is better; none for neutral KPIs)."""
    out = []
    for kpi in KPIS:
        a, ca = _linear(policy, kpi)
        b, cb = _linear(baseline, kpi)
        margin, se = a - b, _se(ca - cb)
        winner = None
        if kpi.better is not None and np.isfinite(se) and abs(margin) > z * se:
            higher = policy.name if margin > 0 else baseline.name
            lower = baseline.name if margin > 0 else policy.name
            winner = higher if kpi.better == "higher" else lower
        out.append(Margin(kpi.name, policy.name, baseline.name, margin, se, winner))
    return out
