"""The contact decision of each simulated day as a protocol, and the logging policy that made the historical contacts.

Each day the world hands a `ContactPolicy` the day's decision points as arrays (`DecisionPoints`: who, when, the
triggering signal, what the bank knows about eligibility and consent) and gets back, per point, an action and a
channel or nothing (`Decisions`). `LoggingPolicy` is the implementation that produced the historical contacts: a
segment/trigger rule with epsilon-greedy exploration. Its choice probabilities are known exactly and logged with
every contact (`logging_propensity`, `n_eligible`), so a new policy can be evaluated off-policy from the logs alone.

The logging rule: on a trigger, the trigger's offers first; on a scheduled campaign, the segment's offers first;
otherwise catalogue order. With probability epsilon it explores uniformly among the eligible actions for the chosen
channel. The channel is picked first (triggered: push, app, SMS, email; scheduled: the customer's preferred channel
first) among channels with consent and at least one eligible action. Its exploration draws come from its own
counter-based stream keyed by (customer, day), so the same policy over the same points chooses the same.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Protocol

import numpy as np

from nextbest.catalogue import SEGMENTS
from nextbest.simulator import params as P
from nextbest.simulator.propensity import ActionTable
from nextbest.simulator.streams import Stream, Streams

_TRIGGER_CHANNEL_ORDER = ("push", "app", "sms", "email")
_SCHEDULED_CHANNEL_ORDER = ("email", "app", "call_centre", "sms", "web", "push")


@dataclass(frozen=True)
class DecisionPoints:
    """One simulated day's decision points, one row each (at most one per customer and day).

    Times are int64 seconds since the world start (`SimulationConfig.start_epoch_seconds` turns them into UTC).
    `eligible` is the catalogue's eligibility as the bank sees it (age, segment, risk band, holdings, no credit to
    vulnerable customers); `consent` the channels the customer has consented to (index: the catalogue's channels).
    """

    day: int
    customer_id: np.ndarray  # int64 key
    ts: np.ndarray  # int64 seconds since the world start
    trigger: np.ndarray  # index into params.SIGNALS, -1 for a scheduled (campaign) decision
    location: np.ndarray  # index into params.LOCATION_TYPES
    eligible: np.ndarray  # (m, n_actions) bool
    consent: np.ndarray  # (m, n_channels) bool
    preferred_channel: np.ndarray  # index into the catalogue's channels
    segment: np.ndarray  # index into catalogue.SEGMENTS
    chunk: np.ndarray  # which chunk of customers the point belongs to
    row: np.ndarray  # the customer's row in that chunk

    @property
    def m(self) -> int:
        return len(self.customer_id)

    @property
    def triggered(self) -> np.ndarray:
        return self.trigger >= 0

    def take(self, index: np.ndarray) -> DecisionPoints:
        """The points at `index` (positions or a boolean mask)."""
        kw = {f.name: getattr(self, f.name)[index] for f in fields(self) if f.name != "day"}
        return DecisionPoints(day=self.day, **kw)

    @classmethod
    def concat(cls, parts: list[DecisionPoints], day: int) -> DecisionPoints:
        """Points of several chunks of the same day as one batch."""
        names = [f.name for f in fields(cls) if f.name != "day"]
        return cls(day=day, **{n: np.concatenate([getattr(p, n) for p in parts]) for n in names})


@dataclass(frozen=True)
class Decisions:
    """Per decision point: the action index (-1: nothing), the channel index, the choice probability (NaN when the
    policy does not know it) and the size of the eligible set the choice was made from (0 when unknown)."""

    action: np.ndarray
    channel: np.ndarray
    propensity: np.ndarray
    n_eligible: np.ndarray
    # The offered price (rate % a year) of each decision inside the customer's approved band; NaN or None: the
    # list price (or, in a world with `price_exploration`, the world's random grid price: the logging policy's).
    price: np.ndarray | None = None

    @classmethod
    def nothing(cls, m: int) -> Decisions:
        """No contact at any of `m` points."""
        return cls(
            action=np.full(m, -1, dtype=np.int64),
            channel=np.zeros(m, dtype=np.int64),
            propensity=np.full(m, np.nan),
            n_eligible=np.zeros(m, dtype=np.int64),
        )

    def take(self, index: np.ndarray) -> Decisions:
        return Decisions(
            *(None if getattr(self, f.name) is None else getattr(self, f.name)[index] for f in fields(self))
        )


class ContactPolicy(Protocol):
    """Decides, for each of a day's decision points, what to show on which channel (or nothing)."""

    def decide(self, points: DecisionPoints) -> Decisions: ...


class NoContactPolicy:
    """The control: never contacts anyone (the world's organic baseline)."""

    def decide(self, points: DecisionPoints) -> Decisions:
        return Decisions.nothing(points.m)


@dataclass(frozen=True)
class Choice:
    """One decision per row: action index (-1: no contact), channel index, its probability, eligible-set size."""

    action: np.ndarray
    channel: np.ndarray
    propensity: np.ndarray
    n_eligible: np.ndarray


class LoggingPolicy:
    """Epsilon-greedy over a rule, vectorized over decision points (see module docstring)."""

    def __init__(self, table: ActionTable, seed: int = 0) -> None:
        self.table = table
        self.streams = Streams(seed)
        n_a = len(table.ids)
        ids = {a: i for i, a in enumerate(table.ids)}
        # catalogue order breaks ties, below any rule
        self._default = (n_a - np.arange(n_a)) / (10.0 * n_a)
        self._segment_prio = np.zeros((len(SEGMENTS), n_a))
        for s, acts in P.SEGMENT_RULE.items():
            for pos, a in enumerate(acts):
                if a in ids:
                    self._segment_prio[SEGMENTS.index(s), ids[a]] = 50.0 - pos
        # row len(SIGNALS) is "no trigger"
        self._trigger_prio = np.zeros((len(P.SIGNALS) + 1, n_a))
        for sig, acts in P.TRIGGER_RULE.items():
            for pos, a in enumerate(acts):
                if a in ids:
                    self._trigger_prio[P.SIGNALS.index(sig), ids[a]] = 100.0 - pos
        n_c = len(table.channels)
        self._trig_rank = np.full(n_c, np.inf)
        self._sched_rank = np.full(n_c, np.inf)
        for r, c in enumerate(_TRIGGER_CHANNEL_ORDER):
            if c in table.channels:
                self._trig_rank[table.channels.index(c)] = r
        for r, c in enumerate(_SCHEDULED_CHANNEL_ORDER):
            if c in table.channels:
                self._sched_rank[table.channels.index(c)] = r + 1

    def rule_priority(self, segment: np.ndarray, trigger: np.ndarray) -> np.ndarray:
        """(m, A) priority of each action under the rule (higher first)."""
        trig_row = np.where(trigger >= 0, trigger, len(P.SIGNALS))
        return self._default[None, :] + self._segment_prio[segment] + self._trigger_prio[trig_row]

    def decide(self, points: DecisionPoints) -> Decisions:
        """The `ContactPolicy` call: explore with epsilon (triggered 0.2, scheduled 0.3), else follow the rule."""
        u = self.streams.uniform(Stream.POLICY, points.day, points.customer_id, width=2)
        epsilon = np.where(points.triggered, P.EPSILON_TRIGGERED, P.EPSILON_SCHEDULED)
        c = self.choose(
            u[:, 0],
            u[:, 1],
            points.eligible,
            points.consent,
            points.preferred_channel,
            points.segment,
            points.trigger,
            epsilon,
        )
        return Decisions(action=c.action, channel=c.channel, propensity=c.propensity, n_eligible=c.n_eligible)

    def choose(
        self,
        u_explore: np.ndarray,
        u_pick: np.ndarray,
        base_ok: np.ndarray,
        channel_consent: np.ndarray,
        preferred_channel: np.ndarray,
        segment: np.ndarray,
        trigger: np.ndarray,
        epsilon: np.ndarray,
    ) -> Choice:
        """The rule and its exploration given two uniforms per point (explore?, which eligible action)."""
        m = len(base_ok)
        ch_ok = self.table.channel_ok
        has_any = (base_ok[:, :, None] & ch_ok[None, :, :]).any(axis=1)  # (m, channels): any eligible action there
        rank = np.where(trigger[:, None] >= 0, self._trig_rank[None, :], self._sched_rank[None, :])
        rank = rank.copy()
        sched = trigger < 0
        rank[np.nonzero(sched)[0], preferred_channel[sched]] = 0.0
        valid = has_any & channel_consent & np.isfinite(rank)
        score = np.where(valid, rank, np.inf)
        channel = np.argmin(score, axis=1)
        possible = np.isfinite(score[np.arange(m), channel])

        elig = base_ok & ch_ok.T[channel]
        n_elig = elig.sum(axis=1)
        prio = np.where(elig, self.rule_priority(segment, trigger), -np.inf)
        rule = np.argmax(prio, axis=1)
        explore = u_explore < epsilon
        k = np.floor(u_pick * np.maximum(n_elig, 1)).astype(np.int64)
        kth = np.argmax((np.cumsum(elig, axis=1) == (k + 1)[:, None]) & elig, axis=1)
        action = np.where(explore, kth, rule)
        prop = epsilon / np.maximum(n_elig, 1) + (1.0 - epsilon) * (action == rule)
        action = np.where(possible & (n_elig > 0), action, -1)
        return Choice(action=action, channel=channel, propensity=prop, n_eligible=n_elig.astype(np.int64))
