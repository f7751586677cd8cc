"""Frames made ready for drift scoring: checks, the usable columns, and the Evidently-ready copies of both sides.

Shared by the report builders (`monitoring.reports`) and the guards (`monitoring.guards`): whatever scores a column
(Evidently's ValueDrift, the guards' own stat tests) sees the same prepared values.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from monitoring.drift import ColumnKind
from nextbest.errors import DataError

logger = logging.getLogger(__name__)


def check_frames(reference: pd.DataFrame | None, current: pd.DataFrame, columns: Sequence[str]) -> None:
    """DataError unless both frames are non-empty and hold every monitored column."""
    if not columns:
        raise DataError("no columns to monitor: pass at least one column name")
    for name, frame in (("current", current), ("reference", reference)):
        if frame is None:
            continue
        if len(frame) == 0:
            raise DataError(f"the {name} frame is empty: nothing to compare (is the monitoring window empty?)")
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            more = " ..." if len(missing) > 10 else ""
            raise DataError(f"the {name} frame lacks monitored column(s) {missing[:10]}{more}")


def usable_columns(
    reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Columns with at least one finite/non-null value on both sides (Evidently refuses empty columns)."""
    usable, skipped = [], []
    for col in columns:
        ok = True
        for frame in (reference, current):
            s = frame[col]
            if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
                ok = ok and bool(np.isfinite(s.to_numpy(dtype=float, na_value=np.nan)).any())
            else:
                ok = ok and bool(s.notna().any())
        (usable if ok else skipped).append(col)
    if skipped:
        logger.warning("drift: skipping %d column(s) empty on one side: %s", len(skipped), skipped[:10])
    return usable, skipped


def category_labels(values: pd.Series) -> pd.Series:
    """Category labels as strings, numbers spelled one way whatever their dtype.

    A flag read from the training set is int64 (`1`) but from the decision log's JSON snapshots float64 (`1.0`);
    as plain strings those are different categories and PSI reports ~18 for a column that did not move (measured
    in the closed loop: 43 of 110 inputs "drifted" on a drift-free window).
    """
    if pd.api.types.is_bool_dtype(values.dtype) or pd.api.types.is_numeric_dtype(values.dtype):
        numbers = pd.to_numeric(values, errors="coerce").astype(float).to_numpy()
        # format each distinct value once (a categorical column has a handful), not every row
        codes, distinct = pd.factorize(numbers, use_na_sentinel=True)
        labels = np.array([format(v, "g") for v in distinct] + [None], dtype=object)
        return pd.Series(labels[codes], index=values.index, dtype=object)
    return values.astype("string").astype(object).where(values.notna(), None)


def prepare(
    reference: pd.DataFrame, current: pd.DataFrame, kinds: Mapping[str, ColumnKind], winsorize: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evidently-ready copies of both frames.

    Categorical columns become strings (Evidently counts categories by value; flags must not be averaged).
    Numeric columns are winsorized at the reference's `winsorize` and `1 - winsorize` quantiles on both sides: a
    normed Wasserstein distance on raw balances is dominated by a handful of extreme customers and fires on
    sampling noise alone; clipped, a shift of the bulk still shows and mass moving past the tails still piles up
    at the clip value.
    """
    ref_out, cur_out = {}, {}
    for col, kind in kinds.items():
        r, c = reference[col], current[col]
        if kind == "categorical":
            ref_out[col], cur_out[col] = category_labels(r), category_labels(c)
            continue
        r = pd.to_numeric(r, errors="coerce").astype(float).replace([np.inf, -np.inf], np.nan)
        c = pd.to_numeric(c, errors="coerce").astype(float).replace([np.inf, -np.inf], np.nan)
        if winsorize > 0:
            lo, hi = r.quantile(winsorize), r.quantile(1 - winsorize)
            if pd.notna(lo) and pd.notna(hi) and hi > lo:
                r, c = r.clip(lo, hi), c.clip(lo, hi)
        ref_out[col], cur_out[col] = r, c
    return pd.DataFrame(ref_out, index=reference.index), pd.DataFrame(cur_out, index=current.index)
