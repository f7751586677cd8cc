"""CLI command: demo, the main job end to end on the embedded defaults (what `make demo` runs).

The demo runs the same CLI commands a user would type, in-process and in order, so what it shows is what each
command does; only the service runs in a subprocess (as in production). Each step prints where its output went.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from nextbest.settings import Settings


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

    steps = _steps(settings, world_args, trial_args, customer_id, skip_serve, skip_loop)
    started = time.perf_counter()
    for title, step in steps:
        console.print(Rule(f"[bold cyan]{title}"))
        t0 = time.perf_counter()
        step()
        console.print(f"[dim]{title.split('.')[0]}. done in {time.perf_counter() - t0:.1f}s[/]")

    from nextbest.jobs.demo import print_closing

    print_closing(settings, time.perf_counter() - started)


def _steps(
    settings: Settings,
    world_args: list[str],
    trial_args: list[str],
    customer_id: int,
    skip_serve: bool,
    skip_loop: bool,
) -> list[tuple[str, Callable[[], None]]]:
    """The demo's steps in order: each a title and what it runs (a CLI command, or a job of `nextbest.jobs.demo`)."""
    from nextbest.jobs.demo import prepare_monitoring

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
        (
            "9. Monitoring, ready before the first run: the Evidently workspace and its dashboards",
            lambda: prepare_monitoring(settings),
        ),
    ]
    if not skip_serve:
        from nextbest.jobs.demo import run_serving_demo

        steps.append(
            ("10. Serve decisions (BentoML), push an event, send feedback", lambda: run_serving_demo(settings))
        )
        if not skip_loop:
            steps.append(
                (
                    "11. The closed loop: served traffic, drift, monitoring, retrain, reload (its own world)",
                    lambda: _run(["loop"]),
                )
            )
    return steps


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.command("demo")(demo)
