"""CLI command: erase, the right to erasure (`nextbest erase CUSTOMER [--project FILE] [--yes]`).

A thin shell over `nextbest.forget.erase_customer`: asks for confirmation (unless `--yes`), erases the customer
from every store of the project, and prints what was removed, the bank's files to erase at the source and the
model versions trained on data that could have held the customer. `--json` prints the report as JSON instead.
Exit status 1 when a step failed (a store down, a file held by a running process): run it again.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from nextbest.commands import project_option

PROJECT_HELP = "Project file (default: the settings' project, the simulated bank, configs/simbank.yaml)."


def print_report(report: object) -> None:
    """The report as tables: rows removed per store, the bank's files, the model versions, the notes."""
    from rich.markup import escape
    from rich.table import Table

    from nextbest.console import console
    from nextbest.forget import ErasureReport

    assert isinstance(report, ErasureReport)
    title = f"{report.project}: erased {report.entity} {report.key} ({report.rows_removed:,} rows)"
    table = Table(title=escape(title))
    table.add_column("store")
    table.add_column("where")
    table.add_column("rows removed", justify="right")
    for store, part in (
        ("online store", report.online),
        ("feature table", report.offline),
        ("generated world", report.generated_sources),
        ("decision log", report.decision_log),
    ):
        for where, rows in part.items():
            table.add_row(store, escape(where), f"{rows:,}")
    console.print(table)
    if report.related:
        console.print("related keys erased: " + ", ".join(f"{n} {c}" for c, n in report.related.items()))
    new = "new" if report.new_tombstone else "already tombstoned"
    console.print(f"tombstone ({new}): {report.tombstones}")
    for path in report.erase_at_source:
        console.print(f"[yellow]erase at the source[/] (the bank's file, not modified): {escape(path)}")
    for m in report.models:
        window = f"{m.data.get('snapshot_start', '?')} .. {m.data.get('snapshot_end', '?')}"
        held = "may hold the customer" if m.may_hold else "trained without them"
        aliases = escape(f" [{', '.join(m.aliases)}]") if m.aliases else ""
        console.print(f"model {m.model} v{m.version}{aliases}: run {m.run_id}, data {window}: {held}")
    for note in report.notes:
        console.print(f"note: {escape(note)}")
    for step, why in report.failed.items():
        console.print(f"[bold red]not erased[/] ({step}): {escape(why)}; run the command again once it is fixed")


def erase(
    customer: str = typer.Argument(..., metavar="CUSTOMER", help="The customer's id (typed by the project)."),
    project_file: Path | None = project_option(PROJECT_HELP),
    entity: str | None = typer.Option(
        None, "--entity", metavar="NAME", help="The entity the id names (default: the served one)."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Erase one customer from every store of a project (online, feature tables, world, decision log)."""
    import json

    from nextbest.commands.monitor import project_settings
    from nextbest.forget import coerce_key, erase_customer, erased_entity

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    settings, project = project_settings(project_file)
    name = erased_entity(project, entity)
    key = coerce_key(project.entities[name], customer)
    if not yes:
        typer.confirm(
            f"Erase {name} {key!r} of project {project.name!r} from the online store, feature tables, generated "
            "data and decision log? This cannot be undone",
            abort=True,
        )
    report = erase_customer(project, settings, key, entity=name)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=1, default=str))
    else:
        print_report(report)
    if not report.complete:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.command("erase")(erase)
