"""`nextbest onboard check`: the mapping and the data validated in seconds, before anything is built.

Everything runs in one in-memory DuckDB on the bank's files (no parquet written, no Feast, no MLflow):
- the files and their declared types (a malformed value names the table and the file), derived SQL, entity keys
  (type, unique, not missing), generated row keys and extract dates;
- timestamps: missing values, rows on or after `data_end`, and per model the split and validation its dates allow
  (`nextbest.onboarding.plan`: the constant-date + `split: time` case is an error that says what to write);
- labels: both classes present, how many positives, an outcome column used as a feature;
- text columns: their inferred categories (what the first build will freeze);
- leakage candidates, from the features themselves (computed as the build would, on the label rows): a feature
  of an UNDATED source (`timestamp: null`: nothing says when its value became known) that alone ranks the label
  strongly (univariate ROC-AUC >= `LEAK_AUC`, or <= 1 - `LEAK_AUC`; e.g. a call's duration, known only once the
  call and its outcome are over), and a date feature that is negative at the snapshot (its date comes after the
  moment the model scores: known only later). Dated sources are point-in-time by construction.
Findings are errors (fix before building), warnings (look before trusting the model) or notes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from nextbest.errors import NextbestError
from nextbest.onboarding.config import AttributeFeature, ModelConfig, OnboardingConfig, OutcomeColumnLabel
from nextbest.onboarding.plan import ModelPlan, plan_model

if TYPE_CHECKING:
    import duckdb

    from nextbest.settings import Settings

logger = logging.getLogger(__name__)

LEAK_AUC = 0.8
FEW_POSITIVES = 20
Level = Literal["error", "warning", "note"]


@dataclass(frozen=True)
class Finding:
    level: Level
    subject: str  # "table contacts", "model flat_response", "feature duration"
    message: str

    def line(self) -> str:
        return f"{self.level}: {self.subject}: {self.message}"


@dataclass
class CheckReport:
    """What `check_project` found, the plan of each model it could plan, and how long it took."""

    project: str
    findings: list[Finding] = field(default_factory=list)
    plans: dict[str, ModelPlan] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not any(f.level == "error" for f in self.findings)

    def add(self, level: Level, subject: str, message: str) -> None:
        self.findings.append(Finding(level, subject, message))

    def of(self, level: Level) -> list[Finding]:
        return [f for f in self.findings if f.level == level]


def check_project(config: OnboardingConfig, settings: Settings | None = None) -> CheckReport:
    """Validate the mapping and the data (module docstring); never raises for what it can report."""
    from nextbest.onboarding.tables import connect

    started = time.perf_counter()
    report = CheckReport(config.project)
    try:
        con = connect(config)
    except NextbestError as exc:  # a file, a type, a derived query, an entity key
        report.add("error", "tables", str(exc))
        report.seconds = time.perf_counter() - started
        return report
    try:
        _check_tables(con, config, report)
        resolved = _check_categories(con, config, settings, report)
        for model in config.models:
            _check_model(con, resolved, model, report)
    finally:
        con.close()
    report.seconds = time.perf_counter() - started
    return report


def _check_tables(con: duckdb.DuckDBPyConnection, config: OnboardingConfig, report: CheckReport) -> None:
    """Generated columns, and per date column of every table: missing values and rows on or after the end."""
    from nextbest.onboarding.tables import ident, literal

    for name, table in config.tables.items():
        if table.row_key:
            report.add("note", f"table {name}", f"no id: row key {table.row_key!r} generated (1, 2, ... in file order)")
        if table.extract_date:
            report.add("note", f"table {name}", f"no date: {table.extract_date!r} = {config.extract_day} on every row")
        for column, kind in table.columns.items():
            if kind not in ("date", "datetime"):
                continue
            end = f"TIMESTAMP {literal(str(config.data_end))}"
            row = con.execute(
                f"SELECT count(*), count(*) - count({ident(column)}), count(*) FILTER (WHERE {ident(column)} >= {end}) "
                f"FROM {ident(name)}"
            ).fetchone()
            rows, missing, late = (int(v) for v in row) if row else (0, 0, 0)
            if late:
                report.add("warning", f"table {name}", f"{late} of {rows} rows have {column} on or after data_end "
                           f"({config.data_end}): they are future for every snapshot")  # fmt: skip
            if missing:
                report.add("note", f"table {name}", f"{missing} of {rows} rows have no {column}")


def _check_categories(
    con: duckdb.DuckDBPyConnection, config: OnboardingConfig, settings: Settings | None, report: CheckReport
) -> OnboardingConfig:
    """The category lists the first build freezes (or the frozen ones), reported; the config resolved with them."""
    from nextbest.onboarding.categories import infer, read_frozen, resolved

    known = None
    if settings is not None:
        from nextbest.onboarding.features import project_paths

        known = read_frozen(project_paths(config, settings).offline_dir)
    lists = infer(con, config, known)
    for key, values in lists.items():
        frozen = "frozen" if known and key in known else "inferred (frozen at the first build)"
        shown = ", ".join(values[:6]) + (" ..." if len(values) > 6 else "")
        report.add("note", f"categories {key}", f"{len(values)} values {frozen}, the rest -> _other: {shown}")
    return resolved(config, lists)


def _check_model(
    con: duckdb.DuckDBPyConnection, config: OnboardingConfig, model: ModelConfig, report: CheckReport
) -> None:
    from nextbest.onboarding.datasets import LABEL, label_frame

    subject = f"model {model.name}"
    try:
        labels = label_frame(con, config, model)
    except NextbestError as exc:
        report.add("error", subject, str(exc))
        return
    positives = int(labels[LABEL].sum())
    report.add("note", subject, f"{len(labels):,} labelled rows, {positives:,} positive ({labels[LABEL].mean():.1%})")
    if positives < FEW_POSITIVES:
        report.add("warning", subject, f"only {positives} positives: every quality figure will be noisy")
    try:
        plan = plan_model(config, model.name, labels["event_timestamp"])
    except NextbestError as exc:
        report.add("error", subject, str(exc).removeprefix(f"model {model.name!r}: "))
    else:
        report.plans[model.name] = plan
        report.add("note", subject, plan.describe().split(": ", 1)[1])
    _check_label_is_no_feature(config, model, report)
    _check_leakage(con, config, model, labels, report)


def _check_label_is_no_feature(config: OnboardingConfig, model: ModelConfig, report: CheckReport) -> None:
    label = model.label
    if not isinstance(label, OutcomeColumnLabel):
        return
    table = config.entities[model.entity].table
    for view in (config.view(v) for v in model.feature_views):
        for attr in view.attributes:
            if view.source == table and attr.column == label.column:
                report.add("error", f"feature {attr.name}", f"is the label column {label.column!r} of {table!r}")


def _check_leakage(
    con: duckdb.DuckDBPyConnection,
    config: OnboardingConfig,
    model: ModelConfig,
    labels: pd.DataFrame,
    report: CheckReport,
) -> None:
    """The model's features on its label rows, as the build computes them: leakage candidates."""
    from nextbest.onboarding.datasets import LABEL
    from nextbest.onboarding.features import TIMESTAMP_COLUMN, compute_view

    key = config.entities[model.entity].key
    frame = labels
    transforms: dict[str, str] = {}
    undated: set[str] = set()
    for view in (config.view(v) for v in model.feature_views):
        try:
            table = compute_view(con, config, view)
        except NextbestError as exc:
            report.add("error", f"feature view {view.name}", str(exc))
            return
        frame = frame.merge(table, on=[key, TIMESTAMP_COLUMN], how="left")
        transforms.update({a.name: a.transform for a in view.attributes if isinstance(a, AttributeFeature)})
        if view.timestamp is None:
            undated.update(c for c in table.columns if c not in (key, TIMESTAMP_COLUMN))
    y = frame[LABEL].to_numpy()
    for feature in [c for c in frame.columns if c not in (key, TIMESTAMP_COLUMN, LABEL)]:
        x = frame[feature].to_numpy(dtype=float)
        # Dated views are point-in-time by construction (rows strictly before the snapshot); an undated row's
        # values may have been filled in after the outcome, and a strong one alone is the tell.
        auc = _univariate_auc(y, x) if feature in undated else float("nan")
        if np.isfinite(auc) and max(auc, 1 - auc) >= LEAK_AUC:
            report.add("warning", f"feature {feature}", f"alone ranks {model.name}'s label with ROC-AUC "
                       f"{max(auc, 1 - auc):.3f}: a leakage candidate (is it known before the outcome?)")  # fmt: skip
        if transforms.get(feature) in ("days_since", "years_since") and (x[np.isfinite(x)] < 0).mean() > 0.01:
            share = float((x[np.isfinite(x)] < 0).mean())
            report.add("warning", f"feature {feature}", f"is negative for {share:.0%} of {model.name}'s rows: its "
                       "date comes after the snapshot (known only later)")  # fmt: skip


def _univariate_auc(y: np.ndarray, x: np.ndarray) -> float:
    """ROC-AUC of one feature as a score, missing values ranked lowest (missingness can leak too)."""
    from sklearn.metrics import roc_auc_score

    if len(np.unique(y)) < 2:
        return float("nan")
    finite = np.isfinite(x)
    if not finite.any() or np.unique(x[finite]).size < 2 and finite.all():
        return float("nan")
    filled = np.where(finite, x, (np.nanmin(x) if finite.any() else 0.0) - 1.0)
    return float(roc_auc_score(y, filled))
