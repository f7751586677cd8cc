"""The decision policy, rule by rule, in pure Python (no model, no store, no HTTP)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from nextbest.catalogue import PRODUCTS, load_catalogue
from nextbest.errors import ConfigError
from nextbest.policy import (
    MARKETING_KINDS,
    ContactRecord,
    DecisionContext,
    DecisionPolicy,
    PolicyConfig,
    customer_view,
    load_policy,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_features(**overrides: object) -> dict[str, object]:
    """A known, healthy, consenting 35-year-old mass customer holding only a current account."""
    f: dict[str, object] = {
        "age": 35,
        "tenure_days": 1000.0,
        "segment_affluent": 0,
        "segment_small_business": 0,
        "risk_level": 0,
        "is_vulnerable": 0,
        "consent_email": 1,
        "consent_sms": 1,
        "consent_push": 1,
        "consent_app": 1,
        "consent_call": 1,
        "deposit_trend_30d": 100.0,
        "fees_amount_30d": 0.0,
        "days_since_salary": 10.0,
        "current_balance": 3000.0,
        "savings_balance": 5000.0,
        "investment_balance": 0.0,
        "hours_since_card_lost": 8760.0,
        "hours_since_complaint": 8760.0,
    }
    for p in PRODUCTS:
        f[f"has_{p}"] = int(p == "current_account")
    f.update(overrides)
    return f


@pytest.fixture(scope="module")
def policy() -> DecisionPolicy:
    return DecisionPolicy(load_catalogue(), load_policy())


def decide(
    policy: DecisionPolicy,
    features: dict[str, object],
    channel: str,
    history: list[ContactRecord] | None = None,
    now: datetime = NOW,
    context: DecisionContext = DecisionContext(),
    churn_risk: float | None = 0.02,
    propensity: float | dict[str, float] = 0.05,
    max_actions: int = 3,
):
    """The whole policy with fixed propensities; returns (chosen, rejected, all candidate ids)."""
    customer = customer_view(7, features, policy.config)
    screening = policy.screen(customer, channel, history or [], now)
    props = [propensity.get(a.id, 0.001) if isinstance(propensity, dict) else propensity for a in screening.candidates]
    ranked, below = policy.arbitrate(screening.candidates, props, customer, channel, context, features, churn_risk)
    chosen, outranked = policy.top_k(ranked, max_actions)
    return chosen, [*screening.rejected, *below, *outranked], [a.id for a in screening.candidates]


def contacts_from(decision_id: str, chosen, channel: str, ts: datetime) -> list[ContactRecord]:
    return [ContactRecord(ts, decision_id, channel, r.action.id, r.action.kind) for r in chosen]


def test_shipped_policy_and_catalogue_agree() -> None:
    cfg = load_policy()
    DecisionPolicy(load_catalogue(), cfg)  # raises on unknown actions/channels
    assert cfg.caps.max_per_window == 3 and cfg.caps.max_per_day_per_channel == 1


def test_policy_yaml_rejects_unknown_keys(tmp_path: Path) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text("caps: {max_per_window: 3, max_per_fortnight: 5}\n")
    with pytest.raises(ConfigError, match="max_per_fortnight"):
        load_policy(bad)


def test_policy_naming_unknown_action_is_a_config_error() -> None:
    cfg = PolicyConfig(degraded_actions=("teleportation",))
    with pytest.raises(ConfigError, match="teleportation"):
        DecisionPolicy(load_catalogue(), cfg)


def test_every_action_is_either_chosen_or_rejected_with_its_rule(policy: DecisionPolicy) -> None:
    chosen, rejected, _ = decide(policy, make_features(), "app", max_actions=2)
    ids = [r.action.id for r in chosen] + [r.action_id for r in rejected]
    assert sorted(ids) == sorted(policy.catalogue.action_ids)
    assert all(r.rule for r in rejected)


def test_opted_out_customer_gets_no_marketing_action_over_many_requests(policy: DecisionPolicy) -> None:
    features = make_features(consent_email=0)
    rng = np.random.default_rng(3)
    history: list[ContactRecord] = []
    for i in range(200):
        props = {a: float(rng.uniform(0, 0.9)) for a in policy.catalogue.action_ids}
        now = NOW + timedelta(hours=7 * i)
        chosen, rejected, _ = decide(policy, features, "email", history, now=now, propensity=props)
        assert not [r for r in chosen if r.action.kind in MARKETING_KINDS]
        history += contacts_from(f"d{i}", chosen, "email", now)
        opted_out = {r.action_id for r in rejected if r.rule == "consent.opted_out"}
        assert "credit_card" in opted_out and "fee_waiver" in opted_out


def test_inbound_channels_are_not_capped_but_outbound_ones_are(policy: DecisionPolicy) -> None:
    features = make_features()
    history: list[ContactRecord] = []
    for i in range(5):
        now = NOW + timedelta(minutes=10 * i)
        chosen, _, _ = decide(policy, features, "app", history, now=now, propensity=0.2)
        assert chosen and chosen[0].action.kind in MARKETING_KINDS  # the customer opened the app: not a contact
        history += contacts_from(f"app{i}", chosen, "app", now)
    first, _, _ = decide(policy, features, "email", history, now=NOW + timedelta(hours=1), propensity=0.2)
    assert first  # app impressions did not use up the outbound caps


def test_inbound_channel_needs_no_consent_of_its_own_but_opting_out_everywhere_means_no_marketing(
    policy: DecisionPolicy,
) -> None:
    email_only = make_features(consent_email=1, consent_sms=0, consent_push=0, consent_app=0, consent_call=0)
    chosen, _, _ = decide(policy, email_only, "web", propensity=0.2)
    assert chosen and chosen[0].action.kind in MARKETING_KINDS  # web is inbound: the customer came to us
    nowhere = make_features(consent_email=0, consent_sms=0, consent_push=0, consent_app=0, consent_call=0)
    for channel in ("web", "atm", "app"):
        chosen, rejected, _ = decide(policy, nowhere, channel, propensity=0.2)
        assert not [r for r in chosen if r.action.kind in MARKETING_KINDS], channel
        assert any(r.rule == "consent.opted_out_everywhere" for r in rejected)


def test_a_consent_change_takes_effect_before_the_features_catch_up(policy: DecisionPolicy) -> None:
    customer = customer_view(7, make_features(), policy.config)
    withdrawn = policy.with_consent_changes(customer, [("email", False)])
    assert withdrawn.consents["email"] is False and withdrawn.consents["sms"] is True
    everywhere = policy.with_consent_changes(customer, [("email", True), ("*", False)])
    assert not any(everywhere.consents.values()) and everywhere.withdrew_all
    action = policy.catalogue.action("savings_account")
    assert policy.suitability_rule(action, everywhere, "web").rule == "consent.opted_out_everywhere"  # type: ignore[union-attr]
    regained = policy.with_consent_changes(customer, [("*", False), ("app", True)])
    assert regained.consents["app"] and not regained.withdrew_all
    assert policy.suitability_rule(action, regained, "app") is None


def test_daily_channel_cap_blocks_a_second_marketing_contact_the_same_day(policy: DecisionPolicy) -> None:
    features = make_features()
    first, _, _ = decide(policy, features, "email", propensity=0.2)
    assert first
    history = contacts_from("d1", first, "email", NOW)
    second, rejected, _ = decide(policy, features, "email", history, now=NOW + timedelta(hours=2), propensity=0.2)
    assert not [r for r in second if r.action.kind in MARKETING_KINDS]
    assert any(r.rule == "contact_policy.daily_channel_cap" for r in rejected)
    # another channel the same day is still allowed (cap is per channel per day)
    other, _, _ = decide(policy, features, "sms", history, now=NOW + timedelta(hours=2), propensity=0.2)
    assert other


def test_window_cap_holds_over_weeks_of_requests(policy: DecisionPolicy) -> None:
    features = make_features()
    history: list[ContactRecord] = []
    channels = ["email", "sms", "push", "call_centre"]
    for i in range(28 * 6):  # every 4 hours for four weeks, rotating channels
        now = NOW + timedelta(hours=4 * i)
        channel = channels[i % len(channels)]
        chosen, _, _ = decide(policy, features, channel, history, now=now, propensity=0.3)
        history += [c for c in contacts_from(f"d{i}", chosen, channel, now) if c.kind in MARKETING_KINDS]
    times = sorted({c.ts for c in history})
    assert len(times) >= 8  # it did contact, regularly
    for t in times:
        in_window = [u for u in times if t - timedelta(days=7) < u <= t]
        assert len(in_window) <= 3, f"{len(in_window)} marketing contacts in the 7 days up to {t}"


def test_dismissed_action_cools_down_then_may_return(policy: DecisionPolicy) -> None:
    features = make_features()
    props = {"credit_card": 0.5}
    chosen, _, _ = decide(policy, features, "web", propensity=props, max_actions=1)
    assert chosen[0].action.id == "credit_card"
    dismissed = [ContactRecord(NOW, "d1", "web", "credit_card", "sales", outcome="dismissed", outcome_ts=NOW)]
    later = NOW + timedelta(days=3)
    chosen, rejected, _ = decide(policy, features, "web", dismissed, now=later, propensity=props, max_actions=1)
    assert "credit_card" not in [r.action.id for r in chosen]
    assert ("credit_card", "contact_policy.dismissal_cooldown") in {(r.action_id, r.rule) for r in rejected}
    much_later = NOW + timedelta(days=policy.config.caps.dismissal_cooldown_days + 1)
    chosen, _, _ = decide(policy, features, "web", dismissed, now=much_later, propensity=props, max_actions=1)
    assert chosen[0].action.id == "credit_card"


@pytest.mark.parametrize(
    "overrides",
    [{"deposit_trend_30d": -5000.0}, {"fees_amount_30d": 150.0}, {"days_since_salary": 60.0}],
    ids=["falling_balances", "fees", "salary_stopped"],
)
def test_no_credit_push_in_financial_distress(policy: DecisionPolicy, overrides: dict[str, float]) -> None:
    features = make_features(**overrides)
    props = {a: 0.9 for a in ("credit_card", "personal_loan", "car_loan", "travel_card", "bnpl")}
    chosen, rejected, candidates = decide(policy, features, "app", propensity=props)
    credit = {a.id for a in policy.catalogue.actions if a.credit and a.kind == "sales"}
    assert not credit & set(candidates)
    assert not [r for r in chosen if r.action.credit]
    assert {r.action_id for r in rejected if r.rule == "suitability.financial_distress"} >= {"credit_card"}


def test_no_credit_push_to_vulnerable_customers(policy: DecisionPolicy) -> None:
    chosen, rejected, _ = decide(policy, make_features(is_vulnerable=1), "app", propensity={"credit_card": 0.9})
    assert "credit_card" not in [r.action.id for r in chosen]
    assert ("credit_card", "suitability.vulnerable") in {(r.action_id, r.rule) for r in rejected}


def test_service_action_outranks_sales_when_the_moment_calls_for_it(policy: DecisionPolicy) -> None:
    props = {"mortgage": 0.9, "card_replacement": 0.01}
    chosen, _, _ = decide(policy, make_features(), "app", propensity=props)
    assert chosen[0].action.id == "mortgage"
    chosen, _, _ = decide(policy, make_features(hours_since_card_lost=3.0), "app", propensity=props)
    assert chosen[0].action.id == "card_replacement"
    assert "SERVICE_CARD_LOST" in chosen[0].reasons
    chosen, _, _ = decide(policy, make_features(), "app", context=DecisionContext(event="card_lost"), propensity=props)
    assert chosen[0].action.id == "card_replacement"


def test_a_service_action_is_shown_when_its_trigger_holds_never_as_filler(policy: DecisionPolicy) -> None:
    # Every other action is out (low propensity): a complaint callback must still not fill the empty slot.
    quiet, rejected, _ = decide(policy, make_features(), "app", propensity={"complaint_callback": 0.9})
    assert quiet == []
    assert ("complaint_callback", "service.not_triggered") in {(r.action_id, r.rule) for r in rejected}
    complaint = make_features(hours_since_complaint=5.0)
    chosen, _, _ = decide(policy, complaint, "app", propensity={"complaint_callback": 0.01})
    assert chosen and chosen[0].action.id == "complaint_callback"
    assert "SERVICE_OPEN_COMPLAINT" in chosen[0].reasons


def test_retention_is_boosted_by_churn_risk(policy: DecisionPolicy) -> None:
    props = {"fee_waiver": 0.1, "credit_card": 0.2}
    # A customer with real balances at stake (value at risk 0.02 x 23,000 = 460 EUR): the boost is worth the
    # retention offer's propensity times churn risk times that, so it needs something at risk to tip the choice.
    feats = make_features(savings_balance=20_000.0)
    low, _, _ = decide(policy, feats, "app", churn_risk=0.01, propensity=props, max_actions=10)
    high, _, _ = decide(policy, feats, "app", churn_risk=0.6, propensity=props, max_actions=10)
    pr_low = {r.action.id: r.priority for r in low}
    pr_high = {r.action.id: r.priority for r in high}
    assert pr_high["fee_waiver"] > pr_low["fee_waiver"]
    assert pr_high["credit_card"] == pytest.approx(pr_low["credit_card"])
    assert high[0].action.id == "fee_waiver" and "CHURN_RISK_HIGH" in high[0].reasons
    assert low[0].action.id == "credit_card"


def test_retention_boost_is_earned_only_through_acceptance(policy: DecisionPolicy) -> None:
    """The value at risk is saved only if the retention offer is taken: at a negligible propensity a high churn
    risk must not outrank a likely sale (it did when the boost was added outside the propensity)."""
    props = {"fee_waiver": 0.006, "credit_card": 0.2}
    chosen, _, _ = decide(
        policy, make_features(savings_balance=20_000.0), "app", churn_risk=0.6, propensity=props, max_actions=10
    )
    priority = {r.action.id: r.priority for r in chosen}
    assert chosen[0].action.id == "credit_card"
    assert priority["fee_waiver"] == pytest.approx(0.006 * (250.0 + 0.6 * 0.02 * 23_000.0))


def test_context_event_weight_brings_travel_forward(policy: DecisionPolicy) -> None:
    props = {"travel_insurance": 0.10, "savings_account": 0.08}
    plain, _, _ = decide(policy, make_features(), "app", propensity=props, max_actions=1)
    at_airport, _, _ = decide(
        policy, make_features(), "app", context=DecisionContext(event="airport_checkin"), propensity=props
    )
    assert plain[0].action.id == "savings_account"
    assert at_airport[0].action.id == "travel_insurance"


def test_low_propensity_everywhere_means_no_action(policy: DecisionPolicy) -> None:
    chosen, rejected, _ = decide(policy, make_features(), "app", propensity=0.0001)
    assert chosen == []
    assert any(r.rule == "arbitration.min_propensity" for r in rejected)


def test_top_k_respects_max_actions_and_breaks_ties_deterministically(policy: DecisionPolicy) -> None:
    # value x propensity equal for two actions: 60 x 0.5 == 250 x 0.12 -> savings (sales) vs fee_waiver (retention)
    props = {"savings_account": 0.5, "fee_waiver": 0.12, "mortgage": 0.01}
    chosen, rejected, _ = decide(policy, make_features(), "app", propensity=props, max_actions=2, churn_risk=None)
    assert len(chosen) == 2
    assert [r.action.id for r in chosen] == ["fee_waiver", "savings_account"]
    assert any(r.rule == "arbitration.outranked" for r in rejected)
    again, _, _ = decide(policy, make_features(), "app", propensity=props, max_actions=2, churn_risk=None)
    assert [r.action.id for r in again] == [r.action.id for r in chosen]
    capped, _, _ = decide(policy, make_features(), "app", propensity=0.3, max_actions=50)
    assert len(capped) == policy.config.max_actions


@pytest.mark.parametrize(
    ("overrides", "action", "rule"),
    [
        ({"age": 19}, "personal_loan", "eligibility.min_age"),
        ({"age": 70}, "mortgage", "eligibility.max_age"),
        ({}, "business_loan", "eligibility.segment"),
        ({"has_current_account": 0}, "credit_card", "eligibility.requires"),
        ({"has_credit_card": 1}, "credit_card", "eligibility.excludes"),
        ({"risk_level": 1}, "mortgage", "eligibility.risk_band"),
    ],
)
def test_catalogue_eligibility_rules(policy: DecisionPolicy, overrides: dict, action: str, rule: str) -> None:
    _, rejected, candidates = decide(policy, make_features(**overrides), "app")
    assert action not in candidates
    assert (action, rule) in {(r.action_id, r.rule) for r in rejected}


def test_cold_start_customer_gets_only_profile_free_actions(policy: DecisionPolicy) -> None:
    unknown = {k: None for k in make_features()}
    customer = customer_view(99, unknown, policy.config)
    assert not customer.known
    _, rejected, candidates = decide(policy, unknown, "app")
    for a in candidates:
        action = policy.catalogue.action(a)
        assert not action.credit and not action.eligibility.requires and action.kind not in MARKETING_KINDS
    assert any(r.rule == "cold_start.needs_profile" for r in rejected)
    # every sale in the catalogue has an age or segment condition: a stranger gets service actions only
    _, _, web = decide(policy, unknown, "web")
    assert web and {policy.catalogue.action(a).kind for a in web} == {"service"}


def test_reason_codes_come_from_top_positive_contributions(policy: DecisionPolicy) -> None:
    names = ["age", "hours_since_airport_checkin", "travel_amount_30d", "action_value", "has_savings", "logins_7d"]
    contrib = np.array([0.05, 0.9, 0.4, 2.0, -0.3, 0.01, -1.0])  # last column = bias
    codes = policy.reason_codes(names, contrib)
    assert codes == ["RECENT_TRAVEL_SIGNAL", "TRAVEL_INTEREST", "LIFE_STAGE"]  # action_ excluded, negatives never
    assert policy.reason_codes(names, -np.abs(contrib)) == []


def test_an_offer_not_worth_its_contact_is_not_made(policy: DecisionPolicy) -> None:
    catalogue = load_catalogue()
    cost = catalogue.channel_cost("call_centre")
    assert cost > 5  # a call costs euros (docs/simulator.md, contact costs)
    # a retention call whose expected margin is below what the call costs: nothing is made of it
    cheap = {a.id: cost * 0.5 / a.value for a in catalogue.actions}  # p x value = half the call's cost
    chosen, rejected, _ = decide(policy, make_features(), "call_centre", propensity=cheap, churn_risk=None)
    assert not [r for r in chosen if r.action.kind in MARKETING_KINDS]
    assert any(r.rule == "arbitration.min_priority" and "contact cost" in r.detail for r in rejected)
    # the same offers on a channel that costs nothing are made
    chosen, _, _ = decide(policy, make_features(), "app", propensity=cheap)
    assert chosen
    gross = DecisionPolicy(catalogue, policy.config.model_copy(update={"net_of_contact_cost": False}))
    chosen, _, _ = decide(gross, make_features(), "call_centre", propensity=cheap, churn_risk=None)
    assert chosen  # the old, gross priority would have made the call


def test_exploration_serves_each_action_with_the_probability_it_logs(policy: DecisionPolicy) -> None:
    from nextbest.policy import Exploration

    exploring = DecisionPolicy(
        load_catalogue(), policy.config.model_copy(update={"exploration": Exploration(share=0.3, among=4)})
    )
    customer = customer_view(7, make_features(), exploring.config)
    screening = exploring.screen(customer, "app", [], NOW)
    props = np.linspace(0.2, 0.02, len(screening.candidates))
    served: dict[str, int] = {}
    logged: dict[str, float] = {}
    runs = 4000
    for n in range(runs):
        ranked, _ = exploring.arbitrate(screening.candidates, props, customer, "app", DecisionContext(), {}, 0.02)
        chosen, _ = exploring.top_k(ranked, 2, seed=f"d-{n}")
        for r in chosen:
            served[r.action.id] = served.get(r.action.id, 0) + 1
            assert logged.setdefault(r.action.id, r.choice_probability) == r.choice_probability
    greedy, _ = policy.top_k(
        policy.arbitrate(screening.candidates, props, customer, "app", DecisionContext(), {}, 0.02)[0], 2
    )
    assert {r.action.id for r in greedy} <= set(served) and len(served) > 2  # it explores beyond the greedy pair
    for action_id, count in served.items():
        p = logged[action_id]
        assert abs(count / runs - p) < 4 * (p * (1 - p) / runs) ** 0.5 + 1e-9, (action_id, count / runs, p)
    assert all(r.choice_probability == 1.0 for r in greedy)  # no exploration configured: greedy, probability 1
    again, _ = exploring.top_k(
        exploring.arbitrate(screening.candidates, props, customer, "app", DecisionContext(), {}, 0.02)[0], 2, seed="d-7"
    )
    first, _ = exploring.top_k(
        exploring.arbitrate(screening.candidates, props, customer, "app", DecisionContext(), {}, 0.02)[0], 2, seed="d-7"
    )
    assert [r.action.id for r in again] == [r.action.id for r in first]  # fixed by the decision id: replayable
