"""The scorecard (`nextbest.scorecard`) as an Evidently snapshot, for the dashboard of `<project> scorecard`.

One run per `nextbest scorecard`: a table widget of every group against its control (`NextbestScorecard`), then one
`NextbestScorecardFigure` per measured group and figure (conversion rate, revenue uplift vs control and the two ends
of its 95% interval, value per decision, acceptance and dismissal rates among shown, churn and opt-out rates). The
figure's parameters (grouping, group, figure) are its labels, so the dashboard (`monitoring.store`, a `Dashboard`
with `scorecard_by`) plots one named series per group. A group with fewer customers than the project's drift policy
`min_rows` is listed in the table as `too little data` and gets no figure metric: it is never drawn as a
measurement. A group measured against a control that small gets its own figures, not its uplift. Like the drift
policy's metric, the values are computed outside Evidently and handed in; snapshots store results and widgets, so
`evidently ui` shows them without Nextbest.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from evidently._pydantic_compat import PrivateAttr
from evidently.core.metric_types import SingleValueCalculation, SingleValueMetric
from evidently.legacy.model.widget import BaseWidgetInfo
from evidently.legacy.renderers.html_widgets import CounterData, counter, table_data

from monitoring.policy_view import MEASURED, TOO_LITTLE_DATA, window_tags
from monitoring.reports import MonitoringReport
from nextbest.errors import NotReadyError
from nextbest.scorecard import scorecard_folder

if TYPE_CHECKING:
    from nextbest.project import Project
    from nextbest.scorecard import Scorecard
    from nextbest.settings import Settings

logger = logging.getLogger(__name__)

FIGURE_METRIC = "evidently:metric_v2:NextbestScorecardFigure"
TABLE_METRIC = "evidently:metric_v2:NextbestScorecard"
#: (figure: the scorecard frame's column, its name on the dashboard, a percentage)
FIGURES: tuple[tuple[str, str, bool], ...] = (
    ("conversion_rate", "conversion rate", True),
    ("uplift", "revenue uplift vs control", False),
    ("uplift_low", "revenue uplift, 95% low", False),
    ("uplift_high", "revenue uplift, 95% high", False),
    ("value_per_decision", "value per decision", False),
    ("acceptance_rate", "acceptance among shown", True),
    ("dismissal_rate", "dismissals among shown", True),
    ("churn_rate", "churn rate", True),
    ("opt_out_rate", "opt-out rate", True),
    # the fairness check's lowest adverse-impact ratio of the group (nextbest.fairness; < 0.8 is flagged)
    ("fairness_ratio", "lowest adverse-impact ratio", False),
)
FIGURE_NAMES = {f: name for f, name, _ in FIGURES}
TABLE_HEADER = ["group", "vs", "customers", *(name for _, name, _ in FIGURES), "status"]


UPLIFT_FIGURES = ("uplift", "uplift_low", "uplift_high")
CONTROL_TOO_SMALL = "measured; uplift: control too small"


def group_status(frame: pd.DataFrame, min_customers: int) -> dict[str, tuple[bool, bool]]:
    """Per group: (its own figures are measured: it has `min_customers` customers, its uplift is measured: so has
    its baseline)."""
    out = {}
    for group, row in frame.iterrows():
        own = int(row["customers"]) >= min_customers
        base = row["baseline"]
        vs = isinstance(base, str) and base in frame.index and int(frame.loc[base, "customers"]) >= min_customers
        out[str(group)] = (own, own and vs)
    return out


def _status(own: bool, vs: bool, control: bool) -> str:
    if not own:
        return TOO_LITTLE_DATA
    return MEASURED if vs or control else CONTROL_TOO_SMALL


class NextbestScorecardFigure(SingleValueMetric):
    """One figure of one scorecard group (its value computed by `nextbest.scorecard`)."""

    by: str
    group: str
    figure: str

    _value: float = PrivateAttr(default=math.nan)


class NextbestScorecardFigureCalculation(SingleValueCalculation[NextbestScorecardFigure]):
    def calculate(self, context: Any, current_data: Any, reference_data: Any) -> Any:
        result = self.result(self.metric._value)
        result.widget = [
            counter(counters=[CounterData(_format(self.metric.figure, self.metric._value), self.display_name())])
        ]
        return result

    def display_name(self) -> str:
        return f"{self.metric.group}: {FIGURE_NAMES.get(self.metric.figure, self.metric.figure)}"


class NextbestScorecard(SingleValueMetric):
    """The scorecard table (value: the number of groups measured); `_rows` hold the table's cells."""

    by: str

    _rows: tuple[tuple[str, ...], ...] = PrivateAttr(default=())
    _caption: str = PrivateAttr(default="")


class NextbestScorecardCalculation(SingleValueCalculation[NextbestScorecard]):
    def calculate(self, context: Any, current_data: Any, reference_data: Any) -> Any:
        rows = self.metric._rows
        measured = sum(r[-1] != TOO_LITTLE_DATA for r in rows)
        result = self.result(measured)
        widgets: list[BaseWidgetInfo] = [
            counter(
                counters=[CounterData(f"{measured} of {len(rows)} groups measured", self.metric._caption)],
                title=self.display_name(),
            ),
            table_data(title="Every group against its control", column_names=TABLE_HEADER, data=list(rows)),
        ]
        result.widget = widgets
        return result

    def display_name(self) -> str:
        return f"Scorecard by {self.metric.by} (Nextbest)"


def _format(figure: str, value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if dict((f, pct) for f, _, pct in FIGURES).get(figure):
        return f"{value:.2%}"
    return f"{value:+,.2f}" if figure.startswith("uplift") else f"{value:,.2f}"


def _table_rows(frame: pd.DataFrame, status: dict[str, tuple[bool, bool]]) -> list[tuple[str, ...]]:
    rows = []
    for group, row in frame.iterrows():
        control = row["role"] == "control"
        vs = "(control)" if control else (row["baseline"] if isinstance(row["baseline"], str) else "-")
        cells = [_format(f, _number(row.get(f))) for f, _, _ in FIGURES]
        state = _status(*status[str(group)], control)
        rows.append((str(group), str(vs), f"{int(row['customers']):,}", *cells, state))
    return rows


def _number(value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    return x if math.isfinite(x) else math.nan


def figure_values(card: Scorecard, min_customers: int) -> dict[tuple[str, str], float]:
    """(group, figure) -> value of every figure the snapshot plots: finite values of measured groups (the uplift
    only where the control is measured too)."""
    status = group_status(card.frame, min_customers)
    out = {}
    for group, row in card.frame.iterrows():
        own, vs = status[str(group)]
        for figure, _, _ in FIGURES:
            value = _number(row.get(figure))
            if own and (vs or figure not in UPLIFT_FIGURES) and not math.isnan(value):
                out[(str(group), figure)] = value
    return out


def build_scorecard_report(
    card: Scorecard, min_customers: int, *, tags: Sequence[str] = (), metadata: dict[str, Any] | None = None
) -> MonitoringReport:
    """The scorecard's Evidently run (see the module docstring); `enough_data`: at least one group measured."""
    from evidently import DataDefinition, Dataset, Report

    frame = card.frame
    status = group_status(frame, min_customers)
    table = NextbestScorecard(by=card.by)
    table._rows = tuple(_table_rows(frame, status))
    table._caption = (
        f"uplift = revenue per customer minus its control's; {card.statistic}. A group with fewer than "
        f"{min_customers} customers is {TOO_LITTLE_DATA!r}: listed, never plotted; measured against a control that "
        "small, its uplift is not plotted."
    )
    metrics: list[Any] = [table]
    for (group, figure), value in figure_values(card, min_customers).items():
        metric = NextbestScorecardFigure(by=card.by, group=group, figure=figure)
        metric._value = value
        metrics.append(metric)
    enough = any(own for own, _ in status.values())
    meta: dict[str, Any] = {
        "report": "scorecard",
        "by": card.by,
        "since": card.since.isoformat() if card.since else "",
        "until": card.until.isoformat() if card.until else "",
        "groups": len(frame),
        "measured_groups": sum(own for own, _ in status.values()),
        **(metadata or {}),
    }
    report = Report(metrics, include_tests=False, metadata=meta, tags=[*tags, f"by {card.by}", *window_tags(enough)])
    numbers = frame[["decisions", "customers"]].astype(float).reset_index(drop=True)
    data = Dataset.from_pandas(numbers, data_definition=DataDefinition(numerical_columns=list(numbers.columns)))
    run = report.run(data, None)
    summary = {
        "by": card.by,
        "groups": {g: _status(*status[g], frame.loc[g, "role"] == "control") for g in status},
        "figures": {f"{g} | {f}": v for (g, f), v in figure_values(card, min_customers).items()},
        "notes": card.notes,
    }
    return MonitoringReport(
        kind="scorecard",
        title=f"{card.project}: scorecard by {card.by}",
        run=run,
        summary=summary,
        current_rows=int(frame["decisions"].sum()) if len(frame) else 0,
        enough_data=enough,
    )


@dataclass(frozen=True)
class ScorecardSnapshot:
    """Where `save_to_workspace` put the scorecard: the Evidently project and run, its HTML/JSON, the workspace."""

    project: str
    run_id: str
    html: Path
    json: Path
    workspace: Path

    @property
    def ui_command(self) -> str:
        from monitoring.store import ui_command

        return ui_command(self.workspace)


def save_to_workspace(card: Scorecard, project: Project, settings: Settings) -> ScorecardSnapshot:
    """Add the scorecard as one snapshot to the project's Evidently workspace (the one `nextbest monitor` writes),
    in the Evidently project `<project> scorecard`, whose dashboard is rewritten for this grouping's groups; the
    snapshot's HTML and JSON go under `<project home>/reports/scorecard/<stamp>/`. Groups with fewer customers than
    the drift policy's `min_rows` are marked `too little data`, not plotted (`monitoring.scorecard_view`)."""
    from monitoring.store import (
        Dashboard,
        ensure_project,
        monitoring_dirs,
        open_workspace,
        project_description,
        save_report,
        scorecard_project,
    )

    if card.frame.empty:
        raise NotReadyError("no decisions in the window: nothing to add to the Evidently workspace")
    min_customers = project.drift.min_rows
    name = scorecard_project(project.name)
    ws_path, _ = monitoring_dirs(settings, project)
    workspace = open_workspace(ws_path)
    words = (
        f"Groups by {card.by}, each against its control ({card.statistic}). A group with fewer than {min_customers} "
        "customers is listed as 'too little data' in the snapshot's table and never plotted; measured against a "
        "control that small, its uplift is not plotted."
    )
    spec = Dashboard(
        name, project_description(name), policy=words, scorecard_by=card.by, groups=tuple(map(str, card.frame.index))
    )
    ensure_project(workspace, spec)
    report = build_scorecard_report(card, min_customers, tags=[project.name])
    saved = save_report(report, name, workspace=workspace, reports_dir=scorecard_folder(project, settings))
    logger.info("scorecard snapshot %s in %s", saved.run_id, ws_path)
    return ScorecardSnapshot(name, saved.run_id, saved.html, saved.json, ws_path)
