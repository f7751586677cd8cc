"""The ladder's policies and scoring on tiny hand-made frames (pure functions, no world needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nextbest.errors import DataError
from training.ladder import (
    Policy,
    RankedListPolicy,
    ScorePolicy,
    acceptance_value_table,
    age_band,
    credited_value,
    fit_one_offer,
    fit_segment_rules,
    ladder_table,
    oracle_policy,
    paired_difference,
    pick_best,
    run_ladder,
    score_choices,
)

VALUES = {"a": 100.0, "b": 50.0, "c": 10.0}


def _candidates() -> pd.DataFrame:
    # Decision 1: a and b eligible; decision 2: b and c; decision 3: only c.
    return pd.DataFrame(
        {
            "decision_id": [1, 1, 2, 2, 3],
            "action_id": ["a", "b", "b", "c", "c"],
            "value": [100.0, 50.0, 50.0, 10.0, 10.0],
            "p_true": [0.01, 0.10, 0.02, 0.50, 0.20],
            "segment": ["mass", "mass", "affluent", "affluent", "mass"],
            "age_band": ["25-34"] * 5,
        }
    )


def test_oracle_picks_highest_true_expected_value_per_decision() -> None:
    chosen = oracle_policy().choose(_candidates())
    assert chosen.to_dict() == {1: "b", 2: "c", 3: "c"}


def test_score_choices_gives_expected_conversions_and_value_per_1000() -> None:
    cands = _candidates()
    chosen = pd.Series({1: "b", 2: "c", 3: None})
    result = score_choices(cands, chosen, "x")
    assert result.decisions == 3
    assert result.conversions_per_1000 == pytest.approx(1000 * (0.10 + 0.50) / 3)
    assert result.value_per_1000 == pytest.approx(1000 * (0.10 * 50 + 0.50 * 10) / 3)
    assert result.offers_per_1000 == pytest.approx(2000 / 3)


def test_choosing_an_ineligible_action_is_an_error_not_a_zero() -> None:
    with pytest.raises(DataError, match="not eligible"):
        score_choices(_candidates(), pd.Series({1: "c"}), "buggy")


def test_ranked_list_falls_back_to_the_next_eligible_action() -> None:
    policy = RankedListPolicy(name="one", default=("a", "b", "c"))
    assert policy.choose(_candidates()).to_dict() == {1: "a", 2: "b", 3: "c"}


def test_ranked_list_shows_nothing_when_no_listed_action_is_eligible() -> None:
    policy = RankedListPolicy(name="one", default=("a", "b"))
    assert policy.choose(_candidates()).to_dict() == {1: "a", 2: "b", 3: None}


def test_group_rankings_apply_per_segment_with_default_for_unknown_groups() -> None:
    policy = RankedListPolicy(
        name="seg",
        default=("a", "b", "c"),
        group_by=("segment", "age_band"),
        rankings={("affluent", "25-34"): ("c", "b")},
    )
    assert policy.choose(_candidates()).to_dict() == {1: "a", 2: "c", 3: "c"}


def test_score_policy_threshold_turns_weak_best_offers_into_nothing() -> None:
    cands = _candidates()
    policy = ScorePolicy("t", priority=lambda c: (c["p_true"] * c["value"]).to_numpy(), threshold=4.0)
    assert policy.choose(cands).to_dict() == {1: "b", 2: "c", 3: None}
    assert isinstance(policy, Policy)


def test_pick_best_breaks_ties_by_candidate_order_and_rejects_wrong_shapes() -> None:
    cands = _candidates()
    assert pick_best(cands, np.ones(len(cands))).to_dict() == {1: "a", 2: "b", 3: "c"}
    with pytest.raises(DataError, match="shape"):
        pick_best(cands, np.ones(2))


def test_acceptance_table_shrinks_small_groups_toward_the_action_rate() -> None:
    contacts = pd.DataFrame(
        {
            "action_id": ["a"] * 100 + ["b"] * 100 + ["b"],
            "accepted": [True] * 5 + [False] * 95 + [True] * 20 + [False] * 80 + [True],
            "segment": ["mass"] * 200 + ["affluent"],
        }
    )
    table = acceptance_value_table(contacts, VALUES, group_by=["segment"])
    lucky = table[(table["segment"] == "affluent") & (table["action_id"] == "b")].iloc[0]
    # One accepted contact out of one: the raw rate is 100%, the shrunk rate stays near b's overall 21%.
    assert 0.2 < lucky["rate"] < 0.3
    overall = acceptance_value_table(contacts, VALUES)
    assert list(overall["action_id"]) == ["b", "a"]  # 0.21 x 50 > 0.05 x 100


def test_fitted_rule_policies_rank_by_acceptance_times_value() -> None:
    rng = np.random.default_rng(0)
    n = 3000
    segment = rng.choice(["mass", "affluent"], n)
    action = rng.choice(["a", "b", "c"], n)
    # Affluent customers love a; mass customers love c (which is cheap) and b moderately.
    rate = np.where(
        segment == "affluent", np.select([action == "a"], [0.3], 0.02), np.select([action == "b"], [0.2], 0.05)
    )
    contacts = pd.DataFrame(
        {"action_id": action, "accepted": rng.random(n) < rate, "segment": segment, "age_band": "25-34"}
    )
    one = fit_one_offer(contacts, VALUES)
    assert one.default[0] == "a"
    rules = fit_segment_rules(contacts, VALUES)
    assert rules.rankings[("affluent", "25-34")][0] == "a"
    assert rules.rankings[("mass", "25-34")][0] == "b"


def test_run_ladder_reports_share_of_oracle_and_the_oracle_is_the_ceiling() -> None:
    cands = _candidates()
    table = run_ladder(cands, [RankedListPolicy(name="one", default=("a", "b", "c"))])
    assert list(table["stage"]) == ["one", "oracle (knows the truth)"]
    assert table["share_of_oracle_value"].iloc[-1] == pytest.approx(1.0)
    assert (table["value_per_1000"] <= table["value_per_1000"].iloc[-1] + 1e-9).all()


def test_age_band_labels() -> None:
    assert list(age_band(np.array([18, 25, 49, 64, 90]))) == ["<25", "25-34", "35-49", "50-64", "65+"]


def test_missing_columns_are_named_in_the_error() -> None:
    with pytest.raises(DataError, match="p_true"):
        score_choices(_candidates().drop(columns="p_true"), pd.Series({1: "a"}), "x")


def test_random_choice_is_the_exact_mean_over_eligible_candidates() -> None:
    from training.ladder import score_random_choice

    result = score_random_choice(_candidates())
    # decision 1: (1 + 5)/2, decision 2: (1 + 5)/2, decision 3: 2 -> mean 8/3 per decision
    assert result.value_per_1000 == pytest.approx(1000 * (3 + 3 + 2) / 3)
    assert result.conversions_per_1000 == pytest.approx(1000 * ((0.01 + 0.10) / 2 + (0.02 + 0.50) / 2 + 0.20) / 3)


def test_retention_is_credited_with_the_churn_loss_it_prevents_for_every_stage_and_the_oracle() -> None:
    # Decision 1: a sale (value 100, p 0.10) vs a retention offer (value 20, p 0.30) that prevents 0.5 x 300 EUR.
    cands = pd.DataFrame(
        {
            "decision_id": [1, 1],
            "action_id": ["sale", "keep"],
            "value": [100.0, 20.0],
            "p_true": [0.10, 0.30],
            "churn_value": [0.0, 0.5 * 300.0],
        }
    )
    np.testing.assert_allclose(credited_value(cands), [100.0, 170.0])
    # Without the churn credit the oracle would pick the sale (10 > 6); with it the retention offer (51 > 10).
    assert oracle_policy().choose(cands.drop(columns="churn_value")).to_dict() == {1: "sale"}
    assert oracle_policy().choose(cands).to_dict() == {1: "keep"}
    table = run_ladder(cands, [RankedListPolicy(name="sale first", default=("sale", "keep"))])
    assert table["value_per_1000"].tolist() == pytest.approx([1000 * 0.10 * 100.0, 1000 * 0.30 * 170.0])
    with pytest.raises(DataError, match="churn_value"):
        credited_value(cands.assign(churn_value=[0.0, -1.0]))


def test_paired_difference_is_the_mean_per_decision_gap_with_its_standard_error() -> None:
    cands = _candidates()
    choices = {"x": pd.Series({1: "b", 2: "c", 3: "c"}), "y": pd.Series({1: "a", 2: "b", 3: None})}
    per_x = np.array([0.10 * 50, 0.50 * 10, 0.20 * 10])
    per_y = np.array([0.01 * 100, 0.02 * 50, 0.0])
    diff = paired_difference(cands, choices, "x", "y")
    assert diff.diff_per_1000 == pytest.approx(1000 * (per_x - per_y).mean())
    assert diff.std_error_per_1000 == pytest.approx(1000 * (per_x - per_y).std(ddof=1) / np.sqrt(3))
    # the same difference as the two stages' ladder values
    table = ladder_table(cands, {**choices, "oracle": oracle_policy().choose(cands)}).set_index("stage")
    assert diff.diff_per_1000 == pytest.approx(table.loc["x", "value_per_1000"] - table.loc["y", "value_per_1000"])


def _incremental_candidates() -> pd.DataFrame:
    # Decision 1 (email, cost 0.5): a sale the customer would mostly buy anyway vs a retention offer.
    # Decision 2 (call centre, cost 7.25): one candidate worth less than the call.
    # Decision 3 (app, free): one candidate with no organic path.
    return pd.DataFrame(
        {
            "decision_id": [1, 1, 2, 3],
            "action_id": ["mortgage", "keep", "card", "card"],
            "value": [1000.0, 50.0, 100.0, 100.0],
            "p_true": [0.10, 0.20, 0.05, 0.05],
            "p_organic": [0.90, 0.0, 0.0, 0.0],
            "churn_value": [0.0, 25.0, 0.0, 0.0],
            "contact_cost": [0.5, 0.5, 7.25, 0.0],
        }
    )


def test_credited_value_removes_the_organic_share_and_expected_value_subtracts_the_contact_cost() -> None:
    from training.ladder import expected_value

    cands = _incremental_candidates()
    # mortgage: 1000 x (1 - 0.9) = 100 per acceptance; retention: 50 + 25 churn, no organic path
    np.testing.assert_allclose(credited_value(cands), [100.0, 75.0, 100.0, 100.0])
    np.testing.assert_allclose(expected_value(cands), [0.10 * 100 - 0.5, 0.20 * 75 - 0.5, 5.0 - 7.25, 5.0])
    # without the organic share the mortgage would look like 100 EUR per decision, and win
    gross = cands.drop(columns=["p_organic", "contact_cost"])
    assert oracle_policy().choose(gross).to_dict()[1] == "mortgage"
    assert oracle_policy().choose(cands).to_dict()[1] == "keep"
    with pytest.raises(DataError, match="p_organic"):
        credited_value(cands.assign(p_organic=[1.2, 0.0, 0.0, 0.0]))
    with pytest.raises(DataError, match="contact_cost"):
        expected_value(cands.assign(contact_cost=[-1.0, 0.0, 0.0, 0.0]))


def test_nothing_shown_costs_nothing_and_the_oracle_abstains_when_a_contact_is_worth_less_than_its_cost() -> None:
    cands = _incremental_candidates()
    chosen = oracle_policy().choose(cands)
    # decision 2: 0.05 x 100 = 5 EUR expected from a 7.25 EUR call -> the oracle shows nothing
    assert chosen.to_dict() == {1: "keep", 2: None, 3: "card"}
    oracle = score_choices(cands, chosen, "oracle")
    assert oracle.value_per_1000 == pytest.approx(1000 * (0.20 * 75 - 0.5 + 5.0) / 3)
    assert oracle.contact_cost_per_1000 == pytest.approx(1000 * 0.5 / 3)
    assert oracle.offers_per_1000 == pytest.approx(2000 / 3)
    # a policy that always calls pays the call and loses money on decision 2; nothing shown anywhere is worth 0
    spam = score_choices(cands, pd.Series({1: "mortgage", 2: "card", 3: "card"}), "spam")
    assert spam.value_per_1000 == pytest.approx(1000 * (0.10 * 100 - 0.5 + 5.0 - 7.25 + 5.0) / 3)
    assert spam.contact_cost_per_1000 == pytest.approx(1000 * (0.5 + 7.25) / 3)
    # 0.10 acceptances of the mortgage, only 0.01 of them incremental
    assert spam.conversions_per_1000 == pytest.approx(1000 * (0.10 + 0.05 + 0.05) / 3)
    assert spam.incremental_conversions_per_1000 == pytest.approx(1000 * (0.01 + 0.05 + 0.05) / 3)
    silent = score_choices(cands, pd.Series({1: None, 2: None, 3: None}), "nothing")
    assert (silent.value_per_1000, silent.contact_cost_per_1000, silent.offers_per_1000) == (0.0, 0.0, 0.0)
    table = run_ladder(cands, [RankedListPolicy(name="mortgage first", default=("mortgage", "card", "keep"))])
    assert table["value_per_1000"].iloc[0] == pytest.approx(spam.value_per_1000)
    assert table["value_per_1000"].iloc[0] < table["value_per_1000"].iloc[-1]
    # the paired difference sees the same per-decision values (0 where nothing is shown)
    diff = paired_difference(cands, {"o": chosen, "n": pd.Series({1: None, 2: None, 3: None})}, "o", "n")
    assert diff.diff_per_1000 == pytest.approx(oracle.value_per_1000)


def test_random_offer_pays_the_contact_cost_of_every_decision() -> None:
    from training.ladder import score_random_choice

    result = score_random_choice(_incremental_candidates())
    per_decision = [((0.10 * 100 - 0.5) + (0.20 * 75 - 0.5)) / 2, 5.0 - 7.25, 5.0]
    assert result.value_per_1000 == pytest.approx(1000 * np.mean(per_decision))
    assert result.contact_cost_per_1000 == pytest.approx(1000 * (0.5 + 7.25 + 0.0) / 3)
