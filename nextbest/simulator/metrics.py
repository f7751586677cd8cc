"""Bayes-optimal AUC, accumulated over chunks without keeping every score: a fine histogram in logit space.

With 20,000 bins over logits -20..10 the binned AUC matches the exact one to about 1e-4, and memory stays constant
however many customers a world has.
"""

from __future__ import annotations

import numpy as np

_LO, _HI, _BINS = -20.0, 10.0, 20_000


class StreamingAUC:
    """ROC-AUC of probabilities against 0/1 outcomes, added in batches."""

    def __init__(self) -> None:
        self.pos = np.zeros(_BINS, dtype=np.int64)
        self.neg = np.zeros(_BINS, dtype=np.int64)

    def add(self, p: np.ndarray, y: np.ndarray) -> None:
        p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
        logit = np.log(p / (1 - p))
        b = np.clip(((logit - _LO) / (_HI - _LO) * _BINS).astype(np.int64), 0, _BINS - 1)
        y = np.asarray(y, dtype=bool)
        self.pos += np.bincount(b[y], minlength=_BINS)
        self.neg += np.bincount(b[~y], minlength=_BINS)

    @property
    def n_pos(self) -> int:
        return int(self.pos.sum())

    @property
    def n_neg(self) -> int:
        return int(self.neg.sum())

    def value(self) -> float | None:
        """The AUC, or None when one class is missing."""
        n_pos, n_neg = self.n_pos, self.n_neg
        if n_pos == 0 or n_neg == 0:
            return None
        neg_below = np.cumsum(self.neg) - self.neg
        wins = (self.pos * neg_below).sum() + 0.5 * (self.pos * self.neg).sum()
        return float(wins / (n_pos * n_neg))
