"""Berka served by the one decision engine: what its project file declares is what a decision does.

In-process checks on the session's onboarded Berka (`berka` fixture): propensities are the champion's score of
the account's online features, eligibility from holdings, the default-risk model rule (a second online read of the
account's loan), the declared "no consent data" (no marketing on outbound channels), caps and cool-downs, cold
start, degraded answers behind the breaker, events recorded without a push source, feedback, and policy reload.
The HTTP contract for every project is in tests/test_contract.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from project_fixtures import BERKA_DIR, OnboardedProject

from nextbest.decision_log import DecisionLog
from nextbest.errors import ConfigError
from nextbest.models.artefact import LoadedModel, load_model
from nextbest.project import load_project
from serving.engine import DecisionEngine
from serving.schemas import EventRequest, FeedbackRequest, RecommendRequest

pytestmark = pytest.mark.slow


def _engine(berka: OnboardedProject, tmp_path: Path, **serving: object) -> DecisionEngine:
    settings = berka.with_serving(**serving) if serving else berka.settings
    engine = DecisionEngine(settings, decision_log=DecisionLog(f"sqlite:///{tmp_path / 'decisions.db'}"))
    engine.load()
    return engine


@pytest.fixture(scope="module")
def accounts(berka: OnboardedProject) -> dict[str, int]:
    """Accounts for each case: fresh (no card, no loan), a risky and a safe loan without a card."""
    loans = pd.read_csv(BERKA_DIR / "loan.csv", sep=";")
    disp = pd.read_csv(BERKA_DIR / "disp.csv", sep=";")
    cards = pd.read_csv(BERKA_DIR / "card.csv", sep=";").merge(disp, on="disp_id")
    accounts = pd.read_csv(BERKA_DIR / "account.csv", sep=";")
    fresh = accounts[~accounts.account_id.isin(loans.account_id) & ~accounts.account_id.isin(cards.account_id)]
    no_card = loans[~loans.account_id.isin(cards.account_id)].copy()
    engine = DecisionEngine(berka.settings)
    engine.load()
    try:
        reader = engine._rule_readers["default_risk"].reader
        model = engine.bundle.models["berka_default"]
        no_card["p"] = [_score(model, reader.read(int(k))) for k in no_card.loan_id]
    finally:
        engine.close()
    no_card = no_card.sort_values("p")
    return {
        "fresh": int(fresh.account_id.iloc[0]),
        "risky": int(no_card.account_id.iloc[-1]),
        "safe": int(no_card.account_id.iloc[0]),
        "risky_p_x1000": int(no_card.p.iloc[-1] * 1000),
        "safe_p_x1000": int(no_card.p.iloc[0] * 1000),
    }


def _score(model: LoadedModel, features: dict[str, object]) -> float:
    row = np.array([[np.nan if features.get(f) is None else features.get(f) for f in model.feature_names]], float)
    return float(model.predict_proba(row.astype(np.float32))[0])


@pytest.fixture
def engine(berka: OnboardedProject, tmp_path: Path) -> Iterator[DecisionEngine]:
    eng = _engine(berka, tmp_path, simulated_time=True)  # the tests decide days ahead of now
    yield eng
    eng.close()


def test_offers_are_ranked_by_value_with_the_champions_score_of_the_online_features(
    engine: DecisionEngine, berka: OnboardedProject, accounts: dict[str, int]
) -> None:
    assert engine._reader is not None
    features = engine._reader.read(accounts["fresh"])
    expected = _score(load_model("berka_propensity", settings=berka.settings), features)
    r = engine.recommend(RecommendRequest(customer_id=accounts["fresh"], channel="app"))
    assert not r.degraded and not r.cold_start and r.churn_risk is None  # Berka declares no churn model
    assert [a.action_id for a in r.actions] == ["offer_loan", "offer_credit_card"]  # same p, the loan is worth more
    assert [a.template_id for a in r.actions] == ["berka_loan_app_v1", "berka_card_app_v1"]
    for a in r.actions:
        assert a.propensity == pytest.approx(expected, abs=1e-6)
        assert a.priority == pytest.approx(expected * a.value, rel=1e-4)
        assert a.reason_codes  # from the model's per-feature contributions
    assert r.model_versions == {"berka_propensity": "1", "berka_default": "1"}
    assert engine.decision_log.flush()
    logged = engine.decision_log.get_decision(r.decision_id)
    assert logged is not None and logged["customer_id"] == accounts["fresh"]
    assert logged["model_scores"]["berka_propensity"] == pytest.approx(expected, abs=1e-6)


def test_no_consent_data_means_no_marketing_on_outbound_channels(
    engine: DecisionEngine, accounts: dict[str, int]
) -> None:
    r = engine.recommend(RecommendRequest(customer_id=accounts["fresh"], channel="email"))
    assert r.actions == [] and not r.degraded
    assert engine.decision_log.flush()
    logged = engine.decision_log.get_decision(r.decision_id)
    assert logged is not None
    rules = {(x["action_id"], x["rule"]) for x in logged["rejected"]}
    assert ("offer_loan", "eligibility.channel") in rules  # no loan template for email
    assert ("offer_credit_card", "consent.no_data") in rules


def test_caps_and_cool_downs_hold_for_an_onboarded_bank(engine: DecisionEngine, accounts: dict[str, int]) -> None:
    start = datetime.now(UTC) + timedelta(days=30)
    first = engine.recommend(RecommendRequest(customer_id=accounts["fresh"], channel="app", max_actions=1), now=start)
    assert [a.action_id for a in first.actions] == ["offer_loan"]
    # the same day on the same channel: the daily cap; another channel the next hour: the delivered offer is in its
    # repeat cool-down, the card is still allowed
    again = engine.recommend(
        RecommendRequest(customer_id=accounts["fresh"], channel="app"), now=start + timedelta(hours=1)
    )
    assert again.actions == []
    web = engine.recommend(
        RecommendRequest(customer_id=accounts["fresh"], channel="web"), now=start + timedelta(hours=2)
    )
    assert [a.action_id for a in web.actions] == ["offer_credit_card"]
    engine.record_feedback(
        FeedbackRequest(decision_id=web.decision_id, outcome="dismissed", ts=start + timedelta(hours=3))
    )
    later = engine.recommend(
        RecommendRequest(customer_id=accounts["fresh"], channel="web"), now=start + timedelta(days=10)
    )
    assert "offer_credit_card" not in [a.action_id for a in later.actions]  # 30-day dismissal cool-down
    assert engine.decision_log.flush()
    rules = {x["rule"] for x in engine.decision_log.get_decision(again.decision_id)["rejected"]}  # type: ignore[index]
    assert "contact_policy.daily_channel_cap" in rules
    rules = {(x["action_id"], x["rule"]) for x in engine.decision_log.get_decision(later.decision_id)["rejected"]}  # type: ignore[index]
    assert ("offer_credit_card", "contact_policy.dismissal_cooldown") in rules


def test_a_high_default_risk_on_the_accounts_loan_withholds_credit_offers(
    engine: DecisionEngine, berka: OnboardedProject, accounts: dict[str, int]
) -> None:
    rule = berka.project.policy.model_rules[0]
    assert accounts["risky_p_x1000"] >= rule.max_probability * 1000 > accounts["safe_p_x1000"]  # both cases exist
    risky = engine.recommend(RecommendRequest(customer_id=accounts["risky"], channel="web"))
    assert risky.actions == [] and not risky.degraded
    assert any(n.startswith("suitability.default_risk_high") for n in risky.notes)
    safe = engine.recommend(RecommendRequest(customer_id=accounts["safe"], channel="web"))
    assert [a.action_id for a in safe.actions] == ["offer_credit_card"]  # the loan offer: a loan is already held
    assert engine.decision_log.flush()
    logged = engine.decision_log.get_decision(risky.decision_id)
    assert logged is not None
    assert {x["rule"] for x in logged["rejected"]} == {"suitability.default_risk_high", "eligibility.excludes"}
    assert logged["model_scores"]["berka_default"] >= rule.max_probability
    logged = engine.decision_log.get_decision(safe.decision_id)
    assert logged is not None
    assert {(x["action_id"], x["rule"]) for x in logged["rejected"]} == {("offer_loan", "eligibility.excludes")}


def test_unknown_account_gets_a_cold_start_answer_and_a_dead_store_a_degraded_one(
    berka: OnboardedProject, tmp_path: Path, accounts: dict[str, int]
) -> None:
    engine = _engine(berka, tmp_path, breaker_reset_s=60.0)
    try:
        cold = engine.recommend(RecommendRequest(customer_id=10**9, channel="app"))
        assert cold.cold_start and not cold.degraded and cold.actions == []  # cold_start_actions: []
        assert engine._reader is not None
        engine._reader._one_trip = lambda key: time.sleep(1.0)  # type: ignore[assignment,misc,return-value]
        engine._reader.access.timeout_s = 0.05
        r = engine.recommend(RecommendRequest(customer_id=accounts["fresh"], channel="app"))
        assert r.degraded and not r.cold_start and r.actions == []
        for _ in range(3):
            engine.recommend(RecommendRequest(customer_id=accounts["fresh"], channel="app"))
        assert engine.status().breaker_open  # later requests skip the store instead of waiting
    finally:
        engine.close()


def test_a_wrongly_typed_key_is_a_value_error_naming_the_field_and_moves_no_breaker(
    engine: DecisionEngine,
) -> None:
    for _ in range(5):
        with pytest.raises(ValueError, match="customer_id"):
            engine.recommend(RecommendRequest(customer_id="A-1", channel="app"))
    assert not engine.status().breaker_open


def test_events_are_recorded_but_move_no_feature_and_feedback_joins(
    engine: DecisionEngine, accounts: dict[str, int]
) -> None:
    ev = engine.record_event(EventRequest(customer_id=accounts["fresh"], event_type="branch_visit"))
    assert ev.accepted and not ev.pushed and "no real-time features" in ev.detail
    d = engine.recommend(RecommendRequest(customer_id=accounts["safe"], channel="app"))
    fb = engine.record_feedback(FeedbackRequest(decision_id=d.decision_id, outcome="accepted"))
    assert fb.customer_id == accounts["safe"]
    assert engine.decision_log.flush()
    assert engine.decision_log.count("events") == 1 and engine.decision_log.count("feedback") == 1


def test_policy_reload_picks_up_an_edited_file_and_refuses_a_bad_one(
    berka: OnboardedProject, tmp_path: Path, accounts: dict[str, int]
) -> None:
    import yaml

    policy_file = tmp_path / "policy.yaml"
    policy = berka.project.policy.model_dump(mode="json")
    policy_file.write_text(yaml.safe_dump(policy))
    engine = _engine(berka, tmp_path, policy_path=policy_file)
    try:
        before = engine.policy_version
        assert [
            a.action_id
            for a in engine.recommend(RecommendRequest(customer_id=accounts["fresh"], channel="app")).actions
        ]
        policy["max_actions"] = 1
        policy["min_priority"] = 10**9  # nothing is worth a contact any more
        policy_file.write_text(yaml.safe_dump(policy))
        out = engine.reload()
        assert out.policy_version != before and engine.policy_version == out.policy_version
        r = engine.recommend(RecommendRequest(customer_id=accounts["fresh"], channel="web"))
        assert r.actions == []
        policy_file.write_text(yaml.safe_dump({**policy, "max_actions": "many"}))
        with pytest.raises(ConfigError, match="max_actions"):
            engine.reload()
        assert engine.policy_version == out.policy_version  # the old policy is kept
    finally:
        engine.close()


def test_a_project_naming_an_unknown_channel_or_model_is_a_config_error(tmp_path: Path) -> None:
    import yaml
    from project_fixtures import BERKA

    raw = yaml.safe_load(BERKA.read_text())
    raw["data_dir"] = str(BERKA_DIR)
    raw["catalogue"]["actions"][0]["templates"]["pigeon"] = "x"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="pigeon"):
        load_project(bad)
    raw = yaml.safe_load(BERKA.read_text())
    raw["data_dir"] = str(BERKA_DIR)
    raw["catalogue"]["actions"][0]["model"] = "berka_nothing"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="berka_nothing"):
        load_project(bad)
