"""CLI command: demo, the main job end to end on the embedded defaults (what `make demo` runs).

The demo runs the same CLI commands a user would type, in-process and in order, so what it shows is what each
command does; only the service runs in a subprocess (as in production). Each step prints where its output went.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import typer


def _run(args: list[str]) -> None:
    """Invoke one `nextbest` command in-process (same code path and output as the shell)."""
    from typer.main import get_command

    from nextbest.cli import app

    get_command(app).main(args=args, prog_name="nextbest", standalone_mode=False)


def demo(
    customers: int | None = typer.Option(None, "--customers", help="World size (default: settings.world.customers)."),
    days: int | None = typer.Option(None, "--days", help="Days simulated (default: settings.world.days)."),
    trials: int | None = typer.Option(None, "--trials", help="Optuna trials per model (default: settings)."),
    skip_serve: bool = typer.Option(False, "--skip-serve", help="Stop before starting the decision service."),
    skip_loop: bool = typer.Option(False, "--skip-loop", help="Skip the closed-loop simulation at the end."),
) -> None:
    """Simulate a bank, build its genome, train and register models, evaluate, serve decisions, close the loop."""
    from rich.rule import Rule

    from nextbest.console import console
    from nextbest.settings import load_settings

    settings = load_settings()
    settings.ensure_dirs()
    customer_id = 1
    trial_args = ["--trials", str(trials or settings.training.trials)]
    world_args = []
    if customers:
        world_args += ["--customers", str(customers)]
    if days:
        world_args += ["--days", str(days)]

    steps: list[tuple[str, Callable[[], None]]] = [
        ("1. Simulate the bank world", lambda: _run(["simulate", *world_args])),
        ("2. Build the feature tables (the customer genome)", lambda: _run(["features", "build"])),
        ("3. Register the Feast repo (feast apply)", lambda: _run(["features", "apply"])),
        ("4. Load the online store (fast materialization)", lambda: _run(["features", "materialize"])),
        (
            "5. Read one customer's online features",
            lambda: _run(["features", "read", "--customer-id", str(customer_id)]),
        ),
        ("6. Tune, track and register the churn model", lambda: _run(["train", "churn", *trial_args])),
        ("7. Tune, track and register the next-best-action model", lambda: _run(["train", "nba", *trial_args])),
        ("8. The evaluation ladder against the simulator's truth", lambda: _run(["evaluate"])),
    ]
    if not skip_serve:
        from nextbest.jobs.demo import run_serving_demo

        steps.append(("9. Serve decisions (BentoML), push an event, send feedback", lambda: run_serving_demo(settings)))
        if not skip_loop:
            steps.append(
                (
                    "10. The closed loop: served traffic, drift, monitoring, retrain, reload (its own world)",
                    lambda: _run(["loop"]),
                )
            )

    started = time.perf_counter()
    for title, step in steps:
        console.print(Rule(f"[bold cyan]{title}"))
        t0 = time.perf_counter()
        step()
        console.print(f"[dim]{title.split('.')[0]}. done in {time.perf_counter() - t0:.1f}s[/]")

    console.print(Rule("[bold green]Demo complete"))
    console.print(f"Finished in {time.perf_counter() - started:.0f}s. Everything generated is under {settings.home}:")
    console.print(f"  world (sources + truth)  {settings.world_dir}")
    console.print(f"  feature store            {settings.features_dir}  (cd feature_repo && feast ui)")
    console.print(
        f"  MLflow runs + registry   {settings.mlflow_dir}  "
        f"(uv run mlflow ui --backend-store-uri {settings.mlflow_tracking_uri})"
    )
    console.print(f"  decision log             {settings.decision_log_uri}")
    console.print(f"  promotion log            {settings.home / 'promotions.jsonl'}")
    loop_home = settings.home / "loop"
    if loop_home.is_dir():
        console.print(f"  closed loop (its world)  {loop_home}  (summary: reports/loop_summary.json)")
        console.print(f"    Evidently UI           uv run evidently ui --workspace {loop_home / 'evidently'}")
        mlflow_db = loop_home / "mlflow" / "mlflow.db"
        console.print(f"    MLflow UI              uv run mlflow ui --backend-store-uri sqlite:///{mlflow_db}")
        console.print(f"    promotion log          {loop_home / 'promotions.jsonl'}")
        console.print(f"    retrains, verdicts     {loop_home / 'reports'}/retrains.jsonl, verdicts.jsonl")
    console.print(
        "  notebook                 notebooks/03_monitoring.ipynb (latest reports, promotions, retrains, loop)"
    )


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.command("demo")(demo)
