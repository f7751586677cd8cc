"""CLI command: scorecard (`nextbest scorecard [--project FILE] [--since DATE] [--until DATE] [--by GROUPING]
[--json FILE] [--no-plot] [--no-evidently]`).

A thin shell over `nextbest.scorecard.build_scorecard`: one table of the served traffic per policy, model version,
campaign or experiment arm against its control (conversion, revenue per customer, uplift with its 95% interval,
value per decision, acceptance and dismissals, churn, opt-outs), a PNG under `<project home>/reports/scorecard/`,
one snapshot in the project's Evidently workspace (project `<project> scorecard`, its dashboard; the command prints
the `evidently ui` line) and, with `--json`, the scorecard as JSON.
"""

from __future__ import annotations

import math
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from nextbest.scorecard import Scorecard


class By(StrEnum):
    policy = "policy"
    model = "model"
    campaign = "campaign"
    arm = "arm"


def _pct(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1%}"


def _num(x: float, digits: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{digits}f}"


def _uplift(row: object) -> str:
    import pandas as pd

    assert isinstance(row, pd.Series)
    if pd.isna(row["uplift"]):
        return "-"
    if pd.isna(row["uplift_low"]):
        return f"{row['uplift']:+,.2f}"
    return f"{row['uplift']:+,.2f} [{row['uplift_low']:+,.2f}, {row['uplift_high']:+,.2f}]"


def print_scorecard(card: Scorecard) -> None:
    """The scorecard as one rich table, then its notes."""
    from rich.markup import escape
    from rich.table import Table

    from nextbest.console import console

    since = f"{card.since:%Y-%m-%d}" if card.since else "the first decision"
    until = f"{card.until:%Y-%m-%d}" if card.until else "now"
    console.print(f"{card.project}: scorecard by {card.by}, {since} .. {until}")
    table = Table(caption=f"uplift = revenue per customer minus its control's; {card.statistic}")
    columns = ("group", "vs", "decisions", "customers", "conversion", "rev/customer", "uplift [95% CI]")
    for col in (*columns, "value/decision", "accepted", "dismissed", "churn", "opt-outs"):
        table.add_column(col, justify="left" if col in ("group", "vs") else "right")
    for group, row in card.frame.iterrows():
        vs = "(control)" if row["role"] == "control" else (row["baseline"] if isinstance(row["baseline"], str) else "-")
        table.add_row(
            escape(str(group)),
            escape(vs),
            f"{int(row['decisions']):,}",
            f"{int(row['customers']):,}",
            _pct(row["conversion_rate"]),
            _num(row["revenue_per_customer"]),
            _uplift(row),
            _num(row["value_per_decision"]),
            _pct(row["acceptance_rate"]),
            _pct(row["dismissal_rate"]),
            _pct(row["churn_rate"]),
            _pct(row["opt_out_rate"]),
        )
    console.print(table)
    if any(len(report.rows) for report in card.fairness.values()):
        print_fairness(card)
    for note in card.notes:
        console.print(f"note: {escape(note)}")


def _ratio(row: dict) -> str:
    ratio, low, high = row.get("ratio"), row.get("low"), row.get("high")
    if ratio is None or (isinstance(ratio, float) and math.isnan(ratio)):
        return "-"
    if low is None or (isinstance(low, float) and math.isnan(low)):
        return f"{ratio:.2f}"
    return f"{ratio:.2f} [{low:.2f}, {high:.2f}]"


def print_fairness(card: Scorecard) -> None:
    """The fairness check per treated group: each grouping's offer rate (and mean price per product) with its
    adverse-impact ratio to the most favoured group and its 95% interval; flagged rows in bold red."""
    from rich.markup import escape
    from rich.table import Table

    from nextbest.console import console
    from nextbest.fairness import OFFER_RATE

    threshold = next(iter(card.fairness.values())).threshold
    table = Table(
        title="Fairness: credit offers and prices across groups",
        title_justify="left",
        caption=(
            f"ratio to the most favoured group (< 1: worse off), Katz / delta-method 95% interval; flagged below "
            f"{threshold:.2f} (point estimate, groups of at least the project's min_group_size)"
        ),
    )
    for col in ("group", "attribute", "metric", "subgroup", "units", "value", "ratio [95% CI]", "flag"):
        table.add_column(col, justify="right" if col in ("units", "value", "ratio [95% CI]") else "left")
    for group, report in card.fairness.items():
        for row in report.rows.to_dict("records"):
            metric = "credit offer rate" if row["metric"] == OFFER_RATE else f"mean price {row['product']}"
            value = _pct(row["value"]) if row["metric"] == OFFER_RATE else _num(row["value"])
            flag = "[bold red]FLAGGED[/]" if row["flagged"] else ("too small" if row["too_small"] else "")
            if row["group"] == row["reference"]:
                flag = "reference"
            table.add_row(
                escape(group), escape(str(row["attribute"])), metric, escape(str(row["group"])),
                f"{int(row['units']):,}", value, _ratio(row), flag,
            )  # fmt: skip
        if table.rows:
            table.rows[-1].end_section = True
    console.print(table)


def scorecard(
    project: Path | None = typer.Option(
        None, "--project", "-p", metavar="FILE", help="Project file (default: the simulated bank)."
    ),
    since: str | None = typer.Option(None, "--since", metavar="DATE", help="Decisions from this date (UTC)."),
    until: str | None = typer.Option(None, "--until", metavar="DATE", help="Decisions before this date (UTC)."),
    by: By = typer.Option(By.arm, "--by", help="Group decisions by policy version, model version, campaign or arm."),
    json_path: Path | None = typer.Option(None, "--json", metavar="FILE", help="Also write the scorecard as JSON."),
    plot: bool = typer.Option(True, "--plot/--no-plot", help="Write the PNG under the project's reports."),
    evidently: bool = typer.Option(
        True, "--evidently/--no-evidently", help="Add a snapshot to the project's Evidently workspace (its dashboard)."
    ),
) -> None:
    """The scorecard of served traffic: per group and against the control, from the project's decision log."""
    import json

    from nextbest.commands.features import one_line
    from nextbest.commands.monitor import project_settings
    from nextbest.console import console
    from nextbest.errors import NextbestError
    from nextbest.scorecard import build_scorecard, plot_scorecard, scorecard_folder
    from nextbest.segments import parse_as_of

    try:
        settings, loaded = project_settings(project)
        card = build_scorecard(loaded, settings, by=by.value, since=parse_as_of(since), until=parse_as_of(until))
    except NextbestError as exc:
        typer.echo(f"error: {one_line(str(exc))}", err=True)
        raise typer.Exit(code=2) from None
    print_scorecard(card)
    if plot and not card.frame.empty:
        path = plot_scorecard(card, scorecard_folder(loaded, settings) / f"scorecard_{card.by}.png")
        console.print(f"plot -> {path}")
    if evidently and not card.frame.empty:
        from monitoring.scorecard_view import save_to_workspace  # Evidently is heavy: only when asked

        snapshot = save_to_workspace(card, loaded, settings)
        console.print(f"Evidently: project '{snapshot.project}', snapshot {snapshot.run_id} -> {snapshot.html}")
        console.print(f"dashboard: {snapshot.ui_command}", soft_wrap=True)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(card.to_dict(), indent=1, default=str))
        console.print(f"json -> {json_path}")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.command("scorecard")(scorecard)
