"""The project's drift policy inside an Evidently report: one metric that counts what the verdict counts.

`NextbestDriftPolicy` is an Evidently metric (a count and a share, like Evidently's own `DriftedColumnsCount`) whose
value is the number of columns drifted under the project's drift policy AFTER the noise and trend guards -- the
number the verdict uses -- and whose widget shows, per column, the method, the policy's threshold, the noise floor,
the trend bar, the threshold that was applied and the score. It is computed outside Evidently (`monitoring.guards`)
and handed to the metric; the metric's parameters (view, rule, alarm share) do not change from run to run, so the
Evidently UI plots it as one named series per project.

Snapshots store the metric's result and rendered widgets, not the class: `evidently ui` shows them without
importing this module.

Runs are tagged `measured` or `too little data` (`window_tags`); the dashboards plot only `measured` runs, so a
window too small to judge is listed (and says so) but never drawn as a measurement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from evidently._pydantic_compat import PrivateAttr
from evidently.core.metric_types import BoundTest, CountCalculation, CountMetric
from evidently.legacy.model.widget import BaseWidgetInfo
from evidently.legacy.renderers.html_widgets import CounterData, counter, table_data

from monitoring.drift import ColumnDrift, DriftPolicy
from monitoring.guards import applied_threshold

POLICY_METRIC = "evidently:metric_v2:NextbestDriftPolicy"
MEASURED = "measured"
TOO_LITTLE_DATA = "too little data"
Rule = Literal["share", "any", "reported"]

VIEW_NOUNS = {"inputs": "inputs", "score": "score columns", "propensity": "propensity columns"}
TABLE_HEADER = [
    "column",
    "kind",
    "method",
    "policy threshold",
    "noise floor",
    "trend x factor",
    "threshold applied",
    "score",
    "drifted",
    "why",
]
ROW_KEYS = [
    "column",
    "kind",
    "method",
    "threshold",
    "noise_floor",
    "trend_bar",
    "threshold_applied",
    "score",
    "drifted",
    "why",
]


def window_tags(enough: bool) -> list[str]:
    """The tag that tells a measured window from one too small to judge (the dashboards plot `measured` only)."""
    return [MEASURED if enough else TOO_LITTLE_DATA]


class NextbestDriftPolicy(CountMetric):
    """Columns of one view (`inputs`, `score`, `propensity`) drifted under the project's drift policy."""

    view: str
    rule: Rule = "share"
    alarm_share: float = 1.0

    _columns: tuple[ColumnDrift, ...] = PrivateAttr(default=())
    _trend_factor: float = PrivateAttr(default=0.0)
    _rows: tuple[int, int] = PrivateAttr(default=(0, 0))
    _min_rows: int = PrivateAttr(default=0)

    @property
    def enough_data(self) -> bool:
        return min(self._rows) >= self._min_rows

    def _default_tests_with_reference(self, context: Any) -> list[BoundTest]:
        from evidently.tests import eq, lt

        if not self.enough_data or self.rule == "reported":
            return []
        if self.rule == "any":
            return [eq(0).bind_count(self.get_fingerprint(), is_count=True)]
        return [lt(self.alarm_share).bind_count(self.get_fingerprint(), is_count=False)]


def policy_metric(
    view: str, rule: Rule, columns: Sequence[ColumnDrift], policy: DriftPolicy, rows: tuple[int, int]
) -> NextbestDriftPolicy:
    """The metric for one report: `columns` as judged (guards applied), `rows` = (reference, current) rows."""
    metric = NextbestDriftPolicy(view=view, rule=rule, alarm_share=policy.drift_share if rule == "share" else 1.0)
    metric._columns = tuple(columns)
    metric._trend_factor = policy.trend_factor
    metric._rows = (int(rows[0]), int(rows[1]))
    metric._min_rows = policy.min_rows
    return metric


def _why(c: ColumnDrift, trend_factor: float) -> str:
    if c.drifted:
        return "over the applied threshold"
    if c.noise_floor > 0 and c.score <= c.noise_floor:
        return "over the policy threshold, within the noise floor"
    if c.trend > 0 and c.score < trend_factor * c.trend:
        return f"over the policy threshold, under {trend_factor:g} x the reference's own trend"
    return "under the policy threshold"


def policy_rows(columns: Sequence[ColumnDrift], trend_factor: float) -> list[dict[str, Any]]:
    """One row per column (worst first by score / policy threshold): what the table widget and the JSON show."""
    rows = [
        {
            "column": c.column,
            "kind": c.kind,
            "method": c.method,
            "threshold": c.threshold,
            "noise_floor": c.noise_floor,
            "trend_bar": trend_factor * c.trend if c.trend > 0 else 0.0,
            "threshold_applied": applied_threshold(c, trend_factor),
            "score": c.score,
            "drifted": c.drifted,
            "why": _why(c, trend_factor),
        }
        for c in columns
    ]
    rows.sort(key=lambda r: -(r["score"] / r["threshold"] if r["threshold"] else 0.0))
    return rows


def _counters(metric: NextbestDriftPolicy, count: int) -> list[CounterData]:
    noun = VIEW_NOUNS.get(metric.view, metric.view)
    n = len(metric._columns)
    reference_rows, current_rows = metric._rows
    if not metric.enough_data:
        return [
            CounterData(
                TOO_LITTLE_DATA,
                f"{current_rows} current and {reference_rows} reference rows: the drift policy needs "
                f"{metric._min_rows} on each side. Not judged, and not plotted on the dashboard.",
            )
        ]
    rule = {
        "share": f"the alarm needs {metric.alarm_share:.0%} of the {noun} drifted (or a key or far-moved input)",
        "any": "any drifted score is an alarm",
        "reported": "reported, not judged: the serving policy picks high propensities by design",
    }[metric.rule]
    return [
        CounterData(
            f"{count} of {n}",
            f"{noun} drifted under the project's drift policy, after the noise and trend guards ({rule})",
        ),
        CounterData(
            "threshold applied",
            "per column: the policy's threshold, raised past the noise floor (small windows) and to "
            f"{metric._trend_factor:g} x the drift the reference had between its own halves; Evidently's tests and "
            "its count of drifted columns below use the same thresholds",
        ),
    ]


def _cells(row: dict[str, Any], judged: bool) -> list[str]:
    """A table row as text: guards not estimated show "-", flags "yes"/"no" ("not judged" on a too-small window)."""
    cells = []
    for key in ROW_KEYS:
        value = row[key]
        if key == "drifted":
            cells.append(("yes" if value else "no") if judged else "not judged")
        elif key in ("noise_floor", "trend_bar") and value == 0.0:
            cells.append("-")
        elif isinstance(value, float):
            cells.append(f"{value:.4g}")
        else:
            cells.append(str(value))
    return cells


class NextbestDriftPolicyCalculation(CountCalculation[NextbestDriftPolicy]):
    """Counts the judged columns and renders the policy view (no data is read: the columns come judged)."""

    def calculate(self, context: Any, current_data: Any, reference_data: Any) -> Any:
        metric = self.metric
        n = len(metric._columns)
        count = sum(c.drifted for c in metric._columns)  # on a too-small window: flagged, but not judged
        result = self.result(count, count / n if n else 0.0)
        rows = policy_rows(metric._columns, metric._trend_factor)
        widgets: list[BaseWidgetInfo] = [counter(counters=_counters(metric, count), title=self.display_name())]
        widgets.append(
            table_data(
                title=f"{VIEW_NOUNS.get(metric.view, metric.view)}: the drift policy per column",
                column_names=TABLE_HEADER,
                data=[_cells(r, metric.enough_data) for r in rows],
            )
        )
        result.widget = widgets
        return result

    def display_name(self) -> str:
        return f"Drifted {VIEW_NOUNS.get(self.metric.view, self.metric.view)} (Nextbest drift policy)"

    def share_display_name(self) -> str:
        return f"Share of drifted {VIEW_NOUNS.get(self.metric.view, self.metric.view)} (Nextbest drift policy)"


def describe_policy(policy: DriftPolicy) -> str:
    """The drift policy in words, for the dashboards' text panel."""
    return (
        f"Drift policy: numeric inputs {policy.numeric_method} >= {policy.numeric_threshold:g}, categorical and "
        f"few-valued inputs {policy.categorical_method} >= {policy.categorical_threshold:g}; a column over its "
        f"threshold counts only past the noise floor of its window's size and at {policy.trend_factor:g} x the drift "
        "the training window had between its own halves. Alarm when "
        f"{policy.drift_share:.0%} of the inputs drifted, or {policy.key_features_min_drifted} key inputs, or one "
        f"input reached {policy.severe_factor:g} x its threshold, or a score drifted ({policy.prediction_method} >= "
        f"{policy.prediction_threshold:g}), or an outcome rate shifted (|log odds ratio| >= "
        f"{policy.outcome_log_odds_threshold:g}, interval clear of zero). Fewer than {policy.min_rows} rows on "
        "either side: not judged."
    )
