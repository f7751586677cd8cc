"""Diagnostic plots logged as run artefacts: ROC, PR, calibration, lift, feature importance, Optuna history, and
the evaluation ladder (value per 1,000 decisions by stage).

Figures are built with `matplotlib.figure.Figure` and saved through the Agg canvas directly: no pyplot, so no
global backend state, no GUI and no figure registry to leak in long-running jobs or tests.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from training.metrics import calibration_curve

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    import xgboost as xgb
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)


def _figure(width: float = 5.5, height: float = 4.5) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    return path


def roc_plot(y: np.ndarray, p: np.ndarray, path: Path, title: str = "ROC") -> Path:
    from sklearn.metrics import roc_auc_score, roc_curve

    fig = _figure()
    ax = fig.add_subplot()
    fpr, tpr, _ = roc_curve(y, p)
    ax.plot(fpr, tpr, label=f"model (AUC {roc_auc_score(y, p):.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="random")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(loc="lower right")
    return _save(fig, path)


def pr_plot(y: np.ndarray, p: np.ndarray, path: Path, title: str = "Precision-recall") -> Path:
    from sklearn.metrics import average_precision_score, precision_recall_curve

    fig = _figure()
    ax = fig.add_subplot()
    precision, recall, _ = precision_recall_curve(y, p)
    ax.plot(recall, precision, label=f"model (AP {average_precision_score(y, p):.3f})")
    ax.axhline(float(np.mean(y)), linestyle="--", color="grey", label=f"base rate {np.mean(y):.3f}")
    ax.set(xlabel="recall", ylabel="precision", title=title)
    ax.legend(loc="upper right")
    return _save(fig, path)


def calibration_plot(
    y: np.ndarray, curves: Mapping[str, np.ndarray], path: Path, title: str = "Calibration (equal-mass bins)"
) -> Path:
    """Reliability diagram for one or more score vectors (e.g. raw booster vs calibrated)."""
    fig = _figure()
    ax = fig.add_subplot()
    top = 0.0
    for label, p in curves.items():
        mean_p, rate = calibration_curve(y, p, n_bins=10)
        ax.plot(mean_p, rate, marker="o", label=label)
        top = max(top, float(mean_p.max()), float(rate.max()))
    top = min(1.0, top * 1.1 or 1.0)
    ax.plot([0, top], [0, top], linestyle="--", color="grey", label="perfect")
    ax.set(xlabel="mean predicted probability", ylabel="observed rate", title=title, xlim=(0, top), ylim=(0, top))
    ax.legend(loc="upper left")
    return _save(fig, path)


def lift_plot(y: np.ndarray, p: np.ndarray, path: Path, title: str = "Cumulative lift") -> Path:
    fig = _figure()
    ax = fig.add_subplot()
    order = np.argsort(-p, kind="stable")
    hits = np.cumsum(np.asarray(y)[order])
    n = np.arange(1, len(order) + 1)
    base = max(float(np.mean(y)), 1e-12)
    frac = n / len(order)
    ax.plot(frac, (hits / n) / base, label="model")
    ax.axhline(1.0, linestyle="--", color="grey", label="random")
    ax.axvline(0.1, linestyle=":", color="black", label="top decile")
    ax.set(xlabel="fraction targeted (by score)", ylabel="lift", title=title, xlim=(0, 1))
    ax.legend(loc="upper right")
    return _save(fig, path)


def importance_plot(booster: xgb.Booster, path: Path, top: int = 25, title: str = "Feature importance (gain)") -> Path:
    scores = booster.get_score(importance_type="gain")
    items = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)[:top]
    fig = _figure(6.5, max(3.0, 0.28 * len(items) + 1.2))
    ax = fig.add_subplot()
    if items:
        names, values = zip(*reversed(items), strict=True)
        ax.barh(list(names), list(values))
    ax.set(xlabel="total gain", title=title)
    return _save(fig, path)


def optuna_history_plot(study: optuna.Study, path: Path, title: str = "Optuna optimisation history") -> Path:
    import optuna

    fig = _figure()
    ax = fig.add_subplot()
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.PRUNED]
    if complete:
        xs = [t.number for t in complete]
        ys = [t.value for t in complete]
        ax.scatter(xs, ys, label="complete trial")
        best = np.minimum.accumulate(ys) if study.direction == optuna.study.StudyDirection.MINIMIZE else None
        if best is None:
            best = np.maximum.accumulate(ys)
        ax.step(xs, best, where="post", color="red", label="best so far")
    for t in pruned:
        last = t.intermediate_values.get(max(t.intermediate_values)) if t.intermediate_values else None
        if last is not None:
            ax.scatter([t.number], [last], marker="x", color="grey")
    ax.set(xlabel="trial", ylabel="validation log-loss", title=title)
    ax.legend(loc="upper right")
    return _save(fig, path)


def optuna_importance_plot(study: optuna.Study, path: Path, title: str = "Hyperparameter importance") -> Path | None:
    """fANOVA importances; None when the study has too few completed trials to estimate them."""
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 2:
        return None
    try:
        importances = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError) as exc:
        logger.info("no parameter importances: %s", exc)
        return None
    fig = _figure()
    ax = fig.add_subplot()
    names = list(reversed(importances))
    ax.barh(names, [importances[n] for n in names])
    ax.set(xlabel="importance (fANOVA)", title=title)
    return _save(fig, path)


def ladder_plot(ladder: pd.DataFrame, path: Path, title: str = "Value per 1,000 decisions by stage") -> Path:
    """The evaluation ladder as horizontal bars (stage names read in full), value per 1,000 decisions labelled,
    the oracle's value as a dashed line when the ladder has one."""
    stages = [str(s) for s in ladder["stage"]]
    values = ladder["value_per_1000"].astype(float).to_numpy()
    fig = _figure(8.0, max(3.0, 0.45 * len(stages) + 1.4))
    ax = fig.add_subplot()
    rows = np.arange(len(stages))[::-1]  # first stage on top, as in the table
    bars = ax.barh(rows, values, color=["#b0b0b0" if "oracle" in s else "#4c72b0" for s in stages])
    ax.set_yticks(rows, stages)
    ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], padding=3)
    oracle = [v for s, v in zip(stages, values, strict=True) if "oracle" in s]
    if oracle:
        ax.axvline(oracle[-1], linestyle="--", color="grey", linewidth=1)
    ax.set_xlim(0, max(1.0, float(np.nanmax(values)) * 1.15) if len(values) else 1.0)
    ax.set(xlabel="value per 1,000 decisions", title=title)
    return _save(fig, path)
