"""CLI commands: monitor (Evidently reports + drift verdict on served traffic) and retrain (on a drift verdict).

`nextbest monitor` exits with status 1 when the verdict is drift, so a scheduler (cron, Airflow, CI) can chain
`nextbest monitor || nextbest retrain`, or run `nextbest monitor --retrain` to do both in one job. Heavy imports
(Evidently, MLflow, Feast) happen inside the functions so `nextbest --help` stays fast.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import typer


class ModelChoice(StrEnum):
    churn = "churn"
    nba = "nba"


def _print_result(result: object) -> None:
    from rich.table import Table

    from monitoring.pipeline import MonitoringResult
    from nextbest.console import console

    assert isinstance(result, MonitoringResult)
    start, end = result.window
    table = Table(title=f"Drift verdict, served traffic {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC")
    table.add_column("model")
    table.add_column("verdict")
    table.add_column("inputs drifted", justify="right")
    table.add_column("why")
    for name, m in result.models.items():
        v = m.verdict
        verdict = "[bold red]DRIFT[/]" if v.drifted else ("[yellow]too little data[/]" if not v.enough_data else "ok")
        table.add_row(
            name, verdict, f"{len(v.drifted_features)}/{len(v.features)} ({v.drifted_share:.0%})", "\n".join(v.reasons)
        )
    console.print(table)
    for name, m in result.models.items():
        for r in m.reports:
            console.print(f"  {name} {r.kind}: {r.html}")
    if result.business is not None:
        console.print(f"  business: {result.business.html}")
    console.print(f"verdict: {result.folder / 'verdict.json'}")
    console.print(f"Evidently UI: [bold]{result.ui_command}[/]")


def monitor(
    window_days: float = typer.Option(7.0, "--window-days", "-w", min=0.01, help="Served traffic window (days)."),
    model: list[ModelChoice] = typer.Option(
        [ModelChoice.churn, ModelChoice.nba], "--model", "-m", help="Model(s) to monitor (repeatable)."
    ),
    end: datetime | None = typer.Option(
        None, "--end", formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M"], help="Window end, UTC (default: now; for backfills)."
    ),
    policy_file: Path | None = typer.Option(
        None, "--policy", exists=True, dir_okay=False, help="YAML with DriftPolicy fields (thresholds, rules)."
    ),
    retrain_on_drift: bool = typer.Option(
        False, "--retrain", help="On a drift verdict, retrain the drifted model(s) and run the promotion gate."
    ),
    trials: int | None = typer.Option(None, "--trials", min=1, help="Optuna trials for --retrain (default: settings)."),
) -> None:
    """Compare the champions' training data with recent served traffic; exit 1 on drift."""
    from monitoring.pipeline import run_monitoring
    from nextbest.console import console
    from nextbest.drift_policy import load_drift_policy
    from nextbest.settings import load_settings

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    settings = load_settings()
    policy = load_drift_policy(policy_file)
    with console.status("building reports (Evidently)..."):
        result = run_monitoring(
            settings,
            window_days=window_days,
            end=end.replace(tzinfo=UTC) if end is not None else None,
            policy=policy,
            models=[m.value for m in model],
        )
    _print_result(result)
    if result.drifted and retrain_on_drift:
        drifted = [name for name, m in result.models.items() if m.verdict.drifted]
        _retrain(drifted, trials, trigger=str(result.folder / "verdict.json"))
    # The status reports the verdict even after --retrain: schedulers alert on drift either way.
    raise typer.Exit(result.exit_code)


def _retrain(models: list[str], trials: int | None, trigger: str | None = None, served: bool = True) -> None:
    from nextbest.console import console
    from nextbest.jobs.retrain import retrain_models
    from nextbest.settings import load_settings

    settings = load_settings()
    with console.status(f"retraining {', '.join(models)} (served decisions included: {served})..."):
        outcomes = retrain_models(settings, models, trials=trials, trigger=trigger, include_served=served)
    for outcome in outcomes:
        status = "[bold green]promoted[/]" if outcome.promoted else "kept champion"
        console.print(
            f"{outcome.model}: challenger v{outcome.version} {status} ({outcome.reason}); run {outcome.run_id}; "
            f"rows logged {outcome.sources.get('logged', 0)}, served {outcome.sources.get('served', 0)}"
        )
    reload = next((o.reload for o in outcomes if o.reload is not None), None)
    if reload is not None:
        console.print(f"service: {reload.mode} -> {'ok' if reload.ok else '[red]not confirmed[/]'} ({reload.detail})")
    console.print(
        f"records: {settings.reports_dir / 'retrains.jsonl'}, promotion log {settings.home / 'promotions.jsonl'}"
    )


def retrain(
    model: list[ModelChoice] = typer.Option(
        [ModelChoice.churn, ModelChoice.nba], "--model", "-m", help="Model(s) to retrain (repeatable)."
    ),
    trials: int | None = typer.Option(None, "--trials", min=1, help="Optuna trials (default: settings)."),
    served: bool = typer.Option(
        True, "--served/--no-served", help="Fold the served decisions and their feedback into the NBA training set."
    ),
) -> None:
    """Retrain on logged + served data, register a challenger, move `champion` only if it wins, reload the service."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    _retrain([m.value for m in model], trials, served=served)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.command("monitor")(monitor)
    app.command("retrain")(retrain)
