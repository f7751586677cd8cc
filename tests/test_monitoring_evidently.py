"""The Evidently side of monitoring agrees with the verdict: the reports count what the drift policy counts (after
the noise and trend guards), a window too small to judge is marked and never plotted, every dashboard series is
named, the workspace exists before the first monitoring run, and `evidently ui` serves the dashboards."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from monitoring.drift import DriftPolicy, decide_drift
from monitoring.guards import applied_threshold
from monitoring.policy_view import MEASURED, POLICY_METRIC, TOO_LITTLE_DATA
from monitoring.reports import DRIFTED_COLUMNS, VALUE_DRIFT, build_drift_report
from monitoring.store import Dashboard, dashboard_series, ensure_project, open_workspace, save_report
from nextbest.settings import Settings


def _trending_world(current_rows: int, seed: int = 12) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """A reference whose `trend*` columns rise through the training window, and a current window where they keep
    rising (the trend guard clears them) while `flat0` and `flat1` jump (drift)."""
    rng = np.random.default_rng(seed)
    n = 4_000
    days = np.sort(rng.uniform(0, 60, n))
    cur_days = rng.uniform(60, 75, current_rows)
    reference: dict[str, Any] = {"ts": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(days, unit="D")}
    current: dict[str, Any] = {}
    for i in range(8):
        reference[f"trend{i}"] = rng.normal(0, 1, n) + days / 60 * 0.8
        current[f"trend{i}"] = rng.normal(0, 1, current_rows) + cur_days / 60 * 0.8
    for i in range(8):
        reference[f"flat{i}"] = rng.normal(0, 1, n)
        current[f"flat{i}"] = rng.normal(0.6 if i < 2 else 0.0, 1, current_rows)
    for frame, rows in ((reference, n), (current, current_rows)):
        frame["flag"] = (rng.uniform(size=rows) < 0.1).astype(float)
        frame["segment"] = rng.choice(["a", "b", "c"], rows)
    columns = [c for c in reference if c != "ts"]
    return pd.DataFrame(reference), pd.DataFrame(current), columns


def _metric(run_dict: dict[str, Any], metric_type: str) -> Any:
    return next(m["value"] for m in run_dict["metrics"] if m["config"]["type"] == metric_type)


def test_the_drift_report_counts_what_the_verdict_counts_after_the_guards() -> None:
    reference, current, columns = _trending_world(current_rows=300)
    policy = DriftPolicy()
    report = build_drift_report(reference, current, columns, policy=policy, reference_time="ts")
    verdict = decide_drift(policy, report.columns, reference_rows=len(reference), current_rows=len(current))
    drifted = set(verdict.drifted_features)
    assert {"flat0", "flat1"} <= drifted and not any(f.startswith("trend") for f in drifted)
    # Evidently at the policy's bare thresholds would count the eight trending inputs too: the guards matter
    assert {f"trend{i}" for i in range(8)} <= set(report.summary["evidently_flagged"])

    run = report.run.dict()
    assert _metric(run, DRIFTED_COLUMNS)["count"] == len(drifted)  # Evidently's own count: the verdict's
    assert _metric(run, POLICY_METRIC) == {"count": len(drifted), "share": pytest.approx(len(drifted) / 18)}
    failed = {t["name"].removeprefix("Value Drift for column ") for t in run["tests"] if t["status"].value == "FAIL"}
    assert {f for f in failed if not f.startswith(("Share of", "Drifted"))} == drifted
    assert report.summary["evidently_disagreements"] == []
    assert report.summary["drifted_share"] == pytest.approx(verdict.drifted_share)
    # Evidently's scores are the verdict's, and each column's applied threshold shows how the guards raised it
    scores = {m["config"]["column"]: m["value"] for m in run["metrics"] if m["config"]["type"] == VALUE_DRIFT}
    assert scores == pytest.approx({c.column: c.score for c in report.columns})
    rows = {r["column"]: r for r in report.summary["policy"]}
    assert rows["trend0"]["threshold"] == 0.1 and rows["trend0"]["threshold_applied"] > rows["trend0"]["score"]
    assert "reference's own trend" in rows["trend0"]["why"]
    assert rows["flat0"]["drifted"] and rows["flat0"]["threshold_applied"] <= rows["flat0"]["score"]
    assert verdict.drifted and all(f in " ".join(verdict.reasons) for f in ("flat0", "flat1"))


def test_a_wide_report_draws_the_drifted_inputs_and_the_nearest_and_judges_as_the_full_preset() -> None:
    reference, current, columns = _trending_world(current_rows=300)
    wide = build_drift_report(reference, current, columns, policy=DriftPolicy(report_columns=4), reference_time="ts")
    full = build_drift_report(reference, current, columns, policy=DriftPolicy(report_columns=None), reference_time="ts")
    assert [c.model_dump() for c in wide.columns] == [c.model_dump() for c in full.columns]  # the same verdict
    run = wide.run.dict()
    shown = [m["config"]["column"] for m in run["metrics"] if m["config"]["type"] == VALUE_DRIFT]
    drifted = {c.column for c in wide.columns if c.drifted}
    assert drifted <= set(shown) and len(shown) == max(4, len(drifted))  # every drifted input, then the nearest
    nearest = max((c for c in wide.columns if not c.drifted), key=lambda c: c.score / applied_threshold(c, 2.0))
    assert len(drifted) >= 4 or nearest.column in shown
    failed = {t["name"].removeprefix("Value Drift for column ") for t in run["tests"] if t["status"].value == "FAIL"}
    assert {f for f in failed if f in columns} == drifted
    assert not any(m["config"]["type"] == DRIFTED_COLUMNS for m in run["metrics"])  # no full preset
    assert _metric(run, POLICY_METRIC)["count"] == len(drifted)  # the policy widget counts every input
    assert wide.run._metadata["evidently_value_drift_columns"] == len(shown)
    assert wide.summary["evidently_disagreements"] == [] and len(wide.summary["policy"]) == len(columns)


def test_a_far_move_reason_names_every_input_it_counts() -> None:
    from monitoring.drift import ColumnDrift

    far = [
        ColumnDrift(column=f"far{i}", kind="numeric", method="wasserstein", score=0.5, threshold=0.1, drifted=True)
        for i in range(6)
    ]
    still = [
        ColumnDrift(column=f"x{i}", kind="numeric", method="wasserstein", score=0.01, threshold=0.1, drifted=False)
        for i in range(30)
    ]
    verdict = decide_drift(DriftPolicy(), [*far, *still], reference_rows=1_000, current_rows=1_000)
    reason = next(r for r in verdict.reasons if "moved far" in r)
    assert reason.startswith("6 input(s) moved far")
    assert all(f"far{i} " in reason for i in range(6))


def test_a_window_too_small_is_marked_not_judged_and_not_plotted(tmp_path: Path) -> None:
    reference, current, columns = _trending_world(current_rows=300)
    policy = DriftPolicy()
    measured = build_drift_report(reference, current, columns, policy=policy, reference_time="ts")
    tiny = build_drift_report(reference, current.iloc[:2], columns, policy=policy, reference_time="ts")
    assert measured.enough_data and not tiny.enough_data
    run = tiny.run.dict()
    assert run["tests"] == []  # not judged: no drift test can fail or pass on two rows
    assert not any(m["config"]["type"] in (DRIFTED_COLUMNS, VALUE_DRIFT) for m in run["metrics"])
    assert tiny.run._tags == [TOO_LITTLE_DATA] and measured.run._tags == [MEASURED]
    assert tiny.run._metadata["window"].startswith(f"{TOO_LITTLE_DATA}: 2 current")
    verdict = decide_drift(policy, tiny.columns, reference_rows=len(reference), current_rows=2)
    assert not verdict.enough_data

    workspace_path = tmp_path / "evidently"
    workspace = open_workspace(workspace_path)
    ensure_project(workspace, Dashboard("nba", "test model"))
    for report in (measured, tiny):
        save_report(report, "nba", workspace=workspace, reports_dir=tmp_path / "reports")
    project_id = workspace.search_project("nba")[0].id
    names = [workspace.get_run(project_id, run_id).name for run_id in workspace.list_runs(project_id)]
    assert any(name.endswith(f"({TOO_LITTLE_DATA})") for name in names)
    series = dashboard_series(workspace_path, "nba")
    share = [s for s in series if s["params"].get("value_type") == "share"]
    assert len(share) == 1
    assert share[0]["values"] == [pytest.approx(measured.summary["drifted_share"])]  # one point: the tiny run is not
    assert share[0]["tags"] == [[MEASURED]]


def test_the_workspace_and_its_dashboards_exist_before_any_monitoring_run(tmp_path: Path) -> None:
    from monitoring.pipeline import prepare_workspace

    settings = Settings(home=tmp_path)
    path = prepare_workspace(settings)
    assert path == tmp_path / "evidently"
    workspace = open_workspace(path)
    assert sorted(p.name for p in workspace.list_projects()) == ["business", "churn", "nba"]
    for project in workspace.list_projects():
        dashboard = workspace.get_dashboard(project.id)
        assert len(dashboard.panels) >= 3 and dashboard.tabs[0].panels == [p.id for p in dashboard.panels]
        legends = [v.legend for p in dashboard.panels for v in p.values]
        assert all(legends) and len(legends) == len(set(legends))  # every series named, no two alike
        assert all(v.tags == [MEASURED] for p in dashboard.panels for v in p.values)
        assert list(workspace.list_runs(project.id)) == []
    assert prepare_workspace(settings) == path  # again: the same projects, dashboards rewritten
    assert len(list(open_workspace(path).list_projects())) == 3
    text = next(p for p in workspace.get_dashboard(workspace.search_project("nba")[0].id).panels if not p.values)
    assert "wasserstein >= 0.1" in (text.subtitle or "") and TOO_LITTLE_DATA in (text.subtitle or "")


# ---- a monitoring run on served traffic, then the dashboards as the Evidently UI shows them ----


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Two monitoring runs into one workspace: a 30-day window (measured), then a half-day one (too little data)."""
    from monitoring.pipeline import run_monitoring
    from monitoring.sources import read_served_window
    from tests.test_monitoring_pipeline import END, _log_traffic, _reference

    home = tmp_path_factory.mktemp("monitored")
    settings = Settings(home=home)
    uri = f"sqlite:///{home / 'decisions.db'}"
    _log_traffic(uri, 400, seed=3, shift=0.6, acceptance_lift=3.0)
    references = {m: _reference(m, 30) for m in ("churn", "nba")}
    for days in (30, 0.5):
        served = read_served_window(uri, window_days=days, end=END - timedelta(hours=0.5))
        run_monitoring(settings, references=references, served=served, window_days=days)
    return settings


@pytest.mark.slow
def test_the_saved_reports_count_what_the_verdicts_count(monitored: Settings) -> None:
    from monitoring.store import read_verdicts

    verdicts = read_verdicts(monitored.reports_dir)
    assert len(verdicts) == 2
    for record in verdicts:
        for name, model in record["models"].items():
            drift = next(Path(p).with_suffix(".json") for p in model["reports"] if "data-drift" in p)
            payload = json.loads(drift.read_text())
            evidently = payload["evidently"]
            assert _metric(evidently, POLICY_METRIC)["count"] == len(model["drifted_features"]), name
            if model["enough_data"]:
                # Evidently's failed per-column tests are the verdict's drifted inputs; its own count is there when
                # the report is narrow enough for the full preset (DriftPolicy.report_columns)
                failed = {
                    t["name"].removeprefix("Value Drift for column ")
                    for t in evidently["tests"]
                    if t["name"].startswith("Value Drift for column ") and str(t["status"]).endswith("FAIL")
                }
                assert failed == set(model["drifted_features"]), name
                if any(m["config"]["type"] == DRIFTED_COLUMNS for m in evidently["metrics"]):
                    assert _metric(evidently, DRIFTED_COLUMNS)["count"] == len(model["drifted_features"]), name
            else:
                assert payload["enough_data"] is False and evidently["tests"] == []
    assert [v["models"]["nba"]["enough_data"] for v in verdicts] == [True, False]


@pytest.mark.slow
def test_every_dashboard_series_is_named_once_and_plots_measured_windows_only(monitored: Settings) -> None:
    for project, panels in (("churn", 3), ("nba", 4), ("business", 2)):
        series = dashboard_series(monitored.home / "evidently", project)
        assert {s["panel"] for s in series} and len({s["panel"] for s in series}) == panels, project
        for panel in {s["panel"] for s in series}:
            legends = [s["legend"] for s in series if s["panel"] == panel]
            assert all(legends) and len(legends) == len(set(legends)), (project, panel, legends)
        assert all(len(s["values"]) == 1 for s in series), project  # the half-day window is not a point
    inputs = [s for s in dashboard_series(monitored.home / "evidently", "nba") if s["panel"].startswith("Share of")]
    assert [s["legend"] for s in inputs] == ["share of inputs drifted"]  # one series, not two called "share"


def _wait_for(url: str, process: subprocess.Popen, seconds: float = 90.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"evidently ui exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"evidently ui did not answer on {url} within {seconds:.0f}s")


@pytest.mark.slow
def test_the_evidently_ui_serves_the_dashboards_and_the_policy_view(monitored: Settings) -> None:
    """`evidently ui` on the workspace (its own process, which never imports Nextbest): the project page's HTML,
    each dashboard panel's series through the UI's JSON API, and a report's policy widget."""
    from serving.runner import free_port

    port = free_port()
    command = [str(Path(sys.executable).with_name("evidently")), "ui", "--workspace", str(monitored.home / "evidently")]
    process = subprocess.Popen(
        [*command, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(f"{base}/api/projects", process)
        projects = {p["name"]: p["id"] for p in httpx.get(f"{base}/api/projects").json()}
        assert set(projects) == {"churn", "nba", "business"}
        page = httpx.get(f"{base}/projects/{projects['nba']}")
        assert page.status_code == 200 and "<html" in page.text.lower()
        dashboard = httpx.get(f"{base}/api/v2/dashboards/{projects['nba']}").json()
        for panel in (p for p in dashboard["panels"] if p["values"]):
            filters = [{k: v[k] for k in ("tags", "metadata", "metric", "metric_labels")} for v in panel["values"]]
            answer = httpx.post(
                f"{base}/api/v2/snapshots/{projects['nba']}/data_series_batch", json={"series_filter": filters}
            ).json()
            assert answer["series"], panel["title"]  # every panel draws something
            assert {s["filter_index"] for s in answer["series"]} == set(range(len(filters))), panel["title"]
            assert all(MEASURED in src["tags"] and TOO_LITTLE_DATA not in src["tags"] for src in answer["sources"])
        snapshots = httpx.get(f"{base}/api/projects/{projects['nba']}/snapshots").json()
        drift = next(s for s in snapshots if s["metadata"].get("report") == "data_drift")
        widgets = httpx.get(f"{base}/api/projects/{projects['nba']}/{drift['id']}/data").json()
        text = json.dumps(widgets)
        assert "Nextbest drift policy" in text and "threshold applied" in text
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
