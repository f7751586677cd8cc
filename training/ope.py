"""Off-policy estimators: the value of a new policy from logged decisions alone (IPS, self-normalised IPS, DR).

The simulator's logging policy records the probability with which it chose each logged action
(`contacts.logging_propensity`), so the value of any other policy can be estimated from the logs without
deploying it. These estimators are pure numpy functions over aligned arrays (one entry per logged decision) so
they can be tested on synthetic bandit data with a known true value, and reused by the evaluation ladder (which
sets them beside the simulator's truth) and by training (policy value of a candidate model).

Notation, per logged decision i: reward r_i (e.g. value if accepted, else 0), logging propensity p_i of the logged
action, target propensity pi_i = probability that the evaluated policy takes the logged action in the same context
(0/1 for a deterministic policy), and for doubly robust a reward model: q_logged_i = predicted reward of the logged
action and q_target_i = predicted reward of the target policy in that context (sum_a pi(a|x_i) q(x_i, a)).
Each estimator returns the estimate with its standard error (from the per-decision terms, i.i.d. assumption) and
the effective sample size of the importance weights, the figure that says how far the estimate can be trusted.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike

from nextbest.errors import DataError

logger = logging.getLogger(__name__)

__all__ = ["OPEEstimate", "OPEInputError", "doubly_robust", "estimate_all", "ips", "snips"]


class OPEInputError(DataError, ValueError):
    """The logged arrays are inconsistent (lengths, propensities outside (0, 1], NaNs)."""


@dataclass(frozen=True)
class OPEEstimate:
    """One off-policy estimate of a policy's mean reward per decision."""

    estimator: str
    value: float
    std_error: float
    n: int
    effective_sample_size: float
    max_weight: float

    def ci95(self) -> tuple[float, float]:
        """Normal-approximation 95% confidence interval."""
        return self.value - 1.96 * self.std_error, self.value + 1.96 * self.std_error

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def _validate(
    rewards: ArrayLike, logging_propensity: ArrayLike, target_propensity: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = np.asarray(rewards, dtype=float)
    p = np.asarray(logging_propensity, dtype=float)
    pi = np.asarray(target_propensity, dtype=float)
    if not (r.ndim == p.ndim == pi.ndim == 1):
        raise OPEInputError("rewards, logging_propensity and target_propensity must be 1-D arrays")
    if not (len(r) == len(p) == len(pi)):
        raise OPEInputError(f"length mismatch: rewards {len(r)}, logging_propensity {len(p)}, target {len(pi)}")
    if len(r) == 0:
        raise OPEInputError("no logged decisions to estimate from")
    if np.isnan(r).any() or np.isnan(p).any() or np.isnan(pi).any():
        raise OPEInputError("NaN in logged rewards or propensities")
    if (p <= 0).any() or (p > 1).any():
        bad = p[(p <= 0) | (p > 1)][:3]
        raise OPEInputError(f"logging propensities must lie in (0, 1]; got e.g. {bad.tolist()}")
    if (pi < 0).any() or (pi > 1).any():
        raise OPEInputError("target propensities must lie in [0, 1]")
    return r, p, pi


def _ess(w: np.ndarray) -> float:
    s2 = float(np.sum(w**2))
    return float(np.sum(w) ** 2 / s2) if s2 > 0 else 0.0


def _mean_estimate(name: str, terms: np.ndarray, w: np.ndarray) -> OPEEstimate:
    n = len(terms)
    se = float(np.std(terms, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return OPEEstimate(name, float(np.mean(terms)), se, n, _ess(w), float(np.max(w)) if n else 0.0)


def ips(rewards: ArrayLike, logging_propensity: ArrayLike, target_propensity: ArrayLike) -> OPEEstimate:
    """Inverse propensity scoring: mean of (pi/p) * r. Unbiased when p > 0 wherever pi > 0; high variance."""
    r, p, pi = _validate(rewards, logging_propensity, target_propensity)
    w = pi / p
    return _mean_estimate("ips", w * r, w)


def snips(rewards: ArrayLike, logging_propensity: ArrayLike, target_propensity: ArrayLike) -> OPEEstimate:
    """Self-normalised IPS: sum(w r) / sum(w). Slightly biased, much lower variance than IPS with large weights.

    The standard error is the delta-method one of the ratio estimator.
    """
    r, p, pi = _validate(rewards, logging_propensity, target_propensity)
    w = pi / p
    sw = float(np.sum(w))
    n = len(r)
    if sw == 0:
        # The target policy never agrees with the logged action: the logs say nothing about it.
        logger.warning("SNIPS: the target policy takes none of the logged actions; estimate undefined")
        return OPEEstimate("snips", float("nan"), float("nan"), n, 0.0, 0.0)
    value = float(np.sum(w * r) / sw)
    # Delta method: Var ~ sum(w^2 (r - v)^2) / sum(w)^2.
    se = float(np.sqrt(np.sum(w**2 * (r - value) ** 2)) / sw)
    return OPEEstimate("snips", value, se, n, _ess(w), float(np.max(w)))


def doubly_robust(
    rewards: ArrayLike,
    logging_propensity: ArrayLike,
    target_propensity: ArrayLike,
    q_logged: ArrayLike,
    q_target: ArrayLike,
) -> OPEEstimate:
    """Doubly robust: the reward model's value of the target policy, corrected by importance-weighted residuals.

    Unbiased if either the propensities or the reward model are right; its variance is lower than IPS when the
    reward model explains part of the reward (the weights then multiply residuals, not raw rewards).
    """
    r, p, pi = _validate(rewards, logging_propensity, target_propensity)
    ql = np.asarray(q_logged, dtype=float)
    qt = np.asarray(q_target, dtype=float)
    if ql.shape != r.shape or qt.shape != r.shape:
        raise OPEInputError(f"reward-model arrays must have length {len(r)}; got {ql.shape} and {qt.shape}")
    if np.isnan(ql).any() or np.isnan(qt).any():
        raise OPEInputError("NaN in reward-model predictions")
    w = pi / p
    return _mean_estimate("dr", qt + w * (r - ql), w)


def estimate_all(
    rewards: ArrayLike,
    logging_propensity: ArrayLike,
    target_propensity: ArrayLike,
    q_logged: ArrayLike | None = None,
    q_target: ArrayLike | None = None,
) -> dict[str, OPEEstimate]:
    """IPS, SNIPS and (when a reward model is given) DR on the same logs, keyed by estimator name."""
    out = {
        "ips": ips(rewards, logging_propensity, target_propensity),
        "snips": snips(rewards, logging_propensity, target_propensity),
    }
    if q_logged is not None and q_target is not None:
        out["dr"] = doubly_robust(rewards, logging_propensity, target_propensity, q_logged, q_target)
    return out
