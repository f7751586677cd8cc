"""Where reports go: an Evidently workspace (one Evidently project per model, so `evidently ui` shows their history)
and standalone HTML + JSON files under a reports folder (to mail, attach to a ticket or open without a server).

Each bank (`nextbest.project.Project`) has its own workspace and reports folder under its state folder
(`Project.home`): the simulated bank keeps `<home>/evidently` and `<home>/reports`, another project gets
`<home>/projects/<name>/evidently` and `<home>/projects/<name>/reports` (next to its Feast project and decision log),
so two banks' histories never mix and a model name can repeat across banks.

Evidently projects are found by name and created on first use with a small dashboard (drift share, prediction
drift, quality, business values over time), so the UI is useful from the first report without any clicking.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitoring.reports import MonitoringReport
from nextbest.errors import DataError

if TYPE_CHECKING:
    from evidently.ui.workspace import Project, Workspace

    from nextbest.project import Project as NextbestProject
    from nextbest.settings import Settings

logger = logging.getLogger(__name__)

BUSINESS = "business"
BUSINESS_DESCRIPTION = "Decisions: acceptance rate, value per 1,000 decisions, share of no action, contact caps hit."
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def project_description(name: str, model_description: str = "") -> str:
    """The Evidently project's description: the business view's, or a model's (its project's description of it)."""
    if name == BUSINESS:
        return BUSINESS_DESCRIPTION
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


def _dashboard_panels(name: str, description: str) -> list[Any]:
    """Panels plotting our key values over the project's runs."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel, text_panel

    panels = [text_panel(title=f"{name}: monitoring history", description=description)]
    if name != BUSINESS:
        panels += [
            line_plot_panel(
                title="Share of drifted inputs",
                values=[
                    PanelMetric(legend="share", metric="DriftedColumnsCount", metric_labels={"value_type": "share"})
                ],
                size="half",
            ),
            line_plot_panel(
                title="Model quality (ROC-AUC, log-loss)",
                values=[
                    PanelMetric(legend="ROC-AUC", metric="RocAuc"),
                    PanelMetric(legend="log-loss", metric="LogLoss"),
                ],
                size="half",
            ),
        ]
    else:
        panels += [
            line_plot_panel(
                title="Acceptance, no-action and cap-hit shares",
                values=[
                    PanelMetric(legend=col, metric="MeanValue", metric_labels={"column": col})
                    for col in ("accepted", "no_action", "cap_hit")
                ],
                size="half",
            ),
            line_plot_panel(
                title="Value per 1,000 decisions (EUR)",
                values=[PanelMetric(legend="value", metric="MeanValue", metric_labels={"column": "value_per_1000"})],
                size="half",
            ),
        ]
    return panels


def _add_dashboard(workspace: Workspace, project: Project, name: str, description: str) -> None:
    # The model is saved in one go: `ProjectDashboard.add_panel` of evidently 0.7.23 lists a panel twice in an
    # existing tab.
    from evidently.sdk.models import DashboardModel, DashboardTabModel

    panels = _dashboard_panels(name, description)
    model = DashboardModel(tabs=[DashboardTabModel(title="Overview", panels=[p.id for p in panels])], panels=panels)
    workspace.save_dashboard(project.id, model)


def get_project(workspace: Workspace, name: str, model_description: str = "") -> Project:
    """The project called `name` (a model's name or `business`), created (with its dashboard) if the workspace has
    none; `model_description` (the bank's project file's words for the model) goes into its description."""
    if not _NAME.match(name):
        raise DataError(f"invalid monitoring project name {name!r}: a model name or {BUSINESS!r}")
    found = workspace.search_project(name)
    if found:
        return found[0]
    description = project_description(name, model_description)
    project = workspace.create_project(name, description=description)
    try:
        _add_dashboard(workspace, project, name, description)
    except Exception:  # the dashboard is a convenience; never lose a report over it
        logger.warning("could not add dashboard panels to project %s", name, exc_info=True)
    logger.info("created Evidently project %s (%s)", name, project.id)
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
    ref = workspace.add_run(proj.id, report.run, name=f"{project} {report.kind} {stamp:%Y-%m-%d %H:%M:%S}")
    folder = reports_dir / f"{stamp:%Y%m%dT%H%M%SZ}"
    folder.mkdir(parents=True, exist_ok=True)
    base = folder / f"{project}-{_slug(report.kind)}"
    if base.with_suffix(".json").exists():  # same report kind twice in one second: keep both
        base = folder / f"{project}-{_slug(report.kind)}-{str(ref.id)[-8:]}"
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
    """Per-column drift of a saved data-drift report (score, threshold, drifted per Evidently's test), worst first."""
    payload = json.loads(report_json.read_text())
    if payload.get("kind") not in ("data_drift", "prediction_drift"):
        raise DataError(f"{report_json} is a {payload.get('kind')!r} report, not a drift report")
    tests = {t["name"]: t["status"] for t in payload["evidently"]["tests"]}
    noise = payload["summary"].get("noise_floors", {})
    trends = payload["summary"].get("trends", {})
    rows = []
    for m in payload["evidently"]["metrics"]:
        cfg = m.get("config", {})
        if cfg.get("type") != "evidently:metric_v2:ValueDrift":
            continue
        col = cfg["column"]
        rows.append(
            {
                "column": col,
                "method": cfg.get("method"),
                "score": m["value"],
                "threshold": cfg.get("threshold"),
                "over_threshold": tests.get(f"Value Drift for column {col}") == "FAIL",
                "noise_floor": noise.get(col, 0.0),
                "trend": trends.get(col, 0.0),
            }
        )
    rows.sort(key=lambda r: -(r["score"] / r["threshold"] if r["threshold"] else 0.0))
    return rows[:top] if top else rows
