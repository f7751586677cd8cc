"""CLI commands: simulate (the seeded bank world: sources for the platform, truth for evaluation)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from nextbest.settings import Settings
    from nextbest.simulator import SimulationConfig, WorldSummary


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.command("simulate")(simulate)


def simulate(
    customers: int | None = typer.Option(None, "--customers", "-n", help="Customers at the start (default: settings)."),
    days: int | None = typer.Option(None, "--days", "-d", help="Days to simulate (default: settings)."),
    seed: int | None = typer.Option(None, "--seed", "-s", help="Random seed (same seed, same bytes)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="World folder (default: <home>/world)."),
    scenario: str | None = typer.Option(
        None, "--scenario", help="Drift scenario: rate_shock, fee_change or digital_cohort (see --list-scenarios)."
    ),
    scenario_start_day: int | None = typer.Option(
        None, "--scenario-start-day", help="Day index the drift begins (default: settings, else half-way)."
    ),
    start_date: str | None = typer.Option(None, "--start-date", help="First day, YYYY-MM-DD (default: settings)."),
    chunk_size: int = typer.Option(25_000, "--chunk-size", help="Customers simulated together (bounds memory)."),
    workers: int | None = typer.Option(
        None,
        "--workers",
        help="Processes simulating chunks (default: one per core, at most 2; compute: dask, its workers).",
    ),
    list_scenarios: bool = typer.Option(False, "--list-scenarios", help="List the drift scenarios and exit."),
    price_exploration: bool = typer.Option(
        False,
        "--price-exploration",
        help="Offer each priced contact at a random price of the customer's band (logged; docs/pricing.md).",
    ),
) -> None:
    """Simulate the bank world: parquet sources (data contract) and the truth, apart, in truth/."""
    from nextbest import distributed
    from nextbest.console import console, progress
    from nextbest.settings import load_settings
    from nextbest.simulator import simulate_world

    if list_scenarios:
        _print_scenarios()
        return
    settings = load_settings()
    config = _world_config(settings, customers, days, seed, scenario, scenario_start_day, start_date, chunk_size)
    if price_exploration:
        config = config.model_copy(update={"price_exploration": True})
    out_dir = out or settings.world_dir
    console.print(
        f"Simulating [bold]{config.customers:,}[/] customers x [bold]{config.days}[/] days, seed {config.seed}"
        + (f", scenario [bold]{config.scenario}[/] from day {config.scenario_start_day}" if config.scenario else "")
    )
    with distributed.client(settings) as dask, progress() as bar:  # compute: dask -> the chunks on its workers
        task = bar.add_task("simulate", total=config.n_chunks * config.days)
        summary = simulate_world(
            config, out_dir, on_progress=lambda k: bar.advance(task, k), workers=workers, dask=dask
        )
    _print_summary(summary, out_dir)


def _print_scenarios() -> None:
    """The drift scenarios, one row each."""
    from rich.table import Table

    from nextbest.console import console
    from nextbest.simulator import SCENARIOS

    t = Table(title="Drift scenarios")
    t.add_column("name", style="bold")
    t.add_column("what changes from --scenario-start-day")
    for s in SCENARIOS.values():
        t.add_row(s.name, s.description)
    console.print(t)


def _world_config(
    settings: Settings,
    customers: int | None,
    days: int | None,
    seed: int | None,
    scenario: str | None,
    scenario_start_day: int | None,
    start_date: str | None,
    chunk_size: int,
) -> SimulationConfig:
    """The simulation config: options given on the command line, else the world settings."""
    import datetime as dt

    from nextbest.errors import ConfigError
    from nextbest.simulator import SimulationConfig

    w = settings.world
    scenario = scenario if scenario is not None else w.scenario
    if scenario_start_day is None and scenario is not None:
        scenario_start_day = w.scenario_start_day
    n_days = w.days if days is None else days
    if scenario is not None and scenario_start_day is None:
        scenario_start_day = n_days // 2
    try:
        start = dt.date.fromisoformat(start_date or w.start_date)
    except ValueError:
        raise ConfigError(f"--start-date must be YYYY-MM-DD, got {start_date!r}") from None
    return SimulationConfig.build(
        customers=w.customers if customers is None else customers,
        days=n_days,
        seed=w.seed if seed is None else seed,
        start_date=start,
        scenario=scenario,
        scenario_start_day=scenario_start_day,
        chunk_size=chunk_size,
    )


def _print_summary(summary: WorldSummary, out_dir: Path) -> None:
    """Rows written per table, the world's truth measures and where the sources and truth are."""
    from rich.table import Table

    from nextbest.console import console

    t = Table(title=f"World written in {summary.seconds:.1f}s")
    t.add_column("table")
    t.add_column("rows", justify="right")
    t.add_column("folder")
    truth = {"intents", "contact_truth", "churn_hazard", "customer_latent"}
    for name, n in summary.rows.items():
        folder = out_dir / ("truth" if name in truth else "sources") / name
        t.add_row(name, f"{n:,}", str(folder))
    console.print(t)
    a = Table(title="The world's truth (never a feature)")
    a.add_column("measure")
    a.add_column("value", justify="right")
    for k, v in summary.bayes_auc.items():
        a.add_row(f"Bayes-optimal AUC {k}", "n/a" if v is None else f"{v:.3f}")
    a.add_row("churn per month", f"{summary.monthly_churn_rate:.2%}")
    a.add_row("logged offers accepted", f"{summary.acceptance_rate:.2%}")
    console.print(a)
    console.print(f"sources: {out_dir / 'sources'}\ntruth:   {out_dir / 'truth'} (world.json)")
