"""Evidently report builders: pure functions from DataFrames to a computed report plus the values read from it.

Four views, one per question MLOps asks:

- `build_drift_report`: did the model's inputs move? (`DataDriftPreset` with a distance method per column, see
  `monitoring.drift` for why distances and not p-values);
- `build_prediction_drift_report`: did the score distributions move?
- `build_quality_report`: once outcomes arrived, is the model still good? (ROC-AUC and log-loss from Evidently,
  plus PR-AUC, calibration error and lift computed with the same functions training logs, so a number means the
  same thing here, in MLflow and in the promotion gate). Threshold metrics (precision/recall at 0.5) are left out:
  at base rates of a few percent no score crosses 0.5 and they read 0.
- `build_business_report`: what did the decisions earn? (acceptance rate, value per 1,000 decisions, share of
  "no action", share of decisions where a contact cap removed an action), as Evidently `MeanValue`s of per-decision
  columns so the Evidently UI plots them over time like any other metric.

Evidently's own pass/fail tests are kept (`include_tests=True`) and results are read back BY NAME (metric type and
column from `Snapshot.dict()`), never by list position, so a preset that adds a metric cannot shift our reading.
Big frames are cut to a fixed-size seeded sample first (`DriftPolicy.sample_rows`): the drift scores are distances
between distributions and a 20k-row sample estimates them well below the thresholds, while Evidently's cost (stat
tests and plotly figures per column) grows with the rows.

Nothing here touches the disk; `monitoring.store` saves reports to the workspace and as HTML/JSON.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from monitoring.drift import ColumnDrift, ColumnKind, DriftPolicy, infer_column_kinds, sample_rows
from nextbest.errors import DataError

if TYPE_CHECKING:
    from evidently import Run

logger = logging.getLogger(__name__)

ReportKind = Literal["data_drift", "prediction_drift", "quality", "business"]
MetadataValue = str | int | float | bool

VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
DRIFTED_COLUMNS = "evidently:metric_v2:DriftedColumnsCount"
MEAN_VALUE = "evidently:metric_v2:MeanValue"
ROC_AUC = "evidently:metric_v2:RocAuc"
LOG_LOSS = "evidently:metric_v2:LogLoss"

# Per-decision columns of the business frame (see `build_business_report`).
BUSINESS_COLUMNS: dict[str, str] = {
    "accepted": "acceptance rate (accepted / decisions with a known outcome)",
    "value_per_1000": "value per 1,000 decisions, EUR (realised value x 1000, averaged)",
    "no_action": 'share of "no action" decisions',
    "cap_hit": "share of decisions where a contact cap removed an action",
}


@dataclass
class MonitoringReport:
    """A computed Evidently report (`run`, an Evidently Snapshot) and the values we read from it by name."""

    kind: ReportKind
    title: str
    run: Run
    summary: dict[str, Any] = field(default_factory=dict)
    columns: tuple[ColumnDrift, ...] = ()
    skipped_columns: tuple[str, ...] = ()
    reference_rows: int = 0
    current_rows: int = 0

    def evidently_dict(self) -> dict[str, Any]:
        """Metrics and test results as Evidently exports them (JSON-ready)."""
        return self.run.dict()


def _metric_entries(run: Run) -> list[dict[str, Any]]:
    return [m for m in run.dict()["metrics"] if m]


def _tests_by_name(run: Run) -> dict[str, str]:
    """Test name -> status string ("SUCCESS", "FAIL", ...), read from Evidently's exported test results."""
    out: dict[str, str] = {}
    for t in run.dict()["tests"]:
        status = t["status"]
        out[t["name"]] = getattr(status, "value", str(status))
    return out


def _value(entries: Sequence[Mapping[str, Any]], metric_type: str, **params: object) -> Any:
    """The value of the metric of this type whose config matches `params` (None if absent)."""
    for m in entries:
        cfg = m.get("config", {})
        if cfg.get("type") == metric_type and all(cfg.get(k) == v for k, v in params.items()):
            return m["value"]
    return None


def _check_frames(reference: pd.DataFrame | None, current: pd.DataFrame, columns: Sequence[str]) -> None:
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


def _usable_columns(
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


def _category_labels(values: pd.Series) -> pd.Series:
    """Category labels as strings, numbers spelled one way whatever their dtype.

    A flag read from the training set is int64 (`1`) but from the decision log's JSON snapshots float64 (`1.0`);
    as plain strings those are different categories and PSI reports ~18 for a column that did not move (measured
    in the closed loop: 43 of 110 inputs "drifted" on a drift-free window).
    """
    if pd.api.types.is_bool_dtype(values.dtype) or pd.api.types.is_numeric_dtype(values.dtype):
        numbers = pd.to_numeric(values, errors="coerce").astype(float)
        return numbers.map(lambda v: None if pd.isna(v) else format(v, "g")).astype(object)
    return values.astype("string").astype(object).where(values.notna(), None)


def _prepare(
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
            ref_out[col], cur_out[col] = _category_labels(r), _category_labels(c)
            continue
        r = pd.to_numeric(r, errors="coerce").astype(float).replace([np.inf, -np.inf], np.nan)
        c = pd.to_numeric(c, errors="coerce").astype(float).replace([np.inf, -np.inf], np.nan)
        if winsorize > 0:
            lo, hi = r.quantile(winsorize), r.quantile(1 - winsorize)
            if pd.notna(lo) and pd.notna(hi) and hi > lo:
                r, c = r.clip(lo, hi), c.clip(lo, hi)
        ref_out[col], cur_out[col] = r, c
    return pd.DataFrame(ref_out, index=reference.index), pd.DataFrame(cur_out, index=current.index)


def _read_column_drift(run: Run, kinds: Mapping[str, ColumnKind]) -> list[ColumnDrift]:
    """Per-column drift from the ValueDrift metrics and their tests, matched by column name."""
    entries = _metric_entries(run)
    tests = _tests_by_name(run)
    out: list[ColumnDrift] = []
    for col, kind in kinds.items():
        entry = next(
            (m for m in entries if m["config"].get("type") == VALUE_DRIFT and m["config"].get("column") == col), None
        )
        if entry is None:
            raise DataError(f"Evidently returned no drift result for column {col!r}")
        test_name = f"Value Drift for column {col}"
        if test_name not in tests:
            raise DataError(f"Evidently returned no drift test for column {col!r} (expected test {test_name!r})")
        out.append(
            ColumnDrift(
                column=col,
                kind=kind,
                method=str(entry["config"].get("method")),
                score=float(entry["value"]),
                threshold=float(entry["config"].get("threshold")),
                drifted=tests[test_name] == "FAIL",
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
    from evidently.legacy.core import ColumnType

    col_type = ColumnType.Numerical if kind == "numeric" else ColumnType.Categorical
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


def _apply_noise_floor(
    columns: list[ColumnDrift], reference: pd.DataFrame, current: pd.DataFrame, policy: DriftPolicy
) -> list[ColumnDrift]:
    """Re-judge only the columns Evidently flagged (cheap): drifted = over the threshold AND over the noise floor.

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


def _apply_trend_guard(
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
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    policy = policy or DriftPolicy()
    _check_frames(reference, current, columns)
    usable, _ = _usable_columns(reference, current, columns)
    resolved = (
        dict(kinds) if kinds is not None else infer_column_kinds(reference, usable, policy.max_categorical_values)
    )
    resolved = {c: resolved[c] for c in usable}
    ref_e, cur_e = _prepare(reference, current, resolved, policy.winsorize_quantile)
    out = []
    for col, kind in resolved.items():
        col_type = ColumnType.Numerical if kind == "numeric" else ColumnType.Categorical
        r, c = ref_e[col].dropna(), cur_e[col].dropna()
        method, threshold = policy.method_for(kind), policy.threshold_for(kind)
        result = get_stattest(r, c, col_type, method)(r, c, col_type, threshold)
        out.append(
            ColumnDrift(
                column=col,
                kind=kind,
                method=method,
                score=float(result.drift_score),
                threshold=threshold,
                drifted=bool(result.drifted),
            )
        )
    return out


def _run_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    kinds: Mapping[str, ColumnKind],
    methods: Mapping[str, str],
    thresholds: Mapping[str, float],
    drift_share: float,
    metadata: Mapping[str, MetadataValue],
    tags: Sequence[str],
    extra_metrics: Sequence[Any] = (),
) -> Run:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    cols = list(kinds)
    definition = DataDefinition(
        numerical_columns=[c for c in cols if kinds[c] == "numeric"],
        categorical_columns=[c for c in cols if kinds[c] == "categorical"],
    )
    report = Report(
        [
            DataDriftPreset(
                columns=cols,
                per_column_method=dict(methods),
                per_column_threshold=dict(thresholds),
                drift_share=drift_share,
            ),
            *extra_metrics,
        ],
        include_tests=True,
        metadata=dict(metadata),
        tags=list(tags),
    )
    return report.run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )


def build_drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    *,
    policy: DriftPolicy | None = None,
    kinds: Mapping[str, ColumnKind] | None = None,
    reference_time: str | None = None,
    title: str = "Data drift on model inputs",
    metadata: Mapping[str, MetadataValue] | None = None,
    tags: Sequence[str] = (),
) -> MonitoringReport:
    """Data drift of `columns` between a reference (training) frame and a current (served) frame.

    Numeric columns use `policy.numeric_method` (normed Wasserstein), categorical and few-valued ones
    `policy.categorical_method` (PSI), each with its threshold; both frames are cut to `policy.sample_rows`
    seeded rows first. Columns empty on either side are skipped and listed in `skipped_columns`. Evidently's
    per-column test is then re-judged by the noise floor and, with `reference_time` (the reference's timestamp
    column), the trend guard (see `DriftPolicy`); both only ever clear a flag, never raise one.
    """
    policy = policy or DriftPolicy()
    _check_frames(reference, current, columns)
    usable, skipped = _usable_columns(reference, current, columns)
    if not usable:
        raise DataError(f"none of the {len(columns)} monitored columns has values on both sides")
    ref = sample_rows(reference, policy.sample_rows, policy.seed)
    cur = sample_rows(current, policy.sample_rows, policy.seed + 1)
    resolved = dict(kinds) if kinds is not None else infer_column_kinds(ref, usable, policy.max_categorical_values)
    resolved = {c: resolved[c] for c in usable}
    methods = {c: policy.method_for(k) for c, k in resolved.items()}
    thresholds = {c: policy.threshold_for(k) for c, k in resolved.items()}
    meta: dict[str, MetadataValue] = {
        "report": "data_drift",
        "reference_rows": len(reference),
        "current_rows": len(current),
        "sampled_rows_per_side": min(len(reference), policy.sample_rows or len(reference)),
        **(metadata or {}),
    }
    logger.info(
        "drift report: %d columns, %d reference rows (%d used), %d current rows (%d used)",
        len(resolved),
        len(reference),
        len(ref),
        len(current),
        len(cur),
    )
    ref_e, cur_e = _prepare(ref, cur, resolved, policy.winsorize_quantile)
    run = _run_drift(ref_e, cur_e, resolved, methods, thresholds, policy.drift_share, meta, tags)
    column_drift = _apply_noise_floor(_read_column_drift(run, resolved), ref_e, cur_e, policy)
    if reference_time is not None:
        if reference_time not in reference.columns:
            raise DataError(f"reference frame has no timestamp column {reference_time!r}")
        column_drift = _apply_trend_guard(column_drift, ref, reference_time, policy, resolved)
    summary = _drift_summary(run, column_drift, skipped, (len(reference), len(current)), (len(ref), len(cur)))
    return MonitoringReport(
        kind="data_drift",
        title=title,
        run=run,
        summary=summary,
        columns=tuple(column_drift),
        skipped_columns=tuple(skipped),
        reference_rows=len(reference),
        current_rows=len(current),
    )


def _drift_summary(
    run: Run,
    column_drift: Sequence[ColumnDrift],
    skipped: Sequence[str],
    rows: tuple[int, int],
    used: tuple[int, int],
) -> dict[str, Any]:
    """The data-drift report's summary: counts, share, per-column scores and what the guards cleared."""
    drifted = _value(_metric_entries(run), DRIFTED_COLUMNS) or {}
    return {
        "columns": len(column_drift),
        "drifted_columns": int(sum(c.drifted for c in column_drift)),
        "drifted_share": float(drifted.get("share", 0.0)) if isinstance(drifted, dict) else float("nan"),
        "skipped_columns": list(skipped),
        "reference_rows": rows[0],
        "current_rows": rows[1],
        "reference_rows_used": used[0],
        "current_rows_used": used[1],
        "scores": {c.column: round(c.score, 6) for c in column_drift},
        # over Evidently's threshold, before the noise floor and trend guard had their say
        "evidently_flagged": [c.column for c in column_drift if c.drifted or c.noise_floor > 0 or c.trend > 0],
        "noise_floors": {c.column: round(c.noise_floor, 6) for c in column_drift if c.noise_floor > 0},
        "trends": {c.column: round(c.trend, 6) for c in column_drift if c.trend > 0},
    }


def build_prediction_drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    score_columns: Sequence[str],
    *,
    policy: DriftPolicy | None = None,
    title: str = "Prediction drift",
    metadata: Mapping[str, MetadataValue] | None = None,
    tags: Sequence[str] = (),
) -> MonitoringReport:
    """Drift of model score distributions (e.g. churn risk, NBA propensity) with `policy.prediction_method`."""
    from evidently.metrics import MeanValue

    policy = policy or DriftPolicy()
    _check_frames(reference, current, score_columns)
    usable, skipped = _usable_columns(reference, current, score_columns)
    if not usable:
        raise DataError("no score column has values on both sides")
    ref = sample_rows(reference, policy.sample_rows, policy.seed)
    cur = sample_rows(current, policy.sample_rows, policy.seed + 1)
    kinds: dict[str, ColumnKind] = {c: "numeric" for c in usable}
    meta: dict[str, MetadataValue] = {
        "report": "prediction_drift",
        "reference_rows": len(reference),
        "current_rows": len(current),
        **(metadata or {}),
    }
    # Scores live in [0, 1] and their tail (the few high-risk customers) is the point: no winsorizing here.
    ref_e, cur_e = _prepare(ref, cur, kinds, 0.0)
    run = _run_drift(
        ref_e,
        cur_e,
        kinds,
        {c: policy.prediction_method for c in usable},
        {c: policy.prediction_threshold for c in usable},
        policy.drift_share,
        meta,
        tags,
        extra_metrics=[MeanValue(column=c) for c in usable],
    )
    column_drift = _apply_noise_floor(_read_column_drift(run, kinds), ref_e, cur_e, policy)
    entries = _metric_entries(run)
    summary = {
        "scores": {c.column: round(c.score, 6) for c in column_drift},
        "drifted": [c.column for c in column_drift if c.drifted],
        "mean_current": {c: float(_value(entries, MEAN_VALUE, column=c)) for c in usable},
        "mean_reference": {c: float(pd.to_numeric(reference[c], errors="coerce").mean()) for c in usable},
        "skipped_columns": skipped,
        "reference_rows": len(reference),
        "current_rows": len(current),
    }
    return MonitoringReport(
        kind="prediction_drift",
        title=title,
        run=run,
        summary=summary,
        columns=tuple(column_drift),
        skipped_columns=tuple(skipped),
        reference_rows=len(reference),
        current_rows=len(current),
    )


def _labelled(frame: pd.DataFrame, label: str, score: str, name: str) -> pd.DataFrame:
    missing = [c for c in (label, score) if c not in frame.columns]
    if missing:
        raise DataError(f"the {name} frame lacks column(s) {missing} needed for model quality")
    out = pd.DataFrame({"label": frame[label], "score": pd.to_numeric(frame[score], errors="coerce")})
    out = out[out["label"].notna() & out["score"].notna()]
    if out.empty:
        raise DataError(f"the {name} frame has no rows with both an outcome and a score: no feedback yet?")
    y = out["label"].astype(float)
    if not y.isin((0.0, 1.0)).all():
        raise DataError(f"label column {label!r} must be 0/1 or boolean")
    s = out["score"]
    if ((s < 0) | (s > 1)).any():
        raise DataError(f"score column {score!r} must hold probabilities in [0, 1]")
    return pd.DataFrame({"label": y.astype(int), "score": s.astype(float)})


def _quality_values(frame: pd.DataFrame) -> dict[str, float]:
    from training.metrics import binary_metrics

    return {k: float(v) for k, v in binary_metrics(frame["label"].to_numpy(), frame["score"].to_numpy()).items()}


def build_quality_report(
    current: pd.DataFrame,
    label: str,
    score: str,
    *,
    reference: pd.DataFrame | None = None,
    title: str = "Model quality",
    metadata: Mapping[str, MetadataValue] | None = None,
    tags: Sequence[str] = (),
) -> MonitoringReport:
    """Classification quality of a probability `score` against a binary `label` (rows without either are dropped).

    With a reference (e.g. the champion's test split), Evidently's tests compare each metric with it and the
    summary holds both sets of values and their differences.
    """
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.metrics import LogLoss, MeanValue, RocAuc

    cur = _labelled(current, label, score, "current")
    ref = _labelled(reference, label, score, "reference") if reference is not None else None
    values = _quality_values(cur)
    ref_values = _quality_values(ref) if ref is not None else None
    definition = DataDefinition(
        numerical_columns=["label", "score"],
        classification=[BinaryClassification(target="label", prediction_probas="score", pos_label=1)],
    )
    both_classes = 0 < cur["label"].mean() < 1 and (ref is None or 0 < ref["label"].mean() < 1)
    # ROC-AUC needs both classes; the observed rate vs the mean score is calibration-in-the-large.
    metrics: list[Any] = [MeanValue(column="label"), MeanValue(column="score"), LogLoss()]
    if both_classes:
        metrics.insert(0, RocAuc())
    meta: dict[str, MetadataValue] = {
        "report": "quality",
        "current_rows": len(cur),
        **{f"current_{k}": round(v, 6) for k, v in values.items() if not math.isnan(v)},
        **(metadata or {}),
    }
    if ref_values is not None:
        meta.update({f"reference_{k}": round(v, 6) for k, v in ref_values.items() if not math.isnan(v)})
    report = Report(metrics, include_tests=True, metadata=meta, tags=list(tags))
    run = report.run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition) if ref is not None else None,
    )
    entries = _metric_entries(run)
    summary: dict[str, Any] = {
        "current": values,
        "evidently_roc_auc": _value(entries, ROC_AUC),
        "evidently_log_loss": _value(entries, LOG_LOSS),
        "rows": len(cur),
    }
    if ref_values is not None:
        summary["reference"] = ref_values
        summary["delta"] = {k: values[k] - ref_values[k] for k in values if k in ref_values}
    return MonitoringReport(
        kind="quality",
        title=title,
        run=run,
        summary=summary,
        reference_rows=0 if ref is None else len(ref),
        current_rows=len(cur),
    )


def business_frame(
    decisions: pd.DataFrame,
    *,
    accepted: str = "accepted",
    value: str = "value",
    no_action: str = "no_action",
    cap_hit: str = "cap_hit",
) -> pd.DataFrame:
    """Per-decision business columns from a decision table.

    `accepted`: 1/0 once the outcome is known (NaN while unknown: left out of the acceptance rate); `value`:
    realised value of the decision in EUR (0 unless accepted); `no_action`: nothing was offered; `cap_hit`: a
    contact cap removed at least one action.
    """
    missing = [c for c in (accepted, value, no_action, cap_hit) if c not in decisions.columns]
    if missing:
        raise DataError(f"decision table lacks column(s) {missing} for the business view")
    if decisions.empty:
        raise DataError("no decisions in the window: nothing to report")
    acc = pd.to_numeric(decisions[accepted].astype("float64"), errors="coerce")
    return pd.DataFrame(
        {
            "accepted": acc,
            "value_per_1000": pd.to_numeric(decisions[value], errors="coerce").fillna(0.0) * 1000.0,
            "no_action": decisions[no_action].astype(bool).astype(float),
            "cap_hit": decisions[cap_hit].astype(bool).astype(float),
        },
        index=decisions.index,
    )


def build_business_report(
    current: pd.DataFrame,
    *,
    reference: pd.DataFrame | None = None,
    title: str = "Business view",
    metadata: Mapping[str, MetadataValue] | None = None,
    tags: Sequence[str] = (),
) -> MonitoringReport:
    """Acceptance rate, value per 1,000 decisions, share of "no action", share of cap hits.

    `current` (and optional `reference`, e.g. the previous window) are frames from `business_frame`.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import MeanValue, RowCount

    for name, frame in (("current", current), ("reference", reference)):
        if frame is None:
            continue
        missing = [c for c in BUSINESS_COLUMNS if c not in frame.columns]
        if missing:
            raise DataError(f"the {name} business frame lacks {missing}; build it with business_frame()")
        if frame.empty:
            raise DataError(f"the {name} business frame is empty")
    # Undecided outcomes are missing values: MeanValue skips them, so the acceptance rate is over known outcomes.
    definition = DataDefinition(numerical_columns=list(BUSINESS_COLUMNS))
    with_outcome = current["accepted"].notna()
    metrics: list[Any] = [RowCount(), *(MeanValue(column=c) for c in BUSINESS_COLUMNS)]
    meta: dict[str, MetadataValue] = {
        "report": "business",
        "decisions": len(current),
        "decisions_with_outcome": int(with_outcome.sum()),
        **(metadata or {}),
    }
    report = Report(metrics, include_tests=reference is not None, metadata=meta, tags=list(tags))
    run = report.run(
        Dataset.from_pandas(current[list(BUSINESS_COLUMNS)], data_definition=definition),
        Dataset.from_pandas(reference[list(BUSINESS_COLUMNS)], data_definition=definition)
        if reference is not None
        else None,
    )
    entries = _metric_entries(run)

    def mean(col: str) -> float:
        v = _value(entries, MEAN_VALUE, column=col)
        return float("nan") if v is None else float(v)

    summary = {
        "decisions": len(current),
        "decisions_with_outcome": int(with_outcome.sum()),
        "acceptance_rate": mean("accepted"),
        "value_per_1000_decisions": mean("value_per_1000"),
        "no_action_share": mean("no_action"),
        "cap_hit_share": mean("cap_hit"),
    }
    return MonitoringReport(
        kind="business",
        title=title,
        run=run,
        summary=summary,
        reference_rows=0 if reference is None else len(reference),
        current_rows=len(current),
    )
