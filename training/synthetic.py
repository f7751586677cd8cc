"""Synthetic labelled frames with a known signal, to exercise tuning, calibration, tracking and the gate without a
simulated world (tests) and at sizes the demo world does not reach (benchmarks: 100k / 500k rows).

Rows carry a customer id and daily timestamps so time splits behave as on real training sets; the label comes from
a fixed logistic model of a few features (the rest are noise), so a trained model must beat a shuffled-label one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.datasets import LABEL, TIMESTAMP, TrainingSet


def synthetic_training_set(
    rows: int = 5_000,
    features: int = 20,
    seed: int = 0,
    base_rate: float = 0.08,
    days: int = 60,
    shuffle_labels: bool = False,
    model: str = "churn",
    kind: str = "",
) -> TrainingSet:
    """A TrainingSet of `rows` rows x `features` numeric features over `days` daily timestamps."""
    if features < 4:
        raise ValueError("need at least 4 features (the signal uses the first four)")
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features)).astype(np.float32)
    X[:, 3] = rng.integers(0, 2, size=rows)  # a 0/1 flag, like the genome's has_<product> columns
    intercept = np.log(base_rate / (1 - base_rate))
    logit = intercept + 1.1 * X[:, 0] - 0.7 * X[:, 1] + 0.6 * X[:, 2] * (X[:, 3] > 0) + 0.4 * np.tanh(X[:, 1] * X[:, 0])
    p = 1 / (1 + np.exp(-logit))
    y = (rng.random(rows) < p).astype(np.int8)
    if shuffle_labels:
        y = rng.permutation(y)
    names = [f"f{i:02d}" for i in range(features)]
    frame = pd.DataFrame(X, columns=names)
    start = pd.Timestamp("2026-01-01", tz="UTC")
    frame.insert(0, TIMESTAMP, start + pd.to_timedelta(np.sort(rng.integers(0, days, size=rows)), unit="D"))
    frame.insert(0, "customer_id", rng.integers(1, max(2, rows // 5), size=rows).astype(np.int64))
    frame[LABEL] = y
    frame["p_true"] = p  # the truth, for tests; never a feature
    lineage = {"feature_service": "synthetic", "world_seed": seed, "rows": rows, "shuffled_labels": shuffle_labels}
    return TrainingSet(model=model, frame=frame, feature_names=names, lineage=lineage, kind=kind)
