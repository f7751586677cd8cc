"""CLI command: replay (decide a logged decision again from the log alone and show that it matches)."""

from __future__ import annotations

from pathlib import Path

import typer


def replay(
    decision_id: str = typer.Argument(..., help="The decision id (from the response or the decision log)."),
    project: Path | None = typer.Option(
        None, "--project", "-p", metavar="FILE", help="Project file (default simbank)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
) -> None:
    """Rebuild a decision from the log (features, models, policy by digest, cap state) and compare; exit 1 if not."""
    import json

    from rich.table import Table

    from nextbest.commands.features import load_project_or_exit
    from nextbest.console import console
    from nextbest.errors import NextbestError
    from nextbest.settings import load_settings
    from serving.replay import replay_decision

    loaded = load_project_or_exit(project)
    settings = load_settings()
    if project is not None:
        settings = settings.model_copy(update={"project": loaded.source})
    try:
        result = replay_decision(settings, decision_id, project=loaded)
    except NextbestError as exc:
        typer.echo(f"error: {str(exc).splitlines()[0]}", err=True)
        raise typer.Exit(code=2) from None
    if as_json:
        console.print_json(json.dumps(result.__dict__, default=str))
    else:
        table = Table(title=f"decision {decision_id}: {'MATCHES' if result.matches else 'DIFFERS'}")
        for col in ("rank", "action", "propensity", "priority", "reasons"):
            table.add_column(col)
        for a in result.replayed["chosen"]:
            table.add_row(str(a["rank"]), a["action_id"], f"{a['propensity']:.6f}", f"{a['priority']:.4f}",
                          ", ".join(a["reason_codes"]))  # fmt: skip
        console.print(table)
        console.print(f"{len(result.replayed['rejected'])} rejected actions, each with its rule; "
                      f"{len(result.replayed['scores'])} candidates scored")  # fmt: skip
        for line in result.differences:
            console.print(f"[red]{line}[/]")
    raise typer.Exit(code=0 if result.matches else 1)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.command("replay")(replay)
