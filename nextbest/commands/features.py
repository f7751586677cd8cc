"""CLI commands: features (build the feature tables, apply the Feast repo, materialize, push an event, read).

`nextbest features build|apply|materialize [--project FILE]` run the steps of any project through its
`FeatureProject` (default: the simulated bank); each prints where its results went. `push` and `read` work on the
simulated bank's genome. `feast ...` from `feature_repo/` works on the same files for the default home.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from nextbest.features.project import FeatureProject
    from nextbest.project import Project
    from nextbest.settings import Settings

features_app = typer.Typer(help="Feature repo: build feature tables, apply, materialize, push events, read online.")


class OnlineStore(StrEnum):
    sqlite = "sqlite"
    redis = "redis"


class Method(StrEnum):
    fast = "fast"
    feast = "feast"


class Service(StrEnum):
    nba_v1 = "nba_v1"
    churn_v1 = "churn_v1"


_ONLINE = typer.Option(None, "--online", help="Online store (default: settings.features.online_store).")
_PROJECT = typer.Option(
    None, "--project", "-p", help="Project file (default: the simulated bank, configs/simbank.yaml)."
)


def _settings(online: OnlineStore | None) -> Settings:
    from nextbest.settings import load_settings

    settings = load_settings()
    if online is None:
        return settings
    return settings.model_copy(update={"features": settings.features.model_copy(update={"online_store": online.value})})


def one_line(message: str) -> str:
    """An error message on one line (a validation error's details joined, pydantic's help links dropped)."""
    lines = [line.strip() for line in str(message).splitlines()]
    kept = [re.sub(r"\s*\[type=[^\]]*\]", "", line) for line in lines if line and not line.startswith("For further")]
    return " ".join(kept)


def load_project_or_exit(path: Path | None) -> Project:
    """The project file at `path` (None: the simulated bank); a missing or invalid file ends the command with a
    one-line error and exit status 2."""
    from nextbest.errors import ConfigError
    from nextbest.project import load_project

    try:
        return load_project(path)
    except ConfigError as exc:
        typer.echo(f"error: {one_line(str(exc))}", err=True)
        raise typer.Exit(code=2) from None


def project_features(path: Path | None, online: OnlineStore | None = None) -> FeatureProject:
    """The feature project of the project file at `path`, with settings naming that project."""
    from nextbest.features.project import feature_project

    project = load_project_or_exit(path)
    settings = _settings(online)
    if path is not None:
        settings = settings.model_copy(update={"project": project.source})
    return feature_project(project, settings)


def _state(features: FeatureProject) -> tuple[Path, str]:
    """(the Feast registry, where the online store is) of a feature project."""
    from nextbest.features.project import TableFeatures
    from nextbest.onboarding.features import project_paths

    settings = features.settings
    if isinstance(features, TableFeatures):
        paths = project_paths(features.mapping, settings)
        registry, sqlite = paths.registry, paths.online_db
    else:
        registry, sqlite = settings.features_dir / "registry.db", settings.features_dir / "online_store.db"
    online = settings.features.online_store
    return registry, f"{online} {sqlite if online == 'sqlite' else settings.features.redis_connection_string}"


@features_app.command("build")
def build(
    project: Path | None = _PROJECT,
    every_days: int = typer.Option(
        1, "--every-days", min=1, help="Genome snapshot cadence in days (7 at 100k+ x 180d)."
    ),
) -> None:
    """Build the point-in-time feature tables (the simulated bank's from its world, a bank's from its files)."""
    from nextbest.console import console, progress
    from nextbest.features.project import GenomeFeatures

    features = project_features(project)
    if every_days != 1 and not isinstance(features, GenomeFeatures):
        typer.echo(
            "error: --every-days sets the simulated bank's snapshot cadence; a table project has its own", err=True
        )
        raise typer.Exit(code=2)
    with progress() as bar:
        task = bar.add_task(f"feature tables of {features.project.name}", total=None)

        def step(name: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=f"feature tables: {name}")

        if isinstance(features, GenomeFeatures):
            paths = features.build(progress=step, every_days=every_days)
        else:
            paths = features.build(progress=step)
    for view, path in paths.items():
        console.print(f"  {view:<24} -> {path}")


@features_app.command("apply")
def apply_cmd(project: Path | None = _PROJECT, online: OnlineStore | None = _ONLINE) -> None:
    """Register the project's Feast objects (entities, views, services) like `feast apply`."""
    from nextbest.console import console
    from nextbest.features.project import TableFeatures

    features = project_features(project, online)
    with console.status(f"feast apply ({features.project.name})"):
        features.apply()
    registry, _ = _state(features)
    console.print(f"applied project [bold]{features.project.name}[/] -> {registry}")
    if isinstance(features, TableFeatures):
        from nextbest.onboarding.features import project_paths

        console.print(f"feast CLI: cd {project_paths(features.mapping, features.settings).repo_dir} && feast ui")


@features_app.command("materialize")
def materialize_cmd(
    project: Path | None = _PROJECT,
    method: Method = typer.Option(Method.fast, "--method", help="fast: bulk write; feast: FeatureStore.materialize."),
    online: OnlineStore | None = _ONLINE,
    end: datetime | None = typer.Option(
        None, "--end", help="Materialize up to this time, UTC (default: the newest row / the extract end)."
    ),
) -> None:
    """Load every entity's latest features into the online store."""
    from nextbest.console import console, progress

    features = project_features(project, online)
    with progress() as bar:
        task = bar.add_task("materialize", total=None)

        def step(name: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=f"materialize: {name}")

        stats = features.materialize(method=method.value, end=end, progress=step)
    _, where = _state(features)
    console.print(
        f"materialized {stats.values:,} values ({stats.rows:,} rows, {stats.features} features) of "
        f"{features.project.name} with {stats.method} in {stats.seconds:.2f}s = {stats.values_per_s:,.0f} values/s "
        f"-> {where}"
    )


@features_app.command("push")
def push_cmd(
    customer_id: int = typer.Option(..., "--customer-id"),
    signal: str | None = typer.Option(None, "--signal", help="Context signal, e.g. airport_checkin."),
    page: str | None = typer.Option(None, "--page", help="Page viewed, e.g. mortgage_calculator."),
    online: OnlineStore | None = _ONLINE,
) -> None:
    """Push one real-time event (now) to the online store through the Feast push source."""
    from nextbest.console import console
    from nextbest.errors import DataError
    from nextbest.features import get_store, push_event

    if (signal is None) == (page is None):
        raise DataError("give exactly one of --signal or --page")
    event = {"customer_id": customer_id, "ts": None, "signal": signal, "page": page, "event_type": "page_view"}
    if signal is not None:
        event.pop("page")
    row = push_event(get_store(_settings(online)), event)
    if row is None:
        raise DataError(f"the event {signal or page!r} moves no real-time state; see feature_repo/specs.py")
    console.print(f"pushed {signal or page} for customer {customer_id}")


@features_app.command("read")
def read_cmd(
    customer_id: int = typer.Option(..., "--customer-id"),
    service: Service = typer.Option(Service.nba_v1, "--service"),
    channel: str = typer.Option("app", "--channel", help="Request channel (nba_v1)."),
    location_type: str | None = typer.Option(None, "--location-type", help="Request location type (nba_v1)."),
    at: datetime | None = typer.Option(
        None, "--at", help="Request time (UTC) for nba_v1 recency; default: the newest feature row (the world's now)."
    ),
    online: OnlineStore | None = _ONLINE,
) -> None:
    """Print one customer's online features through a feature service."""
    import math

    from rich.table import Table

    from nextbest.console import console
    from nextbest.features import get_store, online_features, request_context
    from nextbest.features.store import feature_tables_end

    settings = _settings(online)
    store = get_store(settings)
    # A simulated world has its own clock: recency is measured from its "now", not the wall clock.
    when = at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at
    when = when or feature_tables_end(settings)
    request = request_context(channel, at=when, location_type=location_type)
    frame = online_features(store, [customer_id], service=service.value, request=request)
    row = {name: frame[name].iloc[0] for name in frame.columns}
    title = f"customer {customer_id} · {service.value} · {settings.features.online_store} · at {when:%Y-%m-%d %H:%M}"
    table = Table(title=title)
    table.add_column("feature")
    table.add_column("value", justify="right")
    missing = 0
    for name, value in row.items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            missing += 1
            shown = "[dim]-[/]"
        elif isinstance(value, float) and not value.is_integer():
            shown = f"{value:,.3f}"
        elif isinstance(value, float):
            shown = f"{value:,.0f}"
        else:
            shown = str(value)
        table.add_row(name, shown)
    console.print(table)
    if missing == len(row) - 1:
        console.print(f"[yellow]customer {customer_id} has no online features (unknown or not materialized)[/]")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.add_typer(features_app, name="features")
