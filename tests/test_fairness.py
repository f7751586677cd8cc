"""The fairness check (nextbest/fairness.py): adverse-impact ratios of credit offers and prices, with intervals.

- The ratio and its interval on hand-built decision sets, against the Katz log interval and the delta-method
  interval computed here from their formulas; non-credit offers do not count; small groups are never flagged.
- The gates' rule (`gate_refusals`): a flagged ratio refuses unless the current policy is at least as low.
- The scorecard flags a policy that excludes one age band from credit offers (a decision log written in bulk).
- The promotion gate refuses a first version whose selection leaves one age band out (a real fit, real MLflow).
- The contract: a protected attribute in a model's feature service, or an unknown source column, is one clear
  error; Berka's declaration (sex from birth_number) loads and reads (skipped without NEXTBEST_BERKA_DIR).
The twin's what-if gate end to end is in tests/test_twin.py (it reuses that module's trained world).
"""

from __future__ import annotations

import copy
import json
import math
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from nextbest.errors import ConfigError
from nextbest.fairness import (
    AGE,
    OFFER_RATE,
    PRICE,
    FairnessReport,
    FairnessSpec,
    age_bands,
    decision_set_report,
    gate_refusals,
    katz_interval,
    selection_check,
)
from nextbest.project import load_project, parse_project
from nextbest.settings import REPO_ROOT, Settings
from tests.training_fixtures import quiet_mlflow  # noqa: F401  (autouse fixture)

Z = 1.959963984540054
SPEC = FairnessSpec(min_group_size=30)
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _catalogue():  # type: ignore[no-untyped-def]
    return load_project().decisions()[1]


def _decisions(groups: dict[int, tuple[int, int]], start: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """age -> (customers, customers offered a credit card); everyone also gets a savings offer (not credit)."""
    rows, offers, key = [], [], start
    for age, (n, offered) in groups.items():
        for i in range(n):
            rows.append({"customer_id": str(key), "age": age})
            offers.append({"customer_id": str(key), "action_id": "savings_account"})
            if i < offered:
                offers.append({"customer_id": str(key), "action_id": "credit_card"})
            key += 1
    return pd.DataFrame(rows), pd.DataFrame(offers)


def test_the_offer_rate_ratio_and_its_katz_interval_on_a_hand_built_decision_set() -> None:
    decisions, offers = _decisions({30: (200, 120), 70: (150, 45), 19: (10, 1)})
    report = decision_set_report(decisions, offers, _catalogue(), SPEC)
    rows = report.rows.set_index("group")
    assert rows.loc["25-34", "reference"] == "25-34" and rows.loc["25-34", "ratio"] == 1.0
    # 65+: 45 / 150 = 0.30 against 120 / 200 = 0.60
    ratio = 0.30 / 0.60
    se = math.sqrt(1 / 45 - 1 / 150 + 1 / 120 - 1 / 200)
    old = rows.loc["65+"]
    assert old["units"] == 150 and old["events"] == 45 and old["value"] == pytest.approx(0.30)
    assert old["ratio"] == pytest.approx(ratio)
    assert old["low"] == pytest.approx(ratio * math.exp(-Z * se)) and old["high"] == pytest.approx(
        ratio * math.exp(Z * se)
    )
    assert bool(old["flagged"]) and not report.passed
    assert bool(rows.loc["18-24", "too_small"]) and not bool(rows.loc["18-24", "flagged"])  # 10 < min_group_size
    assert report.min_ratio == pytest.approx(ratio)  # the too-small group is not judged
    assert report.reasons() == [
        f"credit offer rate of {AGE} 65+: ratio 0.50 [{old['low']:.2f}, {old['high']:.2f}] to 25-34 (n 150 vs 200), "
        "below 0.80"
    ]
    # the savings offer everyone got is not a credit offer: a set with only savings offers has no offer-rate ratio
    plain = decision_set_report(decisions, offers[offers["action_id"] == "savings_account"], _catalogue(), SPEC)
    assert plain.rows["ratio"].isna().all() and plain.passed
    assert "no credit offer" in " ".join(plain.notes)


def test_a_group_with_no_offer_has_ratio_zero_and_a_finite_interval() -> None:
    ratio, low, high = katz_interval(0, 80, 40, 100)
    se = math.sqrt(1 / 0.5 - 1 / 80.5 + 1 / 40 - 1 / 100)
    centre = math.log((0.5 / 80.5) / 0.4)
    assert (
        ratio == 0.0
        and low == pytest.approx(math.exp(centre - Z * se))
        and high == pytest.approx(math.exp(centre + Z * se))
    )
    bands = age_bands([17, 18, 24, 25, 64, 65, 90, None], (18, 25, 35, 50, 65)).tolist()
    assert bands == ["<18", "18-24", "18-24", "25-34", "50-64", "65+", "65+", "unknown"]


def test_the_mean_price_ratio_is_oriented_so_below_one_is_worse_off() -> None:
    rng = np.random.default_rng(3)
    decisions, _ = _decisions({30: (120, 0), 70: (120, 0)})
    young, old = decisions["customer_id"][:120], decisions["customer_id"][120:]
    apr_young, apr_old = rng.normal(10.0, 1.0, 120), rng.normal(13.0, 1.5, 120)
    dep_young, dep_old = rng.normal(3.0, 0.2, 120), rng.normal(2.0, 0.2, 120)
    offers = pd.concat(
        [
            pd.DataFrame({"customer_id": young, "action_id": "personal_loan", "price": apr_young}),
            pd.DataFrame({"customer_id": old, "action_id": "personal_loan", "price": apr_old}),
            pd.DataFrame({"customer_id": young, "action_id": "term_deposit", "price": dep_young}),
            pd.DataFrame({"customer_id": old, "action_id": "term_deposit", "price": dep_old}),
        ]
    )
    report = decision_set_report(decisions, offers, _catalogue(), SPEC)
    prices = report.rows[report.rows["metric"] == PRICE].set_index(["product", "group"])
    # a loan's APR: lower is favourable; the old pay more: reference (young) mean / old mean
    loan = prices.loc[("personal_loan", "65+")]
    expected = apr_young.mean() / apr_old.mean()
    se = math.sqrt(
        apr_young.var(ddof=1) / (120 * apr_young.mean() ** 2) + apr_old.var(ddof=1) / (120 * apr_old.mean() ** 2)
    )
    assert loan["reference"] == "25-34" and loan["ratio"] == pytest.approx(expected)
    assert loan["low"] == pytest.approx(expected * math.exp(-Z * se)) and loan["high"] == pytest.approx(
        expected * math.exp(Z * se)
    )
    assert bool(loan["flagged"])  # about 0.77
    # a deposit rate: higher is favourable; the old earn less: old mean / reference (young) mean
    deposit = prices.loc[("term_deposit", "65+")]
    assert deposit["reference"] == "25-34" and deposit["ratio"] == pytest.approx(dep_old.mean() / dep_young.mean())
    assert bool(deposit["flagged"]) and deposit["ratio"] < 0.7


def test_the_gate_refuses_a_flagged_ratio_unless_the_current_one_is_as_low() -> None:
    def report(offered_old: int) -> FairnessReport:
        decisions, offers = _decisions({30: (200, 120), 70: (200, offered_old)})
        return decision_set_report(decisions, offers, _catalogue(), SPEC)

    fair, unfair, worse = report(110), report(60), report(20)
    assert fair.passed and gate_refusals(fair) == [] and gate_refusals(fair, unfair) == []
    assert len(gate_refusals(unfair)) == 1 and gate_refusals(unfair)[0].startswith("adverse impact: credit offer rate")
    assert gate_refusals(unfair, unfair) == []  # no worse than the current policy, which is flagged itself
    assert gate_refusals(unfair, fair)[0].endswith("(current 0.92)")
    assert len(gate_refusals(worse, unfair)) == 1


def _write_log(uri: str, excluded_band: tuple[int, int] | None, old_rate: float | None = None) -> None:
    """600 customers aged 18-77, one decision each with the age in its logged features; a credit card delivered to
    every other customer, except (`excluded_band`) the customers of that age range; with `old_rate`, the card is
    recommended at 18% APR, at `old_rate` for the 65+."""
    from nextbest.decision_log import DecisionLog, decision_contacts, decisions

    DecisionLog(uri).close()
    rows, contacts = [], []
    for i in range(600):
        age = 18 + i % 60
        ts = T0 + timedelta(seconds=i)
        rate = (old_rate if age >= 65 else 18.0) if old_rate is not None else None
        chosen = [{"action_id": "credit_card", "price": rate}] if i % 2 == 0 else []
        rows.append({"decision_id": f"{i:032x}", "ts": ts, "customer_id": str(i + 1), "channel": "app",
                     "policy_version": "p", "model_versions": {"nba": "1"}, "degraded": False, "cold_start": False,
                     "features": {"age": age}, "holdout": False, "chosen": chosen})  # fmt: skip
        excluded = excluded_band is not None and excluded_band[0] <= age < excluded_band[1]
        if i % 2 == 0 and not excluded:
            contacts.append({"decision_id": f"{i:032x}", "customer_id": str(i + 1), "ts": ts, "channel": "app",
                             "action_id": "credit_card", "kind": "sales", "rank": 1, "outcome": "ignored"})  # fmt: skip
    engine = sa.create_engine(uri)
    with engine.begin() as conn:
        conn.execute(decisions.insert(), rows)
        conn.execute(decision_contacts.insert(), contacts)
    engine.dispose()


def test_the_scorecard_flags_a_policy_that_excludes_one_age_band_from_credit_offers(tmp_path: Path) -> None:
    from nextbest.scorecard import build_scorecard

    project = load_project()
    fair_home, unfair_home = tmp_path / "fair", tmp_path / "unfair"
    for home, band in ((fair_home, None), (unfair_home, (65, 200))):
        home.mkdir()
        _write_log(project.decision_log_uri(Settings(home=home)), band)
    fair = build_scorecard(project, Settings(home=fair_home), by="policy")
    assert fair.fairness["p"].passed and fair.frame.loc["p", "fairness_flags"] == 0
    card = build_scorecard(project, Settings(home=unfair_home), by="policy")
    check = card.fairness["p"]
    assert not check.passed and card.frame.loc["p", "fairness_flags"] == 1
    assert check.ratio(AGE, "65+") == 0.0 and card.frame.loc["p", "fairness_ratio"] == 0.0
    assert any(n.startswith("fairness, p: credit offer rate of age_band 65+: ratio 0.00") for n in card.notes)
    payload = card.to_dict()["fairness"]["p"]
    assert payload["passed"] is False and {r["group"] for r in payload["rows"]} == {
        "18-24",
        "25-34",
        "35-49",
        "50-64",
        "65+",
    }


def test_a_policy_that_prices_one_age_band_up_is_flagged_and_refused(tmp_path: Path) -> None:
    """The scorecard reads the recommended prices from the log; the twin's gate refuses a candidate that charges the
    65+ more for the same card than the serving policy does (hand-built ledgers: the twin's own arithmetic)."""
    from nextbest.scorecard import build_scorecard
    from nextbest.twin.report import ledger_fairness
    from nextbest.twin.scorecard import Ledger

    project = load_project()
    _write_log(project.decision_log_uri(Settings(home=tmp_path)), None, old_rate=24.0)
    check = build_scorecard(project, Settings(home=tmp_path), by="policy").fairness["p"]
    assert check.ratio(AGE, "65+", OFFER_RATE) > 0.8  # offered as often
    assert check.ratio(AGE, "65+", PRICE, "credit_card") == pytest.approx(18.0 / 24.0)  # but charged a third more
    assert any("mean credit_card price of age_band 65+: ratio 0.75" in r for r in check.reasons())

    catalogue = project.decisions()[1]
    ids = np.arange(1, 601, dtype=np.int64)
    ages = (18 + (ids - 1) % 60).astype(float)

    def ledger(name: str, old_rate: float) -> Ledger:
        lg = Ledger(name, 1, ids, np.zeros(len(ids)), catalogue, ages=ages)
        lg.counters["credit_offers"][:] = 1.0
        lg.add_prices(ids, np.full(len(ids), "personal_loan", dtype=object), np.where(ages >= 65, old_rate, 9.0))
        return lg

    serving, candidate = ledger_fairness([ledger("5", 9.0)], SPEC), ledger_fairness([ledger("candidate", 12.5)], SPEC)
    assert serving.passed and candidate.ratio(AGE, "65+", PRICE, "personal_loan") == pytest.approx(9.0 / 12.5)
    refusals = gate_refusals(candidate, serving)
    assert len(refusals) == 1 and "mean personal_loan price of age_band 65+: ratio 0.72" in refusals[0]


def _credit_set(age_effect: bool, rows: int = 4_000, seed: int = 7):  # type: ignore[no-untyped-def]
    """Credit offers accepted by f0; with `age_effect` the label was never positive for 65+ (a model learns to leave
    them out: its top scores hold no 65+ row)."""
    from training.datasets import LABEL, TIMESTAMP, TrainingSet

    rng = np.random.default_rng(seed)
    day = np.sort(rng.integers(0, 100, size=rows))
    x = rng.normal(size=(rows, 3)).astype(np.float32)
    age = rng.integers(18, 80, size=rows).astype(np.float32)
    p = 1 / (1 + np.exp(-(-1.0 + 1.5 * x[:, 0])))
    p = np.where(age >= 65, 0.01, p) if age_effect else p
    frame = pd.DataFrame(x, columns=["f0", "f1", "f2"])
    frame["age"] = age
    frame.insert(0, TIMESTAMP, pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(day, unit="D"))
    frame[LABEL] = (rng.random(rows) < p).astype(np.int8)
    return TrainingSet(model="credit", frame=frame, feature_names=["f0", "f1", "f2", "age"], lineage={})


def test_the_promotion_gate_refuses_a_challenger_with_adverse_impact(tmp_path: Path) -> None:
    from nextbest.models.registry import mlflow_client
    from training.datasets import time_split
    from training.pipeline import FitOptions, fit_and_log
    from training.registry import CHAMPION, alias_version, promote_if_better, read_promotion_log
    from training.tune import TuningConfig

    settings = Settings(home=tmp_path)
    config = TuningConfig(max_rounds=60, early_stopping_rounds=10, nthread=1)
    options = FitOptions(trials=1, registered_name="credit", config=config, seed=3, promote=False)
    fair = fit_and_log(settings, _credit_set(age_effect=False), options)
    biased_set = _credit_set(age_effect=True)
    biased = fit_and_log(settings, biased_set, options)
    holdout = time_split(biased_set.frame).test  # the gate's holdout: the newest data
    check = selection_check(holdout, SPEC, np.ones(len(holdout), dtype=bool), "age")
    strict = selection_check(holdout, SPEC.model_copy(update={"refuse_first_version": True}), check.credit, "age")
    # a first version with adverse impact: refused when the project says so
    first = promote_if_better(settings, "credit", biased.version, holdout, fairness=strict)
    assert not first.promoted and alias_version(settings, "credit", CHAMPION) is None
    assert first.reason.startswith("first version: adverse impact: credit offer rate of age_band")
    assert "credit offer rate of age_band 65+: ratio 0.0" in first.reason
    # the fair model becomes champion; the biased challenger is refused against it, with the champion's ratio
    assert promote_if_better(settings, "credit", fair.version, holdout, fairness=check).promoted
    decision = promote_if_better(settings, "credit", biased.version, holdout, fairness=check)
    assert not decision.promoted and alias_version(settings, "credit", CHAMPION) == fair.version
    assert decision.reason.startswith("adverse impact: credit offer rate of age_band")
    assert "credit offer rate of age_band 65+: ratio 0.0" in decision.reason
    assert "(current 0." in decision.reason and decision.reason.endswith("registered, not promoted")
    logged = read_promotion_log(settings, "credit")[-1]
    assert logged["fairness"]["refusals"] and logged["fairness"]["challenger"]["passed"] is False
    champion_65 = [r for r in logged["fairness"]["champion"]["rows"] if r["group"] == "65+"][0]
    assert champion_65["ratio"] > 0.6  # the fair champion selects the 65+ about as often (noise aside)
    tags = mlflow_client(settings).get_model_version("credit", biased.version).tags
    assert json.loads(tags["promotion.fairness"])["refusals"] == logged["fairness"]["refusals"]
    # without the check the biased version wins on AUC (the holdout has the age effect): the refusal was fairness's
    assert promote_if_better(settings, "credit", biased.version, holdout, fairness=None).promoted


def _simbank_raw() -> dict:
    raw = yaml.safe_load((REPO_ROOT / "configs/simbank.yaml").read_text())
    raw["policy"] = str(REPO_ROOT / "nextbest/data/policy.yaml")
    return raw


def test_the_contract_refuses_a_protected_attribute_in_a_models_feature_service(tmp_path: Path) -> None:
    people = tmp_path / "people.csv"
    pd.DataFrame({"customer_id": [1, 2], "sex": ["f", "m"]}).to_csv(people, index=False)
    raw = _simbank_raw()
    raw["fairness"] = {
        "protected": [{"name": "sex", "source": {"file": str(people), "key": "customer_id", "column": "sex"}}]
    }
    project = parse_project(raw, tmp_path / "simbank.yaml")  # no model reads `sex`: accepted
    from nextbest.fairness import protected_values

    assert protected_values(project.fairness, project)["sex"].to_dict() == {"1": "f", "2": "m"}
    # a proxy the bank declares as carrying it, in the NBA and churn models' services: refused, naming both
    raw["fairness"]["protected"][0]["features"] = ["is_vulnerable"]
    with pytest.raises(
        ConfigError,
        match=r"model 'churn': feature service 'churn_v1' includes 'is_vulnerable', which carries the protected attr",
    ):
        parse_project(raw, tmp_path / "simbank.yaml")


def _berka_raw() -> dict:
    raw = yaml.safe_load((REPO_ROOT / "configs/berka.yaml").read_text())
    raw["data_dir"] = os.environ.get("NEXTBEST_BERKA_DIR", str(REPO_ROOT.parent / "shared/data/berka"))
    return raw


def test_berka_refuses_sex_in_its_models_and_an_unknown_source_column() -> None:
    raw = _berka_raw()
    back = copy.deepcopy(raw)
    view = next(v for v in back["feature_views"] if v["name"] == "account_profile")
    view["attributes"].append({"name": "owner_female", "column": "owner_female"})
    with pytest.raises(ConfigError, match=r"model 'berka_propensity'.*'owner_female'.*protected attribute 'sex'"):
        parse_project(back, REPO_ROOT / "configs/berka.yaml")
    # the source column itself, read into a feature under another name: refused too
    view = next(v for v in back["feature_views"] if v["name"] == "account_profile")
    view["attributes"][-1] = {"name": "sex_flag", "column": "female"}
    view["source"] = "owners"
    with pytest.raises(ConfigError, match=r"'sex_flag', which carries the protected attribute 'sex'"):
        parse_project(back, REPO_ROOT / "configs/berka.yaml")
    bad = copy.deepcopy(raw)
    bad["fairness"]["protected"][0]["source"] = {"table": "clients", "key": "client_id", "column": "sex"}
    with pytest.raises(ConfigError, match=r"fairness.protected 'sex': table 'clients' has no column 'sex'"):
        parse_project(bad, REPO_ROOT / "configs/berka.yaml")
    bad["fairness"]["protected"][0]["source"] = {"table": "people", "key": "client_id", "column": "sex"}
    with pytest.raises(ConfigError, match=r"fairness.protected 'sex': unknown table 'people'"):
        parse_project(bad, REPO_ROOT / "configs/berka.yaml")


@pytest.mark.skipif(not os.environ.get("NEXTBEST_BERKA_DIR"), reason="NEXTBEST_BERKA_DIR not set")
def test_berka_declares_sex_from_birth_number_and_the_check_reads_it() -> None:
    from nextbest.fairness import protected_values

    project = load_project(REPO_ROOT / "configs/berka.yaml")
    assert [p.name for p in project.fairness.protected] == ["sex"]
    values = protected_values(project.fairness, project)
    counts = values["sex"].value_counts()
    assert set(counts.index) == {"female", "male"} and counts.sum() == 4_500  # one owner per account
    assert 0.4 < counts["female"] / counts.sum() < 0.6
    from nextbest.onboarding.config import feature_names_of

    inputs = {f for v in project.tables.feature_views for f in feature_names_of(v)}
    assert "owner_female" not in inputs and "owner_age" in inputs
    # the check groups decisions by it: every owner's account, with an offer for the men only, flags the women
    keys = values.index[:400]
    decisions = pd.DataFrame({"customer_id": keys, "age": 40})
    men = [k for k in keys if values.loc[k, "sex"] == "male"]
    offers = pd.DataFrame({"customer_id": men, "action_id": "offer_loan"})
    report = decision_set_report(decisions, offers, project.decisions()[1], project.fairness, values)
    assert report.ratio("sex", "female") == 0.0 and report.ratio("sex", "male") == 1.0
    assert report.ratio(AGE, "35-49", OFFER_RATE) == 1.0  # one band: its own reference


def test_the_evaluation_checks_every_ladder_stage(tmp_path: Path) -> None:
    """`nextbest evaluate`'s per-stage table: decision points as units, a stage that never shows credit to the 65+
    is flagged, one that shows it to everyone alike is not."""
    from training.evaluate import stage_fairness

    ids = [f"d{i}" for i in range(360)]
    ages = [20 + i % 60 for i in range(360)]  # six rounds of the ages 20-79; credit in every other round
    decisions = pd.DataFrame({"decision_id": ids, "customer_id": range(360), "age": ages})
    alike = pd.Series(["credit_card" if (i // 60) % 2 else "savings_account" for i in range(360)], index=ids)
    no_old = alike.where([a < 65 for a in ages], None)
    table = stage_fairness(Settings(home=tmp_path), decisions, {"alike": alike, "no 65+": no_old}, _catalogue())
    rows = table.set_index("stage")
    assert rows.loc["alike", "flagged"] == 0 and rows.loc["alike", "min_ratio"] > 0.8
    assert rows.loc["no 65+", "flagged"] == 1 and rows.loc["no 65+", "min_ratio"] == 0.0
    assert "age_band 65+: ratio 0.00" in rows.loc["no 65+", "flags"]
    assert rows.loc["alike", "credit_offer_rate"] == pytest.approx(0.5)
