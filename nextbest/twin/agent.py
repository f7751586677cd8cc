"""A twin policy as the world's `ContactPolicy`: each simulated day's decision points asked of the engine in one batch.

Each day the world hands over its decision points (`nextbest.simulator.policy.DecisionPoints`). The agent:
1. picks the channel each point is asked on (`ask_channels`): the world's traffic, the same rule for every policy --
   a triggered moment reaches the customer on push, app, SMS or email, a campaign slot on the preferred channel
   first, among channels with consent and something the catalogue may show there (the logging rule's channel
   choice); a point with no such channel is not asked;
2. reads each asked customer's genome row (`DailyGenome.snapshot` at the day's midnight, and the real-time state at
   the decision's second from the day's events so far) and lets the truth scorers (the oracle) see the points;
3. calls `TwinEngine.decide_batch` once with every request (channel, location, triggering event, one action, the
   decision's simulated time) and turns the answers into the world's `Decisions`;
4. after the world has lived the day, sends every delivered contact's outcome back to the decision log, as the
   service's `/feedback` would (`record_outcomes`: the dismissal cool-down reads them), and keeps each customer's
   true daily hazard for the oracle's churn risk.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from feature_repo.specs import JOIN_KEY
from nextbest.features.daily import SNAPSHOT_FIELDS
from nextbest.simulator import params as P
from nextbest.simulator.policy import DecisionPoints, Decisions, LoggingPolicy
from nextbest.twin.engine import ROW_FIELDS
from nextbest.twin.scorers import TruthScorer

if TYPE_CHECKING:
    import pyarrow as pa

    from nextbest.decision_log import DecisionLog
    from nextbest.features.daily import DailyGenome
    from nextbest.simulator.stepper import DayReport, World
    from nextbest.twin.engine import TwinEngine

logger = logging.getLogger(__name__)


def ask_channels(world: World, points: DecisionPoints) -> tuple[np.ndarray, np.ndarray]:
    """(channel index per point, whether the point is asked): the logging rule's channel choice (no exploration)."""
    rule = LoggingPolicy(world.table)
    zeros = np.zeros(points.m)
    choice = rule.choose(
        zeros,
        zeros,
        points.eligible,
        points.consent,
        points.preferred_channel,
        points.segment,
        points.trigger,
        zeros,
    )
    return choice.channel, choice.action >= 0


@dataclass
class Asked:
    """One day's asked points and the engine's answers."""

    point: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # positions in the day's points
    decision_id: list[str] = field(default_factory=list)
    customer_id: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    #: the priced offers the engine made (customer, action, price), for the fairness check's mean prices
    priced: list[tuple[int, str, float]] = field(default_factory=list)


class EngineAgent:
    """A `ContactPolicy` deciding through a `TwinEngine` (see the module docstring)."""

    def __init__(self, world: World, genome: DailyGenome, engine: TwinEngine) -> None:
        self.world = world
        self.genome = genome
        self.engine = engine
        self.truth = [m for m in engine.bundle.models.values() if isinstance(m, TruthScorer)]
        self.hazard = np.zeros(genome.n)
        self.asked = Asked()
        self._marks: list[dict[str, int]] | None = None
        self.seconds: dict[str, float] = {}

    def begin_day(self) -> None:
        """Before `World.step`: remember where the day's rows start (the day so far is read inside `decide`)."""
        self._marks = [ch.marks() for ch in self.world.chunks]

    def decide(self, points: DecisionPoints) -> Decisions:
        """The day's decisions: one `decide_batch` over every asked point."""
        t0 = time.perf_counter()
        try:
            return self._decide(points)
        finally:
            self.seconds["decide"] = self.seconds.get("decide", 0.0) + time.perf_counter() - t0

    def _decide(self, points: DecisionPoints) -> Decisions:
        channel, asked = ask_channels(self.world, points)
        at = np.nonzero(asked)[0]
        self.asked = Asked(point=at, customer_id=points.customer_id[at])
        if not len(at):
            return Decisions.nothing(points.m)
        sub = points.take(at)
        t0 = time.perf_counter()
        rows = self._rows(sub)
        self.seconds["genome rows"] = self.seconds.get("genome rows", 0.0) + time.perf_counter() - t0
        for scorer in self.truth:
            scorer.prepare(self.world, sub, channel[at], self.hazard[self.genome.rows_of(sub.customer_id)])
        requests, now = self._requests(sub, channel[at])
        answers = self.engine.decide_batch(requests, features=rows, now=now)
        self.asked.decision_id = [a.decision_id for a in answers]
        action_ids: list[str | None] = [None] * points.m
        channels: list[str | None] = [None] * points.m
        prices: list[float | None] = [None] * points.m
        for pos, req, answer in zip(at, requests, answers, strict=True):
            if answer.actions:
                action_ids[pos] = answer.actions[0].action_id
                channels[pos] = req.channel
                prices[pos] = answer.actions[0].price  # the engine's price inside the band (the world responds)
                if prices[pos] is not None:
                    self.asked.priced.append((int(points.customer_id[pos]), str(action_ids[pos]), float(prices[pos])))
        propensity = [1.0 if a else float("nan") for a in action_ids]  # the policy is deterministic
        return self.world.decisions(action_ids, channels, propensity, prices)

    def _rows(self, sub: DecisionPoints) -> list[dict[str, Any]]:
        """Each asked point's genome row: snapshot views at the day's midnight, real-time state at its second."""
        snap = self.genome.snapshot(sub.customer_id)
        keys = snap[JOIN_KEY].to_numpy()
        pos = np.searchsorted(keys, sub.customer_id)
        if len(keys) == 0 or (keys[np.minimum(pos, len(keys) - 1)] != sub.customer_id).any():
            raise RuntimeError("a decision point's customer has no snapshot (not live at the day's midnight)")
        today = self.world._tables_since(self._marks) if self._marks is not None else None
        realtime = self.genome.realtime_at(sub.customer_id, sub.ts + self.world.epoch, today)
        values = np.hstack(
            [
                snap[list(SNAPSHOT_FIELDS)].to_numpy(dtype=np.float64)[pos],
                realtime,
                np.arange(sub.m, dtype=np.float64)[:, None],
            ]
        )
        rows = [dict(zip(ROW_FIELDS, r, strict=True)) for r in values.tolist()]
        for row, key in zip(rows, sub.customer_id.tolist(), strict=True):
            row[JOIN_KEY] = key
        return rows

    def _requests(self, sub: DecisionPoints, channel: np.ndarray) -> tuple[list[Any], list[datetime]]:
        from serving.schemas import RecommendContext, RecommendRequest

        names = self.world.table.channels
        requests, now = [], []
        for cid, ch, trig, loc, ts in zip(
            sub.customer_id.tolist(),
            channel.tolist(),
            sub.trigger.tolist(),
            sub.location.tolist(),
            (sub.ts + self.world.epoch).tolist(),
            strict=True,
        ):
            context = RecommendContext(
                location_type=P.LOCATION_TYPES[loc], event=P.SIGNALS[trig] if trig >= 0 else None
            )
            requests.append(RecommendRequest(customer_id=cid, channel=names[ch], context=context, max_actions=1))
            now.append(datetime.fromtimestamp(ts, tz=UTC))
        return requests, now

    def end_day(self, report: DayReport, tables: dict[str, pa.Table]) -> None:
        """After the day: outcomes to the decision log, and the day's true hazards for tomorrow's oracle."""
        if len(report.hazard):
            self.hazard[self.genome.rows_of(report.hazard["customer_id"].to_numpy())] = report.hazard["hazard"]
        if len(report.contacts) and len(self.asked.point):
            by_point = dict(zip(self.asked.point.tolist(), self.asked.decision_id, strict=True))
            record_outcomes(self.engine.decision_log, report.contacts, tables["contacts"], by_point)


def record_outcomes(
    log: DecisionLog, contacts: pd.DataFrame, contact_rows: pa.Table, decision_of_point: dict[int, str]
) -> int:
    """Each delivered contact's outcome joined to its decision in the log (what `/feedback` does for one), in one
    transaction: a feedback row and the outcome on the delivered action. Returns the outcomes recorded."""
    import sqlalchemy as sa

    from nextbest.decision_log import decision_contacts, feedback

    decision = contacts["point"].map(decision_of_point)
    keep = decision.notna().to_numpy()
    if not keep.any():
        return 0
    c = contacts[keep]
    learnt = pd.Series(
        pd.to_datetime(contact_rows.column("outcome_ts").to_pandas(), utc=True).to_numpy(),
        index=contact_rows.column("contact_id").to_numpy(),
    )
    when = pd.to_datetime(c["contact_id"].map(learnt), utc=True).fillna(c["ts"])
    outcome = np.where(c["accepted"], "accepted", np.where(c["dismissed"], "dismissed", "ignored"))
    recorded = datetime.now(UTC)
    rows = [
        {"d": d, "a": a, "o": o, "t": t, "c": str(k)}
        for d, a, o, t, k in zip(
            decision[keep].tolist(),
            c["action_id"].tolist(),
            outcome.tolist(),
            [t.to_pydatetime() for t in when],
            c["customer_id"].tolist(),
            strict=True,
        )
    ]
    col = decision_contacts.c
    update = (
        sa.update(decision_contacts)
        .where(col.decision_id == sa.bindparam("d"), col.action_id == sa.bindparam("a"))
        .values(outcome=sa.bindparam("o"), outcome_ts=sa.bindparam("t"), outcome_recorded_at=recorded)
    )
    with log.engine.begin() as conn:
        conn.execute(
            feedback.insert(),
            [
                {"decision_id": r["d"], "customer_id": r["c"], "action_id": r["a"], "outcome": r["o"], "ts": r["t"]}
                for r in rows
            ],
        )
        conn.execute(update, [{k: r[k] for k in ("d", "a", "o", "t")} for r in rows])
    return len(rows)
