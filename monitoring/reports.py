"""Evidently report builders: pure functions from DataFrames to a computed report plus the values read from it.

Four views, one per question MLOps asks:

- `build_drift_report`: did the model's inputs move? (a distance method per column, see `monitoring.drift` for why
  distances and not p-values);
- `build_prediction_drift_report`: did the score distributions move?
- `build_quality_report`: once outcomes arrived, is the model still good? (ROC-AUC and log-loss from Evidently,
  plus PR-AUC, calibration error and lift computed with the same functions training logs, so a number means the
  same thing here, in MLflow and in the promotion gate). Threshold metrics (precision/recall at 0.5) are left out:
  at base rates of a few percent no score crosses 0.5 and they read 0.
- `build_business_report`: what did the decisions earn? (acceptance rate, value per 1,000 decisions, share of
  "no action", share of decisions where a contact cap removed an action), as Evidently `MeanValue`s of per-decision
  columns so the Evidently UI plots them over time like any other metric.

The drift reports show the project's own drift policy, not a preset that contradicts it: each column is scored and
judged first (`monitoring.guards`: the policy's method and threshold, then the noise floor and the trend guard),
then Evidently's `DataDriftPreset` is run with the threshold each column's judgement implies, so its per-column
tests and its count of drifted columns equal the verdict's; the report's first widget (`monitoring.policy_view`)
says how many columns drifted under the policy and how each threshold was reached. A report wider than
`DriftPolicy.report_columns` (20 inputs by default) draws Evidently's ValueDrift only for every drifted input and
the nearest to their threshold (each ValueDrift costs ~0.2-0.3 s of plotly figures and frame copies, and the preset
scores every column twice more: 40-80 s for 110 inputs otherwise); Evidently's failed tests are then still exactly
the drifted inputs, and the policy widget lists all of them. A window with fewer rows than the
policy's `min_rows` is marked `too little data` (tag, metadata, widget) and gets no drift tests: it is not judged,
and the dashboards do not plot it.

Results are read back BY NAME (metric type and column from `Snapshot.dict()`), never by list position, so a preset
that adds a metric cannot shift our reading. Big frames are cut to a fixed-size seeded sample first
(`DriftPolicy.sample_rows`): the drift scores are distances between distributions and a 20k-row sample estimates
them well below the thresholds, while Evidently's cost (stat tests and plotly figures per column) grows with the
rows.

Nothing here touches the disk; `monitoring.store` saves reports to the workspace and as HTML/JSON.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from monitoring.drift import ColumnDrift, ColumnKind, DriftPolicy, infer_column_kinds, sample_rows
from monitoring.frames import check_frames, prepare, usable_columns
from monitoring.guards import applied_threshold, apply_noise_floor, apply_trend_guard, stat_scores
from monitoring.guards import noise_floor as noise_floor  # re-exported: the guards used to live here
from monitoring.guards import score_columns as score_columns
from monitoring.policy_view import TOO_LITTLE_DATA, Rule, policy_metric, policy_rows, window_tags
from nextbest.errors import DataError

if TYPE_CHECKING:
    from evidently import Dataset, Run

logger = logging.getLogger(__name__)

ReportKind = Literal["data_drift", "prediction_drift", "quality", "business", "scorecard"]
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
    # False for a window with fewer rows than the policy needs: marked `too little data`, not judged, not plotted.
    enough_data: bool = True

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


def _window_metadata(enough: bool, rows: tuple[int, int], min_rows: int) -> dict[str, MetadataValue]:
    """`window`: "measured", or why it is not (the Evidently UI lists a run's metadata beside it)."""
    if enough:
        return {"window": "measured"}
    return {"window": f"{TOO_LITTLE_DATA}: {rows[1]} current / {rows[0]} reference rows < {min_rows}"}


def _datasets(
    reference: pd.DataFrame, current: pd.DataFrame, kinds: Mapping[str, ColumnKind]
) -> tuple[Dataset, Dataset]:
    """(current, reference) Evidently datasets of prepared frames, each column typed by its kind."""
    from evidently import DataDefinition, Dataset

    definition = DataDefinition(
        numerical_columns=[c for c, k in kinds.items() if k == "numeric"],
        categorical_columns=[c for c, k in kinds.items() if k == "categorical"],
    )
    return (
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )


@dataclass(frozen=True)
class _Judged:
    """Columns scored and judged under the policy, the prepared frames they were scored on, and their kinds."""

    columns: list[ColumnDrift]
    reference: pd.DataFrame
    current: pd.DataFrame
    kinds: Mapping[str, ColumnKind]


def _judge(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    kinds: Mapping[str, ColumnKind],
    methods: Mapping[str, str],
    thresholds: Mapping[str, float],
    policy: DriftPolicy,
) -> _Judged:
    """Score prepared frames with the policy's methods and thresholds, then apply the noise floor. Scores are
    computed on the frames Evidently is given, with the stat tests its ValueDrift calls (`_disagreements` checks)."""
    columns = stat_scores(reference, current, kinds, methods, thresholds)
    return _Judged(apply_noise_floor(columns, reference, current, policy), reference, current, kinds)


@dataclass(frozen=True)
class _PolicyRun:
    """What one policy report is about: its view, its rule, the judged columns and the rows on both sides."""

    view: str
    rule: Rule
    columns: Sequence[ColumnDrift]
    rows: tuple[int, int]


def _run_policy_report(
    judged: _Judged,
    spec: _PolicyRun,
    policy: DriftPolicy,
    metadata: Mapping[str, MetadataValue],
    tags: Sequence[str],
    extra_metrics: Sequence[Any] = (),
) -> Run:
    """The Evidently report of one view: the policy metric first, then (on a measured window) Evidently's drift
    metrics at each column's applied threshold, so its tests and counts are the verdict's."""
    from evidently import Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    metric = policy_metric(spec.view, spec.rule, spec.columns, policy, spec.rows)
    metrics: list[Any] = [metric]
    compact: dict[str, MetadataValue] = {}
    shown: list[str] = []
    if metric.enough_data:
        applied = {c.column: applied_threshold(c, policy.trend_factor) for c in spec.columns}
        methods = {c.column: c.method for c in spec.columns}
        cap = policy.report_columns
        if spec.rule == "reported":  # shown, never judged: no tests
            metrics += [ValueDrift(column=c, method=methods[c], threshold=t, tests=[]) for c, t in applied.items()]
        elif cap is not None and len(applied) > cap:
            # wide report: Evidently's ValueDrift (figures + test) for the drifted inputs and the nearest to their
            # threshold; every input's score is in the policy widget (see `DriftPolicy.report_columns`)
            shown = shown_columns(spec.columns, cap, policy.trend_factor)
            metrics += [ValueDrift(column=c, method=methods[c], threshold=applied[c]) for c in shown]
            compact = {"evidently_value_drift_columns": len(shown), "policy_table_columns": len(applied)}
        else:
            # "any": one drifted score is an alarm, so Evidently's dataset test fails on one column of n
            share = policy.drift_share if spec.rule == "share" else min(policy.drift_share, 1 / len(applied))
            metrics.append(
                DataDriftPreset(
                    columns=list(applied), per_column_method=methods, per_column_threshold=applied, drift_share=share
                )
            )
    meta = {**_window_metadata(metric.enough_data, spec.rows, policy.min_rows), **compact, **metadata}
    report = Report(
        [*metrics, *extra_metrics],
        include_tests=True,
        metadata=meta,
        tags=[*tags, *window_tags(metric.enough_data)],
    )
    # Evidently gets the columns it reports on (each ValueDrift copies the whole frame it is given)
    cols = list(judged.kinds) if not compact else [c for c in judged.kinds if c in set(shown)]
    current, reference = _datasets(judged.reference[cols], judged.current[cols], {c: judged.kinds[c] for c in cols})
    return report.run(current, reference)


def shown_columns(columns: Sequence[ColumnDrift], cap: int, trend_factor: float) -> list[str]:
    """The inputs a wide report draws with Evidently's ValueDrift: every drifted one (so Evidently's failed tests
    are the verdict's drifted inputs), then the undrifted nearest to their applied threshold, `cap` in all (more
    only when more than `cap` drifted); in the frame's column order."""
    drifted = [c.column for c in columns if c.drifted]
    rest = sorted(
        (c for c in columns if not c.drifted), key=lambda c: -c.score / max(applied_threshold(c, trend_factor), 1e-12)
    )
    chosen = set(drifted) | {c.column for c in rest[: max(0, cap - len(drifted))]}
    return [c.column for c in columns if c.column in chosen]


def _disagreements(run: Run, columns: Sequence[ColumnDrift]) -> list[str]:
    """Columns whose Evidently score or flag differs from the policy's judgement (expected: none)."""
    by_column = {m["config"].get("column"): m for m in _metric_entries(run) if m["config"].get("type") == VALUE_DRIFT}
    out = []
    for c in columns:
        entry = by_column.get(c.column)
        if entry is None:
            continue
        score = float(entry["value"])
        if abs(score - c.score) > 1e-9 * max(1.0, abs(c.score)) or (score >= entry["config"]["threshold"]) != c.drifted:
            out.append(c.column)
    if out:
        logger.warning("Evidently and the drift policy disagree on %d column(s): %s", len(out), out[:10])
    return out


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
    seeded rows first. Columns empty on either side are skipped and listed in `skipped_columns`. A column over its
    threshold is then re-judged by the noise floor and, with `reference_time` (the reference's timestamp column),
    the trend guard (see `DriftPolicy`); both only ever clear a flag, never raise one. The Evidently report shows
    the result (see the module docstring).
    """
    policy = policy or DriftPolicy()
    check_frames(reference, current, columns)
    usable, skipped = usable_columns(reference, current, columns)
    if not usable:
        raise DataError(f"none of the {len(columns)} monitored columns has values on both sides")
    if reference_time is not None and reference_time not in reference.columns:
        raise DataError(f"reference frame has no timestamp column {reference_time!r}")
    ref = sample_rows(reference, policy.sample_rows, policy.seed)
    cur = sample_rows(current, policy.sample_rows, policy.seed + 1)
    resolved = dict(kinds) if kinds is not None else infer_column_kinds(ref, usable, policy.max_categorical_values)
    resolved = {c: resolved[c] for c in usable}
    logger.info(
        "drift report: %d columns, %d reference rows (%d used), %d current rows (%d used)",
        len(resolved),
        len(reference),
        len(ref),
        len(current),
        len(cur),
    )
    ref_e, cur_e = prepare(ref, cur, resolved, policy.winsorize_quantile)
    methods = {c: policy.method_for(k) for c, k in resolved.items()}
    thresholds = {c: policy.threshold_for(k) for c, k in resolved.items()}
    judged = _judge(ref_e, cur_e, resolved, methods, thresholds, policy)
    column_drift = judged.columns
    if reference_time is not None:
        column_drift = apply_trend_guard(column_drift, ref, reference_time, policy, resolved)
    rows = (len(reference), len(current))
    meta: dict[str, MetadataValue] = {
        "report": "data_drift",
        "reference_rows": rows[0],
        "current_rows": rows[1],
        "sampled_rows_per_side": min(len(reference), policy.sample_rows or len(reference)),
        **(metadata or {}),
    }
    run = _run_policy_report(judged, _PolicyRun("inputs", "share", column_drift, rows), policy, meta, tags)
    summary = _drift_summary(run, column_drift, skipped, rows, (len(ref), len(cur)), policy)
    return MonitoringReport(
        kind="data_drift",
        title=title,
        run=run,
        summary=summary,
        columns=tuple(column_drift),
        skipped_columns=tuple(skipped),
        reference_rows=rows[0],
        current_rows=rows[1],
        enough_data=summary["enough_data"],
    )


def _drift_summary(
    run: Run,
    column_drift: Sequence[ColumnDrift],
    skipped: Sequence[str],
    rows: tuple[int, int],
    used: tuple[int, int],
    policy: DriftPolicy,
) -> dict[str, Any]:
    """The data-drift report's summary: counts under the policy (Evidently's own count beside them), per-column
    scores and what the guards cleared, and the policy table the report shows."""
    drifted = int(sum(c.drifted for c in column_drift))
    evidently_count = _value(_metric_entries(run), DRIFTED_COLUMNS)
    return {
        "columns": len(column_drift),
        "drifted_columns": drifted,
        "drifted_share": drifted / len(column_drift) if column_drift else 0.0,
        "enough_data": min(rows) >= policy.min_rows,
        # Evidently's DriftedColumnsCount at the applied thresholds (None on a too-small window: no drift tests)
        "evidently_drifted_columns": int(evidently_count["count"]) if isinstance(evidently_count, dict) else None,
        "evidently_disagreements": _disagreements(run, column_drift),
        "skipped_columns": list(skipped),
        "reference_rows": rows[0],
        "current_rows": rows[1],
        "reference_rows_used": used[0],
        "current_rows_used": used[1],
        "scores": {c.column: round(c.score, 6) for c in column_drift},
        # over the policy's threshold, before the noise floor and trend guard had their say
        "evidently_flagged": [c.column for c in column_drift if c.drifted or c.noise_floor > 0 or c.trend > 0],
        "noise_floors": {c.column: round(c.noise_floor, 6) for c in column_drift if c.noise_floor > 0},
        "trends": {c.column: round(c.trend, 6) for c in column_drift if c.trend > 0},
        "policy": policy_rows(column_drift, policy.trend_factor),
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
    view: str = "score",
    judged: bool = True,
) -> MonitoringReport:
    """Drift of model score distributions (e.g. churn risk, NBA propensity) with `policy.prediction_method`.

    `view` names what the scores are (`score`: a model's entity-level score, part of the verdict; `propensity`: the
    propensities of delivered actions, reported with `judged=False` since the policy picks high ones by design).
    """
    from evidently.metrics import MeanValue

    policy = policy or DriftPolicy()
    check_frames(reference, current, score_columns)
    usable, skipped = usable_columns(reference, current, score_columns)
    if not usable:
        raise DataError("no score column has values on both sides")
    ref = sample_rows(reference, policy.sample_rows, policy.seed)
    cur = sample_rows(current, policy.sample_rows, policy.seed + 1)
    kinds: dict[str, ColumnKind] = {c: "numeric" for c in usable}
    rows = (len(reference), len(current))
    meta: dict[str, MetadataValue] = {
        "report": "prediction_drift",
        "view": view,
        "reference_rows": rows[0],
        "current_rows": rows[1],
        **(metadata or {}),
    }
    # Scores live in [0, 1] and their tail (the few high-risk customers) is the point: no winsorizing here.
    ref_e, cur_e = prepare(ref, cur, kinds, 0.0)
    scored = _judge(
        ref_e,
        cur_e,
        kinds,
        {c: policy.prediction_method for c in usable},
        {c: policy.prediction_threshold for c in usable},
        policy,
    )
    spec = _PolicyRun(view, "any" if judged else "reported", scored.columns, rows)
    run = _run_policy_report(scored, spec, policy, meta, tags, extra_metrics=[MeanValue(column=c) for c in usable])
    summary = _prediction_summary(run, scored.columns, reference, usable, skipped, rows, policy)
    summary["judged"] = judged
    return MonitoringReport(
        kind="prediction_drift",
        title=title,
        run=run,
        summary=summary,
        columns=tuple(scored.columns),
        skipped_columns=tuple(skipped),
        reference_rows=rows[0],
        current_rows=rows[1],
        enough_data=summary["enough_data"],
    )


def _prediction_summary(
    run: Run,
    columns: Sequence[ColumnDrift],
    reference: pd.DataFrame,
    usable: Sequence[str],
    skipped: Sequence[str],
    rows: tuple[int, int],
    policy: DriftPolicy,
) -> dict[str, Any]:
    """The prediction-drift report's summary: scores, what drifted, mean scores on both sides, the policy table."""
    entries = _metric_entries(run)
    return {
        "scores": {c.column: round(c.score, 6) for c in columns},
        "drifted": [c.column for c in columns if c.drifted],
        "mean_current": {c: float(_value(entries, MEAN_VALUE, column=c)) for c in usable},
        "mean_reference": {c: float(pd.to_numeric(reference[c], errors="coerce").mean()) for c in usable},
        "skipped_columns": list(skipped),
        "reference_rows": rows[0],
        "current_rows": rows[1],
        "enough_data": min(rows) >= policy.min_rows,
        "evidently_disagreements": _disagreements(run, columns),
        "policy": policy_rows(columns, policy.trend_factor),
    }


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
    min_rows: int = 0,
) -> MonitoringReport:
    """Classification quality of a probability `score` against a binary `label` (rows without either are dropped).

    With a reference (e.g. the champion's test split), Evidently's tests compare each metric with it and the
    summary holds both sets of values and their differences. Fewer than `min_rows` rows with an outcome: the run is
    marked `too little data` (not plotted on the dashboards).
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
    enough = len(cur) >= min_rows
    meta: dict[str, MetadataValue] = {
        "report": "quality",
        **_window_metadata(enough, (0 if ref is None else len(ref), len(cur)), min_rows),
        "current_rows": len(cur),
        **{f"current_{k}": round(v, 6) for k, v in values.items() if not math.isnan(v)},
        **(metadata or {}),
    }
    if ref_values is not None:
        meta.update({f"reference_{k}": round(v, 6) for k, v in ref_values.items() if not math.isnan(v)})
    report = Report(metrics, include_tests=enough, metadata=meta, tags=[*tags, *window_tags(enough)])
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
        "enough_data": enough,
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
        enough_data=enough,
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
    min_rows: int = 0,
) -> MonitoringReport:
    """Acceptance rate, value per 1,000 decisions, share of "no action", share of cap hits.

    `current` (and optional `reference`, e.g. the previous window) are frames from `business_frame`. A window of
    fewer than `min_rows` decisions is marked `too little data` (not plotted on the dashboards).
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
    enough = len(current) >= min_rows
    meta: dict[str, MetadataValue] = {
        "report": "business",
        **_window_metadata(enough, (0 if reference is None else len(reference), len(current)), min_rows),
        "decisions": len(current),
        "decisions_with_outcome": int(with_outcome.sum()),
        **(metadata or {}),
    }
    report = Report(
        metrics, include_tests=reference is not None and enough, metadata=meta, tags=[*tags, *window_tags(enough)]
    )
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
        "enough_data": enough,
    }
    return MonitoringReport(
        kind="business",
        title=title,
        run=run,
        summary=summary,
        reference_rows=0 if reference is None else len(reference),
        current_rows=len(current),
        enough_data=enough,
    )
