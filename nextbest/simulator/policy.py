"""The logging policy that produced the historical contacts: a segment/trigger rule with epsilon-greedy exploration.

Its choice probabilities are known exactly and logged with every contact (`logging_propensity`, `n_eligible`), so a
new policy can be evaluated off-policy from the logs alone. The rule: on a trigger, the trigger's offers first; on a
scheduled campaign, the segment's offers first; otherwise catalogue order. With probability epsilon it explores
uniformly among the eligible actions for the chosen channel. The channel is picked first (triggered: push, app,
SMS, email; scheduled: the customer's preferred channel first) among channels with consent and at least one
eligible action.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nextbest.catalogue import SEGMENTS
from nextbest.simulator import params as P
from nextbest.simulator.propensity import ActionTable

_TRIGGER_CHANNEL_ORDER = ("push", "app", "sms", "email")
_SCHEDULED_CHANNEL_ORDER = ("email", "app", "call_centre", "sms", "web", "push")


@dataclass(frozen=True)
class Choice:
    """One decision per row: action index (-1: no contact), channel index, its probability, eligible-set size."""

    action: np.ndarray
    channel: np.ndarray
    propensity: np.ndarray
    n_eligible: np.ndarray


class LoggingPolicy:
    """Epsilon-greedy over a rule, vectorized over decision points."""

    def __init__(self, table: ActionTable) -> None:
        self.table = table
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

    def decide(
        self,
        rng: np.random.Generator,
        base_ok: np.ndarray,
        channel_consent: np.ndarray,
        preferred_channel: np.ndarray,
        segment: np.ndarray,
        trigger: np.ndarray,
        epsilon: np.ndarray,
    ) -> Choice:
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
        explore = rng.random(m) < epsilon
        k = np.floor(rng.random(m) * np.maximum(n_elig, 1)).astype(np.int64)
        kth = np.argmax((np.cumsum(elig, axis=1) == (k + 1)[:, None]) & elig, axis=1)
        action = np.where(explore, kth, rule)
        prop = epsilon / np.maximum(n_elig, 1) + (1.0 - epsilon) * (action == rule)
        action = np.where(possible & (n_elig > 0), action, -1)
        return Choice(action=action, channel=channel, propensity=prop, n_eligible=n_elig.astype(np.int64))
