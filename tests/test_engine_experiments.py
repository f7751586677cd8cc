"""Experiments in the one engine: the universal holdout gets no marketing, a campaign's control group nothing, and a
live split serves each arm its own policy, deterministically per customer, every decision logging what it was."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from nextbest.assignment import Assigner, AssignmentConfig
from nextbest.decision_log import DecisionLog
from nextbest.policy import MARKETING_KINDS
from nextbest.project import Project, load_project
from nextbest.settings import Settings
from serving.engine import DecisionEngine
from serving.schemas import RecommendRequest

RELAXED: dict[str, object] = {"reload_interval_s": 0, "feature_timeout_ms": 2000.0, "simulated_time": True}
NOW = datetime(2026, 9, 3, 10, tzinfo=UTC)


def _project(assignment: dict[str, Any], source: Path | None = None) -> Project:
    project = load_project()
    assert project.serving is not None
    serving = project.serving.model_copy(update={"assignment": AssignmentConfig.model_validate(assignment)})
    return project.model_copy(update={"serving": serving, "source": source or project.source})


def _engine(settings: Settings, project: Project, log: Path) -> Iterator[DecisionEngine]:
    serving = settings.serving.model_copy(update=RELAXED)
    eng = DecisionEngine(
        settings.model_copy(update={"serving": serving}), project=project, decision_log=DecisionLog(f"sqlite:///{log}")
    )
    eng.load()
    try:
        yield eng
    finally:
        eng.close()


def _marketing(actions: Any) -> list[str]:
    return [a.action_id for a in actions if a.kind in MARKETING_KINDS]


def test_the_universal_holdout_gets_no_marketing_and_is_logged(served_world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    project = _project({"holdout": {"share": 0.3}})
    for engine in _engine(served_world.settings, project, tmp_path / "log.db"):
        keys = served_world.customer_ids
        requests = [RecommendRequest(customer_id=k, channel="app") for k in keys]
        out = engine.decide_batch(requests, now=[NOW] * len(requests))
        held = Assigner(project.name, project.serving.assignment).in_holdout(keys)  # type: ignore[union-attr]
        assert 0.2 < held.mean() < 0.4  # the configured share, on 300 customers
        assert all(not _marketing(r.actions) for r, h in zip(out, held, strict=True) if h)
        assert any(_marketing(r.actions) for r, h in zip(out, held, strict=True) if not h)
        single = engine.recommend(RecommendRequest(customer_id=int(keys[int(held.argmax())]), channel="app"), now=NOW)
        assert not _marketing(single.actions)  # the real-time path holds it out too
        assert engine.decision_log.flush()
        logged = engine.decision_log.get_decision(out[int(held.argmax())].decision_id)
        assert logged is not None and logged["holdout"] is True and logged["campaign_id"] is None
        rules = {r["rule"] for r in logged["rejected"]}
        assert "experiment.holdout" in rules


def test_a_campaign_control_group_is_decided_and_logged_but_sent_nothing(served_world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    project = _project({})
    for engine in _engine(served_world.settings, project, tmp_path / "log.db"):
        keys = served_world.customer_ids[:80]
        controls = [n % 4 == 0 for n in range(len(keys))]
        requests = [RecommendRequest(customer_id=k, channel="email") for k in keys]
        out = engine.decide_batch(requests, now=[NOW] * len(keys), campaign_id="spring_cards", controls=controls)
        assert all(not r.actions for r, c in zip(out, controls, strict=True) if c)
        assert any(r.actions for r, c in zip(out, controls, strict=True) if not c)
        assert engine.decision_log.flush()
        control = engine.decision_log.get_decision(out[0].decision_id)
        treated = engine.decision_log.get_decision(out[1].decision_id)
        assert control is not None and treated is not None
        assert control["campaign_id"] == treated["campaign_id"] == "spring_cards"
        assert control["campaign_control"] is True and treated["campaign_control"] is False
        assert control["contacts"] == [] and {r["rule"] for r in control["rejected"]} == {"experiment.campaign_control"}
        with pytest.raises(ValueError, match="controls"):
            engine.decide_batch(requests[:2], controls=[True, False])  # no campaign named


def test_a_live_split_serves_each_arm_its_policy_deterministically(served_world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    quiet = load_project().policy
    assert quiet is not None
    # The challenger arm's policy file: no marketing at all (an arbitration floor no offer reaches).
    raw = quiet.model_dump(mode="json", exclude_defaults=True)
    raw["min_priority"] = 1e12
    (tmp_path / "challenger_policy.yaml").write_text(yaml.safe_dump(raw))
    split = {
        "name": "policy_test",
        "arms": [
            {"name": "champion", "share": 0.5},
            {"name": "challenger", "share": 0.5, "policy": "challenger_policy.yaml"},
        ],
    }
    project = _project({"splits": [split]}, source=tmp_path / "project.yaml")
    for engine in _engine(served_world.settings, project, tmp_path / "log.db"):
        keys = served_world.customer_ids[:200]
        requests = [RecommendRequest(customer_id=k, channel="app") for k in keys]
        times = [NOW + timedelta(minutes=1)] * len(keys)
        out = engine.decide_batch(requests, now=times)
        arms = Assigner(project.name, project.serving.assignment).arm("policy_test", keys)  # type: ignore[union-attr]
        assert set(arms) == {"champion", "challenger"}
        assert all(not _marketing(r.actions) for r, a in zip(out, arms, strict=True) if a == "challenger")
        assert any(_marketing(r.actions) for r, a in zip(out, arms, strict=True) if a == "champion")
        assert engine.decision_log.flush()
        versions = {}
        for r, a in zip(out, arms, strict=True):
            logged = engine.decision_log.get_decision(r.decision_id)
            assert logged is not None and logged["split"] == "policy_test" and logged["arm"] == a
            versions.setdefault(a, set()).add(logged["policy_version"])
        assert len(versions["champion"]) == len(versions["challenger"]) == 1
        assert versions["champion"] != versions["challenger"]  # each arm logs the policy that decided
        again = engine.recommend(requests[0], now=NOW + timedelta(days=3))
        assert bool(_marketing(again.actions)) <= (arms[0] == "champion")  # the same arm on the real-time path


def test_exploration_logs_each_served_actions_probability_and_replays_exactly(served_world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from nextbest.policy import Exploration
    from serving.replay import replay_decision

    base = load_project()
    assert base.policy is not None
    project = base.model_copy(
        update={"policy": base.policy.model_copy(update={"exploration": Exploration(share=0.5, among=3)})}
    )
    log = tmp_path / "log.db"
    settings = served_world.settings.model_copy(
        update={
            "serving": served_world.settings.serving.model_copy(
                update={**RELAXED, "decision_log_uri": f"sqlite:///{log}"}
            )
        }
    )
    engine = DecisionEngine(settings, project=project)
    engine.load()
    try:
        # one slot among several candidates: the served action is uncertain when exploring
        keys = served_world.customer_ids[:60]
        requests = [RecommendRequest(customer_id=k, channel="app", max_actions=1) for k in keys]
        out = engine.decide_batch(requests, now=[NOW] * len(requests))
        assert engine.decision_log.flush()
        logged = [engine.decision_log.get_decision(r.decision_id) for r in out]
    finally:
        engine.close()
    probabilities = [p for d in logged if d for p in (d["choice_probabilities"] or {}).values()]
    assert probabilities and all(0 < p <= 1 for p in probabilities)
    assert any(p < 1 for p in probabilities)  # exploring: some served actions were not certain
    explored = next(d for d in logged if d and any(p < 1 for p in d["choice_probabilities"].values()))
    assert set(explored["choice_probabilities"]) == {c["action_id"] for c in explored["chosen"]}
    replayed = replay_decision(settings, explored["decision_id"], project)
    assert replayed.matches, replayed.differences  # the draw is fixed by the decision id
