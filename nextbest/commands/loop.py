"""CLI command: loop, the closed-loop simulation (served traffic -> monitoring -> retrain -> reload), shown.

A thin shell over `nextbest.jobs.loop.run_loop`; the design and what the loop does not model are in that module's
docstring and in docs/monitoring.md.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from nextbest.commands import project_option


def print_loop_result(result: object) -> None:
    """The before/after table, detection time and where every record went."""
    from rich.table import Table

    from nextbest.console import console
    from nextbest.jobs.loop import LoopResult

    assert isinstance(result, LoopResult)
    table = Table(title=f"Closed loop: {result.scenario} from day {result.drift_day}, {result.decisions} decisions")
    for col in ("phase", "champion", "decisions", "acceptance", "value / 1k (observed)", "value / 1k (truth)", "AUC"):
        table.add_column(col, justify="left" if col in ("phase", "champion") else "right")
    for p in result.phases:
        table.add_row(
            p.phase,
            p.champion,
            str(p.decisions),
            f"{p.acceptance:.1%}",
            f"{p.value_per_1000:,.0f}",
            f"{p.expected_value_per_1000:,.0f}",
            f"{p.auc:.3f}",
        )
    console.print(table)
    if result.detection_days is None:
        console.print("detection: the drift was [bold red]not detected[/] within the loop")
    else:
        console.print(
            f"detection: drift flagged on day {result.detected_day}, "
            f"[bold]{result.detection_days} days of traffic[/] after it started (day {result.drift_day})"
        )
    for r in result.retrains:
        if "error" in r:
            console.print(f"retrain day {r['day']}: [red]failed[/] ({r['error']})")
            continue
        gate = r.get("gate") or {}
        ch, champ = gate.get("challenger") or {}, gate.get("champion") or {}
        console.print(
            f"retrain day {r['day']}: {r['model']} v{r['version']} "
            f"{'[bold green]promoted[/]' if r['promoted'] else 'rejected'}"
            f" -- gate AUC {ch.get('roc_auc', float('nan')):.3f} vs champion {champ.get('roc_auc', float('nan')):.3f};"
            f" rows logged {r['sources']['logged']}, served {r['sources']['served']}"
        )
        if r.get("reload"):
            rl = r["reload"]
            console.print(
                f"  service: {rl['mode']}, serving {rl['served_versions']} ({'ok' if rl['ok'] else 'NOT ok'})"
            )
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    home = result.home
    console.print(f"finished in {result.seconds:.0f}s; summary {result.summary_file}")
    console.print(f"  Evidently UI   uv run evidently ui --workspace {home / 'evidently'}")
    console.print(f"  MLflow UI      uv run mlflow ui --backend-store-uri sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    console.print(f"  verdicts       {home / 'reports' / 'verdicts.jsonl'}")
    console.print(f"  retrains       {home / 'reports' / 'retrains.jsonl'}")
    console.print(f"  promotion log  {home / 'promotions.jsonl'}")


def loop(
    customers: int | None = typer.Option(None, "--customers", min=100, help="Customers in the loop's world [2000]."),
    days: int | None = typer.Option(
        None, "--days", min=60, help="Days simulated; the loop replays the later part [144]."
    ),
    scenario: str | None = typer.Option(None, "--scenario", help="rate_shock (default) | fee_change | digital_cohort."),
    loop_start_day: int | None = typer.Option(
        None, "--loop-start-day", help="Champions know the world before it [112]."
    ),
    drift_day: int | None = typer.Option(None, "--drift-day", help="The scenario starts on this day [119]."),
    decisions_per_day: int | None = typer.Option(None, "--decisions-per-day", min=1, help="Decisions a day [120]."),
    trials: int | None = typer.Option(None, "--trials", min=1, help="Optuna trials per training [2]."),
    seed: int | None = typer.Option(None, "--seed", help="World seed [42]."),
    monitor_churn: bool = typer.Option(False, "--monitor-churn", help="Also monitor the churn model (slower)."),
    project_file: Path | None = project_option(
        "Project file (default: the settings' project); the loop needs the simulated bank's truth.",
    ),
) -> None:
    """Closed loop: simulated customers hit the running service, drift starts, monitoring detects, retrain recovers."""
    from nextbest.commands.monitor import project_settings
    from nextbest.console import progress
    from nextbest.jobs.loop import LoopConfig, action_models, loop_project, run_loop

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    given = {
        "customers": customers,
        "days": days,
        "scenario": scenario,
        "loop_start_day": loop_start_day,
        "drift_day": drift_day,
        "decisions_per_day": decisions_per_day,
        "trials": trials,
        "seed": seed,
    }
    settings, _ = project_settings(project_file)
    project = loop_project(settings)
    churn = project.policy.churn_model
    config = LoopConfig(
        **{k: v for k, v in given.items() if v is not None},
        monitored=(*action_models(project), churn) if monitor_churn and churn else None,
    )
    with progress() as bar:
        task = bar.add_task("closed loop: days replayed", total=None)
        result = run_loop(
            settings,
            config,
            progress=lambda message: bar.console.print(f"[cyan]loop[/] {message}"),
            on_day=lambda done, total: bar.update(task, completed=done, total=total),
        )
    print_loop_result(result)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.command("loop")(loop)
