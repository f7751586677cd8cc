"""A steppable world for the policy twin: live the simulated bank one day at a time under any `ContactPolicy`.

`World(config)` builds every chunk's customers in memory (the same customers `simulate_world` makes for that
config). `step(policy)` lives one day: every chunk runs the day up to its decision points, the policy is called
once with all of them (`DecisionPoints`), the chunks then carry out the decisions (`Decisions`) and finish the
day. The `DayReport` says what happened, with the truth a scorer needs; `day_tables()` gives the source rows the
day added (so a feature pipeline can update the genome each day), `publish(out_dir)` writes the whole world like
`simulate_world` (sources and truth: `TrueWorld.load` works on it).

Common random numbers: every draw is keyed by (customer, day, what is drawn), so two `World`s of the same config
run under two policies differ only where the policies changed a customer's state; run under `LoggingPolicy` for
all its days, `publish` writes the same bytes as `simulate_world`.

    world = World(SimulationConfig(customers=50_000, days=90, seed=1))
    for _ in range(world.days):
        report = world.step(policy)           # policy.decide(points) -> Decisions
        rows = world.day_tables()             # {"transactions": pa.Table, ..., "truth/contact_truth": ...}
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from nextbest.catalogue import PRODUCTS, RISK_BANDS, SEGMENTS, Catalogue, load_catalogue
from nextbest.simulator import params as P
from nextbest.simulator.config import SimulationConfig
from nextbest.simulator.engine import ChunkResult, ChunkSimulation, DayOutcome
from nextbest.simulator.policy import ContactPolicy, DecisionPoints, Decisions
from nextbest.simulator.population import Population
from nextbest.simulator.propensity import ActionTable, accept_probability, prevented_churn
from nextbest.simulator.world import (
    WorldSummary,
    chunk_output,
    chunk_plan,
    chunk_population,
    fresh_staging,
    publish,
    summarise,
    world_json,
)
from nextbest.simulator.writer import chunk_tables

logger = logging.getLogger(__name__)


@dataclass
class DayReport:
    """One simulated day under a policy.

    `contacts`: one row per delivered contact with what followed and its truth (p_accept, p_organic: the chance
    the customer takes the product on their own within ORGANIC_HORIZON_DAYS, expected p_opt_out / p_complaint,
    churn_prevented: the drop in P(close within 180 days) had it been accepted, and the channel's cost; `price`:
    the rate offered, NaN for an unpriced action or the list price, and `risk_band`: the customer's, whose band the
    price lies in).
    `hazard`: the true daily churn hazard of every active customer; `closed`, `organic`: who left, who took a
    product on their own today. `refused`: decisions the world could not carry out (no consent, no template on the
    channel, product already held).
    """

    day: int
    date: dt.date
    points: DecisionPoints
    decisions: Decisions
    contacts: pd.DataFrame
    hazard: pd.DataFrame
    closed: np.ndarray
    organic: pd.DataFrame
    refused: int


class World:
    """The simulated bank, lived one day at a time (see module docstring)."""

    def __init__(
        self,
        config: SimulationConfig,
        catalogue: Catalogue | None = None,
        scheduled_rate: float = P.SCHEDULED_CONTACT_RATE,
    ) -> None:
        """`scheduled_rate`: the daily chance that a customer without a trigger gets a campaign decision point (1.0:
        every active customer every day, for a campaign policy that picks whom to contact). A higher rate only adds
        points (the draw is per customer and day), so worlds of different rates share every other draw."""
        self.config = config
        self.catalogue = catalogue or load_catalogue()
        self.table = ActionTable.from_catalogue(self.catalogue)
        self._plan = chunk_plan(config)
        self.pops: list[Population] = []
        self.chunks: list[ChunkSimulation] = []
        for c, row in enumerate(self._plan):
            pop, rng = chunk_population(config, self.catalogue, c, row)
            self.pops.append(pop)
            self.chunks.append(ChunkSimulation(config, self.table, pop, rng, c, scheduled_rate=scheduled_rate))
        self._cost = np.array([self.catalogue.channel_cost(ch) for ch in self.table.channels])
        self._points: DecisionPoints | None = None
        self._marks: list[dict[str, int]] = [ch.marks() for ch in self.chunks]
        self._last_marks = self._marks

    @property
    def day(self) -> int:
        """The next day to live (0 before the first step)."""
        return self.chunks[0].d

    @property
    def days(self) -> int:
        return self.config.days

    @property
    def epoch(self) -> int:
        """UTC seconds of the world's start: `ts` in points and tables are seconds after it."""
        return self.config.start_epoch_seconds

    def step(self, policy: ContactPolicy) -> DayReport:
        """Live one day under `policy` (called once with all of the day's decision points)."""
        d = self.day
        marks = [ch.marks() for ch in self.chunks]
        parts = [ch.begin_day() for ch in self.chunks]
        points = self._points = DecisionPoints.concat(parts, day=d)
        try:
            decisions = policy.decide(points)
        finally:
            self._points = None
        if len(decisions.action) != points.m:
            raise ValueError(f"policy returned {len(decisions.action)} decisions for {points.m} decision points")
        outcomes = []
        for c, ch in enumerate(self.chunks):
            at = np.nonzero(points.chunk == c)[0]
            outcomes.append((at, ch.end_day(decisions.take(at))))
        self._last_marks = marks
        return self._report(d, points, decisions, outcomes)

    def run(
        self, policy: ContactPolicy, days: int | None = None, on_day: Callable[[DayReport], None] | None = None
    ) -> list[DayReport]:
        """Live `days` more days (default: to the end of the world); `on_day` sees each day's report."""
        n = self.days - self.day if days is None else days
        reports = []
        for _ in range(n):
            report = self.step(policy)
            if on_day is not None:
                on_day(report)
            reports.append(report)
        return reports

    # ---- adapters for a policy that speaks ids and timestamps (the serving engine)
    def points_frame(self, points: DecisionPoints) -> pd.DataFrame:
        """The points as a frame: customer_id, ts (UTC), signal (name or None), location_type, preferred_channel,
        segment, and one `consent_<channel>` column per catalogue channel."""
        signal = np.array([*P.SIGNALS, None], dtype=object)[np.where(points.trigger >= 0, points.trigger, -1)]
        frame = pd.DataFrame(
            {
                "customer_id": points.customer_id,
                "ts": pd.to_datetime((points.ts + self.epoch) * 1_000_000, unit="us", utc=True),
                "signal": signal,
                "location_type": np.array(P.LOCATION_TYPES, dtype=object)[points.location],
                "preferred_channel": np.array(self.table.channels, dtype=object)[points.preferred_channel],
                "segment": np.array(SEGMENTS, dtype=object)[points.segment],
            }
        )
        for i, c in enumerate(self.table.channels):
            frame[f"consent_{c}"] = points.consent[:, i]
        return frame

    def decisions(
        self,
        action_ids: Sequence[str | None],
        channels: Sequence[str | None],
        propensity: Sequence[float] | None = None,
        prices: Sequence[float | None] | None = None,
    ) -> Decisions:
        """Decisions from catalogue ids and channel names, one per point (None or "": nothing at that point);
        `prices`: the offered rate of each (None: the list price; the world keeps a price inside the band)."""
        a_index = {a: i for i, a in enumerate(self.table.ids)}
        c_index = {c: i for i, c in enumerate(self.table.channels)}
        unknown = sorted(
            {a for a in action_ids if a and a not in a_index} | {c for c in channels if c and c not in c_index}
        )
        if unknown:
            raise ValueError(f"unknown action id(s) or channel(s) {unknown[:5]}")
        action = np.array([a_index[a] if a else -1 for a in action_ids], dtype=np.int64)
        channel = np.array([c_index[c] if c else 0 for c in channels], dtype=np.int64)
        prop = np.full(len(action), np.nan) if propensity is None else np.asarray(propensity, dtype=np.float64)
        price = None if prices is None else np.array([np.nan if p is None else p for p in prices], dtype=np.float64)
        return Decisions(
            action=action, channel=channel, propensity=prop, n_eligible=np.zeros(len(action), np.int64), price=price
        )

    # ---- the truth during a step (for oracle policies: call inside ContactPolicy.decide)
    def p_accept(self, points: DecisionPoints, action: np.ndarray, channel: np.ndarray) -> np.ndarray:
        """True P(accept) of showing `action` on `channel` at each point (0 for a product already held)."""
        if self._points is None:
            raise RuntimeError("World.p_accept is the truth at today's decision points: call it inside decide()")
        if len(action) and (action.min() < 0 or action.max() >= len(self.table.ids)):
            raise ValueError("p_accept needs a catalogue action index (0..n_actions-1) at every point")
        p = np.zeros(points.m)
        for c, ch in enumerate(self.chunks):
            at = np.nonzero(points.chunk == c)[0]
            if len(at):
                state = ch.candidate_state(points.take(at), action[at], channel[at])
                p[at] = accept_probability(self.table, state)
        prod = self.table.product[action]
        held = np.zeros(points.m, dtype=bool)
        for c, ch in enumerate(self.chunks):
            at = np.nonzero((points.chunk == c) & (prod >= 0))[0]
            held[at] = ch.held[points.row[at], prod[at]]
        return np.where(held, 0.0, p)

    def p_organic(self, points: DecisionPoints, action: np.ndarray) -> np.ndarray:
        """True P(the customer takes the action's product on their own within ORGANIC_HORIZON_DAYS), no contact."""
        p = np.zeros(points.m)
        for c, ch in enumerate(self.chunks):
            at = np.nonzero(points.chunk == c)[0]
            if len(at):
                p[at] = ch.p_organic(points.row[at], action[at])
        return p

    def churn_prevented(self, points: DecisionPoints, action: np.ndarray) -> np.ndarray:
        """Drop in P(close within 180 days) if the customer accepted `action`, from yesterday's true hazard.

        The same replay as `TrueWorld.churn_prevented` (retention, service and a new product on the churn logit),
        on the hazard of the last day lived (0 on the first day, before any hazard is known)."""
        hazard = np.zeros(points.m)
        for c, ch in enumerate(self.chunks):
            at = np.nonzero(points.chunk == c)[0]
            hazard[at] = ch.last_hazard[points.row[at]]
        t = self.table
        return prevented_churn(hazard, t.churn_gain[action], t.churn_tau[action], P.CHURN_PREVENTION_HORIZON_DAYS)

    def p_accept_matrix(self, points: DecisionPoints, channel: np.ndarray) -> np.ndarray:
        """(m, n_actions) true P(accept) of every action at each point on the given channel (one per point)."""
        n_a = len(self.table.ids)
        rep = points.take(np.repeat(np.arange(points.m), n_a))
        action = np.tile(np.arange(n_a), points.m)
        return self.p_accept(rep, action, np.repeat(channel, n_a)).reshape(points.m, n_a)

    # ---- what the world holds and produced
    def state(self) -> pd.DataFrame:
        """Per customer now: active, products held, channel consent, fatigue and nuisance memories."""
        frames = []
        for pop, ch in zip(self.pops, self.chunks, strict=True):
            active = (pop.signup_s < ch.d * P.SECONDS_PER_DAY) & ~ch.closed
            f = pd.DataFrame(
                {
                    "customer_id": pop.customer_id,
                    "active": active,
                    "closed": ch.closed,
                    "n_products": ch.held.sum(axis=1),
                    "fatigue": ch.fat_c,
                    "nuisance": ch.nuisance_mem,
                }
            )
            for i, col in enumerate(P.CONSENT_COLUMNS):
                f[col] = ch.consent[:, i]
            for j, prod in enumerate(PRODUCTS):
                f[f"holds_{prod}"] = ch.held[:, j]
            frames.append(f)
        return pd.concat(frames, ignore_index=True)

    def day_tables(self) -> dict[str, pa.Table]:
        """The contract rows the last step added, by table (sources; truth tables under "truth/...").

        The customers table holds the day's profile changes (consent withdrawn, credit score after a shock), the
        holdings table the products opened that day (closures: the closures table)."""
        return self._tables_since(self._last_marks)

    def initial_tables(self) -> dict[str, pa.Table]:
        """The world before day 0: every customer's profile at signup, the holdings at start, latent truth."""
        out: dict[str, list[pa.Table]] = {}
        for pop, ch in zip(self.pops, self.chunks, strict=True):
            empty = ch.tables(since={k: v + 10**9 for k, v in ch.marks().items()})
            empty["start_state"] = {"credit": pop.credit_score, "consent": pop.consent}
            empty["holdings"] = dict(pop.start_holdings)
            for name, t in chunk_tables(_as_result(empty), pop, self.config, self.table).items():
                out.setdefault(name, []).append(t)
        return {
            k: pa.concat_tables(v) for k, v in out.items() if k in ("customers", "holdings", "truth/customer_latent")
        }

    def _tables_since(self, marks: list[dict[str, int]]) -> dict[str, pa.Table]:
        out: dict[str, list[pa.Table]] = {}
        for pop, ch, mk in zip(self.pops, self.chunks, marks, strict=True):
            for name, t in chunk_tables(_as_result(ch.tables(since=mk)), pop, self.config, self.table).items():
                if name != "truth/customer_latent":
                    out.setdefault(name, []).append(t)
        return {k: _plain(pa.concat_tables(v)) for k, v in out.items()}

    def publish(self, out_dir: str | Path) -> WorldSummary:
        """Write the world lived so far as a world folder (sources/ and truth/), as `simulate_world` does."""
        out = Path(out_dir)
        staging = fresh_staging(out)
        outputs = [
            chunk_output(self.config, self.table, c, pop, ch.result(), staging)
            for c, (pop, ch) in enumerate(zip(self.pops, self.chunks, strict=True))
        ]
        summary = summarise(outputs, self.config, out)
        publish(staging, out, world_json(self.config, self.catalogue, self._plan, summary))
        return summary

    # ---- the day report
    def _report(
        self, d: int, points: DecisionPoints, decisions: Decisions, outcomes: list[tuple[np.ndarray, DayOutcome]]
    ) -> DayReport:
        frames, hz, closed, organic, refused = [], [], [], [], 0
        for c, (at, o) in enumerate(outcomes):
            pop = self.pops[c]
            h = o.hazard[np.searchsorted(o.hazard_rows, o.rows)] if len(o.rows) else np.empty(0)
            frames.append(self._contacts_frame(pop, at, o, h))
            hz.append(pd.DataFrame({"customer_id": pop.customer_id[o.hazard_rows], "hazard": o.hazard}))
            closed.append(pop.customer_id[o.closed_rows])
            organic.append(
                pd.DataFrame(
                    {
                        "customer_id": pop.customer_id[o.organic_rows],
                        "product": np.array(PRODUCTS, dtype=object)[o.organic_product],
                    }
                )
            )
            refused += o.refused
        return DayReport(
            day=d,
            date=self.config.start_date + dt.timedelta(days=d),
            points=points,
            decisions=decisions,
            contacts=pd.concat(frames, ignore_index=True),
            hazard=pd.concat(hz, ignore_index=True),
            closed=np.concatenate(closed),
            organic=pd.concat(organic, ignore_index=True),
            refused=refused,
        )

    def _contacts_frame(self, pop: Population, at: np.ndarray, o: DayOutcome, hazard: np.ndarray) -> pd.DataFrame:
        t = self.table
        prevented = prevented_churn(
            hazard, t.churn_gain[o.action], t.churn_tau[o.action], P.CHURN_PREVENTION_HORIZON_DAYS
        )
        return pd.DataFrame(
            {
                "point": at[o.point],
                "contact_id": o.contact_id,
                "customer_id": pop.customer_id[o.rows],
                "ts": pd.to_datetime((o.ts + self.epoch) * 1_000_000, unit="us", utc=True),
                "action_id": np.array(t.ids, dtype=object)[o.action],
                "channel": np.array(t.channels, dtype=object)[o.channel],
                "kind": t.kind[o.action],
                "value": t.value[o.action],
                # the offered price (NaN: unpriced or the list price) and the risk band it was priced in
                "price": o.price,
                "risk_band": np.array(RISK_BANDS, dtype=object)[o.risk],
                "cost": self._cost[o.channel],
                "p_accept": o.p_accept,
                "p_organic": o.p_organic,
                "p_opt_out": o.p_opt_out,
                "p_complaint": o.p_complaint,
                "hazard": hazard,
                "churn_prevented": prevented,
                "accepted": o.accepted,
                "dismissed": o.dismissed,
                "opted_out": o.opted_out,
                "complained": o.complained,
            }
        )


def _plain(table: pa.Table) -> pa.Table:
    """String columns as plain strings, as parquet readers see them (the writer keeps them dictionary-encoded)."""
    fields = [pa.field(f.name, f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in table.schema]
    return table.cast(pa.schema(fields))


def _as_result(tables: dict[str, dict[str, np.ndarray]]) -> ChunkResult:
    """A ChunkResult holding `tables` (what `writer.chunk_tables` reads)."""
    return ChunkResult(tables=tables)
