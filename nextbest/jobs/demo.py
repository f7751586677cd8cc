"""The jobs of `nextbest demo` beyond the CLI commands it runs: the serving story, the monitoring workspace made
ready before any monitoring run (`prepare_monitoring`), and the closing screen with the command that opens each tool
(`print_closing`; the notebooks each with the state folder they read, `notebook_hints`).

The serving step: start the real service, send real requests, show them, stop it cleanly.

Story: a customer opens the app (decision 1); an airport check-in event arrives (`POST /events`, pushed to the
online store); the customer opens the app at the airport (decision 2) and the travel offers move forward; the
customer accepts (feedback joined to decision 2). Then an unknown customer gets a cold-start answer. The service
runs as `bentoml serve` in a subprocess, as in production, and is stopped with SIGTERM (its decision log drains).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from nextbest.settings import Settings

logger = logging.getLogger(__name__)

TRAVEL_ACTIONS = ("travel_card", "travel_insurance")


def pick_customer(settings: Settings, candidates: int = 300) -> int:
    """A customer the airport story fits: adult, consents to in-app offers, holds no travel product yet."""
    import nextbest.features as nbf
    from feature_repo.specs import PROFILE_VIEW

    store = nbf.get_store(settings)
    names = ["age", "consent_app", "has_travel_insurance", "has_travel_card", "is_vulnerable"]
    import pandas as pd

    ids = pd.read_parquet(settings.sources_dir / "customers", columns=["customer_id"])["customer_id"].unique()
    ids = [int(i) for i in ids[:candidates]]
    rows = store.get_online_features(
        features=[f"{PROFILE_VIEW}:{n}" for n in names], entity_rows=[{"customer_id": i} for i in ids]
    ).to_dict()
    for i, cid in enumerate(rows["customer_id"]):
        f = {n: rows[n][i] for n in names}
        if (
            f["age"] is not None
            and f["age"] >= 25
            and f["consent_app"] == 1
            and not f["has_travel_insurance"]
            and not f["has_travel_card"]
            and not f["is_vulnerable"]
        ):
            return int(cid)
    return ids[0]


def _show(title: str, decision: dict[str, Any]) -> None:
    from rich.table import Table

    from nextbest.console import console

    risk = decision.get("churn_risk")
    flags = [k for k in ("degraded", "cold_start") if decision.get(k)]
    t = Table(
        title=f"{title}  (decision {decision['decision_id'][:12]}..., churn risk "
        f"{'n/a' if risk is None else f'{risk:.1%}'}, models {decision['model_versions']}"
        + (f", {' '.join(flags)}" if flags else "")
        + ")"
    )
    for col in ("rank", "action", "kind", "propensity", "value", "priority", "template", "reasons"):
        t.add_column(col)
    for a in decision["actions"]:
        t.add_row(
            str(a["rank"]),
            f"[bold]{a['action_id']}[/]" if a["action_id"] in TRAVEL_ACTIONS else a["action_id"],
            a["kind"],
            f"{a['propensity']:.3f}",
            f"{a['value']:.0f}",
            f"{a['priority']:.1f}",
            a["template_id"],
            ", ".join(a["reason_codes"]),
        )
    if not decision["actions"]:
        t.add_row("-", "no action (a valid decision)", "", "", "", "", "", "")
    console.print(t)


def _rank(decision: dict[str, Any], actions: tuple[str, ...]) -> int | None:
    ranks = [a["rank"] for a in decision["actions"] if a["action_id"] in actions]
    return min(ranks) if ranks else None


def run_serving_demo(settings: Settings, port: int | None = None) -> dict[str, Any]:
    """Start the service, run the airport story and a cold start, stop the service; returns what happened."""
    from nextbest.console import console
    from nextbest.decision_log import DecisionLog
    from serving.client import DecisionClient
    from serving.runner import ServiceProcess, free_port

    customer = pick_customer(settings)
    port = port or free_port()
    console.print(f"starting [bold]bentoml serve serving.service:NextbestService[/] on port {port} ...")
    with ServiceProcess(settings, port=port) as svc:
        console.print(f"service ready at {svc.url}  (Swagger UI {svc.url}/, OpenAPI {svc.url}/docs.json)")
        key = next((k for k, role in settings.serving.api_keys.items() if role == "admin"), None)
        client = DecisionClient(svc.url, api_key=key)

        before = client.recommend(customer, "app", max_actions=3)
        _show(f"1. customer {customer} opens the app", before)
        event = client.event(customer, "airport_checkin", location_type="airport")
        console.print(f"2. POST /events airport_checkin -> pushed to the online store: {event['pushed']}")
        after = client.recommend(
            customer, "app", context={"event": "airport_checkin", "location_type": "airport"}, max_actions=3
        )
        _show(f"3. customer {customer} opens the app at the airport", after)
        r0, r1 = _rank(before, TRAVEL_ACTIONS), _rank(after, TRAVEL_ACTIONS)
        console.print(f"   travel offer rank: before {r0 or 'not shown'} -> after {r1 or 'not shown'}")
        feedback = None
        if after["actions"]:
            top = after["actions"][0]["action_id"]
            feedback = client.feedback(after["decision_id"], "accepted", action_id=top)
            console.print(f"4. POST /feedback accepted {top} -> joined to decision {feedback['decision_id'][:12]}...")
        cold = client.recommend(10**12, "web")
        _show("5. an unknown customer on the web site (cold start)", cold)
        status = client.status()
    console.print("service stopped (SIGTERM; decision log drained)")
    log = DecisionLog(settings.decision_log_uri)
    try:
        logged = log.get_decision(after["decision_id"])
        counts = {t: log.count(t) for t in ("decisions", "decision_contacts", "feedback", "events")}
    finally:
        log.close()
    console.print(f"decision log {settings.decision_log_uri}: {counts}")
    return {
        "customer_id": customer,
        "before": before,
        "after": after,
        "travel_rank_before": r0,
        "travel_rank_after": r1,
        "feedback": feedback,
        "cold_start": cold,
        "status": status,
        "logged": logged is not None,
        "log_counts": counts,
    }


def prepare_monitoring(settings: Settings) -> Path:
    """Create the project's Evidently workspace with its projects and dashboards before any monitoring run, so
    `evidently ui` opens on them right after the demo; returns the workspace folder."""
    from monitoring.pipeline import prepare_workspace
    from monitoring.store import ui_command
    from nextbest.console import console

    workspace = prepare_workspace(settings)
    console.print(f"Evidently workspace ready: {workspace} (projects and dashboards; reports after `nextbest monitor`)")
    console.print(f"  open it with: uv run {ui_command(workspace)}")
    return workspace


NOTEBOOK_COMMAND = "uv run --with jupyterlab jupyter lab"


def notebook_hints(settings: Settings) -> list[tuple[str, Path, str]]:
    """(notebook, the state folder it should read, what it shows) for the demo's closing lines.

    01 and 02 read this home (its world, feature store and registry); 03 reads the closed loop's home when the
    loop ran (the demo's monitoring runs are the loop's), else this one (it then says no monitoring run yet).
    """
    loop_home = settings.home / "loop"
    monitoring_home = loop_home if (loop_home / "reports" / "verdicts.jsonl").is_file() else settings.home
    return [
        ("notebooks/01_customer_genome.ipynb", settings.home, "a few customers through the feature repo"),
        ("notebooks/02_train_and_compare.ipynb", settings.home, "registry versions, runs, trials, the ladder"),
        ("notebooks/03_monitoring.ipynb", monitoring_home, "verdicts, inputs under the drift policy, retrains"),
    ]


def print_closing(settings: Settings, seconds: float) -> None:
    """The demo's last screen: where everything went and the command that opens each tool on it."""
    from rich.rule import Rule

    from nextbest.console import console

    console.print(Rule("[bold green]Demo complete"))
    console.print(f"Finished in {seconds:.0f}s. Everything generated is under {settings.home}:")
    console.print(f"  world (sources + truth)  {settings.world_dir}")
    console.print(f"  feature store            {settings.features_dir}  (cd feature_repo && feast ui)")
    console.print(
        f"  MLflow runs + registry   {settings.mlflow_dir}  "
        f"(uv run mlflow ui --backend-store-uri {settings.mlflow_tracking_uri})"
    )
    console.print(f"  decision log             {settings.decision_log_uri}")
    console.print(f"  promotion log            {settings.home / 'promotions.jsonl'}")
    console.print(f"  Evidently UI             uv run evidently ui --workspace {settings.home / 'evidently'}")
    loop_home = settings.home / "loop"
    if loop_home.is_dir():
        console.print(f"  closed loop (its world)  {loop_home}  (summary: reports/loop_summary.json)")
        console.print(f"    Evidently UI           uv run evidently ui --workspace {loop_home / 'evidently'}")
        mlflow_db = loop_home / "mlflow" / "mlflow.db"
        console.print(f"    MLflow UI              uv run mlflow ui --backend-store-uri sqlite:///{mlflow_db}")
        console.print(f"    promotion log          {loop_home / 'promotions.jsonl'}")
        console.print(f"    retrains, verdicts     {loop_home / 'reports'}/retrains.jsonl, verdicts.jsonl")
    console.print("  notebooks (each reads the state folder named before it):")
    for notebook, home, what in notebook_hints(settings):
        console.print(f"    NEXTBEST_HOME={home} {NOTEBOOK_COMMAND} {notebook}  ({what})")
