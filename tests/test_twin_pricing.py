"""The twin's pricing (issue 18): an accepted priced offer is credited with the margin at the price the world offered
it at (the catalogue's margin function; exactly the catalogue value at list price), and the list-price arm `5list`
runs beside the serving policy through the same engine, side by side in twin.json with fairness ratios and the
paired margin (personalised minus list). The engine picks up a new price-response estimate on its policy reload.
"""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from nextbest.catalogue import load_catalogue
from nextbest.policy import PolicyConfig
from nextbest.pricing import PriceResponse, price_response_path
from nextbest.settings import Settings
from nextbest.twin.scorecard import Ledger
from tests.evaluation_fixtures import trained_world  # noqa: F401  (the shared small trained world)

#: a response too weak to deter: the policy prices loans at the top of their band and deposits at the bottom
INSENSITIVE = PriceResponse(
    {
        "personal_loan": (-0.2, -0.3),
        "car_loan": (-0.2, -0.3),
        "credit_card": (-0.2, -0.3),
        "savings_account": (0.3, 0.3),
        "term_deposit": (0.3, 0.3),
    },
    version="twin-test",
)


def _day(contacts: pd.DataFrame) -> SimpleNamespace:
    empty = np.empty(0, dtype=np.int64)
    return SimpleNamespace(
        contacts=contacts,
        points=SimpleNamespace(customer_id=contacts["customer_id"].to_numpy()),
        organic=pd.DataFrame({"customer_id": empty, "product": np.empty(0, dtype=object)}),
        closed=empty,
        refused=0,
        day=1,
    )


def test_the_twin_credits_the_margin_at_the_offered_price() -> None:
    cat = load_catalogue()
    loan, savings = cat.pricing["personal_loan"], cat.pricing["savings_account"]
    low = loan.band_for("low")
    # one accepted offer per customer: loan at list, above list, unpriced (NaN: the list price); savings at list,
    # at a lower rate paid (a deposit earns more margin the less it pays); an unpriced action; a refused loan
    contacts = pd.DataFrame(
        {
            "customer_id": [1, 2, 3, 4, 5, 6, 7],
            "action_id": ["personal_loan", "personal_loan", "personal_loan", "savings_account", "savings_account",
                          "home_insurance", "personal_loan"],
            "kind": "sales",
            "value": [350.0, 350.0, 350.0, 60.0, 60.0, 110.0, 350.0],
            "price": [low.list_price, 9.0, np.nan, 1.0, 0.5, np.nan, 9.0],
            "risk_band": ["low", "low", "low", "medium", "medium", "low", "low"],
            "cost": 0.0,
            "accepted": [True, True, True, True, True, True, False],
            "dismissed": False,
            "opted_out": False,
            "complained": False,
        }
    )  # fmt: skip
    ids = np.arange(1, 8)
    ledger = Ledger("5", 1, ids, np.zeros(7), cat)
    ledger.add_day(_day(contacts), {}, ids)  # type: ignore[arg-type]
    value = ledger.counters["offer_value"]
    assert value[0] == 350.0 and value[2] == 350.0  # at list price: exactly the catalogue value
    assert value[1] == pytest.approx(350.0 * float(loan.margin_factor(low, 9.0))) and value[1] > 350.0
    assert value[1] == pytest.approx(350.0 * (9.0 - loan.break_even(low)) / (low.list_price - loan.break_even(low)))
    assert value[3] == 60.0 and value[4] > 60.0  # a deposit: paying less than list earns more margin
    assert value[4] == pytest.approx(60.0 * float(savings.margin_factor(savings.bands[0], 0.5)))
    assert value[5] == 110.0 and value[6] == 0.0  # unpriced: the catalogue value; not accepted: nothing
    assert ledger.counters["priced_offers"].sum() == 6 and ledger.counters["priced_accepted"].sum() == 5
    offered = pd.concat(ledger.offered)
    assert (offered.loc[offered["action_id"] == "personal_loan", "list_price"] == low.list_price).all()
    assert offered["price"].notna().all()  # a missing price is the band's list price


@pytest.fixture(scope="module")
def priced_home(trained_world: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:  # noqa: F811
    """A copy of the trained world's home with a price-response estimate (the shared home stays at list price)."""
    from nextbest.project import project_of

    dst = tmp_path_factory.mktemp("twin-pricing") / "home"
    shutil.copytree(trained_world.home, dst, ignore=shutil.ignore_patterns("twin", "decisions.db*", "journal"))
    settings = trained_world.model_copy(update={"home": dst})
    INSENSITIVE.save(price_response_path(project_of(settings).home(settings), PolicyConfig().pricing))
    return settings


def test_the_list_price_arm_runs_beside_the_serving_policy(priced_home: Settings) -> None:
    from nextbest.project import project_of
    from nextbest.twin.job import TwinOptions, run_twin
    from nextbest.twin.policies import pricing_active
    from nextbest.twin.run import TwinConfig

    assert pricing_active(priced_home, project_of(priced_home))  # so the default set adds 5list
    config = TwinConfig(customers=1_200, days=10, warmup_days=30, seeds=(3,))
    options = TwinOptions(config=config, policies=("5", "list"), log_mlflow=False, run_id="list-arm")
    result = run_twin(priced_home, options)
    report = result.report
    assert [p["name"] for p in report.policies] == ["control", "5", "5list"]
    pricing = report.pricing.set_index(["policy", "action_id"])
    listed = pricing.loc["5list"]
    assert len(listed) >= 2 and (listed["offers"] > 0).all()
    np.testing.assert_allclose(listed["mean_price_over_list"], 1.0)  # the list arm offers list prices only
    served = pricing.loc["5"]
    assert (served["mean_price_over_list"] != 1.0).any(), "the serving policy must personalise some prices"
    loans = [a for a in served.index if a in ("personal_loan", "car_loan", "credit_card")]
    assert any(served.loc[a, "mean_price_over_list"] > 1.0 for a in loans)
    # the paired margin, personalised minus list, on every KPI
    net = report.margin("5", "5list", "net_value")
    assert net is not None and np.isfinite(net["std_error"]) and net["std_error"] > 0
    assert net["margin"] == pytest.approx(report.value("5", "net_value") - report.value("5list", "net_value"))
    saved: dict[str, Any] = json.loads((result.run_dir / "twin.json").read_text())
    side = saved["list_vs_personalised"]
    assert side["list"] == "5list" and side["personalised"] == "5"
    for arm in ("5", "5list"):
        assert side["arms"][arm]["fairness_min_ratio"] is not None
        assert {"net_value", "priced_acceptance", "conversion"} <= set(side["arms"][arm])
    assert side["margins"]["net_value"]["margin"] == pytest.approx(net["margin"])
    rows = side["fairness_ratios"]
    assert any(r["metric"] == "credit_offer_rate" and r["attribute"] == "age_band" for r in rows)
    assert all("5.ratio" in r and "5list.ratio" in r for r in rows)
    assert {"5", "5list"} <= set(saved["fairness"])
    assert {r["policy"] for r in saved["pricing"]} == {"5", "5list"}
    assert (result.run_dir / "pricing.csv").is_file()


def test_the_engine_picks_up_a_new_estimate_on_its_policy_reload(priced_home: Settings) -> None:
    import os

    from nextbest.project import project_of
    from serving.engine import DecisionEngine

    engine = DecisionEngine(priced_home)
    assert engine.policy.pricer.response is not None
    assert engine.policy.pricer.response.version == "twin-test"
    assert engine.reload_policy() is False  # nothing changed
    path = price_response_path(project_of(priced_home).home(priced_home), PolicyConfig().pricing)
    PriceResponse({"savings_account": (0.5, 0.5)}, version="refit").save(path)
    stamp = path.stat().st_mtime_ns + 1_000_000_000
    os.utime(path, ns=(stamp, stamp))  # a file system with coarse timestamps still sees a new file
    version = engine.policy_version
    assert engine.reload_policy() is True
    assert engine.policy.pricer.response.version == "refit" and engine.policy_version == version
    path.write_text("{not json")
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))
    from nextbest.errors import ConfigError

    with pytest.raises(ConfigError, match="price-response estimate"):
        engine.reload_policy()
    assert engine.policy.pricer.response.version == "refit"  # the old policy stays
    INSENSITIVE.save(path)  # leave the module's estimate as it was
