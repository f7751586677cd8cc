"""Off-policy estimators on synthetic logged bandit data whose true policy value is known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from training.ope import OPEInputError, doubly_robust, estimate_all, ips, snips

N_ACTIONS = 6
VALUES = np.array([30.0, 45.0, 60.0, 120.0, 180.0, 350.0])


def _bandit(seed: int, n: int = 20_000, model_noise: float = 0.15) -> dict[str, np.ndarray | float]:
    """Contexts, a stochastic logging policy with known propensities, and a deterministic target policy.

    The true value of the target policy is the exact expectation over the same contexts, so estimators are judged
    against the number they should recover, not against another estimate.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    coef = np.array([[0.8, -0.5, 0.2], [-0.3, 0.9, 0.1], [0.2, 0.2, 0.9], [0.6, 0.4, -0.7], [-0.9, 0.1, 0.5]])
    coef = np.vstack([coef, [0.1, -0.8, 0.6]])
    logits = x @ coef.T - np.array([0.5, 0.8, 1.0, 1.2, 1.6, 2.2])
    p_true = 1 / (1 + np.exp(-logits))  # (n, K) true acceptance probabilities

    # Logging policy: epsilon-greedy over a crude rule (action with highest x-loading), epsilon = 0.3.
    rule = np.argmax(x[:, :1] * coef[:, 0], axis=1)
    eps = 0.3
    probs = np.full((n, N_ACTIONS), eps / N_ACTIONS)
    probs[np.arange(n), rule] += 1 - eps
    logged = _vector_choice(rng, probs)
    p_log = probs[np.arange(n), logged]
    accepted = rng.random(n) < p_true[np.arange(n), logged]
    rewards = accepted * VALUES[logged]

    # Target policy: argmax of true expected value (the oracle) - deterministic.
    target = np.argmax(p_true * VALUES, axis=1)
    target_prop = (target == logged).astype(float)
    true_value = float(np.mean((p_true * VALUES)[np.arange(n), target]))

    # A reward model: the truth blurred by multiplicative noise (a decent, imperfect model).
    q = p_true * VALUES * np.exp(rng.normal(0, model_noise, size=p_true.shape))
    return {
        "rewards": rewards,
        "p_log": p_log,
        "target_prop": target_prop,
        "q_logged": q[np.arange(n), logged],
        "q_target": q[np.arange(n), target],
        "true_value": true_value,
    }


def _vector_choice(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    cum = np.cumsum(probs, axis=1)
    u = rng.random(len(probs))[:, None]
    return (u > cum).sum(axis=1)


@pytest.mark.parametrize("estimator", ["ips", "snips", "dr"])
def test_estimators_recover_the_known_true_policy_value(estimator: str) -> None:
    d = _bandit(seed=1)
    est = estimate_all(d["rewards"], d["p_log"], d["target_prop"], d["q_logged"], d["q_target"])[estimator]
    true_value = d["true_value"]
    assert est.n == 20_000
    # Within 4 standard errors and within 12% of the truth.
    assert abs(est.value - true_value) < 4 * est.std_error + 1e-9, (est, true_value)
    assert abs(est.value - true_value) / true_value < 0.12, (est, true_value)


def test_doubly_robust_has_lower_variance_than_ips_across_replications() -> None:
    ips_values, dr_values, truths = [], [], []
    for seed in range(40):
        d = _bandit(seed=100 + seed, n=4_000)
        est_ips = ips(d["rewards"], d["p_log"], d["target_prop"])
        est_dr = doubly_robust(d["rewards"], d["p_log"], d["target_prop"], d["q_logged"], d["q_target"])
        # Per data set, the estimated standard error of DR is below that of IPS ...
        assert est_dr.std_error < est_ips.std_error
        ips_values.append(est_ips.value)
        dr_values.append(est_dr.value)
        truths.append(d["true_value"])
    # ... and across replications the actual spread of its errors around the truth is smaller.
    ips_err = np.array(ips_values) - np.array(truths)
    dr_err = np.array(dr_values) - np.array(truths)
    assert np.var(dr_err) < 0.85 * np.var(ips_err), (np.var(dr_err), np.var(ips_err))
    # Both are unbiased: the mean error is small relative to the value.
    assert abs(dr_err.mean()) / np.mean(truths) < 0.05


def test_doubly_robust_with_a_biased_reward_model_stays_unbiased_through_the_correction() -> None:
    d = _bandit(seed=3)
    biased = doubly_robust(d["rewards"], d["p_log"], d["target_prop"], d["q_logged"] * 2.0, d["q_target"] * 2.0)
    direct_method = float(np.mean(d["q_target"] * 2.0))
    assert abs(direct_method - d["true_value"]) / d["true_value"] > 0.5  # the model alone is far off
    assert abs(biased.value - d["true_value"]) / d["true_value"] < 0.15


def test_logging_policy_evaluates_to_its_own_mean_reward() -> None:
    rng = np.random.default_rng(0)
    n = 1_000
    rewards = rng.random(n) * (rng.random(n) < 0.1)
    p = rng.uniform(0.1, 1.0, n)
    est_ips = ips(rewards, p, p)  # target == logging policy: weights are 1
    est_snips = snips(rewards, p, p)
    assert est_ips.value == pytest.approx(rewards.mean())
    assert est_snips.value == pytest.approx(rewards.mean())
    assert est_ips.effective_sample_size == pytest.approx(n)


def test_snips_is_undefined_when_the_target_never_matches_the_logs() -> None:
    est = snips([1.0, 0.0], [0.5, 0.5], [0.0, 0.0])
    assert np.isnan(est.value)
    assert est.effective_sample_size == 0.0


@pytest.mark.parametrize(
    ("rewards", "p", "pi", "message"),
    [
        ([1.0, 0.0], [0.5], [1.0, 0.0], "length mismatch"),
        ([1.0], [0.0], [1.0], r"\(0, 1\]"),
        ([1.0], [1.5], [1.0], r"\(0, 1\]"),
        ([float("nan")], [0.5], [1.0], "NaN"),
        ([], [], [], "no logged decisions"),
        ([1.0], [0.5], [2.0], r"\[0, 1\]"),
    ],
)
def test_bad_logged_inputs_raise_a_specific_error(rewards: list, p: list, pi: list, message: str) -> None:
    with pytest.raises(OPEInputError, match=message):
        ips(rewards, p, pi)


def test_confidence_interval_is_symmetric_around_the_estimate() -> None:
    d = _bandit(seed=5, n=2_000)
    est = ips(d["rewards"], d["p_log"], d["target_prop"])
    lo, hi = est.ci95()
    assert lo < est.value < hi
    assert est.value - lo == pytest.approx(hi - est.value)
