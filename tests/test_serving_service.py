"""The decision service on a tiny served world: direct engine calls, HTTP through BentoML's ASGI app, and one real
`bentoml serve` subprocess covering every endpoint; degraded mode, auth, hot reload, Redis online store."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from serving_fixtures import ServedWorld, push_in_step

from nextbest.catalogue import load_catalogue
from nextbest.decision_log import UnknownDecisionError
from nextbest.policy import MARKETING_KINDS
from nextbest.settings import FeatureSettings, MlflowSettings, ServingSettings, Settings
from serving.engine import DecisionEngine
from serving.schemas import EventRequest, FeedbackRequest, RecommendRequest

CATALOGUE = load_catalogue()
# Functional tests check behaviour, not latency: a generous online-read budget keeps them stable on a busy
# machine (the degraded-mode tests use the real default budget).
RELAXED: dict[str, object] = {"reload_interval_s": 0, "feature_timeout_ms": 1000.0}


@pytest.fixture(scope="module")
def world(served_world: ServedWorld) -> ServedWorld:
    return served_world


def with_serving(settings: Settings, **serving: object) -> Settings:
    """The world's settings with serving overrides (e.g. its own decision log)."""
    data = settings.serving.model_dump()
    data.update(serving)
    return settings.model_copy(update={"serving": ServingSettings(**data)})


@pytest.fixture(scope="module")
def engine(world: ServedWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DecisionEngine]:
    log = tmp_path_factory.mktemp("engine-log") / "decisions.db"
    # simulated time: these tests replay days ahead of now (fresh stretches of one customer's contact history)
    eng = DecisionEngine(
        with_serving(world.settings, decision_log_uri=f"sqlite:///{log}", simulated_time=True, **RELAXED)
    )
    eng.load()
    yield eng
    eng.close()


def online(engine: DecisionEngine, customer_id: int) -> dict[str, object]:
    import nextbest.features as nbf

    reader = engine._reader
    assert reader is not None
    # with a generous budget: these tests look at feature values, not latency
    reader.access.timeout_s = 10.0
    return reader.read(customer_id, nbf.request_context("web"))


def find_customer(engine: DecisionEngine, world: ServedWorld, **wanted: int) -> int:
    for cid in world.customer_ids:
        f = online(engine, cid)
        if f.get("age") is not None and all(f.get(k) == v for k, v in wanted.items()):
            return cid
    raise AssertionError(f"the seeded tiny world has no customer with {wanted}: the fixture no longer fits this test")


# ---------------------------------------------------------------- direct calls


def test_recommend_ranks_actions_with_templates_reasons_and_versions(engine: DecisionEngine) -> None:
    resp = engine.recommend(RecommendRequest(customer_id=3, channel="web", max_actions=3))
    assert not resp.degraded and not resp.cold_start
    assert resp.model_versions == {"churn": "1", "nba": "1"}
    assert resp.churn_risk is not None and 0.0 <= resp.churn_risk <= 1.0
    assert [a.rank for a in resp.actions] == list(range(1, len(resp.actions) + 1))
    assert [a.priority for a in resp.actions] == sorted((a.priority for a in resp.actions), reverse=True)
    for a in resp.actions:
        assert a.template_id == CATALOGUE.action(a.action_id).templates["web"]
        assert 0.0 <= a.propensity <= 1.0 and a.reason_codes
    engine.decision_log.flush()
    logged = engine.decision_log.get_decision(resp.decision_id)
    assert logged is not None and logged["model_versions"] == {"churn": "1", "nba": "1"}
    assert logged["features"]["age"] is not None
    # every catalogue action is accounted for: chosen, or rejected with the rule that removed it
    accounted = {c["action_id"] for c in logged["chosen"]} | {r["action_id"] for r in logged["rejected"]}
    assert accounted == set(CATALOGUE.action_ids)
    assert all(r["rule"] for r in logged["rejected"])


def test_lean_online_read_returns_what_feast_get_online_features_returns(
    engine: DecisionEngine, world: ServedWorld
) -> None:
    engine.record_event(EventRequest(customer_id=world.customer_ids[1], event_type="property_search"))
    assert_lean_read_matches_sdk(engine, [*world.customer_ids[:5], 10**9])


def assert_lean_read_matches_sdk(engine: DecisionEngine, customer_ids: list[int]) -> None:
    import math

    import nextbest.features as nbf

    reader = engine._reader
    assert reader is not None and reader._one_trip is not None
    reader.access.timeout_s = 10.0
    service = reader.store.get_feature_service(nbf.NBA_SERVICE)
    for cid in customer_ids:
        request = nbf.request_context("app", location_type="airport")
        lean, sdk = reader.read(cid, request), reader.read_with_sdk(cid, service, request)
        assert set(sdk) <= set(lean)
        for name, value in sdk.items():
            other = lean[name]
            if isinstance(value, float) and isinstance(other, float):
                assert math.isclose(value, other, rel_tol=1e-9, abs_tol=1e-9) or (
                    math.isnan(value) and math.isnan(other)
                )
            else:
                assert value == other, (cid, name, value, other)


def test_unknown_customer_gets_a_cold_start_decision_not_an_error(engine: DecisionEngine) -> None:
    resp = engine.recommend(RecommendRequest(customer_id=987_654_321, channel="app"))
    assert resp.cold_start and not resp.degraded and resp.churn_risk is None
    assert all(CATALOGUE.action(a.action_id).kind == "service" for a in resp.actions)


def test_opted_out_customer_gets_no_marketing_action_over_many_requests(
    engine: DecisionEngine, world: ServedWorld
) -> None:
    cid = find_customer(engine, world, consent_email=0)
    start = datetime.now(UTC)
    for i in range(30):
        now = start + timedelta(hours=9 * i)
        resp = engine.recommend(RecommendRequest(customer_id=cid, channel="email", max_actions=3), now=now)
        assert not [a for a in resp.actions if a.kind in MARKETING_KINDS], resp


def test_contact_caps_hold_across_requests(engine: DecisionEngine, world: ServedWorld) -> None:
    cid = find_customer(engine, world, consent_sms=1, is_vulnerable=0)
    start = datetime.now(UTC) + timedelta(days=400)  # a fresh stretch of the log for this customer
    marketing_days: list[datetime] = []
    for i in range(40):  # every 6 hours for 10 days on sms
        now = start + timedelta(hours=6 * i)
        resp = engine.recommend(RecommendRequest(customer_id=cid, channel="sms", max_actions=1), now=now)
        if any(a.kind in MARKETING_KINDS for a in resp.actions):
            marketing_days.append(now)
    for t in marketing_days:
        assert len([u for u in marketing_days if t - timedelta(days=1) < u <= t]) <= 1
        assert len([u for u in marketing_days if t - timedelta(days=7) < u <= t]) <= 3


def test_dismissal_feedback_cools_the_action_down(engine: DecisionEngine, world: ServedWorld) -> None:
    start = datetime.now(UTC) + timedelta(days=800)
    for cid in world.customer_ids:
        first = engine.recommend(RecommendRequest(customer_id=cid, channel="web", max_actions=1), now=start)
        if first.actions and first.actions[0].kind in MARKETING_KINDS:
            break
    else:
        raise AssertionError("no marketing action recommended for any customer of the seeded tiny world")
    action = first.actions[0].action_id
    dismissed_at = start + timedelta(hours=1)
    engine.record_feedback(
        FeedbackRequest(decision_id=first.decision_id, outcome="dismissed", action_id=action, ts=dismissed_at)
    )
    for day in (2, 3, 5):  # inside the 14-day cool-down
        later = engine.recommend(
            RecommendRequest(customer_id=cid, channel="web", max_actions=3), now=start + timedelta(days=day)
        )
        assert action not in [a.action_id for a in later.actions]


def test_event_reaches_the_online_store_and_the_event_log(engine: DecisionEngine) -> None:
    before = engine.decision_log.count("events")
    resp = engine.record_event(EventRequest(customer_id=5, event_type="airport_checkin", location_type="airport"))
    assert resp.pushed
    assert online(engine, 5)["hours_since_airport_checkin"] < 0.1
    ignored = engine.record_event(EventRequest(customer_id=5, event_type="login", channel="app"))
    assert ignored.accepted
    engine.decision_log.flush()
    assert engine.decision_log.count("events") == before + 2


def test_feedback_on_unknown_decision_is_refused(engine: DecisionEngine) -> None:
    with pytest.raises(UnknownDecisionError):
        engine.record_feedback(FeedbackRequest(decision_id="00000000deadbeef", outcome="accepted"))


def test_hot_reload_swaps_in_a_new_champion_without_failing_requests(engine: DecisionEngine) -> None:
    from nextbest.models.registry import mlflow_client

    client = mlflow_client(engine.settings)
    errors: list[BaseException] = []
    versions_seen: set[str] = set()
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            try:
                versions_seen.add(
                    engine.recommend(RecommendRequest(customer_id=7, channel="app")).model_versions["nba"]
                )
            except BaseException as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(exc)

    t = threading.Thread(target=traffic)
    t.start()
    try:
        current = client.get_model_version_by_alias("nba", "champion")
        new = client.create_model_version("nba", source=current.source, run_id=current.run_id)
        client.set_registered_model_alias("nba", "champion", new.version)
        result = engine.reload_models()
        time.sleep(0.3)
    finally:
        stop.set()
        t.join()
        client.set_registered_model_alias("nba", "champion", current.version)
    assert result.reloaded and result.model_versions["nba"] == str(new.version)
    assert not errors
    assert str(new.version) in versions_seen
    assert engine.reload_models().model_versions["nba"] == str(current.version)


def _blackhole() -> socket.socket:
    """A TCP port that accepts connections (kernel backlog) but never answers: a hung store."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s


@pytest.mark.parametrize("failure", ["refused", "hangs"])
def test_online_store_unavailable_still_answers_flagged_degraded(
    world: ServedWorld, tmp_path: Path, failure: str
) -> None:
    hole = _blackhole()
    port = hole.getsockname()[1] if failure == "hangs" else 1
    settings = with_serving(
        world.settings, decision_log_uri=f"sqlite:///{tmp_path / 'd.db'}", reload_interval_s=0, breaker_failures=1000
    ).model_copy(
        update={"features": FeatureSettings(online_store="redis", redis_connection_string=f"127.0.0.1:{port}")}
    )
    eng = DecisionEngine(settings)
    try:
        eng.load()
        # Latency is the benchmark's business (benchmarks/bench_serving.py measures the degraded answer's time): a
        # timed assertion here would fail on a busy machine. What is asserted is the answer.
        for i in range(5):
            resp = eng.recommend(RecommendRequest(customer_id=3 + i, channel="app", context={"event": "card_lost"}))
            assert resp.degraded and not resp.cold_start
            # the safe fallback: only service actions (here the card-lost trigger), never a sale
            assert [a.action_id for a in resp.actions] == ["card_replacement"]
        quiet = eng.recommend(RecommendRequest(customer_id=3, channel="app"))
        assert quiet.degraded and quiet.actions == []  # nothing triggered: "no action" is the safe answer
    finally:
        eng.close()
        hole.close()


def test_feedback_for_a_decision_another_worker_has_not_written_yet_is_kept_and_joined(
    world: ServedWorld, tmp_path: Path
) -> None:
    from nextbest.decision_log import DecisionLog
    from serving.engine import decision_id_secret

    uri = f"sqlite:///{tmp_path / 'decisions.db'}"
    settings = with_serving(world.settings, decision_log_uri=uri, **RELAXED)
    # Worker A's writer holds its batch open (flushes only on close), so A's record is not written yet.
    secret = decision_id_secret(settings)  # the workers of one installation share it
    worker_a = DecisionEngine(settings, decision_log=DecisionLog(uri, flush_interval_s=600.0, id_secret=secret))
    worker_b = DecisionEngine(settings)
    try:
        worker_a.load()
        worker_b.load()
        made = worker_a.recommend(RecommendRequest(customer_id=3, channel="app", max_actions=0))
        assert made.actions == []  # nothing delivered: no write-through row either
        assert worker_b.decision_log.get_decision(made.decision_id) is None
        early = worker_b.record_feedback(FeedbackRequest(decision_id=made.decision_id, outcome="shown"))
        assert early.joined is False and early.customer_id is None
        # still refused: an id that is not a decision id, an old one, one naming an action it cannot have delivered
        for bad in ("0123456789abcdef", "0" * 32):
            with pytest.raises(UnknownDecisionError):
                worker_b.record_feedback(FeedbackRequest(decision_id=bad, outcome="shown"))
        with pytest.raises(UnknownDecisionError):
            worker_b.record_feedback(
                FeedbackRequest(
                    decision_id=worker_b.decision_log.new_decision_id(),
                    outcome="accepted",
                    action_id="card_replacement",
                )
            )
    finally:
        worker_a.close()  # the writer drains: the decision lands and the early feedback joins it
    try:
        logged = worker_b.decision_log.get_decision(made.decision_id)
        assert logged is not None and logged["customer_id"] == 3
        assert [(f["outcome"], f["customer_id"]) for f in logged["feedback"]] == [("shown", 3)]
        later = worker_b.record_feedback(FeedbackRequest(decision_id=made.decision_id, outcome="ignored"))
        assert later.joined and later.customer_id == 3
    finally:
        worker_b.close()


def _simultaneous_pushes_all_land(settings: Settings, base_id: int) -> None:
    """Two processes push two different signals for the same 12 customers at the same instants; both must land."""
    import multiprocessing as mp

    import nextbest.features as nbf
    from feature_repo.specs import SIGNAL_COLUMNS
    from nextbest.features.realtime import current_state

    ctx = mp.get_context("spawn")
    customers = [base_id + i for i in range(12)]
    barrier = ctx.Barrier(2)
    ts = "2026-01-05T10:00:00+00:00"
    procs = [
        ctx.Process(target=push_in_step, args=(settings, signal, customers, barrier, ts))
        for signal in ("airport_checkin", "card_lost")
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    assert [p.exitcode for p in procs] == [0, 0]
    state = current_state(nbf.get_store(settings), customers).set_index("customer_id")
    expected = datetime.fromisoformat(ts).timestamp()
    for column in (SIGNAL_COLUMNS["airport_checkin"], SIGNAL_COLUMNS["card_lost"]):
        lost = [c for c in customers if c not in state.index or state.loc[c, column] != expected]
        assert not lost, f"{column} lost for customers {lost} (a simultaneous push overwrote it)"


def test_simultaneous_pushes_for_one_customer_from_two_workers_both_land(world: ServedWorld) -> None:
    # customers unknown to the world: their real-time rows exist only through these pushes
    _simultaneous_pushes_all_land(world.settings, base_id=7_000_000 + int(time.time()) % 100_000 * 20)


@pytest.mark.redis
def test_simultaneous_pushes_land_on_the_redis_online_store_too(world: ServedWorld, tmp_path: Path) -> None:
    import nextbest.features as nbf

    settings = Settings(
        home=tmp_path / "home",
        features=FeatureSettings(
            online_store="redis", redis_connection_string="127.0.0.1:6379", project=f"nbpush{uuid.uuid4().hex[:8]}"
        ),
    )
    settings.ensure_dirs()
    shutil.copytree(world.settings.features_dir / "offline", settings.features_dir / "offline")
    nbf.features_of(settings).apply()
    try:
        _simultaneous_pushes_all_land(settings, base_id=7_000_000)
    finally:
        nbf.get_store(settings).teardown()


# ---------------------------------------------------------------- HTTP through BentoML's ASGI app


@pytest.fixture(scope="module")
def http(world: ServedWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """BentoML's own ASGI app for NextbestService, with auth on (one channel key, one admin key)."""
    import importlib

    from starlette.testclient import TestClient

    home = tmp_path_factory.mktemp("asgi")
    settings = with_serving(
        world.settings,
        decision_log_uri=f"sqlite:///{home / 'decisions.db'}",
        **RELAXED,
        auth_enabled=True,
        api_keys={"chan-key": "channel", "admin-key": "admin"},
    )
    config = home / "settings.yaml"
    import yaml

    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    mp = pytest.MonkeyPatch()
    mp.delenv("NEXTBEST_HOME", raising=False)
    mp.setenv("NEXTBEST_CONFIG", str(config))
    try:
        import serving.service

        service = importlib.reload(serving.service)  # the service reads its settings when imported
        with TestClient(service.NextbestService.to_asgi()) as client:
            deadline = time.monotonic() + 120
            while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.2)  # the engine loads in the background; the probes answer meanwhile
            yield client
    finally:
        mp.undo()


CHAN = {"X-API-Key": "chan-key"}
ADMIN = {"X-API-Key": "admin-key"}


def test_http_recommend_validates_and_answers(http) -> None:  # type: ignore[no-untyped-def]
    r = http.post("/v1/recommend", json={"customer_id": 3, "channel": "app", "max_actions": 2}, headers=CHAN)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= {"decision_id", "actions", "churn_risk", "model_versions", "degraded", "cold_start"}
    assert len(body["actions"]) <= 2


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"channel": "app"}, "customer_id"),
        ({"customer_id": "abc", "channel": "app"}, "customer_id"),
        ({"customer_id": 1, "channel": "pigeon"}, "channel"),
        ({"customer_id": 1, "channel": "app", "max_actions": 99}, "max_actions"),
        ({"customer_id": 1, "channel": "app", "context": {"location_type": "moon"}}, "location_type"),
        ({"customer_id": 1, "channel": "app", "colour": "blue"}, "colour"),
        ({"customer_id": 1, "channel": "app", "ts": "2026-04-01T09:30:00Z"}, "ts"),  # simulations only
    ],
)
def test_http_bad_input_is_a_4xx_naming_the_field(http, payload: dict, field: str) -> None:  # type: ignore[no-untyped-def]
    r = http.post("/v1/recommend", json=payload, headers=CHAN)
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["status"] == 400 and field in problem["detail"] and problem["request_id"]
    assert problem["field"] == field or field in [e["field"].split(".")[-1] for e in problem.get("errors", [])]


def test_http_auth_needs_a_key_with_the_right_role(http) -> None:  # type: ignore[no-untyped-def]
    body = {"customer_id": 3, "channel": "app"}
    assert http.post("/v1/recommend", json=body).status_code == 401
    assert http.post("/v1/recommend", json=body, headers={"X-API-Key": "nope"}).status_code == 401
    assert http.post("/v1/admin/reload", json={}, headers=CHAN).status_code == 403
    assert http.post("/v1/admin/reload", json={}, headers=ADMIN).status_code == 200
    assert http.post("/v1/recommend", json=body, headers=ADMIN).status_code == 200  # admin may do what channels do
    assert http.get("/livez").status_code == 200  # probes and docs stay open
    assert http.get("/readyz").status_code == 200
    assert "/v1/recommend" in http.get("/docs.json").json()["paths"]
    assert http.post("/recommend", json=body, headers=CHAN).status_code == 200  # the unversioned alias too


def test_http_feedback_joins_decisions_and_unknown_ids_are_404(http) -> None:  # type: ignore[no-untyped-def]
    d = http.post("/v1/recommend", json={"customer_id": 4, "channel": "web"}, headers=CHAN).json()
    r = http.post("/v1/feedback", json={"decision_id": d["decision_id"], "outcome": "shown"}, headers=CHAN)
    assert r.status_code == 200 and r.json()["customer_id"] == 4
    r = http.post("/v1/feedback", json={"decision_id": "0123456789abcdef", "outcome": "accepted"}, headers=CHAN)
    assert r.status_code == 404
    r = http.post("/v1/feedback", json={"decision_id": d["decision_id"], "outcome": "loved"}, headers=CHAN)
    assert r.status_code == 400 and "outcome" in r.text


# ---------------------------------------------------------------- the real server, one subprocess


def _get(url: str) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _post(url: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.mark.slow
def test_real_bentoml_server_serves_every_endpoint_and_stops_cleanly(world: ServedWorld, tmp_path: Path) -> None:
    import urllib.request

    from nextbest.decision_log import DecisionLog
    from serving.runner import ServiceProcess, free_port

    log_uri = f"sqlite:///{tmp_path / 'decisions.db'}"
    settings = with_serving(world.settings, decision_log_uri=log_uri, **RELAXED)
    with ServiceProcess(settings, port=free_port(), log_path=tmp_path / "service.log") as svc:
        for probe in ("/livez", "/readyz"):
            with urllib.request.urlopen(svc.url + probe, timeout=5) as r:
                assert r.status == 200
        with urllib.request.urlopen(svc.url + "/docs.json", timeout=5) as r:
            paths = json.loads(r.read())["paths"]
        assert {"/v1/recommend", "/v1/events", "/v1/feedback", "/v1/admin/reload", "/v1/status"} <= set(paths)

        status, d = _post(svc.url + "/v1/recommend", {"customer_id": 3, "channel": "app"})
        assert status == 200 and not d["degraded"] and d["model_versions"] == {"churn": "1", "nba": "1"}
        status, cold = _post(svc.url + "/v1/recommend", {"customer_id": 10**9, "channel": "app"})
        assert status == 200 and cold["cold_start"]
        status, bad = _post(svc.url + "/v1/recommend", {"customer_id": 3, "channel": "fax"})
        assert status == 400 and "channel" in json.dumps(bad)
        status, ev = _post(svc.url + "/v1/events", {"customer_id": 3, "event_type": "airport_checkin"})
        assert status == 200 and ev["pushed"]
        status, fb = _post(svc.url + "/v1/feedback", {"decision_id": d["decision_id"], "outcome": "shown"})
        assert status == 200 and fb["decision_id"] == d["decision_id"]
        status, _ = _post(svc.url + "/v1/feedback", {"decision_id": "0123456789abcdef", "outcome": "shown"})
        assert status == 404
        status, rl = _post(svc.url + "/v1/admin/reload", {})
        assert status == 200 and rl["model_versions"] == {"churn": "1", "nba": "1"}
        status, st = _get(svc.url + "/v1/status")
        assert status == 200 and st["ready"]
        decision_ids = [
            _post(svc.url + "/v1/recommend", {"customer_id": c, "channel": "web"})[1]["decision_id"]
            for c in range(1, 21)
        ]
    assert svc.proc is not None and svc.proc.returncode == 0
    # shutdown drained the write-behind queue: every decision answered is in the log
    log = DecisionLog(log_uri)
    try:
        assert all(log.get_decision(i) is not None for i in [d["decision_id"], *decision_ids])
        assert log.count("events") == 1
    finally:
        log.close()


# ---------------------------------------------------------------- Redis online store, for real


@pytest.mark.redis
def test_recommend_and_events_on_the_redis_online_store(world: ServedWorld, tmp_path: Path) -> None:
    import nextbest.features as nbf

    project = f"nbserve{uuid.uuid4().hex[:8]}"
    settings = Settings(
        home=tmp_path / "home",
        features=FeatureSettings(online_store="redis", redis_connection_string="127.0.0.1:6379", project=project),
        mlflow=MlflowSettings(tracking_uri=world.settings.mlflow_tracking_uri),
        serving=ServingSettings(decision_log_uri=f"sqlite:///{tmp_path / 'd.db'}", **RELAXED),
    )
    settings.ensure_dirs()
    shutil.copytree(world.settings.sources_dir, settings.sources_dir)
    nbf.features_of(settings).build()
    nbf.features_of(settings).apply()
    nbf.features_of(settings).materialize()
    eng = DecisionEngine(settings)
    try:
        eng.load()
        resp = eng.recommend(RecommendRequest(customer_id=3, channel="web"))
        assert not resp.degraded and not resp.cold_start and resp.churn_risk is not None
        # Feast's Redis read appends to the field list it is given: reads must not grow with the request count
        assert_lean_read_matches_sdk(eng, [*world.customer_ids[:5], 10**9])
        first = online(eng, 3)
        for _ in range(20):
            again = online(eng, 3)
        assert set(again) == set(first) and not [k for k in again if k.startswith("_ts:")]
        assert eng.record_event(EventRequest(customer_id=3, event_type="card_lost")).pushed
        after = eng.recommend(RecommendRequest(customer_id=3, channel="app"))
        assert after.actions and after.actions[0].action_id == "card_replacement"
        assert "SERVICE_CARD_LOST" in after.actions[0].reason_codes
    finally:
        eng.close()
        nbf.get_store(settings).teardown()


def test_the_bento_is_built_with_the_locked_requirements_and_no_training_code(tmp_path: Path) -> None:
    import os
    import shutil
    import subprocess
    import sys
    from importlib.metadata import version

    from nextbest.settings import REPO_ROOT

    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "True"}
    # `bentoml build` locks the bento's requirements with uv, called by name: uv's pip --user install counts too
    user_bin = Path.home() / ".local" / "bin"
    if shutil.which("uv") is None and (user_bin / "uv").exists():
        env["PATH"] = f"{user_bin}{os.pathsep}{env.get('PATH', '')}"
    out = subprocess.run(
        [sys.executable, "-m", "nextbest.cli", "bento", "--output", "tag"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    bentos = list((tmp_path / "bentoml" / "bentos" / "nextbest").glob("*/bento.yaml"))
    assert bentos, out.stdout
    src = bentos[0].parent / "src"
    assert (src / "serving" / "service.py").is_file() and (src / "nextbest" / "data" / "policy.yaml").is_file()
    assert (src / "nextbest" / "data" / "catalogue.yaml").is_file() and (src / "configs" / "simbank.yaml").is_file()
    assert not (src / "training").exists()  # the service ships no training code
    requirements = (bentos[0].parent / "env" / "python" / "requirements.txt").read_text()
    for package in ("bentoml", "feast", "xgboost-cpu", "mlflow"):
        assert f"{package}=={version(package)}" in requirements, package  # the locked versions the tests ran on
