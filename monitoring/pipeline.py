"""One monitoring run: reference (champion's training data) vs current (served traffic) -> reports + verdicts.

Per model, what counts for the verdict and why:
- churn: input drift on the churn model's inputs, and prediction drift of `churn_risk` (one score per decision,
  the same kind of row as a training snapshot, so the comparison is fair).
- nba: input drift on the customer-level inputs (action attributes are left out: their mix is the serving
  policy's choice, not the world's), and the outcome check: observed acceptance of delivered actions vs the
  propensity the champion gave them, overall and per action (`monitoring.drift.calibration_shifts`). The
  propensity distribution of delivered actions is reported (prediction-drift report) but is NOT part of the
  verdict: the policy picks high-propensity actions by design, so it always differs from the training contacts
  chosen by the historical logging policy.
- business: a report only (acceptance, value per 1,000 decisions, no-action share, caps hit); business numbers
  move for many reasons besides model drift and are for people to read.

Every run leaves a record: reports in the Evidently workspace and as HTML/JSON under one time-stamped folder,
`verdict.json` beside them, and one line per run appended to `<reports_dir>/verdicts.jsonl`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from monitoring.drift import DriftPolicy, DriftVerdict, calibration_shifts, decide_drift
from monitoring.reports import (
    build_business_report,
    build_drift_report,
    build_prediction_drift_report,
    build_quality_report,
    business_frame,
)
from monitoring.sources import (
    CHURN_RISK,
    NBA_PROPENSITY,
    SCORE,
    ReferenceData,
    ServedWindow,
    champion_reference,
    read_served_window,
)
from monitoring.store import SavedReport, open_workspace, save_report, ui_command, workspace_dir
from nextbest.errors import DataError

if TYPE_CHECKING:
    from nextbest.settings import Settings

logger = logging.getLogger(__name__)

MODELS: tuple[str, ...] = ("churn", "nba")


@dataclass
class ModelMonitoring:
    """The verdict for one model and the reports it rests on."""

    model: str
    verdict: DriftVerdict
    reports: list[SavedReport] = field(default_factory=list)
    monitored_columns: list[str] = field(default_factory=list)
    missing_columns: list[str] = field(default_factory=list)


@dataclass
class MonitoringResult:
    """Everything one `nextbest monitor` run produced."""

    drifted: bool
    models: dict[str, ModelMonitoring]
    business: SavedReport | None
    folder: Path
    workspace: Path
    window: tuple[datetime, datetime]

    @property
    def exit_code(self) -> int:
        """1 when any model's verdict is drift (a scheduler can trigger `nextbest retrain` on it), else 0."""
        return 1 if self.drifted else 0

    @property
    def ui_command(self) -> str:
        return ui_command(self.workspace)

    def summary(self) -> dict[str, Any]:
        return {
            "drifted": self.drifted,
            "window": [self.window[0].isoformat(), self.window[1].isoformat()],
            "models": {
                name: {
                    **m.verdict.summary(),
                    "monitored_columns": len(m.monitored_columns),
                    "missing_columns": m.missing_columns,
                    "reports": [str(r.html) for r in m.reports],
                }
                for name, m in self.models.items()
            },
            "business": str(self.business.html) if self.business else None,
            "folder": str(self.folder),
            "workspace": str(self.workspace),
        }


def _columns(wanted: Sequence[str], available: pd.DataFrame) -> tuple[list[str], list[str]]:
    present = [c for c in wanted if c in available.columns]
    missing = [c for c in wanted if c not in available.columns]
    if missing:
        logger.warning("%d model input(s) not in the served feature snapshots: %s", len(missing), missing[:10])
    return present, missing


def monitor_model(
    model: str,
    reference: ReferenceData,
    served: ServedWindow,
    policy: DriftPolicy,
    *,
    workspace: Any,
    reports_dir: Path,
    stamp: datetime,
) -> ModelMonitoring:
    """Reports and verdict for one model (`churn` or `nba`) on one served window."""
    from nextbest.features import ACTION_FEATURES

    policy = policy.model_copy(update={"key_features": tuple(policy.key_features or reference.key_features)})
    inputs = [f for f in reference.feature_names if model != "nba" or f not in set(ACTION_FEATURES)]
    present, missing = _columns(inputs, served.decisions)
    window_days = (served.end - served.start).total_seconds() / 86_400
    calendar = policy.calendar_skipped(present, window_days)
    if calendar:
        logger.info("%s: calendar-cycle input(s) %s left out of a %.1f-day window", model, calendar, window_days)
        present = [f for f in present if f not in calendar]
    if not present:
        raise DataError(f"no {model} model input is in the served feature snapshots: cannot monitor input drift")
    meta = {"model": model, "model_version": str(reference.version), "window_start": served.start.isoformat()}
    tags = [model, f"v{reference.version}"]
    # The training rows' timestamps let the trend guard discount movement the model already saw while training.
    reference_time = "event_timestamp" if "event_timestamp" in reference.frame.columns else None
    drift = build_drift_report(
        reference.frame,
        served.decisions,
        present,
        policy=policy,
        reference_time=reference_time,
        metadata=meta,
        tags=tags,
        title=f"{model}: inputs",
    )
    predictions, outcomes, saved_extra = [], [], []
    if model == "churn":
        ref_scores = pd.DataFrame({CHURN_RISK: reference.frame[SCORE].to_numpy()})
        cur_scores = served.decisions[[CHURN_RISK]].dropna()
        if len(cur_scores):
            pred = build_prediction_drift_report(ref_scores, cur_scores, [CHURN_RISK], policy=policy, metadata=meta)
            predictions = list(pred.columns)
            saved_extra.append(pred)
    else:
        delivered = served.delivered.dropna(subset=[NBA_PROPENSITY])
        if len(delivered):
            ref_scores = pd.DataFrame({NBA_PROPENSITY: reference.frame[SCORE].to_numpy()})
            saved_extra.append(
                build_prediction_drift_report(
                    ref_scores, delivered, [NBA_PROPENSITY], policy=policy, metadata=meta, title="nba: propensity"
                )
            )
            outcomes = calibration_shifts(delivered, "accepted", NBA_PROPENSITY, policy, group_by="action_id")
            if delivered["accepted"].notna().any():
                ref_quality = reference.frame.rename(columns={"label": "accepted"})
                saved_extra.append(
                    build_quality_report(
                        delivered,
                        "accepted",
                        NBA_PROPENSITY,
                        reference=ref_quality.rename(columns={SCORE: NBA_PROPENSITY}),
                        metadata=meta,
                        title="nba: acceptance quality",
                    )
                )
    verdict = decide_drift(
        policy,
        drift.columns,
        predictions,
        outcomes,
        reference_rows=len(reference.frame),
        current_rows=len(served.decisions),
        skipped_columns=[*drift.skipped_columns, *missing, *calendar],
    )
    extra = {"verdict": verdict.summary()}
    reports = [
        save_report(r, model, workspace=workspace, reports_dir=reports_dir, stamp=stamp, extra=extra)
        for r in (drift, *saved_extra)
    ]
    return ModelMonitoring(
        model=model, verdict=verdict, reports=reports, monitored_columns=present, missing_columns=missing
    )


def run_monitoring(
    settings: Settings,
    *,
    window_days: float = 7.0,
    end: datetime | None = None,
    policy: DriftPolicy | None = None,
    models: Sequence[str] = MODELS,
    references: dict[str, ReferenceData] | None = None,
    served: ServedWindow | None = None,
) -> MonitoringResult:
    """Monitor the champions on the last `window_days` of served traffic; save every report; return the verdicts.

    `references` / `served` can be passed in (tests, notebooks); by default the champions' training data are
    rebuilt (`champion_reference`) and the window is read from `settings.decision_log_uri`.
    """
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise DataError(f"unknown model(s) {unknown}; known: {', '.join(MODELS)}")
    policy = policy or DriftPolicy()
    stamp = datetime.now(UTC)
    served = served or read_served_window(settings.decision_log_uri, window_days=window_days, end=end)
    references = dict(references or {})
    ws_path = workspace_dir(settings)
    workspace = open_workspace(ws_path)
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, ModelMonitoring] = {}
    for model in models:
        reference = references.get(model) or champion_reference(settings, model)
        results[model] = monitor_model(
            model, reference, served, policy, workspace=workspace, reports_dir=settings.reports_dir, stamp=stamp
        )
    business = None
    if len(served.business):
        report = build_business_report(business_frame(served.business), metadata={"window_days": window_days})
        business = save_report(report, "business", workspace=workspace, reports_dir=settings.reports_dir, stamp=stamp)
    folder = settings.reports_dir / f"{stamp:%Y%m%dT%H%M%SZ}"
    folder.mkdir(parents=True, exist_ok=True)
    result = MonitoringResult(
        drifted=any(m.verdict.drifted for m in results.values()),
        models=results,
        business=business,
        folder=folder,
        workspace=ws_path,
        window=(served.start, served.end),
    )
    record = {"ts": stamp.isoformat(), **result.summary()}
    (folder / "verdict.json").write_text(json.dumps(record, indent=2, default=str))
    with (settings.reports_dir / "verdicts.jsonl").open("a") as fh:
        fh.write(json.dumps(record, default=str) + "\n")
    logger.info("monitoring: %s (%s)", "DRIFT" if result.drifted else "no drift", folder)
    return result
