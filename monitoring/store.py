"""Where reports go: an Evidently workspace (one Evidently project per model, so `evidently ui` shows their history)
and standalone HTML + JSON files under a reports folder (to mail, attach to a ticket or open without a server).

Each bank (`nextbest.project.Project`) has its own workspace and reports folder under its state folder
(`Project.home`): the simulated bank keeps `<home>/evidently` and `<home>/reports`, another project gets
`<home>/projects/<name>/evidently` and `<home>/projects/<name>/reports` (next to its Feast project and decision log),
so two banks' histories never mix and a model name can repeat across banks.

Evidently projects are found by name and created with a dashboard (`Dashboard`: the drift policy in words, the
share and count of inputs drifted under it, the mean served scores, acceptance quality, the business values over
time; every series named, only runs tagged `measured` plotted), so the UI is useful from the first report without
any clicking. The scorecard (`nextbest scorecard`) has its project in the same workspace, `<project> scorecard`,
with one bar plot per figure and a named series per group (`Dashboard.scorecard_by`, `monitoring.scorecard_view`).
`monitoring.pipeline.prepare_workspace` creates them before the first monitoring run (`make demo`
does), and every run rewrites them. `dashboard_series` reads back what the dashboard plots, as the UI does.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitoring.policy_view import MEASURED, POLICY_METRIC, TOO_LITTLE_DATA
from monitoring.reports import MonitoringReport
from nextbest.errors import DataError

if TYPE_CHECKING:
    from evidently.ui.workspace import Project, Workspace

    from nextbest.project import Project as NextbestProject
    from nextbest.settings import Settings

logger = logging.getLogger(__name__)

BUSINESS = "business"
BUSINESS_DESCRIPTION = "Decisions: acceptance rate, value per 1,000 decisions, share of no action, contact caps hit."
SCORECARD = "scorecard"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_SCORECARD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]* scorecard$")


def scorecard_project(project_name: str) -> str:
    """The Evidently project of a bank's scorecard (`nextbest scorecard`): `<project> scorecard`."""
    return f"{project_name} {SCORECARD}"


def project_description(name: str, model_description: str = "") -> str:
    """The Evidently project's description: the business view's, or a model's (its project's description of it)."""
    if name == BUSINESS:
        return BUSINESS_DESCRIPTION
    if _SCORECARD_NAME.match(name):
        return "Served traffic per group against its control: conversion, revenue uplift, relevance, churn, opt-outs."
    what = f" ({model_description.rstrip('.')})" if model_description else ""
    return f"Model {name}{what}: input drift, score drift and, for offers, acceptance quality."


def monitoring_dirs(settings: Settings, project: NextbestProject | None = None) -> tuple[Path, Path]:
    """(Evidently workspace, reports folder) of a project (default: the settings' project, see the module doc)."""
    from nextbest.project import project_of

    home = (project or project_of(settings)).home(settings)
    return home / "evidently", home / "reports"


def workspace_dir(settings: Settings, project: NextbestProject | None = None) -> Path:
    """The Evidently workspace folder of a project (`evidently ui --workspace <this>`)."""
    return monitoring_dirs(settings, project)[0]


def reports_dir(settings: Settings, project: NextbestProject | None = None) -> Path:
    """The reports folder of a project (`verdicts.jsonl`, `retrains.jsonl`, one folder per monitoring run)."""
    return monitoring_dirs(settings, project)[1]


def ui_command(workspace: Path) -> str:
    return f"evidently ui --workspace {workspace}"


def open_workspace(path: Path) -> Workspace:
    from evidently.ui.workspace import Workspace

    path.mkdir(parents=True, exist_ok=True)
    return Workspace(str(path))


@dataclass(frozen=True)
class Dashboard:
    """What one Evidently project's dashboard plots (`monitoring.pipeline.dashboards` builds them per project).

    `inputs`: the model's inputs are checked (its drift report exists); `scores`: (column, legend) of the score
    columns whose served mean is plotted; `quality`: acceptance quality is reported; `policy`: the drift policy in
    words (`monitoring.policy_view.describe_policy`).
    """

    name: str
    description: str
    inputs: bool = True
    scores: tuple[tuple[str, str], ...] = ()
    quality: bool = False
    policy: str = ""
    # A scorecard's dashboard (`nextbest scorecard`): the grouping and its groups (one named series per group).
    scorecard_by: str = ""
    groups: tuple[str, ...] = ()


def _measured(legend: str, metric: str, **labels: str) -> Any:
    """A named series of runs tagged `measured` (a too-small window is never drawn as a measurement)."""
    from evidently.sdk.models import PanelMetric

    return PanelMetric(legend=legend, metric=metric, metric_labels=labels, tags=[MEASURED])


def _model_panels(spec: Dashboard) -> list[Any]:
    from evidently.sdk.panels import line_plot_panel

    panels = []
    if spec.inputs:
        panels += [
            line_plot_panel(
                title="Share of inputs drifted under the drift policy",
                description="after the noise and trend guards: the share the verdict's first rule reads",
                values=[_measured("share of inputs drifted", POLICY_METRIC, view="inputs", value_type="share")],
                size="half",
            ),
            line_plot_panel(
                title="Inputs drifted under the drift policy",
                values=[_measured("inputs drifted", POLICY_METRIC, view="inputs", value_type="count")],
                size="half",
            ),
        ]
    if spec.scores:
        panels.append(
            line_plot_panel(
                title="Scores of served decisions (mean)",
                values=[_measured(legend, "MeanValue", column=column) for column, legend in spec.scores],
                size="half",
            )
        )
    if spec.quality:
        panels.append(
            line_plot_panel(
                title="Acceptance quality of delivered actions",
                values=[_measured("ROC-AUC", "RocAuc"), _measured("log-loss", "LogLoss")],
                size="half",
            )
        )
    return panels


def _business_panels() -> list[Any]:
    from evidently.sdk.panels import line_plot_panel

    return [
        line_plot_panel(
            title="Acceptance, no-action and cap-hit shares",
            values=[
                _measured(legend, "MeanValue", column=col)
                for col, legend in (
                    ("accepted", "acceptance rate"),
                    ("no_action", "no-action share"),
                    ("cap_hit", "cap-hit share"),
                )
            ],
            size="half",
        ),
        line_plot_panel(
            title="Value per 1,000 decisions (EUR)",
            values=[_measured("value per 1,000 decisions", "MeanValue", column="value_per_1000")],
            size="half",
        ),
    ]


def _scorecard_panels(spec: Dashboard) -> list[Any]:
    """One bar plot per scorecard figure, one named series per group (`monitoring.scorecard_view`)."""
    from evidently.sdk.panels import bar_plot_panel

    from monitoring.scorecard_view import FIGURE_METRIC, FIGURES

    def series(figure: str) -> list[Any]:
        return [_measured(g, FIGURE_METRIC, by=spec.scorecard_by, group=g, figure=figure) for g in spec.groups]

    by = spec.scorecard_by
    uplift = [
        _measured(f"{g}{end}", FIGURE_METRIC, by=by, group=g, figure=figure)
        for g in spec.groups
        for figure, end in (("uplift", ""), ("uplift_low", ", 95% low"), ("uplift_high", ", 95% high"))
    ]
    panels = [
        bar_plot_panel(title=f"Conversion rate by {by}", values=series("conversion_rate"), size="half"),
        bar_plot_panel(
            title=f"Revenue uplift per customer vs control by {by} (95% interval)",
            description="revenue per customer minus its control's; Welch standard error, normal 95% interval",
            values=uplift,
            size="half",
        ),
    ]
    for figure, legend, _ in FIGURES:
        if figure in ("conversion_rate", "uplift", "uplift_low", "uplift_high"):
            continue
        panels.append(bar_plot_panel(title=f"{legend.capitalize()} by {by}", values=series(figure), size="half"))
    return panels


def _dashboard_panels(spec: Dashboard) -> list[Any]:
    """A text panel (what the project is, the drift policy, how small windows are treated), then the plots."""
    from evidently.sdk.panels import text_panel

    words = " ".join(
        w
        for w in (
            spec.description,
            spec.policy,
            f"Runs tagged '{TOO_LITTLE_DATA}' (fewer rows than the policy needs) are listed but never plotted.",
        )
        if w
    )
    if spec.scorecard_by:
        words = f"{spec.description} {spec.policy}".strip()
        panels = [text_panel(title=f"{spec.name} by {spec.scorecard_by}", description=words)]
        return panels + _scorecard_panels(spec)
    panels = [text_panel(title=f"{spec.name}: monitoring history", description=words)]
    return panels + (_business_panels() if spec.name == BUSINESS else _model_panels(spec))


def save_dashboard(workspace: Workspace, project: Project, spec: Dashboard) -> None:
    """Write the project's dashboard (replacing the one it had)."""
    # The model is saved in one go: `ProjectDashboard.add_panel` of evidently 0.7.23 lists a panel twice in an
    # existing tab.
    from evidently.sdk.models import DashboardModel, DashboardTabModel

    panels = _dashboard_panels(spec)
    model = DashboardModel(tabs=[DashboardTabModel(title="Overview", panels=[p.id for p in panels])], panels=panels)
    workspace.save_dashboard(project.id, model)


def _check_name(name: str) -> None:
    if not _NAME.match(name) and not _SCORECARD_NAME.match(name):
        raise DataError(
            f"invalid monitoring project name {name!r}: a model name, {BUSINESS!r} or '<project> {SCORECARD}'"
        )


def get_project(workspace: Workspace, name: str, model_description: str = "") -> Project:
    """The project called `name` (a model's name or `business`), created (with a default dashboard) if the workspace
    has none; `model_description` (the bank's project file's words for the model) goes into its description."""
    _check_name(name)
    found = workspace.search_project(name)
    if found:
        return found[0]
    return ensure_project(workspace, Dashboard(name, project_description(name, model_description)))


def ensure_project(workspace: Workspace, spec: Dashboard) -> Project:
    """The project `spec.name`, created if missing, its dashboard written from `spec` (older dashboards replaced)."""
    _check_name(spec.name)
    found = workspace.search_project(spec.name)
    project = found[0] if found else workspace.create_project(spec.name, description=spec.description)
    if not found:
        logger.info("created Evidently project %s (%s)", spec.name, project.id)
    try:
        save_dashboard(workspace, project, spec)
    except Exception:  # the dashboard is a convenience; never lose a report over it
        logger.warning("could not write the dashboard of project %s", spec.name, exc_info=True)
    return project


@dataclass(frozen=True)
class SavedReport:
    """Where one report went."""

    project: str
    kind: str
    run_id: str
    html: Path
    json: Path


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def save_report(
    report: MonitoringReport,
    project: str,
    *,
    workspace: Workspace,
    reports_dir: Path,
    stamp: datetime | None = None,
    extra: dict[str, Any] | None = None,
    description: str = "",
) -> SavedReport:
    """Add the report to the project's history in the workspace and write `<reports_dir>/<stamp>/<project>-<kind>`
    `.html` (Evidently's standalone page) and `.json` (our summary, `extra` such as the verdict, Evidently's
    metrics and tests). `description`: the model's, for an Evidently project created now."""
    stamp = stamp or datetime.now(UTC)
    proj = get_project(workspace, project, description)
    marked = "" if report.enough_data else f" ({TOO_LITTLE_DATA})"
    ref = workspace.add_run(proj.id, report.run, name=f"{project} {report.kind} {stamp:%Y-%m-%d %H:%M:%S}{marked}")
    folder = reports_dir / f"{stamp:%Y%m%dT%H%M%SZ}"
    folder.mkdir(parents=True, exist_ok=True)
    stem = project.replace(" ", "-")  # `<project> scorecard`
    base = folder / f"{stem}-{_slug(report.kind)}"
    if base.with_suffix(".json").exists():  # same report kind twice in one second: keep both
        base = folder / f"{stem}-{_slug(report.kind)}-{str(ref.id)[-8:]}"
    html_path, json_path = base.with_suffix(".html"), base.with_suffix(".json")
    report.run.save_html(str(html_path))
    payload = {
        "project": project,
        "kind": report.kind,
        "title": report.title,
        "created": stamp.isoformat(),
        "evidently_run_id": str(ref.id),
        "reference_rows": report.reference_rows,
        "current_rows": report.current_rows,
        "enough_data": report.enough_data,
        "summary": report.summary,
        **(extra or {}),
        "evidently": report.evidently_dict(),
    }
    json_path.write_text(json.dumps(payload, indent=2, default=_json_default))
    logger.info("saved %s %s report: %s", project, report.kind, html_path)
    return SavedReport(project=project, kind=report.kind, run_id=str(ref.id), html=html_path, json=json_path)


def _json_default(obj: object) -> object:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, datetime | Path):
        return str(obj)
    if hasattr(obj, "value"):  # enums such as Evidently's TestStatus
        return obj.value
    if hasattr(obj, "model_dump"):
        return obj.model_dump()
    return str(obj)


def list_runs(workspace: Workspace, project: str) -> list[str]:
    """Ids of the runs stored for a project (empty if the project does not exist yet)."""
    found = workspace.search_project(project)
    if not found:
        return []
    return [str(r) for r in workspace.list_runs(found[0].id)]


def read_verdicts(reports_dir: Path) -> list[dict[str, Any]]:
    """Every monitoring run's record (oldest first) from `<reports_dir>/verdicts.jsonl`; [] before the first run."""
    path = reports_dir / "verdicts.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def drift_table(report_json: Path, top: int | None = None) -> list[dict[str, Any]]:
    """Per-column drift of a saved drift report under the drift policy, worst first (score / policy threshold).

    Each row: the column, its method, score, the policy's threshold, whether the score is over it, the noise floor
    and trend bar of the guards (0 when not estimated), the threshold applied (Evidently's) and the verdict's flag.
    """
    payload = json.loads(report_json.read_text())
    if payload.get("kind") not in ("data_drift", "prediction_drift"):
        raise DataError(f"{report_json} is a {payload.get('kind')!r} report, not a drift report")
    rows = [
        {
            "column": r["column"],
            "method": r["method"],
            "score": r["score"],
            "threshold": r["threshold"],
            "over_threshold": r["score"] >= r["threshold"],
            "noise_floor": r["noise_floor"],
            "trend_bar": r["trend_bar"],
            "threshold_applied": r["threshold_applied"],
            "drifted": r["drifted"],
        }
        for r in payload["summary"].get("policy") or _legacy_policy_rows(payload)
    ]
    rows.sort(key=lambda r: -(r["score"] / r["threshold"] if r["threshold"] else 0.0))
    return rows[:top] if top else rows


def _legacy_policy_rows(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Policy rows of a report saved before reports carried them (Evidently's test at the policy's threshold)."""
    tests = {t["name"]: t["status"] for t in payload["evidently"]["tests"]}
    noise = payload["summary"].get("noise_floors", {})
    trends = payload["summary"].get("trends", {})
    rows = []
    for m in payload["evidently"]["metrics"]:
        cfg = m.get("config", {})
        if cfg.get("type") != "evidently:metric_v2:ValueDrift":
            continue
        col = cfg["column"]
        failed = tests.get(f"Value Drift for column {col}") == "FAIL"
        rows.append(
            {
                "column": col,
                "method": cfg.get("method"),
                "score": m["value"],
                "threshold": cfg.get("threshold"),
                "noise_floor": noise.get(col, 0.0),
                "trend_bar": trends.get(col, 0.0),
                "threshold_applied": cfg.get("threshold"),
                "drifted": failed and m["value"] > noise.get(col, 0.0),
            }
        )
    return rows


def dashboard_series(path: Path, project: str) -> list[dict[str, Any]]:
    """What the project's dashboard plots, read as the Evidently UI reads it (its data storage, its series filters).

    One entry per plotted series: panel title, the legend the UI shows (the panel value whose filter the series
    matched), the series' metric parameters, its values (None where a run has no point) and the runs' tags. An
    empty list for a project that does not exist yet.
    """
    from evidently.legacy.utils.sync import async_to_sync
    from evidently.ui.service.base import SeriesFilter
    from evidently.ui.service.storage.local import create_local_project_manager

    found = open_workspace(path).search_project(project)
    if not found:
        return []
    manager = create_local_project_manager(str(path), autorefresh=False)
    dashboard = async_to_sync(manager.dashboard_manager.get_dashboard(found[0].id))
    out = []
    for panel in dashboard.panels:
        if not panel.values:
            continue
        filters = [
            SeriesFilter(tags=v.tags, metadata=v.metadata, metric=v.metric, metric_labels=v.metric_labels)
            for v in panel.values
        ]
        response = async_to_sync(manager.data_storage.get_data_series(found[0].id, filters, None, None))
        for series in response.series:
            out.append(
                {
                    "panel": panel.title,
                    "legend": panel.values[series.filter_index].legend,
                    "params": series.params,
                    "values": series.values,
                    "tags": [s.tags for s in response.sources],
                }
            )
    return out
