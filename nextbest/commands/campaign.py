"""CLI command: campaign (`nextbest campaign run SPEC [--project FILE] [--as-of DATE] [--dry-run] [--output DIR]
[--workers N]`).

A thin shell over `nextbest.jobs.campaign.run_campaign`: the spec (YAML, `nextbest.campaigns.CampaignSpec`) decided
for its segment or the whole base through the project's one engine and policy, under each channel's volume and
budget; progress bars for the long steps, then a summary (per channel: proposals, sent, cost, control; the audience,
holdout and control sizes; the decisions logged by rule that rejected a campaign action) and where the contact list
(parquet and CSV) went. `--dry-run` decides and allocates but delivers and logs nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from nextbest.commands import project_option

if TYPE_CHECKING:
    from nextbest.jobs.campaign import CampaignResult

campaign_app = typer.Typer(help="Outbound campaigns: whom to contact, with what, on which channel, under limits.")


def _fail(exc: Exception) -> typer.Exit:
    from nextbest.commands.features import one_line

    typer.echo(f"error: {one_line(str(exc))}", err=True)
    return typer.Exit(code=2)


def print_summary(result: CampaignResult) -> None:
    """The run as rich tables (what `nextbest campaign run` prints)."""
    from rich.table import Table

    from nextbest.console import console

    s = result.summary
    mode = "dry run (nothing delivered or logged)" if s["dry_run"] else "decided and logged"
    console.print(
        f"[bold]{result.project}: campaign {s['campaign']}[/] -- {mode}; features as of {s['as_of']}, "
        f"send date {s['send_date']}"
    )
    console.print(
        f"audience {s['audience']:,} of {s['base']:,} entities ({s['erased']:,} erased left out); "
        f"universal holdout {s['holdout']:,}; with an allowed action {s['proposed']:,}; selected {s['selected']:,} "
        f"= treated {s['treated']:,} + campaign control {s['controls']:,}"
    )
    table = Table(title="per channel")
    for col in ("channel", "limit", "proposals", "sent", "cost (EUR)", "control", "full"):
        table.add_column(col, justify="left" if col == "channel" else "right")
    for name, ch in s["channels"].items():
        limits = [f"{ch['volume_limit']:,}" if ch["volume_limit"] is not None else "",
                  f"EUR {ch['budget_limit']:,.2f}" if ch["budget_limit"] is not None else ""]  # fmt: skip
        table.add_row(
            name, " / ".join(x for x in limits if x) or "none", f"{ch['proposals']:,}", f"{ch['sent']:,}",
            f"{ch['cost']:,.2f}", f"{ch['controls']:,}", "yes" if ch["full"] else "no",
        )  # fmt: skip
    console.print(table)
    if not s["dry_run"]:
        console.print(
            f"decisions logged {s['decisions_logged']:,} (control {s['controls_logged']:,}, holdout "
            f"{s['holdout_logged']:,}); sent {s['sent']:,} for EUR {s['cost']:,.2f}; withheld at decision "
            f"{s['withheld_at_decision']:,}; marketing to the holdout {s['marketing_to_holdout']}"
        )
        rules = s.get("rejected_by_rule") or {}
        if rules:
            by_rule = Table(title="logged decisions in which a rule rejected a campaign action")
            by_rule.add_column("rule")
            by_rule.add_column("decisions", justify="right")
            for rule, n in rules.items():
                by_rule.add_row(rule, f"{n:,}")
            console.print(by_rule)
    seconds = ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in result.seconds.items())
    console.print(f"contact list: {result.contacts} (+ {result.contacts_csv.name if result.contacts_csv else ''})")
    console.print(f"[dim]{seconds}[/]")


@campaign_app.command("run")
def run_cmd(
    spec_file: Path = typer.Argument(..., metavar="SPEC", help="The campaign spec (YAML; docs/decisioning.md)."),
    project: Path | None = project_option(),
    as_of: str | None = typer.Option(
        None,
        "--as-of",
        metavar="DATE",
        help="Features as of this date (YYYY-MM-DD = 00:00 UTC, or an ISO datetime); default: the newest feature rows.",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Propose and allocate only: nothing delivered or logged."),
    output: Path | None = typer.Option(
        None, "--output", "-o", metavar="DIR", help="Folder of the contact list (default: <project home>/campaigns/)."
    ),
    workers: int = typer.Option(
        1,
        "--workers",
        "-w",
        min=1,
        max=64,
        help="Worker processes deciding the chunks (each loads the engine); unused with compute: dask "
        "(the cluster's workers decide them).",
    ),
) -> None:
    """Decide a campaign for its segment or the whole base through the project's engine and policy."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from nextbest.campaigns import load_campaign
    from nextbest.commands.features import project_features
    from nextbest.console import console
    from nextbest.errors import NextbestError
    from nextbest.jobs.campaign import run_campaign
    from nextbest.segments import parse_as_of

    features = project_features(project)
    try:
        spec = load_campaign(spec_file, features.project)
        when = parse_as_of(as_of)
    except NextbestError as exc:
        raise _fail(exc) from None
    labels = {"features": "reading the audience's features", "propose": "proposing (dry-run decisions)",
              "decide": "deciding and logging"}  # fmt: skip
    columns: list[Any] = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=False) as bars:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bars.add_task(labels.get(stage, stage), total=max(total, 1))
            bars.update(tasks[stage], completed=done, total=max(total, 1))

        try:
            result = run_campaign(
                spec,
                features.project,
                features.settings,
                as_of=when,
                dry_run=dry_run,
                output=output,
                progress=progress,
                workers=workers,
            )
        except NextbestError as exc:
            raise _fail(exc) from None
    print_summary(result)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.add_typer(campaign_app, name="campaign")
