"""Contacts have consequences, both ways, on small stepped worlds with common random numbers: spam costs opt-outs,
complaints and customers; relevant help keeps customers; organic uptake is not credited to an offer; contacts cost
what the catalogue says.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nextbest.catalogue import PRODUCTS, load_catalogue
from nextbest.simulator import SimulationConfig
from nextbest.simulator import params as P
from nextbest.simulator.policy import DecisionPoints, Decisions, LoggingPolicy, NoContactPolicy
from nextbest.simulator.propensity import ActionTable
from nextbest.simulator.stepper import DayReport, World

CONFIG = SimulationConfig(customers=2_000, days=60, seed=5, chunk_size=1_000)
OUTBOUND_ORDER = ("call_centre", "sms", "email", "push")


class SpamPolicy:
    """Every decision point gets a marketing offer drawn at random, on the most intrusive channel it may use."""

    def __init__(self, table: ActionTable) -> None:
        self.table = table
        self.marketing = np.isin(table.kind, ["sales", "retention"])

    def decide(self, points: DecisionPoints) -> Decisions:
        rng = np.random.default_rng(points.day)
        out = Decisions.nothing(points.m)
        for c in OUTBOUND_ORDER:
            ci = self.table.channels.index(c)
            ok = points.eligible & self.marketing[None, :] & self.table.channel_ok[:, ci][None, :]
            ok &= points.consent[:, [ci]]
            free = (out.action < 0) & ok.any(axis=1)
            score = np.where(ok, rng.random(ok.shape), -1.0)
            out.action[free] = score[free].argmax(axis=1)
            out.channel[free] = ci
        return out


class TriggeredOnly:
    """The logging policy's rule, but only where a signal triggered the decision (fewer, relevant contacts)."""

    def __init__(self, table: ActionTable, seed: int) -> None:
        self.inner = LoggingPolicy(table, seed=seed)

    def decide(self, points: DecisionPoints) -> Decisions:
        d = self.inner.decide(points)
        d.action[~points.triggered] = -1
        return d


def _run(policy_of, config: SimulationConfig = CONFIG, **kw: float) -> tuple[World, list[DayReport]]:
    world = World(config, **kw)
    return world, world.run(policy_of(world))


@pytest.fixture(scope="module")
def lived() -> dict[str, tuple[World, list[DayReport]]]:
    return {
        "spam": _run(lambda w: SpamPolicy(w.table), scheduled_rate=0.25),
        "considerate": _run(lambda w: TriggeredOnly(w.table, CONFIG.seed), scheduled_rate=0.25),
        "none": _run(lambda w: NoContactPolicy(), scheduled_rate=0.25),
    }


def _totals(world: World, reports: list[DayReport]) -> dict[str, float]:
    contacts = pd.concat([r.contacts for r in reports], ignore_index=True)
    state = world.state()
    return {
        "contacts": len(contacts),
        "opt_outs": float(contacts["opted_out"].sum()),
        "complaints": float(contacts["complained"].sum()),
        "closed": float(state["closed"].sum()),
        "hazard": float(sum(r.hazard["hazard"].sum() for r in reports)),
        "cost": float(contacts["cost"].sum()),
        "consents": float(state[list(P.CONSENT_COLUMNS)].to_numpy().sum()),
    }


def test_a_policy_that_spams_loses_more_consents_complaints_and_customers(lived: dict) -> None:
    spam, considerate, none = (_totals(*lived[k]) for k in ("spam", "considerate", "none"))
    assert spam["contacts"] > 3 * considerate["contacts"]
    assert spam["opt_outs"] > 5 * max(considerate["opt_outs"], 1)
    assert spam["consents"] < considerate["consents"] < none["consents"] + 1e-9
    assert spam["complaints"] > 3 * max(considerate["complaints"], 1)
    # the same customers and the same churn draws: spam's extra closures are its own
    assert spam["hazard"] > 1.1 * none["hazard"]
    assert spam["closed"] > none["closed"] + 10
    assert spam["cost"] > 20 * considerate["cost"]


def test_complaints_are_recorded_events_with_the_contact_they_are_about(lived: dict) -> None:
    world, reports = lived["spam"]
    complaints = world.day_tables()  # the last day's rows
    assert "complaints" in complaints
    contacts = pd.concat([r.contacts for r in reports], ignore_index=True)
    assert contacts["complained"].sum() > 0
    assert (contacts.loc[contacts["complained"], "accepted"] == False).all()  # noqa: E712


def test_relevant_help_lowers_churn() -> None:
    """Complaint callbacks to customers who just complained: lower hazard, never a closure more (same draws)."""

    class Callbacks:
        def __init__(self, table: ActionTable) -> None:
            self.action = table.ids.index("complaint_callback")
            self.channel = table.channels.index("call_centre")

        def decide(self, points: DecisionPoints) -> Decisions:
            out = Decisions.nothing(points.m)
            pick = (points.trigger == P.SIGNALS.index("complaint")) & points.consent[:, self.channel]
            out.action[pick], out.channel[pick] = self.action, self.channel
            return out

    helped, h_reports = _run(lambda w: Callbacks(w.table))
    alone, a_reports = _run(lambda w: NoContactPolicy())
    accepted = pd.concat([r.contacts for r in h_reports])
    accepted = set(accepted.loc[accepted["accepted"], "customer_id"])
    assert len(accepted) > 10

    def hazards(reports: list[DayReport]) -> pd.DataFrame:
        return pd.concat([r.hazard.assign(day=r.day) for r in reports]).set_index(["customer_id", "day"])["hazard"]

    both = pd.concat({"helped": hazards(h_reports), "alone": hazards(a_reports)}, axis=1, join="inner")
    both = both[both.index.get_level_values("customer_id").isin(accepted)]
    # on every day both are still customers, the helped one's hazard is never higher, and lower on the whole
    assert (both["helped"] <= both["alone"] + 1e-12).all()
    assert both["helped"].sum() < 0.9 * both["alone"].sum()
    closed_h = set(helped.state().query("closed")["customer_id"])
    closed_a = set(alone.state().query("closed")["customer_id"])
    assert closed_h <= closed_a


class _OfferWhatTheyWouldBuyAnyway:
    """On one day, offers each customer the product they are most likely to take on their own (if that is likely)."""

    def __init__(self, world: World, day: int, offer: bool) -> None:
        self.world, self.day, self.offer = world, day, offer
        table = world.table
        self.actions = np.array([i for i in range(len(table.ids)) if table.organic_gain[i].any()])
        self.channel = table.channels.index("app")
        self.targets = pd.DataFrame()

    def decide(self, points: DecisionPoints) -> Decisions:
        out = Decisions.nothing(points.m)
        if points.day != self.day:
            return out
        w, m = self.world, points.m
        p_org = np.stack([w.p_organic(points, np.full(m, a)) for a in self.actions], axis=1)
        p_org = np.where(points.eligible[:, self.actions] & points.consent[:, [self.channel]], p_org, 0.0)
        best = self.actions[p_org.argmax(axis=1)]
        pick = p_org.max(axis=1) > 0.1
        p_acc = w.p_accept(points, best, np.full(m, self.channel))
        product = np.array(PRODUCTS, dtype=object)[w.table.product[best]]
        self.targets = pd.DataFrame(
            {
                "customer_id": points.customer_id[pick],
                "product": product[pick],
                "p_organic": p_org.max(axis=1)[pick],
                "p_accept": p_acc[pick],
            }
        )
        if self.offer:
            out.action[pick], out.channel[pick] = best[pick], self.channel
        return out


def _holds(world: World, targets: pd.DataFrame) -> np.ndarray:
    state = world.state().set_index("customer_id")
    pairs = zip(targets["customer_id"], targets["product"], strict=True)
    return np.array([bool(state.at[c, f"holds_{p}"]) for c, p in pairs])


def test_organic_uptake_is_not_credited_to_an_offer() -> None:
    """Customers with a live need who would take the product here anyway: the offer's increment is
    p_accept x (1 - p_organic), far below its acceptances.

    With common random numbers the contacted and the control world differ only for customers who accepted: an
    acceptance by a customer who then takes it organically in the control world is pull-forward, not an extra sale.
    """
    cfg = SimulationConfig(customers=3_000, days=120, seed=9, chunk_size=3_000)
    day = 28  # intents need a few weeks to build up from the world's start
    worlds = {}
    for offer in (True, False):
        world = World(cfg, scheduled_rate=1.0)
        policy = _OfferWhatTheyWouldBuyAnyway(world, day, offer)
        reports = world.run(policy, days=day + P.ORGANIC_HORIZON_DAYS)
        worlds[offer] = (world, policy, reports)
    targets = worlds[True][1].targets
    pd.testing.assert_frame_equal(targets, worlds[False][1].targets)
    assert len(targets) >= 100
    uptake_offer, uptake_control = _holds(worlds[True][0], targets), _holds(worlds[False][0], targets)
    contacts = worlds[True][2][day].contacts.set_index("customer_id")
    accepted = contacts["accepted"].reindex(targets["customer_id"]).fillna(False).to_numpy(bool)
    # pathwise: the offer adds exactly the acceptors who would not have taken it on their own
    assert uptake_offer.sum() - uptake_control.sum() == (accepted & ~uptake_control).sum()
    assert (accepted & uptake_control).sum() > 0  # some acceptances were pull-forward
    # the customers do take these products on their own; counting acceptances would over-credit the offer
    increment = uptake_offer.mean() - uptake_control.mean()
    assert uptake_control.mean() > 0.1
    assert increment < accepted.mean()
    # the truth's expected increment, p_accept x (1 - p_organic), is what a scorer should credit
    expected = (targets["p_accept"] * (1 - targets["p_organic"])).mean()
    se = np.sqrt(accepted.mean() * (1 - accepted.mean()) / len(targets))
    assert abs(increment - expected) < 3 * se + 0.01
    # and the organic probability is calibrated on the control world's uptake
    se_org = np.sqrt(uptake_control.mean() * (1 - uptake_control.mean()) / len(targets))
    assert abs(uptake_control.mean() - targets["p_organic"].mean()) < 3 * se_org + 0.02


def test_contact_costs_are_declared_per_channel_in_the_catalogue(lived: dict) -> None:
    cat = load_catalogue()
    cost = {c: cat.channel_cost(c) for c in cat.channels}
    assert cost["call_centre"] > 10 * cost["sms"] > 0
    assert cost["sms"] > cost["email"] > 0
    assert cost["email"] >= cost["push"] == cost["app"] == 0.0
    contacts = pd.concat([r.contacts for r in lived["spam"][1]], ignore_index=True)
    np.testing.assert_allclose(contacts["cost"], contacts["channel"].map(cost))


def test_the_truth_of_candidates_is_there_at_every_decision_point() -> None:
    """Inside decide(): the true P(accept) of every action, P(organic) and the churn an acceptance would prevent."""
    seen: dict[str, np.ndarray] = {}

    class Oracle:
        def __init__(self, world: World) -> None:
            self.world = world

        def decide(self, points: DecisionPoints) -> Decisions:
            w, t = self.world, self.world.table
            if points.day == 10:
                app = np.full(points.m, t.channels.index("app"))
                seen["p"] = w.p_accept_matrix(points, app)
                seen["retention"] = w.churn_prevented(points, np.full(points.m, t.ids.index("fee_waiver")))
                seen["sale"] = w.churn_prevented(points, np.full(points.m, t.ids.index("credit_card")))
                seen["eligible"] = points.eligible
                seen["ids"] = points.customer_id
            return Decisions.nothing(points.m)

    world = World(SimulationConfig(customers=400, days=12, seed=3))
    world.run(Oracle(world))
    p, eligible = seen["p"], seen["eligible"]
    assert p.shape == eligible.shape and ((p >= 0) & (p < 1)).all()
    assert 0.001 < p[eligible].mean() < 0.1
    # a product held is never accepted again (no contact, and credit cards are not taken organically: held then = now)
    held = world.state().set_index("customer_id").loc[seen["ids"], "holds_credit_card"].to_numpy()
    assert (p[held, world.table.ids.index("credit_card")] == 0).all() and held.any()
    assert (seen["retention"] > seen["sale"]).all() and (seen["sale"] > 0).all()
