"""Probability calibration fitted on the validation split and stored as plain JSON beside the model.

Why a hand-rolled calibrator rather than a pickled scikit-learn object: it travels inside the MLflow model folder
as a few numbers, loads without unpickling, and applies in microseconds on the serving hot path (numpy only).
- Platt (default): sigmoid(a * margin + b) on the booster's raw margin. Two parameters, robust on the few hundred
  positives of a small world, and strictly monotone, so it never changes ROC-AUC.
- Isotonic: a piecewise-linear monotone map of the booster probability (sklearn's fit, numpy's interp to apply).
  More flexible, but it flattens score ranges (ties) and needs many positives; choose it for large worlds.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from nextbest.errors import DataError

logger = logging.getLogger(__name__)

CalibrationMethod = Literal["platt", "isotonic", "none"]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@dataclass(frozen=True)
class Calibrator:
    """A fitted monotone map from the booster's output to a calibrated probability."""

    method: CalibrationMethod
    a: float = 1.0
    b: float = 0.0
    x: tuple[float, ...] = field(default_factory=tuple)
    y: tuple[float, ...] = field(default_factory=tuple)

    @property
    def uses_margin(self) -> bool:
        """Platt works on the raw margin (log-odds); isotonic and none on the booster probability."""
        return self.method == "platt"

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities from margins (platt) or booster probabilities (isotonic / none)."""
        if self.method == "platt":
            return _sigmoid(self.a * raw + self.b)
        if self.method == "isotonic":
            return np.interp(raw, self._x_array, self._y_array)
        return raw

    @property
    def _x_array(self) -> np.ndarray:
        # Cached on first use: interp needs arrays, and converting a tuple per call costs more than the interp.
        cached = self.__dict__.get("_xa")
        if cached is None:
            cached = np.asarray(self.x, dtype=np.float64)
            object.__setattr__(self, "_xa", cached)
        return cached

    @property
    def _y_array(self) -> np.ndarray:
        cached = self.__dict__.get("_ya")
        if cached is None:
            cached = np.asarray(self.y, dtype=np.float64)
            object.__setattr__(self, "_ya", cached)
        return cached

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method}
        if self.method == "platt":
            out.update(a=self.a, b=self.b)
        elif self.method == "isotonic":
            out.update(x=list(self.x), y=list(self.y))
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Calibrator:
        method = raw.get("method")
        if method == "platt":
            return cls(method="platt", a=float(raw["a"]), b=float(raw["b"]))
        if method == "isotonic":
            x, y = tuple(float(v) for v in raw["x"]), tuple(float(v) for v in raw["y"])
            if len(x) != len(y) or len(x) < 1:
                raise DataError("isotonic calibrator needs equally long, non-empty x and y")
            return cls(method="isotonic", x=x, y=y)
        if method == "none":
            return cls(method="none")
        raise DataError(f"unknown calibration method {method!r} (expected platt, isotonic or none)")

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps(self.to_dict()))
        return path

    @classmethod
    def load(cls, path: Path) -> Calibrator:
        return cls.from_dict(json.loads(path.read_text()))


def fit_calibrator(
    y_true: np.ndarray,
    margin: np.ndarray,
    method: CalibrationMethod = "platt",
    max_knots: int = 200,
    sample_weight: np.ndarray | None = None,
) -> Calibrator:
    """Fit a calibrator on validation labels and the booster's raw margins (log-odds).

    `sample_weight`: the same weights the booster was trained with (IPS for the NBA model), so probabilities are
    calibrated for the population the weights stand for, not for the logging policy's choices.
    """
    y = np.asarray(y_true, dtype=np.float64).ravel()
    z = np.asarray(margin, dtype=np.float64).ravel()
    if y.shape != z.shape or y.size == 0:
        raise DataError("calibration needs non-empty labels and margins of equal length")
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64).ravel()
    if w is not None and w.shape != y.shape:
        raise DataError("calibration sample weights must have one value per label")
    if method == "none":
        return Calibrator(method="none")
    if not 0.0 < y.mean() < 1.0:
        raise DataError("calibration split holds one class only; widen the validation window or the world")
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        # Nearly unregularised: the one feature is the margin itself, so shrinkage would only bias the slope.
        lr = LogisticRegression(C=1e6, solver="lbfgs", max_iter=1000)
        lr.fit(z.reshape(-1, 1), y, sample_weight=w)
        return Calibrator(method="platt", a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]))
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        p = _sigmoid(z)
        iso = IsotonicRegression(out_of_bounds="clip", y_min=1e-6, y_max=1 - 1e-6)
        iso.fit(p, y, sample_weight=w)
        xs, ys = np.asarray(iso.X_thresholds_), np.asarray(iso.y_thresholds_)
        if xs.size > max_knots:  # keep the JSON small; the map is piecewise linear anyway
            keep = np.unique(np.linspace(0, xs.size - 1, max_knots).round().astype(int))
            xs, ys = xs[keep], ys[keep]
        return Calibrator(method="isotonic", x=tuple(xs.tolist()), y=tuple(ys.tolist()))
    raise DataError(f"unknown calibration method {method!r} (expected platt, isotonic or none)")
