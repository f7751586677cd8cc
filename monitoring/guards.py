"""The drift policy applied per column: distances, the two guards, and the threshold that carries them into Evidently.

A column's distance (normed Wasserstein or PSI, `DriftPolicy.method_for`) is computed with the stat-test code
Evidently's ValueDrift calls, on the frames Evidently will see, so the numbers are Evidently's. A column over its
threshold is then re-judged by two guards that can only clear it:

- the noise floor (`noise_floor`): the score two resamples of the reference reach by chance at these sizes; a
  column counts only if its score exceeds it;
- the trend guard (`apply_trend_guard`): the drift the reference already showed between its older and newer
  halves; a column counts only if its score is at least `trend_factor` times that.

`applied_threshold` folds both guards into one number per column (the policy's threshold, raised past the noise
floor and to the trend bar). Evidently is given that threshold, so its per-column tests, its count of drifted
columns and the verdict say the same thing; the policy view of each report (`monitoring.policy_view`) shows how
each column's threshold was reached.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from monitoring.drift import ColumnDrift, ColumnKind, DriftPolicy, infer_column_kinds
from monitoring.frames import check_frames, prepare, usable_columns

logger = logging.getLogger(__name__)


def _column_type(kind: ColumnKind):  # noqa: ANN202  (Evidently's legacy ColumnType)
    from evidently.legacy.core import ColumnType

    return ColumnType.Numerical if kind == "numeric" else ColumnType.Categorical


def stat_scores(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    kinds: Mapping[str, ColumnKind],
    methods: Mapping[str, str],
    thresholds: Mapping[str, float],
) -> list[ColumnDrift]:
    """Each column's distance and whether it reaches its threshold, as Evidently's ValueDrift computes them.

    The frames are the prepared ones; like Evidently, infinities become missing and missing values are dropped.
    """
    from evidently.legacy.calculations.stattests.registry import get_stattest

    out = []
    for col, kind in kinds.items():
        r = reference[col].replace([np.inf, -np.inf], np.nan).dropna()
        c = current[col].replace([np.inf, -np.inf], np.nan).dropna()
        col_type = _column_type(kind)
        result = get_stattest(r, c, col_type, methods[col])(r, c, col_type, thresholds[col])
        out.append(
            ColumnDrift(
                column=col,
                kind=kind,
                method=methods[col],
                score=float(result.drift_score),
                threshold=float(thresholds[col]),
                drifted=bool(result.drifted),
            )
        )
    return out


def noise_floor(
    reference: pd.Series,
    current_rows: int,
    kind: ColumnKind,
    method: str,
    threshold: float,
    resamples: int,
    quantile: float,
    seed: int = 0,
) -> float:
    """The `quantile` of drift scores between two bootstrap resamples of the reference, of sizes (len(reference),
    current_rows): the score a column reaches by chance alone. Same stat-test implementation Evidently's ValueDrift
    uses, so the numbers compare."""
    from evidently.legacy.calculations.stattests.registry import get_stattest

    col_type = _column_type(kind)
    ref = reference.replace([np.inf, -np.inf], np.nan).dropna().reset_index(drop=True)
    if ref.empty or resamples <= 0:
        return 0.0
    stattest = get_stattest(ref, ref, col_type, method)
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(resamples):
        a = ref.iloc[rng.integers(0, len(ref), size=len(ref))].reset_index(drop=True)
        b = ref.iloc[rng.integers(0, len(ref), size=max(1, current_rows))].reset_index(drop=True)
        scores.append(float(stattest(a, b, col_type, threshold).drift_score))
    return float(np.quantile(scores, quantile))


def apply_noise_floor(
    columns: list[ColumnDrift], reference: pd.DataFrame, current: pd.DataFrame, policy: DriftPolicy
) -> list[ColumnDrift]:
    """Re-judge only the flagged columns (cheap): drifted = over the threshold AND over the noise floor.

    Frames are the prepared (Evidently-ready) ones; the current size is the column's non-missing count, as
    Evidently drops missing values before comparing."""
    out = []
    for i, c in enumerate(columns):
        current_rows = int(current[c.column].notna().sum())
        if c.drifted and policy.noise_resamples > 0 and current_rows <= policy.noise_max_rows:
            floor = noise_floor(
                reference[c.column],
                current_rows,
                c.kind,
                c.method,
                c.threshold,
                policy.noise_resamples,
                policy.noise_quantile,
                seed=policy.seed + 1000 + i,
            )
            c = c.model_copy(update={"noise_floor": floor, "drifted": c.score > floor})
        out.append(c)
    return out


def apply_trend_guard(
    columns: list[ColumnDrift],
    reference: pd.DataFrame,
    reference_time: str,
    policy: DriftPolicy,
    kinds: Mapping[str, ColumnKind],
) -> list[ColumnDrift]:
    """Re-judge flagged columns against the reference's own drift between its older and newer halves."""
    flagged = [c.column for c in columns if c.drifted]
    if not flagged or policy.trend_factor <= 0:
        return columns
    ts = pd.to_datetime(reference[reference_time], utc=True)
    middle = ts.quantile(0.5)
    older, newer = reference.loc[ts < middle], reference.loc[ts >= middle]
    if len(older) < policy.min_rows // 2 or len(newer) < policy.min_rows // 2:
        logger.info("trend guard skipped: reference halves too small (%d, %d rows)", len(older), len(newer))
        return columns
    trend = {
        c.column: c.score
        for c in score_columns(older, newer, flagged, policy=policy, kinds={k: kinds[k] for k in flagged})
    }
    out = []
    for c in columns:
        if c.column in trend:
            c = c.model_copy(
                update={"trend": trend[c.column], "drifted": c.score >= policy.trend_factor * trend[c.column]}
            )
        out.append(c)
    return out


def applied_threshold(column: ColumnDrift, trend_factor: float) -> float:
    """The threshold under which Evidently's test says what the policy says about this column.

    The policy's threshold, raised just past the noise floor (the score must exceed it) and to `trend_factor` x the
    reference's own trend (the score must reach it). Evidently flags a distance at or above its threshold, so a
    column is drifted under this threshold exactly when it is drifted after both guards.
    """
    applied = column.threshold
    if column.noise_floor > 0:
        applied = max(applied, math.nextafter(column.noise_floor, math.inf))
    if column.trend > 0:
        applied = max(applied, trend_factor * column.trend)
    return applied


def score_columns(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    *,
    policy: DriftPolicy | None = None,
    kinds: Mapping[str, ColumnKind] | None = None,
) -> list[ColumnDrift]:
    """The per-column scores of `build_drift_report` on ALL rows, without building an Evidently report.

    Same preparation and the same stat-test implementations Evidently's ValueDrift calls, minus the report's
    figures; used to check that the sampled report reaches the verdict the full data would (see the benchmark).
    No noise floor: on full data it is negligible.
    """
    policy = policy or DriftPolicy()
    check_frames(reference, current, columns)
    usable, _ = usable_columns(reference, current, columns)
    resolved = (
        dict(kinds) if kinds is not None else infer_column_kinds(reference, usable, policy.max_categorical_values)
    )
    resolved = {c: resolved[c] for c in usable}
    ref_e, cur_e = prepare(reference, current, resolved, policy.winsorize_quantile)
    methods = {c: policy.method_for(k) for c, k in resolved.items()}
    thresholds = {c: policy.threshold_for(k) for c, k in resolved.items()}
    return stat_scores(ref_e, cur_e, resolved, methods, thresholds)
