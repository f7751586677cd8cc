"""Model-quality metrics for binary propensity models: ranking, probability quality, calibration and lift.

One function returns the whole set every run logs and the promotion gate compares, so a metric means the same
thing in MLflow, in the gate and in the evaluation report. ECE uses equal-mass bins by default: with base rates of
a few percent, equal-width bins put almost every row in the first bin and hide miscalibration where the scores are.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from nextbest.errors import DataError

logger = logging.getLogger(__name__)

_EPS = 1e-7


def _check(y_true: np.ndarray, y_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(np.float64).ravel()
    p = np.asarray(y_prob).astype(np.float64).ravel()
    if y.shape != p.shape:
        raise DataError(f"labels and scores differ in length: {y.shape[0]} vs {p.shape[0]}")
    if y.size == 0:
        raise DataError("cannot compute metrics on an empty set")
    if not np.isin(y, (0.0, 1.0)).all():
        raise DataError("labels must be 0/1")
    if np.isnan(p).any():
        raise DataError("scores contain NaN")
    return y, p


def expected_calibration_error(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    n_bins: int = 10,
    strategy: Literal["quantile", "uniform"] = "quantile",
) -> float:
    """Weighted mean |observed rate - mean predicted| over bins (0 = perfectly calibrated)."""
    y, p = _check(y_true, y_prob)
    if strategy == "quantile":
        edges = np.unique(np.quantile(p, np.linspace(0.0, 1.0, n_bins + 1)))
    else:
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    if edges.size < 2:  # constant scores: one bin
        return float(abs(y.mean() - p.mean()))
    bins = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, edges.size - 2)
    counts = np.bincount(bins, minlength=edges.size - 1)
    sum_y = np.bincount(bins, weights=y, minlength=edges.size - 1)
    sum_p = np.bincount(bins, weights=p, minlength=edges.size - 1)
    used = counts > 0
    gaps = np.abs(sum_y[used] - sum_p[used])  # = count * |rate - mean p|
    return float(gaps.sum() / y.size)


def lift_at_fraction(y_true: np.ndarray, y_prob: np.ndarray, fraction: float = 0.1) -> float:
    """Positive rate among the top `fraction` by score divided by the overall positive rate."""
    y, p = _check(y_true, y_prob)
    if not 0.0 < fraction <= 1.0:
        raise DataError(f"fraction must be in (0, 1], got {fraction}")
    base = y.mean()
    if base == 0.0:
        return float("nan")
    k = max(1, int(round(fraction * y.size)))
    top = np.argsort(-p, kind="stable")[:k]
    return float(y[top].mean() / base)


def calibration_curve(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(mean predicted, observed rate) per equal-mass bin, for the reliability plot."""
    y, p = _check(y_true, y_prob)
    edges = np.unique(np.quantile(p, np.linspace(0.0, 1.0, n_bins + 1)))
    if edges.size < 2:
        return np.array([p.mean()]), np.array([y.mean()])
    bins = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, edges.size - 2)
    counts = np.bincount(bins, minlength=edges.size - 1)
    used = counts > 0
    mean_p = np.bincount(bins, weights=p, minlength=edges.size - 1)[used] / counts[used]
    rate = np.bincount(bins, weights=y, minlength=edges.size - 1)[used] / counts[used]
    return mean_p, rate


def binary_metrics(y_true: np.ndarray, y_prob: np.ndarray) -> dict[str, float]:
    """ROC-AUC, PR-AUC (average precision), log-loss, Brier, ECE, lift at top decile, base rate, rows.

    AUCs are NaN when the set holds one class only (a tiny or degenerate split), never an exception, so a run
    still logs what it can; the gate treats NaN as "cannot compare".
    """
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    y, p = _check(y_true, y_prob)
    p_clipped = np.clip(p, _EPS, 1 - _EPS)
    both_classes = 0.0 < y.mean() < 1.0
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both_classes else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both_classes else float("nan"),
        "log_loss": float(log_loss(y, p_clipped, labels=[0.0, 1.0])),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p),
        "lift_top_decile": lift_at_fraction(y, p, 0.1),
        "base_rate": float(y.mean()),
        "mean_prediction": float(p.mean()),
        "rows": float(y.size),
    }


def _split_scores(y_true: np.ndarray, y_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y, p = _check(y_true, y_prob)
    return p[y == 1.0], p[y == 0.0]


def _placements(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's placement values: per positive the share of negatives it outranks, per negative the share of
    positives that outrank it (ties count half); their means are the AUC."""
    from scipy.stats import rankdata

    m, n = pos.size, neg.size
    ranks_all = rankdata(np.concatenate([pos, neg]))
    return (ranks_all[:m] - rankdata(pos)) / n, 1.0 - (ranks_all[m:] - rankdata(neg)) / m


def paired_auc_difference(y_true: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(AUC of `a` - AUC of `b`, the standard error of that difference) for two scores of the same rows, by
    DeLong's paired method (the scores' correlation counted); (nan, nan) for one class or fewer than 2 of each."""
    y, pa = _check(y_true, a)
    pb = _check(y_true, b)[1]
    m, n = int((y == 1.0).sum()), int((y == 0.0).sum())
    if m < 2 or n < 2:
        return float("nan"), float("nan")
    va10, va01 = _placements(pa[y == 1.0], pa[y == 0.0])
    vb10, vb01 = _placements(pb[y == 1.0], pb[y == 0.0])
    s10, s01 = np.cov(va10, vb10, ddof=1), np.cov(va01, vb01, ddof=1)
    variance = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    return float(va10.mean() - vb10.mean()), float(np.sqrt(max(float(variance), 0.0)))


def auc_standard_error(y_true: np.ndarray, y_prob: np.ndarray) -> tuple[float, float]:
    """(ROC-AUC, its standard error) by DeLong's method (midranks; exact for ties); (nan, nan) for one class.

    DeLong et al. (1988): the AUC is the mean of per-positive and per-negative placement values, and its variance
    is var(positive placements) / m + var(negative placements) / n. What the promotion gate's chance floor reads:
    on a holdout with few positives the SE is large and an AUC of 0.55 means nothing.
    """
    pos, neg = _split_scores(y_true, y_prob)
    m, n = pos.size, neg.size
    if m < 2 or n < 2:
        return float("nan"), float("nan")
    v10, v01 = _placements(pos, neg)
    auc = float(v10.mean())
    variance = float(v10.var(ddof=1) / m + v01.var(ddof=1) / n)
    return auc, float(np.sqrt(max(variance, 0.0)))


def bootstrap_auc_interval(
    y_true: np.ndarray, y_prob: np.ndarray, level: float = 0.95, resamples: int = 500, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the ROC-AUC, resampling positives and negatives separately (every resample
    keeps the holdout's class counts, so none is degenerate); (nan, nan) for one class. Seeded."""
    pos, neg = _split_scores(y_true, y_prob)
    m, n = pos.size, neg.size
    if m < 1 or n < 1:
        return float("nan"), float("nan")
    # One sort: every resample is a reweighting of the distinct scores, its AUC a cumulative sum over them (ties
    # count half), O(distinct scores) per resample instead of a re-sort.
    values, index = np.unique(np.concatenate([pos, neg]), return_inverse=True)
    pos_at, neg_at = index[:m], index[m:]
    rng = np.random.default_rng(seed)
    aucs = np.empty(resamples)
    for i in range(resamples):
        w_pos = np.bincount(pos_at[rng.integers(0, m, m)], minlength=values.size)
        w_neg = np.bincount(neg_at[rng.integers(0, n, n)], minlength=values.size)
        below = np.cumsum(w_neg) - w_neg
        aucs[i] = float(np.dot(w_pos, below + 0.5 * w_neg)) / (m * n)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(aucs, [tail, 100 - tail])
    return float(low), float(high)
