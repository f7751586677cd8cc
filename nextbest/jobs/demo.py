"""The serving step of `nextbest demo`: start the real service, send real requests, show them, stop it cleanly.

Story: a customer opens the app (decision 1); an airport check-in event arrives (`POST /events`, pushed to the
online store); the customer opens the app at the airport (decision 2) and the travel offers move forward; the
customer accepts (feedback joined to decision 2). Then an unknown customer gets a cold-start answer. The service
runs as `bentoml serve` in a subprocess, as in production, and is stopped with SIGTERM (its decision log drains).
"""

from __future__ import annotations

import logging
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
