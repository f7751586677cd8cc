"""Personalised pricing inside approved risk bands (issue 18): the bands as validated data, the world's price
response (factor 1 at list price, the truth's optimal price), the estimate, and the engine's price inside the band
on HTTP and in a campaign, with the three attempts to force a price outside the band (a model, a config, a
request)."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from pydantic import ValidationError

from nextbest.catalogue import DEFAULT_CATALOGUE, Catalogue, load_catalogue
from nextbest.policy import CustomerView, DecisionContext, DecisionPolicy, PolicyConfig, load_policy
from nextbest.pricing import (
    PRICE_LIST,
    PRICE_PERSONALISED,
    PRICE_REFUSED,
    PriceBand,
    PriceResponse,
    ProductPricing,
    fit_price_response,
)
from nextbest.settings import Settings

RAW = yaml.safe_load(DEFAULT_CATALOGUE.read_text())


def _with_band(action: str, i: int, **changes: object) -> dict:
    raw = copy.deepcopy(RAW)
    raw["pricing"][action]["bands"][i].update(changes)
    return raw


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (_with_band("personal_loan", 0, min=9.0, max=5.0), "inverted range"),
        (_with_band("personal_loan", 0, list_price=9.5), "list_price 9.5 outside its band"),
        (_with_band("personal_loan", 0, step=0.3), "step 0.3 does not divide"),
        (_with_band("personal_loan", 1, min=8.0), "overlap"),
        (_with_band("personal_loan", 1, risk_bands=["low"]), "in two bands"),
        (_with_band("personal_loan", 1, risk_bands=["medium", "vip"]), "pricing.personal_loan.bands[1].risk_bands"),
        (_with_band("personal_loan", 1, risk_bands=["high"]), "no band for risk band(s) ['medium']"),
        (_with_band("credit_card", 0, list_price=3.5, min=3.5), "earns no margin"),
    ],
)
def test_bad_bands_are_one_error_naming_the_field(raw: dict, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        Catalogue.model_validate(raw)
    assert message in str(err.value)


def test_the_shipped_bands_load_with_owner_version_and_grid() -> None:
    cat = load_catalogue()
    assert set(cat.pricing) == {
        "personal_loan",
        "car_loan",
        "mortgage",
        "credit_card",
        "savings_account",
        "term_deposit",
    }
    loan = cat.pricing["personal_loan"]
    assert loan.owner and loan.version
    low = loan.band_for("low")
    assert low is not None and low.grid[0] == low.min and low.grid[-1] == low.max
    assert loan.margin_factor(low, low.list_price) == pytest.approx(1.0)
    assert loan.margin_factor(low, loan.break_even(low)) == pytest.approx(0.0)


# -------------------------------------------------------------------- the world's price response


@pytest.fixture(scope="module")
def priced_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from nextbest.simulator import SimulationConfig, simulate_world

    out = tmp_path_factory.mktemp("priced-world")
    simulate_world(SimulationConfig(customers=800, days=45, seed=5, price_exploration=True), out)
    return out


def test_the_response_factor_is_one_at_list_price_and_the_truth_replays_priced_contacts(priced_world: Path) -> None:
    from nextbest.simulator.truth import TrueWorld

    world = TrueWorld.load(priced_world)
    contacts = pd.read_parquet(priced_world / "sources" / "contacts")
    truth = pd.read_parquet(priced_world / "truth" / "contact_truth").set_index("contact_id")
    priced = contacts[contacts["offered_price"].notna()]
    assert len(priced) > 500 and priced["action_id"].nunique() >= 4
    frame = priced.rename(columns={"offered_price": "price"})[["customer_id", "action_id", "channel", "ts", "price"]]
    np.testing.assert_allclose(world.p_accept(frame), truth.loc[priced["contact_id"], "p_accept"], atol=1e-12)
    # at the list price of the customer's band the factor is exactly 1
    cat = load_catalogue()
    from nextbest.simulator.population import risk_band

    scores = world._credit_scores(frame["customer_id"].to_numpy(), _secs(world, frame))
    bands = np.array(["low", "medium", "high"])[risk_band(scores)]
    lists = [cat.pricing[a].band_for(b).list_price for a, b in zip(frame["action_id"], bands, strict=True)]
    at_list = world.p_accept(frame.assign(price=lists))
    np.testing.assert_array_equal(at_list, world.p_accept(frame.drop(columns="price")))
    # and prices move acceptance the sourced way: a dearer loan is accepted less, a better deposit rate more
    loan = frame[frame["action_id"] == "personal_loan"].head(50)
    dear = world.p_accept(loan.assign(price=14.0))
    cheap = world.p_accept(loan.assign(price=9.5))
    medium = bands[frame.index.get_indexer(loan.index)] == "medium"
    assert (dear[medium] < cheap[medium]).all()


def _secs(world: object, frame: pd.DataFrame) -> np.ndarray:
    from nextbest.simulator.truth import _seconds

    return _seconds(frame["ts"], world.epoch)  # type: ignore[attr-defined]


def test_the_truth_gives_the_optimal_price_per_customer_and_product(priced_world: Path) -> None:
    from nextbest.simulator.truth import TrueWorld

    world = TrueWorld.load(priced_world)
    contacts = pd.read_parquet(priced_world / "sources" / "contacts")
    rows = contacts[contacts["action_id"].isin(["personal_loan", "savings_account"])].head(40)
    frame = rows[["customer_id", "action_id", "channel", "ts"]].reset_index(drop=True)
    best = world.optimal_price(frame)
    cat = load_catalogue()
    for i, row in frame.iterrows():
        if np.isnan(best[i]):
            continue
        spec = cat.pricing[row["action_id"]]
        band = next(b for b in spec.bands if b.contains(best[i]))
        grid = band.grid
        p = world.p_accept(pd.DataFrame([row] * len(grid)).assign(price=grid))
        value = p * spec.margin_factor(band, grid)
        assert best[i] == pytest.approx(grid[int(np.argmax(value))])
    assert np.isfinite(best).sum() > 10 and len(set(best[np.isfinite(best)])) > 1  # personal, not one price


def test_the_estimate_recovers_the_direction_of_the_price_response() -> None:
    rng = np.random.default_rng(0)
    n = 40_000
    lst = np.full(n, 10.0)
    price = rng.choice(np.arange(8.0, 12.01, 0.25), n)
    x = np.log(price / lst)
    p = 1 / (1 + np.exp(-(-2.0 - 2.0 * np.minimum(x, 0) - 4.0 * np.maximum(x, 0))))
    fitted = fit_price_response(np.full(n, "personal_loan"), price, lst, rng.random(n) < p)
    below, above = fitted.coefficients["personal_loan"]
    assert below == pytest.approx(-2.0, abs=0.8) and above == pytest.approx(-4.0, abs=0.8)
    # only a response the data show is acted on: the right sign at 2 standard errors, else list price
    args = (np.full(n, "personal_loan"), price, lst, rng.random(n) < p)
    assert "personal_loan" in fit_price_response(*args, signs={"personal_loan": -1.0}).coefficients
    assert "personal_loan" not in fit_price_response(*args, signs={"personal_loan": 1.0}).coefficients
    flat = fit_price_response(*args[:3], rng.random(n) < 0.1, signs={"personal_loan": -1.0})
    assert "personal_loan" not in flat.coefficients  # no response in the data: not personalised


# -------------------------------------------------------------------- the policy prices (and refuses)


def _policy(response: PriceResponse | None, **pricing: object) -> DecisionPolicy:
    config = load_policy()
    if pricing:
        config = config.model_copy(update={"pricing": config.pricing.model_copy(update=pricing)})
    return DecisionPolicy(load_catalogue(), config, price_response=response)


def _arbitrate(policy: DecisionPolicy, band: str = "low", prices: dict | None = None) -> dict:
    cat = policy.catalogue
    actions = [cat.action("personal_loan"), cat.action("savings_account"), cat.action("home_insurance")]
    customer = CustomerView(customer_id=1, known=True, age=40, segment="mass", risk_band=band)
    ranked, _ = policy.arbitrate(
        actions, [0.02, 0.03, 0.02], customer, "web", DecisionContext(), {}, None, prices=prices
    )
    return {r.action.id: r for r in ranked}


INSENSITIVE = PriceResponse({"personal_loan": (-0.2, -0.3), "savings_account": (0.3, 0.3)}, version="t")


def test_the_policy_prices_inside_the_band_by_expected_margin() -> None:
    out = _arbitrate(_policy(INSENSITIVE))
    loan, savings, insurance = out["personal_loan"], out["savings_account"], out["home_insurance"]
    band = load_catalogue().pricing["personal_loan"].band_for("low")
    assert loan.band == "personal_loan/low" and loan.band_version == "bands-2026-12-v1"
    assert band.contains(loan.price) and loan.price == band.max  # an insensitive response: the top of the band
    assert PRICE_PERSONALISED in loan.reasons and loan.priority > 0.02 * 350 - 0.0
    assert savings.price is not None and load_catalogue().pricing["savings_account"].bands[0].contains(savings.price)
    assert (
        insurance.price is None and insurance.band == "" and not any(c.startswith("PRICE") for c in insurance.reasons)
    )
    # switched off (the list-price arm), or without an estimate: list prices, priorities as without pricing
    for policy in (_policy(INSENSITIVE, personalise=False), _policy(None)):
        off = _arbitrate(policy)
        assert off["personal_loan"].price == band.list_price and PRICE_LIST in off["personal_loan"].reasons
        assert off["personal_loan"].priority == pytest.approx(0.02 * 350)


class _Rogue(PriceResponse):
    def best_price(self, action_id: str, spec: ProductPricing, band: PriceBand, p_list: float) -> float:
        return 42.0  # an estimate whose optimum lies far outside the approved band


def test_a_model_cannot_force_a_price_outside_the_band() -> None:
    loan = _arbitrate(_policy(_Rogue(INSENSITIVE.coefficients)))["personal_loan"]
    assert loan.price == 7.0 and PRICE_LIST in loan.reasons and PRICE_REFUSED in loan.reasons


def test_a_config_cannot_force_a_price_outside_the_band() -> None:
    with pytest.raises(ValidationError, match="list_price 30.0 outside its band"):
        Catalogue.model_validate(_with_band("personal_loan", 0, list_price=30.0))
    from nextbest.errors import ConfigError
    from nextbest.policy import parse_policy

    with pytest.raises(ConfigError, match="pricing.price"):
        parse_policy({"pricing": {"price": {"personal_loan": 30}}}, "policy.yaml")


def test_a_request_price_is_served_only_inside_the_customers_band() -> None:
    policy = _policy(INSENSITIVE)
    asked = _arbitrate(policy, prices={"personal_loan": 6.5})["personal_loan"]
    assert asked.price == 6.5 and PRICE_PERSONALISED in asked.reasons
    medium = _arbitrate(policy, band="medium", prices={"personal_loan": 6.5})["personal_loan"]
    assert medium.price == 11.0 and PRICE_REFUSED in medium.reasons  # another band's rate: the list price


# -------------------------------------------------------------------- over HTTP and in a campaign


@pytest.fixture(scope="module")
def home(served_world, tmp_path_factory: pytest.TempPathFactory) -> Settings:  # type: ignore[no-untyped-def]
    dst = tmp_path_factory.mktemp("pricing") / "home"
    shutil.copytree(
        served_world.settings.home,
        dst,
        ignore=shutil.ignore_patterns("decisions.db*", "journal", "campaigns", "*spool*"),
    )
    settings = served_world.settings.model_copy(update={"home": dst})
    from nextbest.pricing import price_response_path
    from nextbest.project import project_of

    INSENSITIVE.save(price_response_path(project_of(settings).home(settings), PolicyConfig().pricing))
    return settings


@pytest.fixture(scope="module")
def client(home: Settings) -> Iterator[object]:
    from starlette.testclient import TestClient

    from nextbest.project import project_of
    from serving.api import Api
    from serving.auth import KeyRing
    from serving.engine import DecisionEngine

    engine = DecisionEngine(home)
    engine.load()
    try:
        with TestClient(Api(project_of(home), KeyRing(False, {}), engine=lambda: engine).build()) as c:
            yield c
    finally:
        engine.close()


def _in_band(action: dict) -> bool:
    spec = load_catalogue().pricing[action["action_id"]]
    band = next(b for b in spec.bands if action["band"] == f"{action['action_id']}/{'+'.join(b.risk_bands)}")
    return band.contains(action["price"]) and action["band_version"] == spec.version


def test_http_serves_priced_offers_inside_the_band(client) -> None:  # type: ignore[no-untyped-def]
    priced = []
    for cid in range(60):
        for channel in ("web", "app"):
            body = {
                "customer_id": cid,
                "channel": channel,
                "actions": ["personal_loan", "savings_account", "credit_card"],
            }
            r = client.post("/v1/recommend", json=body)
            assert r.status_code == 200, r.text
            priced += [a for a in r.json()["actions"] if a["price"] is not None]
    assert priced, "no priced offer served"
    assert all(_in_band(a) for a in priced)
    assert any(PRICE_PERSONALISED in a["reason_codes"] for a in priced)


def test_http_refuses_a_requested_price_outside_every_band(client) -> None:  # type: ignore[no-untyped-def]
    body = {"customer_id": 3, "channel": "web", "prices": {"personal_loan": 30.0}}
    r = client.post("/v1/recommend", json=body)
    assert r.status_code == 400 and r.json()["field"] == "prices.personal_loan", r.text
    r = client.post("/v1/recommend", json={**body, "prices": {"home_insurance": 3.0}})
    assert r.status_code == 400 and "prices.home_insurance" in r.text


def test_a_campaign_logs_prices_inside_the_band(home: Settings) -> None:
    from nextbest.campaigns import parse_campaign
    from nextbest.jobs.campaign import run_campaign
    from nextbest.project import project_of

    project = project_of(home)
    spec = parse_campaign(
        {
            "id": "priced",
            "channels": [{"channel": "email", "volume": 30}],
            "actions": ["personal_loan", "credit_card", "savings_account", "term_deposit"],
        },
        "priced",
    )
    run_campaign(spec, project, home)
    engine = sa.create_engine(project.decision_log_uri(home))
    with engine.connect() as con:
        chosen = pd.read_sql(sa.text("SELECT chosen FROM decisions WHERE campaign_id = 'priced'"), con)["chosen"]
    engine.dispose()
    import json

    actions = [a for c in chosen for a in (json.loads(c) if isinstance(c, str) else c)]
    priced = [a for a in actions if a.get("price") is not None]
    assert priced and all(_in_band(a) for a in priced)


# -------------------------------------------------------------------- the ladder's pricing credit


class _FlatWorld:
    """A truth whose acceptance at a price halves at any price above the list price (for the credit's arithmetic)."""

    def p_accept(self, frame: pd.DataFrame) -> np.ndarray:
        return np.where(frame["price"].to_numpy() > 7.0, 0.05, 0.1)


def test_the_ladder_credits_a_priced_offer_at_its_price_and_margin() -> None:
    from training.pricing_eval import credit_priced

    cat = load_catalogue()
    cands = pd.DataFrame(
        {
            "decision_id": [1, 2],
            "action_id": ["personal_loan", "home_insurance"],
            "value": [350.0, 110.0],
            "p_true": [0.1, 0.2],
            "p_organic": [0.5, 0.0],
            "contact_cost": [0.0, 0.075],
            "customer_id": [10, 11],
            "channel": ["web", "sms"],
            "event_timestamp": pd.to_datetime(["2026-03-01", "2026-03-01"], utc=True),
        }
    )
    picks = pd.DataFrame(
        {"decision_id": [1, 2], "action_id": ["personal_loan", "home_insurance"], "price": [9.0, None],
         "band": ["personal_loan/low", ""]}
    )  # fmt: skip
    out = credit_priced(cands, picks, _FlatWorld(), cat).set_index("decision_id")
    spec = cat.pricing["personal_loan"]
    factor = float(spec.margin_factor(spec.bands[0], 9.0))
    assert out.loc[1, "p_at_price"] == 0.05
    assert out.loc[1, "credited"] == pytest.approx(0.05 * 350 * factor * 0.5)
    assert out.loc[2, "credited"] == pytest.approx(0.2 * 110 - 0.075)  # unpriced: the ladder's own credit
