"""CLI commands: monitor (Evidently reports + drift verdict on served traffic) and retrain (on a drift verdict).

Both take `--project FILE` (default: the settings' project, the simulated bank) and work on that project's models:
`--model` names a subset (default: every model its decision service loads). `nextbest monitor` exits with status 1
when the verdict is drift, so a scheduler (cron, Airflow, CI) can chain `nextbest monitor || nextbest retrain`, or
run `nextbest monitor --retrain` to do both in one job. Heavy imports (Evidently, MLflow, Feast) happen inside the
functions so `nextbest --help` stays fast.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from nextbest.commands import project_option

if TYPE_CHECKING:
    from nextbest.project import Project
    from nextbest.settings import Settings


def project_settings(project_file: Path | None) -> tuple[Settings, Project]:
    """The settings (with `project` set to `project_file` when given) and the project they name."""
    from nextbest.project import project_of
    from nextbest.settings import load_settings

    settings = load_settings()
    if project_file is not None:
        settings = settings.model_copy(update={"project": project_file.resolve()})
    return settings, project_of(settings)


def _print_result(result: object) -> None:
    from rich.table import Table

    from monitoring.pipeline import MonitoringResult
    from nextbest.console import console

    assert isinstance(result, MonitoringResult)
    start, end = result.window
    table = Table(
        title=f"{result.project}: drift verdict, served traffic {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC"
    )
    table.add_column("model")
    table.add_column("verdict")
    table.add_column("inputs drifted", justify="right")
    table.add_column("why")
    for name, m in result.models.items():
        v = m.verdict
        verdict = "[bold red]DRIFT[/]" if v.drifted else ("[yellow]too little data[/]" if not v.enough_data else "ok")
        inputs = f"{len(v.drifted_features)}/{len(v.features)} ({v.drifted_share:.0%})" if v.features else "-"
        table.add_row(name, verdict, inputs, "\n".join([*v.reasons, *(f"note: {n}" for n in v.notes)]))
    console.print(table)
    for name, m in result.models.items():
        for r in m.reports:
            console.print(f"  {name} {r.kind}: {r.html}")
    if result.business is not None:
        console.print(f"  business: {result.business.html}")
    console.print(f"verdict: {result.folder / 'verdict.json'}")
    console.print(f"Evidently UI: [bold]{result.ui_command}[/]")


def monitor(
    project_file: Path | None = project_option(),
    window_days: float = typer.Option(7.0, "--window-days", "-w", min=0.01, help="Served traffic window (days)."),
    model: list[str] | None = typer.Option(
        None,
        "--model",
        "-m",
        metavar="NAME",
        help="Model(s) to monitor (repeatable; default: every model the service loads).",
    ),
    end: datetime | None = typer.Option(
        None, "--end", formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M"], help="Window end, UTC (default: now; for backfills)."
    ),
    policy_file: Path | None = typer.Option(
        None,
        "--policy",
        exists=True,
        dir_okay=False,
        help="YAML with DriftPolicy fields (thresholds, rules) overriding the project's drift policy.",
    ),
    retrain_on_drift: bool = typer.Option(
        False, "--retrain", help="On a drift verdict, retrain the drifted model(s) and run the promotion gate."
    ),
    trials: int | None = typer.Option(None, "--trials", min=1, help="Optuna trials for --retrain (default: settings)."),
) -> None:
    """Compare the champions' training data with recent served traffic; exit 1 on drift."""
    from monitoring.pipeline import run_monitoring
    from nextbest.console import progress
    from nextbest.drift_policy import load_drift_policy

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    settings, project = project_settings(project_file)
    policy = load_drift_policy(policy_file, base=project.drift)
    with progress(transient=True) as bar:
        task = bar.add_task(f"{project.name}: reading served traffic", total=None)

        def step(what: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=f"{project.name}: {what}")

        result = run_monitoring(
            settings,
            project=project,
            window_days=window_days,
            end=end.replace(tzinfo=UTC) if end is not None else None,
            policy=policy,
            models=model or None,
            progress=step,
        )
    _print_result(result)
    if result.drifted and retrain_on_drift:
        drifted = [name for name, m in result.models.items() if m.verdict.drifted]
        _retrain(settings, project, drifted, trials, trigger=str(result.folder / "verdict.json"))
    # The status reports the verdict even after --retrain: schedulers alert on drift either way.
    raise typer.Exit(result.exit_code)


def _retrain(
    settings: Settings,
    project: Project,
    models: list[str] | None,
    trials: int | None,
    trigger: str | None = None,
    served: bool = True,
) -> None:
    from monitoring.store import reports_dir
    from nextbest.console import console
    from nextbest.jobs.retrain import retrain_models, retrained_models

    names = retrained_models(project, models)
    with console.status(f"{project.name}: retraining {', '.join(names)} (served decisions included: {served})..."):
        outcomes = retrain_models(
            settings, names, trials=trials, trigger=trigger, include_served=served, project=project
        )
    for outcome in outcomes:
        status = "[bold green]promoted[/]" if outcome.promoted else "kept champion"
        rows = f"rows logged {outcome.sources.get('logged', 0)}, served {outcome.sources.get('served', 0)}"
        if outcome.served_note:
            rows += f" ({outcome.served_note})"
        console.print(
            f"{outcome.model}: challenger v{outcome.version} {status} ({outcome.reason}); run {outcome.run_id}; {rows}"
        )
    reload = next((o.reload for o in outcomes if o.reload is not None), None)
    if reload is not None:
        console.print(f"service: {reload.mode} -> {'ok' if reload.ok else '[red]not confirmed[/]'} ({reload.detail})")
    console.print(
        f"records: {reports_dir(settings, project) / 'retrains.jsonl'}, "
        f"promotion log {settings.home / 'promotions.jsonl'}"
    )


def retrain(
    project_file: Path | None = project_option(),
    model: list[str] | None = typer.Option(
        None,
        "--model",
        "-m",
        metavar="NAME",
        help="Model(s) to retrain (repeatable; default: every model the service loads).",
    ),
    trials: int | None = typer.Option(None, "--trials", min=1, help="Optuna trials (default: settings)."),
    served: bool = typer.Option(
        True,
        "--served/--no-served",
        help="Fold the served decisions and their feedback into the training set of a model labelled by offer "
        "outcomes (the simulated bank's NBA); other models never take them.",
    ),
) -> None:
    """Retrain on logged + served data, register a challenger, move `champion` only if it wins, reload the service."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    settings, project = project_settings(project_file)
    _retrain(settings, project, model or None, trials, served=served)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.command("monitor")(monitor)
    app.command("retrain")(retrain)
