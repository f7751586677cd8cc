"""Outbound campaigns (`nextbest campaign run`) through the one engine: limits per channel, the universal holdout and
the campaign control, one logged decision per decided customer, caps shared with the real-time path, and the same
decision as a real-time request -- on the simulated bank and on Berka."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from nextbest.assignment import AssignmentConfig
from nextbest.campaigns import CampaignSpec, load_campaign, parse_campaign
from nextbest.decision_log import DecisionLog
from nextbest.errors import ConfigError
from nextbest.jobs.campaign import CampaignResult, open_engine, run_campaign
from nextbest.policy import MARKETING_KINDS
from nextbest.project import Project, load_project
from nextbest.settings import REPO_ROOT, Settings
from serving.engine import ACTION_FILTER_RULE, DecisionEngine
from serving.schemas import RecommendRequest

SPECS = REPO_ROOT / "nextbest/data/campaigns"


def _copy_home(src: Path, dst: Path) -> Path:
    """A private copy of a served home (its features, online store, models), without its logs."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("decisions.db*", "journal", "campaigns", "*spool*"))
    return dst


def _with_holdout(project: Project, share: float) -> Project:
    assert project.serving is not None
    assignment = AssignmentConfig.model_validate({"holdout": {"share": share}})
    return project.model_copy(update={"serving": project.serving.model_copy(update={"assignment": assignment})})


def _decisions(settings: Settings, project: Project, campaign: str | None = None) -> pd.DataFrame:
    engine = sa.create_engine(project.decision_log_uri(settings))
    query = (
        "SELECT decision_id, customer_id, channel, ts, campaign_id, campaign_control, holdout, chosen FROM decisions"
    )
    with engine.connect() as con:
        frame = pd.read_sql(sa.text(query), con)
    engine.dispose()
    if project.served.key_type == "int":
        frame["customer_id"] = frame["customer_id"].astype(int)
    return frame if campaign is None else frame[frame["campaign_id"] == campaign]


def _marketing(actions: Any) -> list[str]:
    return [a.action_id for a in actions if a.kind in MARKETING_KINDS]


def _realtime(settings: Settings, project: Project, log: str) -> Iterator[DecisionEngine]:
    """A second engine, as a service worker is: its own writer to `log`."""
    serving = settings.serving.model_copy(update={"reload_interval_s": 0, "feature_timeout_ms": 2000.0})
    eng = DecisionEngine(
        settings.model_copy(update={"serving": serving}), project=project, decision_log=DecisionLog(log)
    )
    eng.load()
    try:
        yield eng
    finally:
        eng.close()


# -------------------------------------------------------------------- the spec


def test_a_bad_spec_is_one_error_naming_the_field(tmp_path: Path) -> None:
    project = load_project()
    good = {"id": "autumn", "channels": [{"channel": "email", "volume": 10}]}
    cases = {
        "channels.0.volume": {**good, "channels": [{"channel": "email", "volume": -1}]},
        "channels.0.budgt": {**good, "channels": [{"channel": "email", "budgt": 5}]},
        "id": {**good, "id": "Autumn Sale"},
        "control_share": {**good, "control_share": 1.5},
        "send.slots": {**good, "send": {"slots": []}},
        "channels: a channel is listed twice": {**good, "channels": [{"channel": "sms"}, {"channel": "sms"}]},
    }
    for field, raw in cases.items():
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")) as info:
            parse_campaign(raw, "spec.yaml")
        assert "\n" not in str(info.value)
    for field, raw in {
        "channels: unknown channel": {**good, "channels": [{"channel": "fax"}]},
        "actions: unknown action": {**good, "actions": ["free_lunch"]},
        "actions: none of the campaign's actions is offered": {**good, "actions": ["car_loan"]},
        "segment: unknown segment": {**good, "segment": "martians"},
    }.items():
        with pytest.raises(ConfigError, match=field):
            parse_campaign(raw, "spec.yaml").check_against(project)
    path = tmp_path / "bad.yaml"
    path.write_text("id: autumn\nchannels: [{channel: email, volume: lots}]\n")
    with pytest.raises(ConfigError, match=r"channels\.0\.volume"):
        load_campaign(path, project)
    # The shipped examples are valid for their projects.
    assert load_campaign(SPECS / "travel_autumn.yaml", project).segment == "travel_prospects"
    assert load_campaign(SPECS / "berka_cards.yaml", load_project(REPO_ROOT / "configs/berka.yaml")).id == "berka_cards"


def test_the_command_refuses_a_bad_spec_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from nextbest.cli import app

    path = tmp_path / "bad.yaml"
    path.write_text("id: autumn\nchannels: [{channel: email, volume: -3}]\n")
    out = CliRunner().invoke(app, ["campaign", "run", str(path)])
    assert out.exit_code == 2
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "channels.0.volume" in lines[0], out.output


# -------------------------------------------------------------------- the simulated bank


@dataclass
class SimRun:
    settings: Settings
    project: Project
    spec: CampaignSpec
    dry: CampaignResult
    result: CampaignResult
    decisions: pd.DataFrame


SIM_SPEC = {
    "id": "sim_test",
    "channels": [{"channel": "email", "volume": 40}, {"channel": "sms", "budget": 1.5}],
    "send": {"slots": ["09:00", "18:00"]},
    "control_share": 0.2,
}


@pytest.fixture(scope="module")
def sim(served_world, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimRun]:  # type: ignore[no-untyped-def]
    home = _copy_home(served_world.settings.home, tmp_path_factory.mktemp("campaign-sim") / "home")
    settings = served_world.settings.model_copy(update={"home": home})
    project = _with_holdout(load_project(), 0.1)
    spec = parse_campaign(SIM_SPEC, "sim")
    engine = open_engine(project, settings)
    try:
        dry = run_campaign(spec, project, settings, dry_run=True, engine=engine)
        # Two worker processes (each its own engine and writer to the same log) decide the real run.
        dry2 = run_campaign(spec, project, settings, dry_run=True, engine=engine, workers=2)
        result = run_campaign(spec, project, settings, engine=engine, workers=2)
    finally:
        engine.close()
    one, two = pd.read_parquet(dry.contacts), pd.read_parquet(dry2.contacts)
    assert one.drop(columns="decision_id").equals(two.drop(columns="decision_id"))  # as many workers, one answer
    yield SimRun(settings, project, spec, dry, result, _decisions(settings, project, spec.id))


def test_a_campaign_respects_each_channels_volume_and_budget(sim: SimRun) -> None:
    contacts = pd.read_parquet(sim.result.contacts)
    assert contacts.equals(pd.read_csv(sim.result.contacts_csv, parse_dates=["send_time"]).astype(contacts.dtypes))
    per = contacts.groupby("channel").agg(n=("customer_id", "size"), cost=("cost", "sum"))
    assert per.loc["email", "n"] <= 40
    assert per.loc["sms", "cost"] <= 1.5 + 1e-9 and per.loc["sms", "n"] == 20  # EUR 0.075 each
    channels = sim.result.summary["channels"]
    assert channels["email"]["full"] and channels["sms"]["full"]  # 300 customers: both limits bind
    assert channels["email"]["sent"] == per.loc["email", "n"] and channels["sms"]["sent"] == 20
    assert contacts["customer_id"].is_unique  # one contact per customer
    assert set(contacts["send_time"].dt.strftime("%H:%M")) <= {"09:00", "18:00"}
    assert (contacts["priority"] - contacts["cost"] > 0).all()  # a contact is worth what it costs (min_net_value 0)
    # The dry run proposed the same allocation and wrote nothing to the log.
    assert sim.dry.summary["dry_run"] and sim.dry.summary["selected"] == sim.result.summary["selected"]
    dry = pd.read_parquet(sim.dry.contacts)
    assert sorted(dry["customer_id"]) == sorted(contacts["customer_id"])
    assert dry["decision_id"].isna().all()


def test_each_decided_customer_has_one_logged_decision_with_the_campaigns_actions(sim: SimRun) -> None:
    d = sim.decisions
    s = sim.result.summary
    assert len(d) == s["decisions_logged"] == s["selected"] + s["holdout"]
    assert d["customer_id"].is_unique
    contacts = pd.read_parquet(sim.result.contacts)
    sent = d.set_index("decision_id").loc[contacts["decision_id"]]
    assert (sent["channel"].to_numpy() == contacts["channel"].to_numpy()).all()
    # The contacts are recorded (what the caps of every path read).
    log = sa.create_engine(sim.project.decision_log_uri(sim.settings))
    with log.connect() as con:
        recorded = con.execute(sa.text("SELECT count(DISTINCT decision_id) FROM decision_contacts")).scalar()
    log.dispose()
    assert recorded == len(contacts)
    # The campaign's action list is a logged rule, and a replay of the logged request reproduces the decision.
    from serving.replay import replay_decision

    engine = DecisionEngine(sim.settings, project=sim.project)
    engine._open_log()
    try:
        logged = engine.decision_log.get_decision(str(contacts["decision_id"].iloc[0]))
    finally:
        engine.close()
    assert logged is not None and logged["request"]["max_actions"] == 1
    assert {r["rule"] for r in logged["rejected"]} >= {ACTION_FILTER_RULE}
    # The contact list carries the logged offer's price and approved band (issue 18; null and '' when unpriced).
    chosen = logged["chosen"][0]
    first = contacts.iloc[0]
    assert (first["price"] == chosen["price"]) or (pd.isna(first["price"]) and chosen["price"] is None)
    assert (first["band"] or "", first["band_version"] or "") == (chosen["band"], chosen["band_version"])
    pricing = sim.project.decisions()[1].pricing
    for listed in (contacts, pd.read_parquet(sim.dry.contacts)):  # the real run's list and the dry run's
        priced = listed["action_id"].isin(list(pricing))
        assert priced.any(), "the campaign sends priced offers"
        assert listed.loc[priced, "price"].notna().all() and (listed.loc[priced, "band"] != "").all()
        assert listed.loc[~priced, ["price", "band", "band_version"]].isna().all().all()
        versions = listed.loc[priced, "action_id"].map(lambda a: pricing[a].version)
        assert (listed.loc[priced, "band_version"] == versions).all()
    replay = replay_decision(sim.settings, logged["decision_id"], project=sim.project)
    assert replay.matches, replay.differences
    assert (
        ACTION_FILTER_RULE not in s["rejected_by_rule"] and s["rejected_by_rule"]["experiment.holdout"] == s["holdout"]
    )


def test_no_holdout_customer_gets_marketing_and_the_control_gets_nothing(sim: SimRun) -> None:
    d = sim.decisions
    contacts = pd.read_parquet(sim.result.contacts)
    held = d[d["holdout"].astype(bool)]
    control = d[d["campaign_control"].astype(bool)]
    assert len(held) == sim.result.summary["holdout"] > 0 and len(control) == sim.result.summary["controls"] > 0
    assert not set(contacts["customer_id"]) & (set(held["customer_id"]) | set(control["customer_id"]))
    for chosen in [*held["chosen"], *control["chosen"]]:
        assert not (json.loads(chosen) if isinstance(chosen, str) else chosen)
    assert sim.result.summary["marketing_to_holdout"] == 0
    assert sim.result.summary["rejected_by_rule"]["experiment.campaign_control"] == len(control)
    # The control is drawn from the customers the campaign selects, treated alike: about its share of them.
    assert 0.08 < len(control) / sim.result.summary["selected"] < 0.35


def test_the_campaign_decides_what_the_real_time_engine_decides_at_that_moment(sim: SimRun, tmp_path: Path) -> None:
    dry = pd.read_parquet(sim.dry.contacts).head(25)
    actions = list(sim.spec.action_ids(sim.project))
    for rt in _realtime(sim.settings, sim.project, f"sqlite:///{tmp_path / 'fresh.db'}"):
        for row in dry.itertuples():
            req = RecommendRequest(
                customer_id=int(row.customer_id), channel=row.channel, max_actions=1, actions=actions
            )
            answer = rt.recommend(req, now=row.send_time.to_pydatetime())
            assert [a.action_id for a in answer.actions] == [row.action_id]
            assert answer.actions[0].priority == pytest.approx(row.priority, rel=1e-6)
        with pytest.raises(ValueError, match="actions: unknown action"):
            rt.recommend(RecommendRequest(customer_id=1, channel="email", actions=["free_lunch"]))


def test_a_dry_run_batch_of_every_candidate_answers_as_each_candidate_alone(sim: SimRun) -> None:
    """The proposals put every (channel, send time) of a customer in one dry-run batch, where the customer's view is
    built once and reused only when the features it read are the same: the answers equal each candidate's own batch,
    also for a customer whose second row differs in a fact the view reads (its consent)."""
    from nextbest.campaigns import candidates, send_date
    from nextbest.jobs.campaign import _requests, audience_of

    engine = open_engine(sim.project, sim.settings)
    try:
        audience = audience_of(engine, sim.spec)
        cands = candidates(sim.spec, sim.project, send_date(sim.spec, audience.as_of))
        assert len({c.channel for c in cands}) == 2 and len({c.at for c in cands}) == 2
        actions = list(sim.spec.action_ids(sim.project))
        n = 150
        keys = audience.keys[:n]
        rows = audience.table.slice(0, n).to_pylist()

        def alone(rows_: list[dict[str, Any]], keys_: list[Any], cand: Any) -> list[Any]:
            reqs = _requests(keys_, [cand.channel] * len(keys_), actions)
            return engine.decide_batch(reqs, features=rows_, now=[cand.at] * len(keys_), dry_run=True)

        assert cands[0].channel == "email"
        expected = [answer for cand in cands for answer in alone(rows, keys, cand)]
        # a customer proposed an email, then the same customer again with their consent withdrawn
        first = next(i for i in range(n) if _marketing(expected[i].actions))
        withdrawn = {**rows[first], "consent_email": 0, "consent_sms": 0}
        expected += alone([withdrawn], [keys[first]], cands[0])
        together = engine.decide_batch(
            _requests([*keys * len(cands), keys[first]], [c.channel for c in cands for _ in keys] + [cands[0].channel],
                      actions),
            features=[*rows * len(cands), withdrawn],
            now=[c.at for c in cands for _ in keys] + [cands[0].at],
            dry_run=True,
        )  # fmt: skip
    finally:
        engine.close()

    def answer(r: Any) -> list[tuple[str, float, float]]:
        return [(a.action_id, a.priority, a.propensity) for a in r.actions]

    assert [answer(r) for r in together] == [answer(r) for r in expected]
    assert sum(bool(r.actions) for r in expected) > n // 2  # most customers get a proposal: the check has teeth
    # without consent the customer gets no email marketing (a view reused from the first row would have allowed it)
    assert _marketing(together[first].actions) and not _marketing(together[-1].actions)


def test_the_command_runs_a_campaign_and_prints_its_summary(sim: SimRun, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from nextbest.cli import app

    monkeypatch.setenv("NEXTBEST_HOME", str(sim.settings.home))
    spec = sim.settings.home / "cli_spec.yaml"
    spec.write_text("id: cli_test\nactions: [travel_card, savings_account]\nchannels: [{channel: email, volume: 15}]\n")
    out = CliRunner().invoke(app, ["campaign", "run", str(spec), "--dry-run"])
    assert out.exit_code == 0, out.output
    assert "campaign cli_test" in out.output and "dry run" in out.output and "email" in out.output
    runs = sim.settings.home / "campaigns" / "cli_test" / "runs.jsonl"
    line = json.loads(runs.read_text().splitlines()[-1])
    assert line["dry_run"] and line["channels"]["email"]["sent"] <= 15
    assert Path(line["contacts"]).with_suffix(".csv").is_file()


def test_caps_hold_when_the_campaign_and_real_time_requests_mix(sim: SimRun) -> None:
    contacts = pd.read_parquet(sim.result.contacts)
    mailed = contacts[contacts["channel"] == "email"].head(20)
    day = mailed["send_time"].min().to_pydatetime().replace(hour=0, minute=0)
    later = [("email", day + timedelta(hours=20)), ("push", day + timedelta(hours=21)),
             ("sms", day + timedelta(days=1, hours=12)), ("push", day + timedelta(days=2, hours=12)),
             ("email", day + timedelta(days=3, hours=12))]  # fmt: skip
    caps = sim.project.decisions()[2].caps
    for rt in _realtime(sim.settings, sim.project, sim.project.decision_log_uri(sim.settings)):
        for customer in mailed["customer_id"]:
            served = []
            for channel, at in later:
                req = RecommendRequest(customer_id=int(customer), channel=channel, max_actions=1)
                served.append(bool(_marketing(rt.recommend(req, now=at).actions)))
            # Mailed at 09:00 or 18:00 that day: no second email the same day, and at most max_per_window - 1 more
            # marketing contacts on capped channels within the window.
            assert not served[0]
            assert sum(served) <= caps.max_per_window - 1
        assert rt.decision_log.flush()
    d = _decisions(sim.settings, sim.project)
    assert len(d[d["customer_id"].isin(mailed["customer_id"])]) == len(mailed) * (1 + len(later))
    log = sa.create_engine(sim.project.decision_log_uri(sim.settings))
    with log.connect() as con:
        rows = pd.read_sql(sa.text("SELECT decision_id, customer_id, channel, kind FROM decision_contacts"), con)
    log.dispose()
    rows = rows[rows["kind"].isin(MARKETING_KINDS) & rows["channel"].isin(caps.channels or rows["channel"])]
    per = rows[rows["customer_id"].astype(str).isin(mailed["customer_id"].astype(str))].groupby("customer_id")
    assert (per["decision_id"].nunique() <= caps.max_per_window).all()
    assert (per["decision_id"].nunique() == caps.max_per_window).any()  # the cap binds: it is the cap that held


def test_the_desk_runs_a_spec_in_dry_run_over_http(sim: SimRun) -> None:
    from starlette.testclient import TestClient

    from serving.api import Api
    from serving.auth import KeyRing, hash_key

    keys = KeyRing(enabled=True, digests={hash_key("admin-key"): "admin", hash_key("chan-key"): "channel"})
    for engine in _realtime(sim.settings, sim.project, f"sqlite:///{sim.settings.home / 'desk.db'}"):
        with TestClient(Api(sim.project, keys, engine=lambda e=engine: e).build()) as client:
            url, admin = "/v1/admin/campaigns/dry-run", {"X-API-Key": "admin-key"}
            spec = {"id": "desk_test", "channels": [{"channel": "email", "volume": 12}]}
            assert client.post(url, json=spec, headers={"X-API-Key": "chan-key"}).status_code == 403
            bad = client.post(url, json={**spec, "channels": [{"channel": "email", "volume": -2}]}, headers=admin)
            assert bad.status_code == 400 and bad.json()["field"] == "channels.0.volume", bad.text
            unknown = client.post(url, json={**spec, "segment": "martians"}, headers=admin)
            assert unknown.status_code == 400 and unknown.json()["field"] == "segment"
            ok = client.post(url, json=spec, headers=admin)
            assert ok.status_code == 200, ok.text
            body = ok.json()
            assert body["summary"]["dry_run"] and body["summary"]["channels"]["email"]["sent"] == 12
            assert len(body["preview"]) == 12 and all(c["channel"] == "email" for c in body["preview"])
        assert engine.decision_log.flush() and engine.decision_log.count("decisions") == 0  # nothing logged


def test_the_scorecard_shows_the_campaign_against_its_control(sim: SimRun) -> None:
    from nextbest.scorecard import build_scorecard
    from serving.schemas import FeedbackRequest

    contacts = pd.read_parquet(sim.result.contacts)
    for rt in _realtime(sim.settings, sim.project, sim.project.decision_log_uri(sim.settings)):
        for row in contacts.head(10).itertuples():
            fb = FeedbackRequest(decision_id=row.decision_id, outcome="accepted", action_id=row.action_id)
            rt.record_feedback(fb)
        assert rt.decision_log.flush()
    frame = build_scorecard(sim.project, sim.settings, by="campaign").frame
    treated, control = frame.loc["sim_test"], frame.loc[frame.loc["sim_test", "baseline"]]
    assert treated["role"] == "treatment" and control["role"] == "control"
    assert treated["customers"] == sim.result.summary["treated"]
    assert control["customers"] == sim.result.summary["controls"]
    assert treated["conversion_rate"] > 0 == control["conversion_rate"] and treated["uplift"] > 0


def _project_file(folder: Path, holdout: float) -> Path:
    """The simulated bank's project file with a universal holdout (what a service reads at start)."""
    import yaml

    raw = yaml.safe_load((REPO_ROOT / "configs/simbank.yaml").read_text())
    raw["policy"] = str(REPO_ROOT / "nextbest/data/policy.yaml")
    raw["serving"]["assignment"] = {"holdout": {"share": holdout}}
    path = folder / "simbank_holdout.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.slow
def test_no_marketing_reaches_the_holdout_across_two_service_workers_and_a_campaign(sim: SimRun) -> None:
    """Thousands of real-time requests over HTTP to a two-worker service, after the campaign, on the same log."""
    import concurrent.futures as cf
    import time
    import urllib.error
    import urllib.request

    from nextbest.assignment import Assigner
    from serving.runner import ServiceProcess, free_port

    path = _project_file(sim.settings.home, 0.1)
    assert load_project(path).serving.assignment == sim.project.serving.assignment  # type: ignore[union-attr]
    serving = sim.settings.serving.model_copy(update={"simulated_time": True, "reload_interval_s": 0})
    settings = sim.settings.model_copy(update={"project": path, "serving": serving})
    customers = [int(k) for k in sim.result.audience.keys]  # the whole base
    day = pd.read_parquet(sim.result.contacts)["send_time"].min().to_pydatetime()
    channels = sim.project.decisions()[1].channels
    calls = [(c, ch, day + timedelta(hours=3)) for c in customers for ch in channels]

    def post(call: tuple[int, str, Any]) -> dict[str, Any]:
        customer, channel, at = call
        body = json.dumps({"customer_id": customer, "channel": channel, "ts": at.isoformat()}).encode()
        req = urllib.request.Request(url + "/v1/recommend", body, {"Content-Type": "application/json"})
        for _attempt in range(120):  # a worker still loading answers 503, a busy one 429: retry, as a channel does
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    return json.loads(resp.read())
            except urllib.error.HTTPError as exc:
                if exc.code not in (429, 503):
                    raise
                time.sleep(0.5)
        raise AssertionError(f"the service did not answer {call}")

    with ServiceProcess(settings, port=free_port(), workers=2) as svc:
        url = svc.url
        with cf.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(post, calls))
    assert len(answers) >= 2000
    held = Assigner(sim.project.name, sim.project.serving.assignment).in_holdout(  # type: ignore[union-attr]
        [c for c, _ch, _t in calls]
    )
    assert 0 < held.sum() < len(calls)
    assert not any(_marketing_json(a) for a, h in zip(answers, held, strict=True) if h)
    assert any(_marketing_json(a) for a, h in zip(answers, held, strict=True) if not h)
    # The log agrees: no marketing contact was ever recorded for a holdout customer, by the campaign or the service.
    log = sa.create_engine(sim.project.decision_log_uri(sim.settings))
    with log.connect() as con:
        rows = pd.read_sql(sa.text("SELECT customer_id, kind FROM decision_contacts"), con)
        logged = con.execute(sa.text("SELECT count(*) FROM decisions WHERE holdout")).scalar()
    log.dispose()
    holdout = set(sim.decisions.loc[sim.decisions["holdout"].astype(bool), "customer_id"].astype(int))
    holdout |= {c for (c, _ch, _t), h in zip(calls, held, strict=True) if h}
    marketing = rows[rows["kind"].isin(MARKETING_KINDS)]
    assert not set(marketing["customer_id"].astype(int)) & holdout
    assert logged >= int(held.sum())  # every holdout decision of the service was logged as such


def _marketing_json(answer: dict[str, Any]) -> list[str]:
    return [a["action_id"] for a in answer["actions"] if a["kind"] in MARKETING_KINDS]


# -------------------------------------------------------------------- Berka


def test_a_campaign_on_berka(berka, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home = _copy_home(berka.settings.home, tmp_path / "home")
    settings = berka.settings.model_copy(update={"home": home})
    project = _with_holdout(berka.project, 0.1)
    spec = load_campaign(SPECS / "berka_cards.yaml", project)
    spec = spec.model_copy(
        update={"channels": tuple(c.model_copy(update={"volume": 60}) for c in spec.channels), "control_share": 0.2}
    )
    result = run_campaign(spec, project, settings)
    s = result.summary
    contacts = pd.read_parquet(result.contacts)
    assert len(contacts) > 0 and set(contacts["action_id"]) == {"offer_credit_card"}
    assert (contacts.groupby("channel").size() <= 60).all()
    d = _decisions(settings, project, spec.id)
    assert len(d) == s["decisions_logged"] and d["customer_id"].is_unique
    held = set(d.loc[d["holdout"].astype(bool), "customer_id"])
    control = set(d.loc[d["campaign_control"].astype(bool), "customer_id"])
    assert held and control and not (held | control) & set(contacts["customer_id"].astype(int))
    # Caps shared with the real-time path: the account messaged in the app is not messaged again there that day.
    first = contacts.iloc[0]
    for rt in _realtime(settings, project, project.decision_log_uri(settings)):
        req = RecommendRequest(customer_id=int(first["customer_id"]), channel=str(first["channel"]))
        answer = rt.recommend(req, now=first["send_time"].to_pydatetime() + timedelta(hours=2))
        assert not _marketing(answer.actions)
        assert rt.decision_log.flush()
        logged = rt.decision_log.get_decision(answer.decision_id)
        assert logged is not None
        rules = {r["rule"] for r in logged["rejected"]}
        assert rules & {"contact_policy.daily_channel_cap", "contact_policy.repeat_cooldown"}
        # Only the segment's accounts (card_prospects: neither a card nor a loan), as the campaign's decisions saw.
        for decision_id in contacts["decision_id"].head(10):
            seen = rt.decision_log.get_decision(str(decision_id))
            assert seen is not None and not seen["features"].get("cards_all") and not seen["features"].get("loans_all")


def test_a_campaign_on_a_bank_with_string_keys(flat_project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home = _copy_home(flat_project.settings.home, tmp_path / "home")
    settings = flat_project.settings.model_copy(update={"home": home})
    project = _with_holdout(flat_project.project, 0.1)
    spec = parse_campaign({"id": "flat_test", "channels": [{"channel": "app", "volume": 5}, {"channel": "web"}]}, "t")
    result = run_campaign(spec, project, settings)
    contacts = pd.read_parquet(result.contacts)
    assert len(contacts) > 0 and (contacts.groupby("channel").size().get("app", 0) <= 5)
    assert all(isinstance(k, str) for k in contacts["customer_id"])
    d = _decisions(settings, project, spec.id)
    assert len(d) == result.summary["decisions_logged"] and d["customer_id"].is_unique
    held = set(d.loc[d["holdout"].astype(bool), "customer_id"])
    assert not held & set(contacts["customer_id"])
