"""The scorecard (nextbest/scorecard.py): per group and vs the control, from a decision log with a known truth.

The logs here are written into the real decision-log schema (`nextbest.decision_log.metadata`) in bulk: customers
assigned by the real `Assigner`, treated customers delivered an offer accepted with a known probability, everyone
converting organically at a known rate, so the uplift and its interval can be checked against the truth.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from nextbest.assignment import Assigner, AssignmentConfig
from nextbest.decision_log import (
    DecisionLog,
    DecisionRecord,
    consents,
    decision_contacts,
    decisions,
    events,
    feedback,
)
from nextbest.project import load_project
from nextbest.scorecard import (
    HOLDOUT,
    assign_groups,
    build_scorecard,
    contact_values,
    difference_ci,
    plot_scorecard,
    read_log,
    scorecard_frame,
)
from nextbest.settings import REPO_ROOT, Settings

T0 = datetime(2026, 3, 1, tzinfo=UTC)
BERKA = REPO_ROOT / "configs/berka.yaml"


@dataclass(frozen=True)
class Truth:
    accept: float = 0.08  # P(accept | offered)
    organic: float = 0.03  # P(organic conversion), everyone
    organic_value: float = 50.0
    churn_treated: float = 0.02
    churn_control: float = 0.03
    opt_out: float = 0.01  # treated only


def _write_log(
    uri: str,
    keys: list[int] | list[str],
    holdout: np.ndarray,
    action: tuple[str, float],
    truth: Truth = Truth(),
    seed: int = 0,
    extra: dict[str, list[object]] | None = None,
    treated: np.ndarray | None = None,
) -> None:
    """One decision per customer at T0 + i s: treated customers get `action` (id, catalogue value) on email."""
    DecisionLog(uri).close()  # the schema
    rng = np.random.default_rng(seed)
    n = len(keys)
    treated = ~holdout if treated is None else treated
    ts = [T0 + timedelta(seconds=i) for i in range(n)]
    ids = [f"{i:032x}" for i in range(n)]
    rows = [
        {"decision_id": ids[i], "ts": ts[i], "customer_id": str(keys[i]), "channel": "email",
         "policy_version": "policy-a" if i % 2 else "policy-b", "model_versions": {"nba": "3" if i % 2 else "4"},
         "degraded": False, "cold_start": False, **{k: v[i] for k, v in (extra or {}).items()}}
        for i in range(n)
    ]  # fmt: skip
    accepted = treated & (rng.random(n) < truth.accept)
    dismissed = treated & ~accepted & (rng.random(n) < 0.1)
    outcome = np.where(accepted, "accepted", np.where(dismissed, "dismissed", "ignored"))
    contacts = [
        {"decision_id": ids[i], "customer_id": str(keys[i]), "ts": ts[i], "channel": "email", "action_id": action[0],
         "kind": "sales", "rank": 1, "outcome": str(outcome[i]), "outcome_ts": ts[i] + timedelta(hours=2)}
        for i in np.flatnonzero(treated)
    ]  # fmt: skip
    realised = rng.uniform(0.5, 1.5, n) * action[1] * 4  # the realised value: 4x the catalogue value on average
    with_value = accepted & (rng.random(n) < 0.5)
    fb = [
        {"decision_id": ids[i], "customer_id": str(keys[i]), "action_id": action[0], "outcome": str(outcome[i]),
         "ts": ts[i] + timedelta(hours=2), "value": float(realised[i]) if with_value[i] else None}
        for i in np.flatnonzero(treated)
    ]  # fmt: skip
    organic = rng.random(n) < truth.organic
    churn = rng.random(n) < np.where(treated, truth.churn_treated, truth.churn_control)
    ev = [
        {"event_id": f"o{i}", "customer_id": str(keys[i]), "ts": ts[i] + timedelta(days=3),
         "event_type": "product_opened", "payload": {"product": "savings", "value": truth.organic_value},
         "pushed": False, "received_at": ts[i]}
        for i in np.flatnonzero(organic)
    ] + [
        {"event_id": f"c{i}", "customer_id": str(keys[i]), "ts": ts[i] + timedelta(days=5),
         "event_type": "account_closed", "payload": {}, "pushed": False, "received_at": ts[i]}
        for i in np.flatnonzero(churn)
    ] + [  # an event before the customer's decision never counts for it
        {"event_id": f"b{i}", "customer_id": str(keys[i]), "ts": T0 - timedelta(days=1), "event_type": "account_closed",
         "payload": {}, "pushed": False, "received_at": T0}
        for i in range(0, n, 7)
    ]  # fmt: skip
    opted = treated & (rng.random(n) < truth.opt_out)
    withdrawals = [
        {"customer_id": str(keys[i]), "channel": "email", "granted": False, "ts": ts[i] + timedelta(days=1)}
        for i in np.flatnonzero(opted)
    ]
    engine = sa.create_engine(uri)
    # The table as the database has it (with the experiment columns a test added), not only as metadata declares it.
    table_now = sa.Table("decisions", sa.MetaData(), autoload_with=engine) if extra else decisions
    with engine.begin() as conn:
        for table, data in ((table_now, rows), (decision_contacts, contacts), (feedback, fb), (events, ev)):
            if data:
                conn.execute(table.insert(), data)
        if withdrawals:
            conn.execute(consents.insert(), withdrawals)
    engine.dispose()
    return None


N = 20_000


@pytest.fixture(scope="module")
def simbank_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, np.ndarray, Assigner]:
    """20k simulated-bank customers, a 10% universal holdout (not logged: recomputed from the keys)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('scorecard') / 'decisions.db'}"
    assigner = Assigner("simbank", AssignmentConfig.model_validate({"holdout": {"share": 0.1}}))
    keys = list(range(1, N + 1))
    holdout = assigner.in_holdout(keys)
    _write_log(uri, keys, holdout, ("savings_account", 60.0))
    return uri, holdout, assigner


def _catalogue() -> dict[str, float]:
    project = load_project()
    return {a.id: a.value for a in project.catalogue.actions}


def test_the_uplift_against_the_holdout_and_its_interval_match_the_truth(simbank_log) -> None:  # type: ignore[no-untyped-def]
    uri, holdout, assigner = simbank_log
    frames = read_log(uri)
    card = scorecard_frame(frames, _catalogue(), by="arm", assigner=assigner)
    assert list(card.index) == ["all", HOLDOUT]
    treated, control = card.loc["all"], card.loc[HOLDOUT]
    assert control["role"] == "control" and treated["baseline"] == HOLDOUT
    assert treated["customers"] == int((~holdout).sum()) and control["customers"] == int(holdout.sum())
    truth = Truth()
    # Expected revenue uplift: P(accept) x (half realised at 4 x 60 on average, half the catalogue's 60).
    expected = truth.accept * (0.5 * 240 + 0.5 * 60)
    assert treated["uplift_low"] < expected < treated["uplift_high"]
    assert treated["uplift_low"] > 0  # the offer pays, measurably
    # The interval is the Welch one, recomputed here from the per-customer revenues.
    revenue = _revenues(frames, holdout)
    a, b = revenue[~holdout], revenue[holdout]
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    assert treated["uplift"] == pytest.approx(a.mean() - b.mean())
    assert treated["uplift_se"] == pytest.approx(se)
    assert treated["uplift_high"] - treated["uplift"] == pytest.approx(1.959964 * se, rel=1e-5)
    conversion = 1 - (1 - truth.accept) * (1 - truth.organic)
    assert treated["conversion_uplift_low"] < conversion - truth.organic < treated["conversion_uplift_high"]
    assert control["conversion_rate"] == pytest.approx(truth.organic, abs=0.012)


def _revenues(frames, holdout: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Per-customer revenue computed directly from the rows (the scorecard's definition, written out)."""
    n = len(holdout)
    revenue = np.zeros(n)
    fb = frames.feedback.set_index("decision_id")["value"]
    for _, c in frames.contacts.loc[frames.contacts["outcome"] == "accepted"].iterrows():
        value = fb.get(c["decision_id"])
        revenue[int(c["customer_id"]) - 1] += 60.0 if value is None or pd.isna(value) else value
    for _, e in frames.events.loc[frames.events["event_type"] == "product_opened"].iterrows():
        revenue[int(e["customer_id"]) - 1] += e["payload"]["value"]
    return revenue


def test_relevance_value_churn_and_opt_outs_per_group(simbank_log) -> None:  # type: ignore[no-untyped-def]
    uri, holdout, assigner = simbank_log
    card = scorecard_frame(read_log(uri), _catalogue(), by="arm", assigner=assigner)
    treated, control = card.loc["all"], card.loc[HOLDOUT]
    truth = Truth()
    assert treated["delivered"] == treated["decisions"] == treated["marketing_decisions"]
    assert control["delivered"] == 0 and control["value_per_decision"] == 0
    assert treated["acceptance_rate"] == pytest.approx(truth.accept, abs=0.01)
    assert treated["dismissal_rate"] == pytest.approx(0.1 * (1 - truth.accept), abs=0.01)
    assert treated["value_per_decision"] == pytest.approx(treated["value"] / treated["decisions"])
    assert treated["churn_rate"] == pytest.approx(truth.churn_treated, abs=0.006)
    assert control["churn_rate"] == pytest.approx(truth.churn_control, abs=0.012)  # before-decision events excluded
    assert treated["opt_out_rate"] == pytest.approx(truth.opt_out, abs=0.004) and control["opt_outs"] == 0


def test_grouping_by_policy_and_by_model_version(simbank_log) -> None:  # type: ignore[no-untyped-def]
    uri, holdout, assigner = simbank_log
    frames = read_log(uri)
    by_policy = scorecard_frame(frames, _catalogue(), by="policy", assigner=assigner)
    assert list(by_policy.index) == ["policy-a", "policy-b", HOLDOUT]
    by_model = scorecard_frame(frames, _catalogue(), by="model", assigner=assigner, models=["nba"])
    assert list(by_model.index) == ["nba v3", "nba v4", HOLDOUT]
    assert by_model.loc[["nba v3", "nba v4"], "decisions"].sum() == int((~holdout).sum())
    assert (by_model.loc[["nba v3", "nba v4"], "baseline"] == HOLDOUT).all()
    assert by_model.loc["nba v3", "uplift_low"] > 0


def test_the_window_selects_decisions_by_time(simbank_log) -> None:  # type: ignore[no-untyped-def]
    uri, _, _ = simbank_log
    frames = read_log(uri, since=T0 + timedelta(seconds=100), until=T0 + timedelta(seconds=200))
    assert len(frames.decisions) == 100
    assert set(frames.contacts["decision_id"]) <= set(frames.decisions["decision_id"])


def test_logged_arms_and_campaign_controls_are_their_own_groups_and_baselines(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'decisions.db'}"
    n = 12_000
    keys = [f"C-{i:05d}" for i in range(n)]  # string keys, as the flat example's
    assigner = Assigner(
        "flat_example",
        AssignmentConfig.model_validate(
            {
                "holdout": {"share": 0.05},
                "splits": [
                    {"name": "live", "arms": [{"name": "champion", "share": 0.8}, {"name": "challenger", "share": 0.2}]}
                ],
            }
        ),
    )
    holdout = assigner.in_holdout(keys)
    campaign = np.where(np.arange(n) % 3 == 0, "winter_mailing", None)
    control = (campaign != None) & assigner.in_control("winter_mailing", keys, 0.2) & ~holdout  # noqa: E711
    arms = assigner.arm("live", keys)
    extra = {"holdout": holdout.tolist(), "arm": arms.tolist(), "split": ["live"] * n, "campaign_id": list(campaign),
             "campaign_control": control.tolist()}  # fmt: skip
    DecisionLog(uri).close()  # the log has the experiment columns the engine writes
    _write_log(uri, keys, holdout, ("offer_savings", 120.0), extra=extra, treated=~holdout & ~control)
    frames = read_log(uri)
    values = {"offer_savings": 120.0}
    by_arm = scorecard_frame(frames, values, by="arm")  # no assigner: the logged columns decide
    assert set(by_arm.index) == {"champion", "challenger", "campaign control", HOLDOUT}
    assert by_arm.loc["challenger", "customers"] == int(((arms == "challenger") & ~holdout & ~control).sum())
    assert by_arm.loc["campaign control", "role"] == "control" and by_arm.loc["champion", "baseline"] == HOLDOUT
    by_campaign = scorecard_frame(frames, values, by="campaign")
    assert set(by_campaign.index) == {"real-time", "winter_mailing", "winter_mailing control", HOLDOUT}
    assert by_campaign.loc["winter_mailing", "baseline"] == "winter_mailing control"
    assert by_campaign.loc["real-time", "baseline"] == HOLDOUT
    assert by_campaign.loc["winter_mailing control", "delivered"] == 0
    assert by_campaign.loc["winter_mailing", "uplift_low"] > 0
    grouped = assign_groups(frames.decisions, "campaign")
    assert not grouped.loc[grouped["group"] == HOLDOUT, "campaign_control"].astype(bool).any()


def test_the_realised_value_of_feedback_is_used_when_present() -> None:
    contacts = pd.DataFrame(
        {
            "decision_id": ["d1", "d2", "d3", "d3", "d4"],
            "action_id": ["loan", "loan", "card", "loan", "card"],
            "rank": [1, 1, 1, 2, 1],
            "outcome": ["accepted", "accepted", "accepted", "accepted", "dismissed"],
        }
    )
    fb = pd.DataFrame(
        {
            "decision_id": ["d1", "d3", "d4"],
            "action_id": ["loan", None, "card"],  # d3's feedback names no action: its first accepted one gets it
            "outcome": ["accepted", "accepted", "dismissed"],
            "value": [25_000.0, 700.0, 999.0],
            "ts": [T0, T0, T0],
        }
    )
    values = contact_values(contacts, fb, {"loan": 300.0, "card": 100.0})
    assert values.tolist() == [25_000.0, 300.0, 700.0, 300.0, 0.0]


def test_difference_ci_is_welch() -> None:
    diff, se, low, high = difference_ci(10.0, 3.0, 100, 8.0, 4.0, 50)
    assert diff == 2.0 and se == pytest.approx(math.sqrt(9 / 100 + 16 / 50))
    assert (low, high) == pytest.approx((2 - 1.959964 * se, 2 + 1.959964 * se), rel=1e-6)
    assert math.isnan(difference_ci(1.0, 0.0, 1, 0.0, 0.0, 10)[1])


def test_a_log_without_control_gives_no_uplift_and_says_so(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'decisions.db'}"
    keys = list(range(1, 501))
    _write_log(uri, keys, np.zeros(500, bool), ("savings_account", 60.0))
    settings = Settings(home=tmp_path, serving={"decision_log_uri": uri})
    card = build_scorecard(load_project(), settings, by="arm")
    assert list(card.frame.index) == ["all"] and math.isnan(card.frame.loc["all", "uplift"])
    assert any("no control group" in n for n in card.notes)


def test_berka_scorecard_through_its_project_and_the_decision_log_api(tmp_path: Path) -> None:
    """Berka's catalogue values, its own log under its project home, written through `DecisionLog` itself."""
    import os

    os.environ.setdefault("NEXTBEST_BERKA_DIR", str(REPO_ROOT.parent / "shared/data/berka"))
    project = load_project(BERKA)
    settings = Settings(home=tmp_path)
    log = DecisionLog(project.decision_log_uri(settings), key_type="int")
    assigner = Assigner(project.name, AssignmentConfig.model_validate({"holdout": {"share": 0.2}}))
    accounts = list(range(1000, 1400))
    for i, account in enumerate(accounts):
        decision_id, ts = log.new_decision_id(), T0 + timedelta(minutes=i)
        held = assigner.in_holdout(account)
        log.log_decision(_record(decision_id, ts, account, held))
        if held:
            continue
        log.record_contacts(decision_id, account, "app", ts, [("offer_loan", "sales")])
        if i % 4 == 0:
            log.record_feedback(decision_id, "accepted", "offer_loan", ts + timedelta(hours=1), value=80_000.0)
        elif i % 4 == 1:
            log.record_feedback(decision_id, "accepted", "offer_loan", ts + timedelta(hours=1))
        else:
            log.record_feedback(decision_id, "dismissed", "offer_loan", ts + timedelta(hours=1))
    log.close()
    berka = project.model_copy(update={"serving": project.serving.model_copy(update={"assignment": assigner.config})})
    card = build_scorecard(berka, settings, by="model")
    treated = card.frame.loc["berka_propensity v2"]
    n_treated = len(accounts) - int(assigner.in_holdout(accounts).sum())
    assert treated["decisions"] == n_treated and card.frame.loc[HOLDOUT, "customers"] == len(accounts) - n_treated
    by_i = [i for i, a in enumerate(accounts) if not assigner.in_holdout(a)]
    expected = sum(80_000.0 if i % 4 == 0 else 9000.0 if i % 4 == 1 else 0.0 for i in by_i)
    assert treated["value"] == pytest.approx(expected)  # the realised loan amount when given, else the margin
    assert treated["acceptance_rate"] == pytest.approx(sum(i % 4 < 2 for i in by_i) / n_treated)
    assert treated["uplift"] == pytest.approx(expected / n_treated)  # the holdout converts nothing here


def _record(decision_id: str, ts: datetime, account: int, held: bool) -> DecisionRecord:
    return DecisionRecord(
        decision_id=decision_id, ts=ts, customer_id=account, channel="app", context={}, features={},
        feature_service="berka_propensity_v1", model_versions={"berka_propensity": "2", "berka_default": "1"},
        policy_version="policy-x", churn_risk=None, scores={}, chosen=[], rejected=[],
    )  # fmt: skip


def test_scorecard_cli_prints_one_table_writes_json_and_a_plot(simbank_log, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from nextbest.cli import app
    from nextbest.console import console

    monkeypatch.setattr(console, "_width", 250)  # a wide terminal: the table's twelve columns side by side
    uri, _, _ = simbank_log
    project = tmp_path / "simbank.yaml"
    text = (REPO_ROOT / "configs/simbank.yaml").read_text().replace("../nextbest/", f"{REPO_ROOT}/nextbest/")
    project.write_text(
        text.replace(
            "serving:\n  entity: customer\n", "serving:\n  entity: customer\n  assignment: {holdout: {share: 0.1}}\n"
        )
    )
    monkeypatch.setenv("NEXTBEST_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NEXTBEST_SERVING__DECISION_LOG_URI", uri)
    out = tmp_path / "card.json"
    result = CliRunner().invoke(
        app, ["scorecard", "--project", str(project), "--json", str(out), "--since", "2026-03-01"], terminal_width=250
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "scorecard by arm, 2026-03-01 .. now" in text and "holdout │ (control)" in text
    assert "all │ holdout │ 18,0" in text and "uplift [95% CI]" in text
    data = json.loads(out.read_text())
    groups = {g["group"]: g for g in data["groups"]}
    assert set(groups) == {"all", HOLDOUT} and groups["all"]["uplift_low"] > 0 and groups[HOLDOUT]["uplift"] is None
    assert data["statistic"].startswith("difference of means, Welch")
    assert (tmp_path / "home" / "reports" / "scorecard" / "scorecard_arm.png").stat().st_size > 10_000
    assert f"dashboard: evidently ui --workspace {tmp_path / 'home' / 'evidently'}" in result.output
    assert "Evidently: project 'simbank scorecard', snapshot" in text
    bad = CliRunner().invoke(app, ["scorecard", "--project", str(project), "--since", "March"])
    assert bad.exit_code == 2 and "is not a date" in bad.output


def test_the_plot_is_a_png(simbank_log, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from nextbest.scorecard import Scorecard

    uri, _, assigner = simbank_log
    frame = scorecard_frame(read_log(uri), _catalogue(), by="policy", assigner=assigner)
    path = plot_scorecard(Scorecard("simbank", "policy", T0, None, frame), tmp_path / "card.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_scorecard_snapshot_and_dashboard_in_the_evidently_workspace(simbank_log, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`save_to_workspace`: a snapshot in `<project> scorecard` of the workspace `nextbest monitor` uses, whose
    dashboard series carry the scorecard's own figures; its HTML and Evidently's UI app (in-process) render the
    project, the dashboard, the series and the table widget. A second run, with the holdout below the policy's
    minimum: the holdout is listed as too little data, never plotted, and nobody's uplift is plotted against it."""
    from evidently.ui.service.app import create_app, get_config
    from litestar.testing import TestClient

    from monitoring.scorecard_view import save_to_workspace
    from monitoring.store import dashboard_series, list_runs, open_workspace, workspace_dir

    uri, holdout, assigner = simbank_log
    base = load_project()
    settings = Settings(home=tmp_path, serving={"decision_log_uri": uri})
    project = base.model_copy(update={"serving": base.serving.model_copy(update={"assignment": assigner.config})})
    card = build_scorecard(project, settings, by="model")
    assert list(card.frame.index) == ["nba v3", "nba v4", HOLDOUT]
    snapshot = save_to_workspace(card, project, settings)
    ws = workspace_dir(settings, project)
    assert snapshot.workspace == ws and snapshot.ui_command == f"evidently ui --workspace {ws}"
    assert snapshot.project == "simbank scorecard"
    assert list_runs(open_workspace(ws), "simbank scorecard") == [snapshot.run_id]
    plotted = {(s["legend"], s["params"]["figure"]): s["values"] for s in dashboard_series(ws, "simbank scorecard")}
    figures = ("conversion_rate", "value_per_decision", "acceptance_rate", "dismissal_rate", "churn_rate")
    for group in card.frame.index:  # every figure as the scorecard computed it, one named series per group
        row = card.frame.loc[group]
        for figure in (*figures, "opt_out_rate"):
            if not pd.isna(row[figure]):
                assert plotted[(group, figure)] == [pytest.approx(row[figure])], (group, figure)
    for group in ("nba v3", "nba v4"):
        row = card.frame.loc[group]
        assert row["uplift_low"] > 0
        assert plotted[(group, "uplift")] == [pytest.approx(row["uplift"])]
        assert plotted[(f"{group}, 95% low", "uplift_low")] == [pytest.approx(row["uplift_low"])]
        assert plotted[(f"{group}, 95% high", "uplift_high")] == [pytest.approx(row["uplift_high"])]
    assert (HOLDOUT, "uplift") not in plotted and (HOLDOUT, "acceptance_rate") not in plotted  # NaN: not a point
    row = card.frame.loc["nba v3"]
    html = snapshot.html.read_text()
    assert "Scorecard by model (Nextbest)" in html and "Every group against its control" in html
    assert f"{row['uplift']:+,.2f}" in html and f"{row['conversion_rate']:.2%}" in html and "nba v4" in html
    # Evidently's own UI app on the workspace: the project, its dashboard's panels and series, the table widget.
    with TestClient(app=create_app(get_config(workspace=str(ws)))) as client:
        projects = {p["name"]: p["id"] for p in client.get("/api/projects").json()}
        pid = projects["simbank scorecard"]
        assert client.get(f"/projects/{pid}").status_code == 200
        dashboard = client.get(f"/api/v2/dashboards/{pid}").json()
        titles = [p["title"] for p in dashboard["panels"]]
        assert "Revenue uplift per customer vs control by model (95% interval)" in titles
        assert "Acceptance among shown by model" in titles and "Opt-out rate by model" in titles
        uplift = next(p for p in dashboard["panels"] if p["title"].startswith("Revenue uplift"))
        filters = [{k: v[k] for k in ("tags", "metadata", "metric", "metric_labels")} for v in uplift["values"]]
        answer = client.post(f"/api/v2/snapshots/{pid}/data_series_batch", json={"series_filter": filters}).json()
        drawn = {uplift["values"][s["filter_index"]]["legend"]: s["values"] for s in answer["series"]}
        assert drawn["nba v3"] == [pytest.approx(row["uplift"])] and len(drawn) == 6
        widgets = json.dumps(client.get(f"/api/projects/{pid}/{snapshot.run_id}/data").json())
        assert "Every group against its control" in widgets and f"{row['uplift']:+,.2f}" in widgets

    small = int(holdout.sum())  # the holdout's customers, one short of the minimum
    strict = project.model_copy(update={"drift": project.drift.model_copy(update={"min_rows": small + 1})})
    by_policy = build_scorecard(strict, settings, by="policy")
    second = save_to_workspace(by_policy, strict, settings)
    assert sorted(list_runs(open_workspace(ws), "simbank scorecard")) == sorted([snapshot.run_id, second.run_id])
    series = [s for s in dashboard_series(ws, "simbank scorecard") if s["params"]["by"] == "policy"]
    legends = {(s["legend"], s["params"]["figure"]) for s in series}
    assert ("policy-a", "conversion_rate") in legends and ("policy-b", "churn_rate") in legends
    assert not any(g.startswith(HOLDOUT) for g, _ in legends)  # too little data: never drawn as a measurement
    assert not any(f.startswith("uplift") for _, f in legends)  # against a control that small: no uplift
    html = second.html.read_text()
    assert "too little data" in html and "uplift: control too small" in html
