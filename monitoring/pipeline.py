"""One monitoring run: reference (champion's training data) vs current (served traffic) -> reports + verdicts.

Every model the project's decision service loads (`Project.served_models`, or a subset) is monitored by what it is
in the project (`model_plan`), never by its name. What counts for its verdict and why:
- input drift on the model's inputs in the logged feature snapshot, when the model is keyed by the served entity
  (the snapshot holds that entity's online features). Action attributes of an action-level model (the genome's
  NBA) are left out: their mix is the serving policy's choice, not the world's. A model keyed by another entity
  (Berka's loan-default model, read for a suitability rule) has no inputs in the snapshot -- names may even
  coincide with the served entity's features and mean something else -- so its verdict says its inputs are not
  checked and rests on its score.
- prediction drift of the model's entity-level score when the log has it (`model_scores[model]`; `churn_risk` for
  rows logged before that column existed): one score per decision, the same kind of row as a training snapshot, so
  the comparison is fair.
- for a model that scores actions (`Project.action_models`): the propensity distribution of its delivered actions
  is reported (prediction-drift report) but is NOT part of the verdict: the policy picks high-propensity actions by
  design, so it always differs from the training rows. The outcome check -- observed acceptance of its delivered
  actions vs the propensity the champion gave them, overall and per action (`monitoring.drift.calibration_shifts`)
  -- is part of the verdict when the model's label IS the offer's outcome (`training.served.folds_served_decisions`,
  the genome's NBA); for a model labelled by another event (Berka's propensity: a product taken up within 90 days)
  it is reported beside the verdict, not judged: an alarm there would trigger retrains that cannot learn from it.
- business: a report only (acceptance, value per 1,000 decisions, no-action share, caps hit); business numbers
  move for many reasons besides model drift and are for people to read.

Every run leaves a record in the project's folders (`monitoring.store.monitoring_dirs`: the simulated bank's
`<home>/evidently` and `<home>/reports`, another project's under `<home>/projects/<name>/`): reports in the
Evidently workspace and as HTML/JSON under one time-stamped folder, `verdict.json` beside them, and one line per
run appended to `<reports>/verdicts.jsonl`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from monitoring.drift import DriftPolicy, DriftVerdict, OutcomeShift, calibration_shifts, decide_drift
from monitoring.policy_view import describe_policy
from monitoring.reports import (
    MonitoringReport,
    build_business_report,
    build_drift_report,
    build_prediction_drift_report,
    build_quality_report,
    business_frame,
)
from monitoring.sources import (
    NBA_PROPENSITY,
    SCORE,
    ReferenceData,
    ServedWindow,
    champion_reference,
    served_window,
)
from monitoring.store import (
    BUSINESS,
    BUSINESS_DESCRIPTION,
    Dashboard,
    SavedReport,
    ensure_project,
    monitoring_dirs,
    open_workspace,
    project_description,
    save_report,
    ui_command,
)
from nextbest.errors import ConfigError, DataError

if TYPE_CHECKING:
    from nextbest.project import Project
    from nextbest.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelPlan:
    """What monitoring checks for one model, read from its project (see the module docstring)."""

    model: str
    entity: str
    served_entity: str
    # Inputs left out of the input check (action attributes: the policy's choice, not the world's).
    action_attributes: tuple[str, ...] = ()
    # The actions the model scores (empty: it scores none; the outcome check and propensity report need some).
    actions: tuple[str, ...] = ()
    # Whether the outcome check is part of the verdict (the model's label is the offer's outcome).
    outcome_in_verdict: bool = False
    # The policy's churn model: a log row's `churn_risk` is its score when `model_scores` is absent.
    churn_model: str | None = None
    description: str = ""

    @property
    def inputs_served(self) -> bool:
        """The model is keyed by the served entity, so its inputs are in the logged feature snapshot."""
        return self.entity == self.served_entity


def model_plan(project: Project, model: str) -> ModelPlan:
    """The checks of `model` in `project` (ConfigError for a model the project does not have)."""
    from training.served import folds_served_decisions

    spec = project.model(model)
    actions = tuple(a for a, m in project.action_models.items() if m == model)
    return ModelPlan(
        model=model,
        entity=spec.entity,
        served_entity=project.serving.entity,
        action_attributes=_action_attributes(project) if spec.scores == "action" else (),
        actions=actions,
        outcome_in_verdict=bool(actions) and folds_served_decisions(project, model),
        churn_model=project.policy.churn_model,
        description=spec.description,
    )


def _action_attributes(project: Project) -> tuple[str, ...]:
    """The catalogue attributes an action-level model sees as inputs (the genome's `action_*` features)."""
    if project.kind != "genome":
        return ()
    from nextbest.features import ACTION_FEATURES, RELEVANCE_FEATURES

    # relevance is the customer's moment for the chosen action: it moves with the logging policy's choices too
    return (*ACTION_FEATURES, *RELEVANCE_FEATURES)


def score_column(model: str) -> str:
    """The column of a model's entity-level score in prediction-drift reports."""
    return f"{model}_score"


@dataclass
class ModelMonitoring:
    """The verdict for one model and the reports it rests on."""

    model: str
    verdict: DriftVerdict
    reports: list[SavedReport] = field(default_factory=list)
    monitored_columns: list[str] = field(default_factory=list)
    missing_columns: list[str] = field(default_factory=list)
    # Outcome checks measured and reported, but not part of the verdict (see `ModelPlan.outcome_in_verdict`).
    reported_outcomes: list[OutcomeShift] = field(default_factory=list)


@dataclass
class MonitoringResult:
    """Everything one `nextbest monitor` run produced."""

    drifted: bool
    models: dict[str, ModelMonitoring]
    business: SavedReport | None
    folder: Path
    workspace: Path
    window: tuple[datetime, datetime]
    project: str = "simbank"

    @property
    def exit_code(self) -> int:
        """1 when any model's verdict is drift (a scheduler can trigger `nextbest retrain` on it), else 0."""
        return 1 if self.drifted else 0

    @property
    def ui_command(self) -> str:
        return ui_command(self.workspace)

    def summary(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "drifted": self.drifted,
            "window": [self.window[0].isoformat(), self.window[1].isoformat()],
            "models": {
                name: {
                    **m.verdict.summary(),
                    "monitored_columns": len(m.monitored_columns),
                    "missing_columns": m.missing_columns,
                    "reported_outcome_shifts": [o.group for o in m.reported_outcomes if o.drifted],
                    "reports": [str(r.html) for r in m.reports],
                }
                for name, m in self.models.items()
            },
            "business": str(self.business.html) if self.business else None,
            "folder": str(self.folder),
            "workspace": str(self.workspace),
        }


@dataclass(frozen=True)
class _Inputs:
    """The inputs of one model judged on one window, and those left out (with why)."""

    present: list[str]
    missing: list[str]
    calendar: list[str]


def _select_inputs(plan: ModelPlan, reference: ReferenceData, served: ServedWindow, policy: DriftPolicy) -> _Inputs:
    """The model's inputs in the served snapshot, minus action attributes and (on short windows) calendar inputs."""
    if not plan.inputs_served:
        return _Inputs([], [], [])
    left_out = set(plan.action_attributes)
    inputs = [f for f in reference.feature_names if f not in left_out]
    present = [c for c in inputs if c in served.decisions.columns]
    missing = [c for c in inputs if c not in served.decisions.columns]
    if missing:
        logger.warning("%d model input(s) not in the served feature snapshots: %s", len(missing), missing[:10])
    window_days = (served.end - served.start).total_seconds() / 86_400
    calendar = policy.calendar_skipped(present, window_days)
    if calendar:
        logger.info("%s: calendar-cycle input(s) %s left out of a %.1f-day window", plan.model, calendar, window_days)
        present = [f for f in present if f not in calendar]
    if not present:
        raise DataError(f"no {plan.model} model input is in the served feature snapshots: cannot monitor input drift")
    return _Inputs(present, missing, calendar)


def _input_report(
    plan: ModelPlan,
    reference: ReferenceData,
    served: ServedWindow,
    inputs: _Inputs,
    policy: DriftPolicy,
    meta: dict[str, Any],
) -> MonitoringReport | None:
    """Input drift of the model's served inputs (None when its inputs are not in the snapshot)."""
    if not inputs.present:
        return None
    # The training rows' timestamps let the trend guard discount movement the model already saw while training.
    reference_time = "event_timestamp" if "event_timestamp" in reference.frame.columns else None
    return build_drift_report(
        reference.frame,
        served.decisions,
        inputs.present,
        policy=policy,
        reference_time=reference_time,
        metadata=meta,
        tags=[plan.model, f"v{reference.version}"],
        title=f"{plan.model}: inputs",
    )


def _score_report(
    plan: ModelPlan, reference: ReferenceData, served: ServedWindow, policy: DriftPolicy, meta: dict[str, Any]
) -> tuple[MonitoringReport | None, int]:
    """Prediction drift of the model's entity-level score (None when the window logged none); rows compared."""
    current = served.scores_of(plan.model, plan.churn_model)
    if not len(current):
        return None, 0
    column = score_column(plan.model)
    report = build_prediction_drift_report(
        pd.DataFrame({column: reference.frame[SCORE].to_numpy()}),
        pd.DataFrame({column: current.to_numpy()}),
        [column],
        policy=policy,
        metadata=meta,
        title=f"{plan.model}: score",
    )
    return report, len(current)


def _action_reports(
    plan: ModelPlan, reference: ReferenceData, served: ServedWindow, policy: DriftPolicy, meta: dict[str, Any]
) -> tuple[list[MonitoringReport], list[OutcomeShift]]:
    """For a model that scores actions: its delivered propensities (report), the outcome check, acceptance quality."""
    if not plan.actions or served.delivered.empty:
        return [], []
    delivered = served.delivered[served.delivered["action_id"].isin(plan.actions)].dropna(subset=[NBA_PROPENSITY])
    if delivered.empty:
        return [], []
    ref_scores = pd.DataFrame({NBA_PROPENSITY: reference.frame[SCORE].to_numpy()})
    reports = [
        build_prediction_drift_report(
            ref_scores,
            delivered,
            [NBA_PROPENSITY],
            policy=policy,
            metadata=meta,
            title=f"{plan.model}: propensity",
            view="propensity",
            judged=False,
        )
    ]
    outcomes = calibration_shifts(delivered, "accepted", NBA_PROPENSITY, policy, group_by="action_id")
    if delivered["accepted"].notna().any():
        ref_quality = reference.frame.rename(columns={"label": "accepted", SCORE: NBA_PROPENSITY})
        reports.append(
            build_quality_report(
                delivered,
                "accepted",
                NBA_PROPENSITY,
                reference=ref_quality,
                metadata=meta,
                title=f"{plan.model}: acceptance quality",
                min_rows=policy.min_rows,
            )
        )
    return reports, outcomes


def _notes(plan: ModelPlan, scored_rows: int, outcomes: Sequence[OutcomeShift]) -> list[str]:
    """What the verdict of this model could not judge, and why."""
    notes = []
    if not plan.inputs_served:
        notes.append(
            f"inputs not checked: {plan.model} is keyed by {plan.entity}, the served snapshot holds the "
            f"{plan.served_entity}'s features; the verdict rests on its score"
        )
    if not scored_rows and not plan.actions:
        notes.append(f"no {plan.model} score in this window's log: prediction drift not checked")
    if outcomes and not plan.outcome_in_verdict:
        notes.append(
            f"outcome check reported, not judged: {plan.model}'s label is not the offer's outcome "
            f"({sum(o.drifted for o in outcomes)} of {len(outcomes)} groups off the propensity given)"
        )
    return notes


def monitor_model(
    model: str,
    reference: ReferenceData,
    served: ServedWindow,
    policy: DriftPolicy,
    *,
    workspace: Any,
    reports_dir: Path,
    stamp: datetime,
    plan: ModelPlan | None = None,
) -> ModelMonitoring:
    """Reports and verdict for one model on one served window (`plan`: default from the simulated bank)."""
    if plan is None:
        from nextbest.project import load_project

        plan = model_plan(load_project(), model)
    policy = policy.model_copy(update={"key_features": tuple(policy.key_features or reference.key_features)})
    inputs = _select_inputs(plan, reference, served, policy)
    meta = {"model": model, "model_version": str(reference.version), "window_start": served.start.isoformat()}
    drift = _input_report(plan, reference, served, inputs, policy, meta)
    score, scored_rows = _score_report(plan, reference, served, policy, meta)
    action_reports, outcomes = _action_reports(plan, reference, served, policy, meta)
    verdict = decide_drift(
        policy,
        drift.columns if drift else (),
        score.columns if score else (),
        outcomes if plan.outcome_in_verdict else (),
        reference_rows=len(reference.frame),
        current_rows=len(served.decisions) if plan.inputs_served else scored_rows,
        skipped_columns=[*(drift.skipped_columns if drift else ()), *inputs.missing, *inputs.calendar],
        notes=_notes(plan, scored_rows, outcomes),
    )
    extra = {"verdict": verdict.summary()}
    reports = [
        save_report(
            r,
            model,
            workspace=workspace,
            reports_dir=reports_dir,
            stamp=stamp,
            extra=extra,
            description=plan.description,
        )
        for r in (drift, score, *action_reports)
        if r is not None
    ]
    return ModelMonitoring(
        model=model,
        verdict=verdict,
        reports=reports,
        monitored_columns=inputs.present,
        missing_columns=inputs.missing,
        reported_outcomes=[] if plan.outcome_in_verdict else list(outcomes),
    )


def monitored_models(project: Project, models: Sequence[str] | None = None) -> tuple[str, ...]:
    """The models to monitor: the project's served models, or the given subset of them (ConfigError otherwise)."""
    served = project.served_models
    if models is None:
        return served
    unknown = [m for m in models if m not in served]
    if unknown:
        raise ConfigError(
            f"unknown model(s) {unknown} for project {project.name!r}; its service loads: {', '.join(served)}"
        )
    return tuple(dict.fromkeys(models))


def dashboards(project: Project, policy: DriftPolicy, models: Sequence[str] | None = None) -> list[Dashboard]:
    """The Evidently dashboards of a project's monitoring: one per monitored model (what its plan checks), and the
    business view."""
    policy_words = describe_policy(policy)
    out = []
    for model in monitored_models(project, models):
        plan = model_plan(project, model)
        # an entity-level score is logged per decision for entity models; an action model's are its propensities
        scores = [(score_column(model), f"{model} score, mean of served decisions")]
        if project.model(model).scores == "action":
            scores = []
        if plan.actions:
            scores.append((NBA_PROPENSITY, "propensity of delivered actions, mean"))
        out.append(
            Dashboard(
                name=model,
                description=project_description(model, plan.description),
                inputs=plan.inputs_served,
                scores=tuple(scores),
                quality=bool(plan.actions),
                policy=policy_words,
            )
        )
    return [*out, Dashboard(name=BUSINESS, description=BUSINESS_DESCRIPTION)]


def prepare_workspace(settings: Settings, project: Project | None = None) -> Path:
    """Create the project's Evidently workspace, its projects and their dashboards before any monitoring run (so
    `evidently ui` opens on them after `make demo`); returns the workspace folder. Safe to call again."""
    from nextbest.project import project_of

    project = project or project_of(settings)
    ws_path, reports = monitoring_dirs(settings, project)
    workspace = open_workspace(ws_path)
    for spec in dashboards(project, project.drift):
        ensure_project(workspace, spec)
    reports.mkdir(parents=True, exist_ok=True)
    return ws_path


def run_monitoring(
    settings: Settings,
    *,
    project: Project | None = None,
    window_days: float = 7.0,
    end: datetime | None = None,
    policy: DriftPolicy | None = None,
    models: Sequence[str] | None = None,
    references: dict[str, ReferenceData] | None = None,
    served: ServedWindow | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> MonitoringResult:
    """Monitor the champions on the last `window_days` of served traffic; save every report; return the verdicts.

    `project` defaults to the settings' (`nextbest.project.project_of`), `policy` to its drift policy, `models` to
    its served models. `references` / `served` can be passed in (tests, notebooks); by default the champions'
    training data are rebuilt (`champion_reference`) and the window is read from the project's decision log.
    `progress(step, done, total)` is called after each step (the served window, each model's reference and its
    reports, the business report), for the command's progress bar.
    """
    from nextbest.project import project_of

    project = project or project_of(settings)
    names = monitored_models(project, models)
    policy = policy or project.drift
    stamp = datetime.now(UTC)
    total, done = 2 + 2 * len(names), 0

    def step(what: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(what, done, total)

    served = served or served_window(settings, project, window_days=window_days, end=end)
    step("served window read")
    ws_path, reports_dir = monitoring_dirs(settings, project)
    workspace = open_workspace(ws_path)
    for spec in dashboards(project, policy, names):
        ensure_project(workspace, spec)
    reports_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, ModelMonitoring] = {}
    for model in names:
        reference = (references or {}).get(model) or champion_reference(settings, model, project=project)
        step(f"{model}: champion's training data")
        results[model] = monitor_model(
            model,
            reference,
            served,
            policy,
            workspace=workspace,
            reports_dir=reports_dir,
            stamp=stamp,
            plan=model_plan(project, model),
        )
        step(f"{model}: Evidently reports")
    business = _business(served, window_days, workspace, reports_dir, stamp, policy.min_rows)
    step("business report")
    result = MonitoringResult(
        drifted=any(m.verdict.drifted for m in results.values()),
        models=results,
        business=business,
        folder=reports_dir / f"{stamp:%Y%m%dT%H%M%SZ}",
        workspace=ws_path,
        window=(served.start, served.end),
        project=project.name,
    )
    _write_record(result, reports_dir, stamp)
    logger.info("monitoring %s: %s (%s)", project.name, "DRIFT" if result.drifted else "no drift", result.folder)
    return result


def _business(
    served: ServedWindow, window_days: float, workspace: Any, reports_dir: Path, stamp: datetime, min_rows: int
) -> SavedReport | None:
    if not len(served.business):
        return None
    report = build_business_report(
        business_frame(served.business), metadata={"window_days": window_days}, min_rows=min_rows
    )
    return save_report(report, "business", workspace=workspace, reports_dir=reports_dir, stamp=stamp)


def _write_record(result: MonitoringResult, reports_dir: Path, stamp: datetime) -> None:
    """`verdict.json` in the run's folder and one line appended to `<reports>/verdicts.jsonl`."""
    result.folder.mkdir(parents=True, exist_ok=True)
    record = {"ts": stamp.isoformat(), **result.summary()}
    (result.folder / "verdict.json").write_text(json.dumps(record, indent=2, default=str))
    with (reports_dir / "verdicts.jsonl").open("a") as fh:
        fh.write(json.dumps(record, default=str) + "\n")
