"""Serving an onboarded project: Berka (configs/berka.yaml, `serving:` section) through the service's usual contract.

Berka is onboarded once into a temporary home (features, Feast project, both models with a few trials); the engine
is then checked in-process (scores equal the model's score of the entity's online features, eligibility,
suitability, cool-down, degraded and cold-start answers, events, config errors) and the REAL BentoML server is
started for the project and checked over HTTP.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from nextbest.decision_log import DecisionLog
from nextbest.errors import ConfigError
from nextbest.onboarding.config import OnboardingConfig, load_config
from nextbest.settings import REPO_ROOT, ServingSettings, Settings
from serving.schemas import EventRequest, FeedbackRequest, RecommendRequest

BERKA_DIR = Path(os.environ.get("NEXTBEST_BERKA_DIR") or REPO_ROOT.parent / "shared/data/berka")
CONFIG = REPO_ROOT / "configs/berka.yaml"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (BERKA_DIR / "account.csv").is_file() and os.environ.get("CI", "").lower() not in ("1", "true", "yes"),
        reason=f"Berka data not found at {BERKA_DIR} (set NEXTBEST_BERKA_DIR to the folder of account.csv)",
    ),
]


@dataclass(frozen=True)
class ServedBerka:
    config: OnboardingConfig
    settings: Settings
    fresh: int  # an account with neither card nor loan: both offers eligible
    risky: int  # an account with a loan the default model rates at or above the rule's threshold, no card
    safe: int  # an account with a loan rated below the threshold, no card
    risky_p: float
    safe_p: float


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> ServedBerka:
    from nextbest.onboarding import pipeline
    from nextbest.onboarding.scoring import ProjectScorer

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    os.environ.setdefault("NEXTBEST_BERKA_DIR", str(BERKA_DIR))
    config = load_config(CONFIG)
    home = tmp_path_factory.mktemp("berka-serving")
    settings = Settings(
        home=home / "home",
        serving=ServingSettings(project_config=CONFIG, reload_interval_s=0, feature_timeout_ms=2000),
    )
    pipeline.build(config, settings)
    pipeline.apply(config, settings, CONFIG)
    pipeline.materialize(config, settings)
    for model in ("berka_propensity", "berka_default"):
        pipeline.train(config, settings, model, trials=2, validate_model=False)

    accounts = pd.read_csv(BERKA_DIR / "account.csv", sep=";")
    loans = pd.read_csv(BERKA_DIR / "loan.csv", sep=";")
    disp = pd.read_csv(BERKA_DIR / "disp.csv", sep=";")
    cards = pd.read_csv(BERKA_DIR / "card.csv", sep=";").merge(disp, on="disp_id")
    fresh = accounts[~accounts.account_id.isin(loans.account_id) & ~accounts.account_id.isin(cards.account_id)]
    no_card = loans[~loans.account_id.isin(cards.account_id)].copy()
    default = ProjectScorer(config, settings, "berka_default")
    no_card["p"] = [s.probability for s in default.score([int(k) for k in no_card.loan_id], reasons=0)]
    no_card = no_card.sort_values("p")
    return ServedBerka(
        config=config,
        settings=settings,
        fresh=int(fresh.account_id.iloc[0]),
        risky=int(no_card.account_id.iloc[-1]),
        safe=int(no_card.account_id.iloc[0]),
        risky_p=float(no_card.p.iloc[-1]),
        safe_p=float(no_card.p.iloc[0]),
    )


def _engine(served: ServedBerka, tmp_path: Path, **serving: object):  # type: ignore[no-untyped-def]
    from serving.project_engine import ProjectEngine

    settings = served.settings
    if serving:
        settings = settings.model_copy(update={"serving": settings.serving.model_copy(update=serving)})
    engine = ProjectEngine(settings, decision_log=DecisionLog(f"sqlite:///{tmp_path / 'decisions.db'}"))
    engine.load()
    return engine


def test_both_offers_are_ranked_by_value_with_the_models_score_of_the_online_features(
    served: ServedBerka, tmp_path: Path
) -> None:
    from nextbest.onboarding.scoring import ProjectScorer

    expected = ProjectScorer(served.config, served.settings, "berka_propensity").score([served.fresh])[0]
    engine = _engine(served, tmp_path)
    try:
        r = engine.recommend(RecommendRequest(customer_id=served.fresh, channel="app"))
        assert not r.degraded and not r.cold_start
        assert [a.action_id for a in r.actions] == ["offer_loan", "offer_credit_card"]  # same p, loan worth more
        assert [a.template_id for a in r.actions] == ["berka_loan_app_v1", "berka_card_app_v1"]
        for a in r.actions:
            assert a.propensity == pytest.approx(expected.probability, abs=1e-6)
            assert a.priority == pytest.approx(expected.probability * a.value, rel=1e-4)
            assert a.reason_codes  # from the model's per-feature contributions
        assert r.model_versions == {"berka_propensity": "1", "berka_default": "1"}
        # By email: no loan template, and the card was just delivered (7-day cool-down): nothing to offer.
        email = engine.recommend(RecommendRequest(customer_id=served.fresh, channel="email"))
        assert email.actions == [] and not email.degraded
        assert engine.decision_log.flush()
        logged = engine.decision_log.get_decision(email.decision_id)
        assert logged is not None
        rules = {(x["action_id"], x["rule"]) for x in logged["rejected"]}
        assert ("offer_loan", "channel.not_offered") in rules
        assert ("offer_credit_card", "contact.cooldown") in rules
    finally:
        engine.close()


def test_a_high_default_risk_on_the_accounts_loan_withholds_credit_offers(served: ServedBerka, tmp_path: Path) -> None:
    rule = served.config.serving.suitability[0]  # type: ignore[union-attr]
    assert served.risky_p >= rule.max_probability > served.safe_p  # the data hold both cases
    engine = _engine(served, tmp_path)
    try:
        risky = engine.recommend(RecommendRequest(customer_id=served.risky, channel="web"))
        assert risky.actions == [] and not risky.degraded
        assert any(n.startswith("suitability.default_risk_high") for n in risky.notes)
        safe = engine.recommend(RecommendRequest(customer_id=served.safe, channel="web"))
        # The loan offer is ineligible (a loan is held); the card passes the rule.
        assert [a.action_id for a in safe.actions] == ["offer_credit_card"]
        assert engine.decision_log.flush()
        logged = engine.decision_log.get_decision(risky.decision_id)
        assert {x["rule"] for x in logged["rejected"]} == {"suitability.default_risk_high", "eligibility.loans_all"}
        logged = engine.decision_log.get_decision(safe.decision_id)
        assert {(x["action_id"], x["rule"]) for x in logged["rejected"]} == {("offer_loan", "eligibility.loans_all")}
    finally:
        engine.close()


def test_unknown_account_gets_a_cold_start_answer_and_a_dead_store_a_degraded_one(
    served: ServedBerka, tmp_path: Path
) -> None:
    engine = _engine(served, tmp_path, breaker_reset_s=60.0)
    try:
        cold = engine.recommend(RecommendRequest(customer_id=10**9, channel="app"))
        assert cold.cold_start and not cold.degraded and cold.actions == []

        def hang(*args: object, **kwargs: object) -> None:
            time.sleep(1.0)

        engine._store.get_online_features = hang  # type: ignore[union-attr,method-assign]
        engine.timeout_s = 0.05
        t0 = time.perf_counter()
        r = engine.recommend(RecommendRequest(customer_id=served.fresh, channel="app"))
        assert time.perf_counter() - t0 < 0.5
        assert r.degraded and not r.cold_start and r.actions == []
        for _ in range(3):
            engine.recommend(RecommendRequest(customer_id=served.fresh, channel="app"))
        assert engine.status().breaker_open  # later requests skip the store instead of waiting
    finally:
        engine.close()


def test_configured_cold_start_actions_are_scored_on_the_profile_free_row(served: ServedBerka, tmp_path: Path) -> None:
    from serving.project_engine import ProjectEngine

    serving = served.config.serving
    assert serving is not None
    config = served.config.model_copy(
        update={"serving": serving.model_copy(update={"cold_start_actions": ["offer_credit_card"]})}
    )
    engine = ProjectEngine(served.settings, config=config, decision_log=DecisionLog(f"sqlite:///{tmp_path / 'd.db'}"))
    engine.load()
    try:
        r = engine.recommend(RecommendRequest(customer_id=10**9, channel="app"))
        assert r.cold_start and [a.action_id for a in r.actions] == ["offer_credit_card"]
        scorer = engine.models.scorers["berka_propensity"]
        prior = float(scorer.model.predict_proba(scorer.matrix([{}]))[0])
        assert r.actions[0].propensity == pytest.approx(prior, abs=1e-6)
    finally:
        engine.close()


def test_events_are_recorded_but_move_no_feature_and_feedback_joins(served: ServedBerka, tmp_path: Path) -> None:
    engine = _engine(served, tmp_path)
    try:
        ev = engine.record_event(EventRequest(customer_id=served.fresh, event_type="branch_visit"))
        assert ev.accepted and not ev.pushed and "no real-time features" in ev.detail
        d = engine.recommend(RecommendRequest(customer_id=served.safe, channel="app"))
        fb = engine.record_feedback(FeedbackRequest(decision_id=d.decision_id, outcome="accepted"))
        assert fb.customer_id == served.safe
        assert engine.decision_log.flush()
        assert engine.decision_log.count("events") == 1 and engine.decision_log.count("feedback") == 1
    finally:
        engine.close()


def test_a_project_without_serving_or_with_an_unknown_channel_is_a_config_error(served: ServedBerka) -> None:
    from serving.project_engine import ProjectEngine

    with pytest.raises(ConfigError, match="no `serving:` section"):
        ProjectEngine(served.settings, config=served.config.model_copy(update={"serving": None}))
    serving = served.config.serving
    assert serving is not None
    card = serving.actions[0].model_copy(update={"templates": {"pigeon": "x"}})
    bad = served.config.model_copy(update={"serving": serving.model_copy(update={"actions": [card]})})
    with pytest.raises(ConfigError, match="pigeon"):
        ProjectEngine(served.settings, config=bad)


def _post(url: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_real_service_serves_berka_through_the_same_endpoint_contract(served: ServedBerka, tmp_path: Path) -> None:
    from nextbest.onboarding.scoring import ProjectScorer
    from serving.runner import ServiceProcess, free_port

    log_uri = f"sqlite:///{tmp_path / 'decisions.db'}"
    settings = served.settings.model_copy(
        update={
            "serving": served.settings.serving.model_copy(
                update={"decision_log_uri": log_uri, "auth_enabled": True, "api_keys": {"k": "channel"}}
            )
        }
    )
    key = {"X-API-Key": "k"}
    expected = ProjectScorer(served.config, served.settings, "berka_propensity").score([served.fresh])[0].probability
    with ServiceProcess(settings, port=free_port(), log_path=tmp_path / "service.log") as svc:
        status, _ = _post(svc.url + "/recommend", {"customer_id": served.fresh, "channel": "app"})
        assert status == 401  # the same auth
        status, d = _post(svc.url + "/recommend", {"customer_id": served.fresh, "channel": "app"}, key)
        assert status == 200, d
        assert set(d) == {
            "decision_id",
            "customer_id",
            "channel",
            "actions",
            "churn_risk",
            "model_versions",
            "degraded",
            "cold_start",
            "notes",
        }
        assert [a["action_id"] for a in d["actions"]] == ["offer_loan", "offer_credit_card"]
        assert [a["rank"] for a in d["actions"]] == [1, 2]
        assert all(a["propensity"] == pytest.approx(expected, abs=1e-6) for a in d["actions"])
        assert d["model_versions"] == {"berka_propensity": "1", "berka_default": "1"} and not d["degraded"]

        status, cold = _post(svc.url + "/recommend", {"customer_id": 10**9, "channel": "app"}, key)
        assert status == 200 and cold["cold_start"] and cold["actions"] == []
        status, risky = _post(svc.url + "/recommend", {"customer_id": served.risky, "channel": "web"}, key)
        assert status == 200 and risky["actions"] == []
        assert any(n.startswith("suitability.default_risk_high") for n in risky["notes"])
        for body, field in (
            ({"customer_id": served.fresh, "channel": "fax"}, "channel"),
            ({"customer_id": -1, "channel": "app"}, "customer_id"),
            ({"channel": "app"}, "customer_id"),
            # a channel cannot move the decision clock (only simulations, with serving.simulated_time)
            ({"customer_id": served.fresh, "channel": "app", "ts": "2026-04-01T09:30:00Z"}, "ts"),
        ):
            status, bad = _post(svc.url + "/recommend", body, key)
            assert 400 <= status < 500 and field in json.dumps(bad)

        status, ev = _post(svc.url + "/events", {"customer_id": served.fresh, "event_type": "login"}, key)
        assert status == 200 and ev["accepted"] and not ev["pushed"]
        offer = {"decision_id": d["decision_id"], "outcome": "accepted", "action_id": "offer_loan"}
        status, fb = _post(svc.url + "/feedback", offer, key)
        assert status == 200 and fb["customer_id"] == served.fresh and fb["action_id"] == "offer_loan"
        status, _ = _post(svc.url + "/feedback", {"decision_id": "0123456789abcdef", "outcome": "shown"}, key)
        assert status == 404
        status, st = _post(svc.url + "/status", {}, key)
        assert status == 200 and st["ready"] and "berka" in st["online_store"]
    assert svc.proc is not None and svc.proc.returncode == 0
    log = DecisionLog(log_uri)
    try:  # every answered decision is in the project's log, the feedback joined to its delivered action
        for decision in (d, cold, risky):
            assert log.get_decision(decision["decision_id"]) is not None
        contacts = [c for c in log.contact_history(served.fresh, since=pd.Timestamp("2000-01-01", tz="UTC"))]
        assert {(c.action_id, c.outcome) for c in contacts} == {("offer_loan", "accepted"), ("offer_credit_card", None)}
        assert log.count("feedback") == 1 and log.count("events") == 1
    finally:
        log.close()
