"""Model-quality metrics for binary propensity models: ranking, probability quality, calibration and lift, pooled
and within groups (`within_group_ranking`, `calibration_by_group`: per action and per action kind, where a pooled
AUC also rewards knowing which action a row is about).

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


def _binned_gap(target: np.ndarray, p: np.ndarray, n_bins: int) -> float:
    """Weighted mean |mean target - mean p| over equal-mass bins of p (target: 0/1 outcomes or true probabilities)."""
    edges = np.unique(np.quantile(p, np.linspace(0.0, 1.0, n_bins + 1)))
    if edges.size < 2:
        return float(abs(target.mean() - p.mean()))
    bins = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, edges.size - 2)
    sum_t = np.bincount(bins, weights=target, minlength=edges.size - 1)
    sum_p = np.bincount(bins, weights=p, minlength=edges.size - 1)
    return float(np.abs(sum_t - sum_p).sum() / p.size)


def spearman_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two score arrays; NaN for fewer than 3 rows or a constant array."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def _group_arrays(
    groups: np.ndarray, *arrays: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray], tuple[np.ndarray, ...]]:
    keys = np.asarray(groups).astype(str).ravel()
    out = tuple(np.asarray(a, dtype=np.float64).ravel() for a in arrays)
    if any(a.shape != keys.shape for a in out):
        raise DataError("groups and scores differ in length")
    if keys.size == 0:
        raise DataError("cannot compute metrics on an empty set")
    names, inverse = np.unique(keys, return_inverse=True)
    return names, [np.nonzero(inverse == i)[0] for i in range(names.size)], out


def within_group_ranking(
    groups: np.ndarray, y_true: np.ndarray, y_prob: np.ndarray, p_true: np.ndarray
) -> list[dict[str, float | str | int]]:
    """Per group (e.g. per action): how well the scores rank the rows WITHIN the group.

    `spearman_vs_truth`: Spearman correlation of the scores with the true probabilities; `roc_auc`: AUC of the
    scores vs the realised 0/1 outcomes; `bayes_auc`: the AUC of the true probabilities on the same rows (the
    ceiling of `roc_auc`, below 1 because outcomes are noisy). A pooled AUC over all groups also rewards knowing
    which group a row belongs to (base rates differ by action); these do not. NaN where undefined (fewer than 3
    rows or constant scores for Spearman, one class for the AUCs).
    """
    from sklearn.metrics import roc_auc_score

    y, p = _check(y_true, y_prob)
    names, members, (truth,) = _group_arrays(groups, p_true)
    if truth.shape != y.shape:
        raise DataError("groups and scores differ in length")
    rows = []
    for name, idx in zip(names, members, strict=True):
        yi, pi, ti = y[idx], p[idx], truth[idx]
        both = 0.0 < yi.mean() < 1.0
        rows.append(
            {
                "group": str(name),
                "rows": int(idx.size),
                "positives": int(yi.sum()),
                "spearman_vs_truth": spearman_correlation(pi, ti),
                "roc_auc": float(roc_auc_score(yi, pi)) if both else float("nan"),
                "bayes_auc": float(roc_auc_score(yi, ti)) if both else float("nan"),
            }
        )
    return rows


def calibration_by_group(
    groups: np.ndarray, y_true: np.ndarray, y_prob: np.ndarray, p_true: np.ndarray | None = None, n_bins: int = 10
) -> list[dict[str, float | str | int]]:
    """Per group (e.g. per action kind): mean prediction, observed rate, ECE vs the outcomes (equal-mass bins) and,
    when the truth is given, ECE vs the true probabilities (the same bins, no outcome noise) and the mean truth."""
    y, p = _check(y_true, y_prob)
    names, members, (truth,) = _group_arrays(groups, y if p_true is None else p_true)
    rows = []
    for name, idx in zip(names, members, strict=True):
        row: dict[str, float | str | int] = {
            "group": str(name),
            "rows": int(idx.size),
            "positives": int(y[idx].sum()),
            "mean_prediction": float(p[idx].mean()),
            "observed_rate": float(y[idx].mean()),
            "ece": expected_calibration_error(y[idx], p[idx], n_bins),
        }
        if p_true is not None:
            row["mean_truth"] = float(truth[idx].mean())
            row["ece_vs_truth"] = _binned_gap(truth[idx], p[idx], n_bins)
        rows.append(row)
    return rows


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    """Mean of `values` weighted by `weights`, leaving out NaN values (and their weights); NaN when none is left."""
    v = np.asarray(values, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if v.shape != w.shape:
        raise DataError(f"values and weights differ in length: {v.shape} vs {w.shape}")
    if (w < 0).any() or np.isnan(w).any():
        raise DataError("weights must be non-negative numbers")
    keep = ~np.isnan(v) & (w > 0)
    return float(np.dot(v[keep], w[keep]) / w[keep].sum()) if keep.any() else float("nan")
