"""One HTTP contract for every project, through the real BentoML server: the simulated bank, Berka, the flat table.

The same checks run against each project's own `bentoml serve` (auth on, a channel and an admin key): probes and
OpenAPI, auth, a recommendation with the project's models, cold start, 4xx naming the field (including a key of the
wrong type: Berka keys accounts by integer, the flat table customers by string), consent, contact caps, a dismissal
cool-down, events, feedback joined or refused, and the degraded answer of a server whose online store is dead.
What differs between projects is data (`Case`): which customer and channel show each behaviour.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nextbest.catalogue import MARKETING_KINDS
from nextbest.decision_log import DecisionLog
from nextbest.settings import FeatureSettings, Settings

pytestmark = pytest.mark.slow

CHAN = {"X-API-Key": "chan-key"}
ADMIN = {"X-API-Key": "admin-key"}


@dataclass(frozen=True)
class Case:
    """What one project's data offer to the contract checks."""

    name: str
    settings: Settings
    models: set[str]
    reachable: tuple[int | str, ...]  # customers who may get marketing (each test takes its own)
    inbound: str  # a channel where the customer came to us
    opted_out: tuple[int | str, str]  # (customer, channel) where marketing needs consent that is not there
    capped: str  # a channel with a daily cap the known customer can hit
    unknown: int | str  # a key no one has (cold start)
    wrong_type: object  # a key of the other type
    event: str  # an event type the project accepts
    pushes: bool  # whether that event moves an online feature


def _post(url: str, body: object, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw or b"{}")
        except json.JSONDecodeError:
            return exc.code, raw.decode(errors="replace")


def _get_json(url: str, headers: dict[str, str]) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _secured(settings: Settings, log: Path) -> Settings:
    serving = settings.serving.model_copy(
        update={
            "decision_log_uri": f"sqlite:///{log}",
            "auth_enabled": True,
            "api_keys": {"chan-key": "channel", "admin-key": "admin"},
            "reload_interval_s": 0,
            "feature_timeout_ms": 2000.0,
        }
    )
    return settings.model_copy(update={"serving": serving})


# ---------------------------------------------------------------- the projects


def _simbank_case(served_world: Any) -> Case:
    from nextbest.features.project import feature_project
    from nextbest.project import load_project

    settings = served_world.settings
    store = feature_project(load_project(), settings).store()
    ids = served_world.customer_ids[:120]
    rows = store.get_online_features(
        features=["customer_profile:consent_email", "customer_profile:consent_sms", "customer_profile:is_vulnerable"],
        entity_rows=[{"customer_id": c} for c in ids],
    ).to_dict()
    by_id = {c: i for i, c in enumerate(rows["customer_id"])}
    opted = next(c for c in ids if rows["consent_email"][by_id[c]] == 0)
    reachable = [c for c in ids if rows["consent_sms"][by_id[c]] == 1 and rows["is_vulnerable"][by_id[c]] == 0]
    return Case(
        name="simbank",
        settings=settings,
        models={"churn", "nba"},
        reachable=tuple(reachable[:12]),
        inbound="app",
        opted_out=(opted, "email"),
        capped="sms",
        unknown=10**9,
        wrong_type="C-1",
        event="airport_checkin",
        pushes=True,
    )


def _berka_case(berka: Any) -> Case:
    import pandas as pd
    from project_fixtures import BERKA_DIR

    loans = pd.read_csv(BERKA_DIR / "loan.csv", sep=";")
    disp = pd.read_csv(BERKA_DIR / "disp.csv", sep=";")
    cards = pd.read_csv(BERKA_DIR / "card.csv", sep=";").merge(disp, on="disp_id")
    accounts = pd.read_csv(BERKA_DIR / "account.csv", sep=";")
    fresh = accounts[~accounts.account_id.isin(loans.account_id) & ~accounts.account_id.isin(cards.account_id)]
    reachable = tuple(int(a) for a in fresh.account_id.iloc[1:13])
    return Case(
        name="berka",
        settings=berka.settings,
        models={"berka_propensity", "berka_default"},
        reachable=reachable,
        inbound="app",
        opted_out=(reachable[-1], "email"),  # the project declares no consent data: outbound marketing is withheld
        capped="web",
        unknown=10**9,
        wrong_type="A-1",
        event="branch_visit",
        pushes=False,
    )


def _flat_case(flat_project: Any) -> Case:
    import pandas as pd

    from nextbest.settings import REPO_ROOT

    contacts = pd.read_csv(REPO_ROOT / "configs/examples/flat_contacts.csv")
    reachable = tuple(str(c) for c in sorted(contacts.customer_id.astype(str).unique())[:12])
    return Case(
        name="flat_example",
        settings=flat_project.settings,
        models=set(flat_project.project.served_models),
        reachable=reachable,
        inbound="app",
        opted_out=(reachable[-1], "email"),
        capped="web",
        unknown="C-NOBODY",
        wrong_type=5,
        event="branch_visit",
        pushes=False,
    )


@pytest.fixture(scope="module", params=["simbank", "berka", "flat_example"])
def case(request: pytest.FixtureRequest) -> Case:
    if request.param == "simbank":
        return _simbank_case(request.getfixturevalue("served_world"))
    if request.param == "berka":
        return _berka_case(request.getfixturevalue("berka"))
    return _flat_case(request.getfixturevalue("flat_project"))


@dataclass(frozen=True)
class Running:
    url: str
    log: Path


DEAD_STORE_TEST = "test_a_dead_online_store_gives_degraded_answers_not_errors"


@pytest.fixture(scope="module")
def dead_store_server(
    case: Case, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """The project's server with its online store dead (Redis on a closed port), booting in the background.

    It starts booting at once if this run has the dead-store test of this project, so that it boots side by side
    with the main server (which asks for this fixture first); otherwise only when a test asks for it."""
    from serving_fixtures import BackgroundService, selected

    folder = tmp_path_factory.mktemp(f"contract-degraded-{case.name}")
    dead = FeatureSettings(
        online_store="redis", redis_connection_string="127.0.0.1:1", project=case.settings.features.project
    )
    settings = _secured(case.settings, folder / "decisions.db").model_copy(update={"features": dead})
    booting = BackgroundService(settings, folder, "service")
    if selected(request, DEAD_STORE_TEST, case=case.name):  # boots beside the main server (see BackgroundService)
        booting.launch()
    try:
        yield booting
    finally:
        booting.stop()


@pytest.fixture(scope="module")
def server(case: Case, dead_store_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """The project's server (the dead-store one, when this run needs it, is already booting beside it)."""
    from serving.runner import ServiceProcess, free_port

    folder = tmp_path_factory.mktemp(f"contract-{case.name}")
    log = folder / "decisions.db"
    with ServiceProcess(_secured(case.settings, log), port=free_port(), log_path=folder / "service.log") as svc:
        yield Running(url=svc.url, log=log)


def _recommend(server: Running, customer: object, channel: str, **extra: object) -> tuple[int, Any]:
    return _post(server.url + "/v1/recommend", {"customer_id": customer, "channel": channel, **extra}, CHAN)


def _marketing(decision: dict[str, Any]) -> list[str]:
    return [a["action_id"] for a in decision["actions"] if a["kind"] in MARKETING_KINDS]


def _first_marketing(
    server: Running, case: Case, channel: str, used: set[object], **extra: object
) -> tuple[int | str, dict[str, Any]]:
    """The first reachable customer (not in `used`) who gets marketing on `channel`, and that decision."""
    for customer in case.reachable:
        if customer in used:
            continue
        status, d = _recommend(server, customer, channel, **extra)
        assert status == 200, d
        used.add(customer)
        if _marketing(d):
            return customer, d
    raise AssertionError(f"no reachable {case.name} customer gets marketing on {channel}: the case no longer fits")


@pytest.fixture(scope="module")
def used() -> set[object]:
    """Customers a test already contacted (each behaviour is checked on a customer of its own)."""
    return set()


def _logged(server: Running, decision_id: str, case: Case) -> dict[str, Any]:
    log = DecisionLog(f"sqlite:///{server.log}", key_type="int" if isinstance(case.reachable[0], int) else "str")
    try:
        found = log.get_decision(decision_id)
    finally:
        log.close()
    assert found is not None, decision_id
    return found


# ---------------------------------------------------------------- the contract


def test_probes_openapi_and_auth(server: Running) -> None:
    assert _get(server.url + "/livez") == 200 and _get(server.url + "/readyz") == 200
    with urllib.request.urlopen(server.url + "/docs.json", timeout=5) as r:
        paths = json.loads(r.read())["paths"]
    assert {"/v1/recommend", "/v1/events", "/v1/feedback", "/v1/admin/reload", "/v1/status"} <= set(paths)
    body = {"customer_id": 1, "channel": "app"}
    status, unauthorized = _post(server.url + "/v1/recommend", body)
    assert status == 401 and unauthorized["title"] == "Unauthorized" and unauthorized["request_id"]
    assert _post(server.url + "/v1/recommend", body, {"X-API-Key": "nope"})[0] == 401
    assert _post(server.url + "/v1/admin/reload", {}, CHAN)[0] == 403
    status, reloaded = _post(server.url + "/v1/admin/reload", {}, ADMIN)
    assert status == 200 and reloaded["policy_version"]


def test_request_ids_are_echoed_and_unknown_paths_are_problems(server: Running, case: Case) -> None:
    body = json.dumps({"customer_id": case.reachable[0], "channel": case.inbound}).encode()
    req = urllib.request.Request(
        server.url + "/v1/recommend",
        data=body,
        headers={"Content-Type": "application/json", "X-Request-ID": "trace-42", **CHAN},
    )
    with urllib.request.urlopen(req, timeout=15) as resp:
        assert resp.headers["X-Request-ID"] == "trace-42"
        decision_id = json.loads(resp.read())["decision_id"]
    assert _wait_logged(server, decision_id, case)["request_id"] == "trace-42"
    status, missing = _post(server.url + "/v1/nothing-here", {}, CHAN)
    assert status == 404 and missing["status"] == 404 and missing["title"] == "Not found"


def test_recommend_answers_with_the_projects_models(server: Running, case: Case, used: set[object]) -> None:
    customer, d = _first_marketing(server, case, case.inbound, used, max_actions=2)
    assert set(d) == {
        "decision_id", "customer_id", "channel", "actions", "churn_risk", "model_versions", "degraded",
        "cold_start", "notes",
    }  # fmt: skip
    assert d["customer_id"] == customer and not d["degraded"] and not d["cold_start"]
    assert set(d["model_versions"]) == case.models
    assert 1 <= len(d["actions"]) <= 2 and [a["rank"] for a in d["actions"]] == list(range(1, len(d["actions"]) + 1))
    for a in d["actions"]:
        assert 0.0 <= a["propensity"] <= 1.0 and a["template_id"] and a["reason_codes"]
    status, st = _get_json(server.url + "/v1/status", CHAN)
    assert status == 200 and st["ready"] and st["project"] == case.name and st["model_versions"] == d["model_versions"]


def test_unknown_customer_gets_a_cold_start_answer(server: Running, case: Case) -> None:
    status, d = _recommend(server, case.unknown, case.inbound)
    assert status == 200 and d["cold_start"] and not d["degraded"]
    assert not _marketing(d) or case.name == "simbank"  # the simulated bank offers profile-free actions


@pytest.mark.parametrize(
    ("mutation", "field"),
    [
        ({"channel": "pigeon"}, "channel"),
        ({"customer_id": None}, "customer_id"),
        ({"customer_id": "wrong-type"}, "customer_id"),
        ({"customer_id": True}, "customer_id"),
        ({"max_actions": 99}, "max_actions"),
        ({"colour": "blue"}, "colour"),
        ({"ts": "2026-04-01T09:30:00Z"}, "ts"),  # simulations only
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(server: Running, case: Case, mutation: dict, field: str) -> None:
    body: dict[str, object] = {"customer_id": case.reachable[0], "channel": case.inbound, **mutation}
    if mutation.get("customer_id") == "wrong-type":
        body["customer_id"] = case.wrong_type
    if mutation.get("customer_id", "") is None:
        body.pop("customer_id")
    status, err = _post(server.url + "/v1/recommend", body, CHAN)
    assert status == 400, (status, err)
    assert err["title"] == "Invalid request" and err["status"] == 400 and err["field"] == field, err


def test_no_marketing_without_consent(server: Running, case: Case) -> None:
    customer, channel = case.opted_out
    for _ in range(3):
        status, d = _recommend(server, customer, channel, max_actions=3)
        assert status == 200 and not _marketing(d), d


def test_contact_caps_and_a_dismissal_cool_down_hold(server: Running, case: Case, used: set[object]) -> None:
    customer, first = _first_marketing(server, case, case.capped, used, max_actions=1)
    status, second = _recommend(server, customer, case.capped, max_actions=3)
    assert status == 200 and not _marketing(second), second  # the daily cap of this channel
    offered = _marketing(first)[0]
    status, fb = _post(
        server.url + "/v1/feedback",
        {"decision_id": first["decision_id"], "outcome": "dismissed", "action_id": offered},
        CHAN,
    )
    assert status == 200 and fb["customer_id"] == customer and fb["joined"]
    status, third = _recommend(server, customer, case.inbound, max_actions=3)
    assert status == 200 and offered not in [a["action_id"] for a in third["actions"]]
    _get_json(server.url + "/v1/status", CHAN)  # the write-behind log catches up while the server runs on
    rules = {r["rule"] for r in _wait_logged(server, second["decision_id"], case)["rejected"]}
    assert rules & {"contact_policy.daily_channel_cap", "contact_policy.window_cap"}
    rules = {(r["action_id"], r["rule"]) for r in _wait_logged(server, third["decision_id"], case)["rejected"]}
    assert (offered, "contact_policy.dismissal_cooldown") in rules


def _wait_logged(server: Running, decision_id: str, case: Case) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + 10
    while True:
        try:
            return _logged(server, decision_id, case)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_events_and_feedback(server: Running, case: Case) -> None:
    customer = case.reachable[0]
    status, ev = _post(server.url + "/v1/events", {"customer_id": customer, "event_type": case.event}, CHAN)
    assert status == 200 and ev["accepted"] and ev["pushed"] is case.pushes
    status, d = _recommend(server, customer, case.inbound)
    status, fb = _post(server.url + "/v1/feedback", {"decision_id": d["decision_id"], "outcome": "shown"}, CHAN)
    assert status == 200 and fb["decision_id"] == d["decision_id"] and fb["customer_id"] == customer
    status, _ = _post(server.url + "/v1/feedback", {"decision_id": "0123456789abcdef", "outcome": "shown"}, CHAN)
    assert status == 404
    status, err = _post(server.url + "/v1/events", {"customer_id": case.wrong_type, "event_type": case.event}, CHAN)
    assert 400 <= status < 500 and "customer_id" in json.dumps(err)


def test_a_dead_online_store_gives_degraded_answers_not_errors(case: Case, dead_store_server: Any) -> None:
    svc = dead_store_server.ready()
    assert svc.settings.features.online_store == "redis"  # the server of the dead store, not the main one
    customer = case.reachable[0]
    for _ in range(3):
        status, d = _post(svc.url + "/v1/recommend", {"customer_id": customer, "channel": case.inbound}, CHAN)
        assert status == 200 and d["degraded"] and not d["cold_start"] and not _marketing(d), d
    status, ev = _post(svc.url + "/v1/events", {"customer_id": customer, "event_type": case.event}, CHAN)
    assert status == 200 and ev["accepted"] and not ev["pushed"]  # recorded durably even so


# ---------------------------------------------------------------- the decision explorer


def test_the_explorer_explains_a_decision_and_replays_it(server: Running, case: Case, used: set[object]) -> None:
    customer, decision = _first_marketing(server, case, case.inbound, used)
    url = f"{server.url}/v1/decisions/{decision['decision_id']}"
    assert _get_json(url, CHAN)[0] == 403  # a channel key cannot read the log
    status, explained = _get_json(url, ADMIN)
    assert status == 200, explained
    chosen = [c for c in explained["candidates"] if c["status"] == "chosen"]
    assert [c["action_id"] for c in chosen] == [a["action_id"] for a in decision["actions"]]
    assert all(c["priority"] is not None and c["propensity"] is not None for c in chosen)
    # every catalogue action is accounted for: chosen, or dropped by a named rule
    assert all(c["status"] == "chosen" or (c["status"] == "rejected" and c["rule"]) for c in explained["candidates"])
    assert explained["features"] and explained["versions"]["models"] == decision["model_versions"]
    assert explained["versions"]["policy"] and explained["versions"]["feature_service"]
    status, recent = _get_json(f"{server.url}/v1/customers/{customer}/decisions", ADMIN)
    assert status == 200 and decision["decision_id"] in [r["decision_id"] for r in recent]
    status, replayed = _post(url + "/replay", {}, ADMIN)
    assert status == 200 and replayed["matches"], replayed
    status, missing = _get_json(f"{server.url}/v1/decisions/d-nothing", ADMIN)
    assert status == 404 and missing["field"] == "decision_id"


def _chromium() -> str:
    import shutil

    from environment import skip_unless_ci

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        skip_unless_ci("no Chromium (make test installs Debian's chromium)")
    return str(found)


def test_swagger_and_the_explorer_render_in_a_real_browser(server: Running, case: Case, used: set[object]) -> None:
    from playwright.sync_api import sync_playwright

    from nextbest.settings import REPO_ROOT

    shots = REPO_ROOT / ".nextbest" / "test-artifacts" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    customer, decision = _first_marketing(server, case, case.inbound, used)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(server.url + "/", wait_until="networkidle")
            page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)
            assert "Nextbest decision API" in page.inner_text(".swagger-ui .info")
            assert page.locator(".opblock-summary-path", has_text="/v1/recommend").count() >= 1
            page.screenshot(path=str(shots / f"swagger-{case.name}.png"), full_page=False)

            page.goto(server.url + "/explorer", wait_until="networkidle")
            page.fill("#api-key", ADMIN["X-API-Key"])
            page.fill("#customer-id", str(customer))
            page.click("#load")
            page.wait_for_selector("#candidates tr.chosen", timeout=15_000)
            chosen = page.locator("#candidates tr.chosen td:first-child").all_inner_texts()
            assert chosen[0] == decision["actions"][0]["action_id"]
            shown = page.locator("#candidates tr").count() - 1  # the header row
            assert (
                shown == page.locator("#candidates tr.chosen").count() + page.locator("#candidates tr.rejected").count()
            )
            assert page.locator("#features tr").count() > 2
            page.click("#replay")
            page.wait_for_selector("#replay-result .ok, #replay-result .bad", timeout=60_000)
            assert "matches" in page.inner_text("#replay-result")
            page.screenshot(path=str(shots / f"explorer-{case.name}.png"), full_page=True)
        finally:
            browser.close()
    assert (shots / f"explorer-{case.name}.png").stat().st_size > 10_000
