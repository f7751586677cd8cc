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
