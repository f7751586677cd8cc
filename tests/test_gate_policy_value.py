"""The promotion gate judges a model that scores actions on what decides value: its greedy policy's value on the
holdout's logged decisions (doubly robust, paired with the champion's), pooled AUC only guarding it.

A synthetic bandit whose truth is known: every logged decision showed an action drawn uniformly among those the
catalogue allows on its channel (the exact propensity logged), and who accepts what depends on two customer features
crossed with the action. A model trained on labels shuffled within each action knows the actions' base rates only
(a fair pooled AUC, no idea who needs what); a model trained on the real labels knows who needs what. Real XGBoost
fits, real MLflow on SQLite in a temp dir."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from nextbest.settings import Settings
from tests.training_fixtures import quiet_mlflow  # noqa: F401  (autouse fixture)
from training.datasets import LABEL, TIMESTAMP, TrainingSet

NAME = "bandit_nba"
ROWS, DAYS = 20_000, 90


def true_acceptance(x: np.ndarray, action_index: np.ndarray, value: np.ndarray) -> np.ndarray:
    """The world's acceptance probability of (customer features, action): the dearer the action the rarer its
    acceptance, and each action has its own direction in the customers' two features."""
    sign = np.where(action_index % 2 == 0, 1.0, -1.0)
    tilt = np.where(action_index % 3 == 0, 1.0, -1.0)
    logit = -1.6 - 0.6 * np.log(value / 100) + 2.2 * sign * x[:, 0] + 1.2 * tilt * x[:, 1]
    return 1 / (1 + np.exp(-logit))


def bandit_set(seed: int, shuffle_within_action: bool) -> tuple[TrainingSet, pd.DataFrame]:
    """(the training set, the same rows' true acceptance of every action): logged decisions of a uniform logging
    policy; labels drawn from `true_acceptance`, optionally shuffled within each action (the base rates kept)."""
    from feature_repo.actions import ACTION_FEATURES, add_action_features
    from nextbest.catalogue import load_catalogue

    catalogue = load_catalogue()
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(ROWS, 2))
    channels = np.array(["app", "web", "email", "call_centre"])
    channel = channels[rng.integers(0, len(channels), size=ROWS)]
    allowed = np.array([[ch in a.channels for a in catalogue.actions] for ch in channels])
    per_row = allowed[[list(channels).index(c) for c in channel]]
    n_allowed = per_row.sum(axis=1)
    pick = (rng.random(ROWS) * n_allowed).astype(int)
    action = np.array([np.flatnonzero(row)[k] for row, k in zip(per_row, pick, strict=True)])
    values = np.array([a.value for a in catalogue.actions])
    every = np.column_stack([true_acceptance(x, np.full(ROWS, j), values[j]) for j in range(len(values))])
    label = (rng.random(ROWS) < every[np.arange(ROWS), action]).astype(np.int8)
    if shuffle_within_action:
        for j in np.unique(action):
            rows = np.flatnonzero(action == j)
            label[rows] = rng.permutation(label[rows])
    day = np.sort(rng.integers(0, DAYS, size=ROWS))
    frame = pd.DataFrame({"x0": x[:, 0].astype(np.float32), "x1": x[:, 1].astype(np.float32)})
    frame.insert(0, TIMESTAMP, pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(day, unit="D"))
    frame["action_id"] = [catalogue.actions[j].id for j in action]
    frame["channel"] = channel
    frame["logging_propensity"] = 1.0 / n_allowed
    frame[LABEL] = label
    frame = add_action_features(frame, catalogue)
    features = ["x0", "x1", *ACTION_FEATURES]
    training_set = TrainingSet(model=NAME, frame=frame, feature_names=features, lineage={"world_seed": seed})
    return training_set, pd.DataFrame(every, columns=list(catalogue.action_ids))


def _fit(settings: Settings, training_set: TrainingSet, seed: int):
    from training.pipeline import FitOptions, fit_and_log
    from training.tune import TuningConfig

    config = TuningConfig(max_rounds=300, early_stopping_rounds=20)
    return fit_and_log(settings, training_set, FitOptions(trials=5, registered_name=NAME, config=config, seed=seed))


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """v1: base rates only (the first version, promoted on the floor); v2: who needs what (must beat v1 on value);
    v3: half of who needs what (must lose to the v2 champion on value, on the same real rows)."""
    settings = Settings(home=tmp_path_factory.mktemp("value-gate"))
    shuffled, _ = bandit_set(seed=3, shuffle_within_action=True)
    real, truth = bandit_set(seed=3, shuffle_within_action=False)
    v1 = _fit(settings, shuffled, seed=1)
    v2 = _fit(settings, real, seed=2)
    # v3 learns from the same real rows but sees only one of the two customer features: half of who needs what
    half = TrainingSet(model=NAME, frame=real.frame, feature_names=real.feature_names[1:], lineage=real.lineage)
    v3 = _fit(settings, half, seed=5)
    return {"settings": settings, "v1": v1, "v2": v2, "v3": v3, "real": real, "truth": truth}


def test_a_model_that_knows_who_needs_what_beats_base_rates_on_policy_value(gated: dict) -> None:
    v1, v2 = gated["v1"], gated["v2"]
    assert v1.promoted and v1.decision.policy_value == {}  # the first version: no champion to value against
    assert v2.promoted, v2.decision.reason
    value = v2.decision.policy_value
    assert value["difference_eur"] > 0 and value["z"] >= 2, value  # 2.8 here: 4,000 decisions, ESS ~ 300
    assert value["challenger_eur"] > value["champion_eur"]
    assert v2.decision.reason.startswith("better policy value:")
    assert 0 < value["agreement"] < 1 and value["rows"] > 1_000


def test_a_model_that_knows_less_is_refused_against_the_champion(gated: dict) -> None:
    from training.registry import CHAMPION, alias_version, read_promotion_log

    v3, settings = gated["v3"], gated["settings"]
    assert not v3.promoted, v3.decision.reason
    assert "policy value" in v3.decision.reason and v3.decision.policy_value["difference_eur"] < 0
    assert alias_version(settings, NAME, CHAMPION) == gated["v2"].version
    log = read_promotion_log(settings, NAME)
    assert [r["promoted"] for r in log] == [True, True, False]
    assert log[-1]["policy_value"]["z"] < -2  # the record carries the comparison (z -3.4 here)


def test_doubly_robust_values_are_near_the_truth_of_each_greedy_policy(gated: dict) -> None:
    """The DR estimates of both greedy policies on the holdout are within 3 SE of their true value (known here), and
    the paired difference is within 3 SE of the true difference."""
    from nextbest.catalogue import load_catalogue
    from nextbest.models.artefact import load_model
    from training.policy_value import (
        _logged,
        candidate_scores,
        compare_greedy_policies,
        greedy_actions,
    )

    settings, real, truth = gated["settings"], gated["real"], gated["truth"]
    catalogue = load_catalogue()
    holdout = real.frame[real.frame[TIMESTAMP] >= real.frame[TIMESTAMP].quantile(0.8)]
    true_p = truth.loc[holdout.index].to_numpy()
    good = load_model(NAME, settings=settings, version=gated["v2"].version)
    base = load_model(NAME, settings=settings, version=gated["v1"].version)
    comparison = compare_greedy_policies(good, base, holdout, catalogue)
    logs = _logged(holdout, catalogue)
    rows = np.arange(len(holdout))
    true_value = {}
    for name, model in (("good", good), ("base", base)):
        chosen = greedy_actions(candidate_scores(model, holdout, catalogue), logs.mask, logs.values)
        true_value[name] = float(np.mean(true_p[rows, chosen] * logs.values[chosen] - logs.cost))
    true_difference = true_value["good"] - true_value["base"]
    assert true_difference > 0  # the world agrees: knowing who needs what earns more
    assert abs(comparison.difference_eur - true_difference) < 3 * comparison.difference_se
    # each arm's own SE is at most the paired one plus the shared part; 3 x the paired SE x 2 bounds it loosely
    assert abs(comparison.challenger_eur - true_value["good"]) < 6 * comparison.difference_se + 0.5
    assert abs(comparison.champion_eur - true_value["base"]) < 6 * comparison.difference_se + 0.5


def test_the_value_gate_refuses_what_the_auc_gate_would_promote() -> None:
    """Pooled AUC up, policy value down: the AUC rule promotes it, the value gate does not; and the AUC guard
    refuses a value gain bought with a collapsed ranking."""
    from training.policy_value import PolicyComparison
    from training.registry import GateRule, _value_verdict, _verdict

    rule = GateRule()
    challenger = {"roc_auc": 0.83, "log_loss": 0.200}
    champion = {"roc_auc": 0.80, "log_loss": 0.201}
    worse = PolicyComparison(
        challenger_eur=4.1, champion_eur=5.0, difference_eur=-0.9, difference_se=0.2, difference_ips_eur=-1.0,
        difference_ips_se=0.3, challenger_ess=300.0, champion_ess=320.0, agreement=0.4, logging_eur=2.0, rows=5_000,
    )  # fmt: skip
    assert _verdict(challenger, champion, rule)[0]
    promoted, reason = _value_verdict(challenger, champion, worse, rule)
    assert not promoted and reason.startswith("not better on policy value")
    better = replace(worse, difference_eur=0.9)
    assert _value_verdict(challenger, champion, better, rule)[0]
    collapsed = {"roc_auc": 0.70, "log_loss": 0.200}
    promoted, reason = _value_verdict(collapsed, champion, better, rule)
    assert not promoted and reason.startswith("pooled AUC guard")
    noisy = replace(better, difference_se=1.2)  # a gain within noise: 0.75 SE < 1.0
    level = {"roc_auc": 0.801, "log_loss": 0.200}
    promoted, reason = _value_verdict(level, champion, noisy, rule)
    assert not promoted and "z 0.8" in reason  # ... and no better AUC: refused
    promoted, reason = _value_verdict(challenger, champion, noisy, rule)
    assert promoted and reason.startswith("policy value within noise, not lower")  # AUC breaks the tie
    slightly_worse = replace(noisy, difference_eur=-0.3)
    assert not _value_verdict(challenger, champion, slightly_worse, rule)[0]  # a lower value never passes


def test_the_log_loss_guard_of_the_value_gate_refuses_a_clear_loss_not_noise() -> None:
    """A log-loss rise within 1.96 paired SEs on the holdout is noise; beyond it the guard refuses."""
    from training.policy_value import PolicyComparison
    from training.registry import GateRule, _value_verdict

    champion = {"roc_auc": 0.80, "log_loss": 0.1240}
    challenger = {"roc_auc": 0.80, "log_loss": 0.1288}  # +0.0048, more than the fixed 0.002
    gain = PolicyComparison(
        challenger_eur=5.9, champion_eur=5.0, difference_eur=0.9, difference_se=0.2, difference_ips_eur=1.0,
        difference_ips_se=0.3, challenger_ess=300.0, champion_ess=320.0, agreement=0.8, logging_eur=2.0, rows=1_000,
    )  # fmt: skip
    noisy = replace(gain, logloss_difference_se=0.004)  # 1.96 x 0.004 = 0.0078 > 0.0048
    assert _value_verdict(challenger, champion, noisy, GateRule())[0]
    precise = replace(gain, logloss_difference_se=0.001)  # tolerance 0.002: a clear loss
    promoted, reason = _value_verdict(challenger, champion, precise, GateRule())
    assert not promoted and reason.startswith("worse probabilities") and "at most 0.0020" in reason
