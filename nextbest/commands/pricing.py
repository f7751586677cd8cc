"""CLI commands: pricing (`nextbest pricing bands`, `nextbest pricing fit`), docs/pricing.md.

`bands` prints the project's approved price bands (per priced action and risk band: range, step, list price, the
break-even rate, owner and version). `fit` fits the price-response estimate the decision policy prices with from
the logged contacts' offered prices (a simulated world with price exploration) and writes it where the engine
reads it.
"""

from __future__ import annotations

from pathlib import Path

import typer

from nextbest.commands import project_option

app = typer.Typer(help="Personalised pricing inside approved risk bands (docs/pricing.md).", no_args_is_help=True)


@app.command("bands")
def bands(project_file: Path | None = project_option()) -> None:
    """The approved price bands of the project's catalogue."""
    from rich.table import Table

    from nextbest.commands.monitor import project_settings
    from nextbest.console import console

    _settings, project = project_settings(project_file)
    catalogue = project.decisions()[1]
    if not catalogue.pricing:
        console.print(f"project {project.name!r} prices nothing (its catalogue has no pricing section)")
        return
    t = Table(title=f"{project.name}: approved price bands (% a year)")
    for col in ("action", "kind", "risk bands", "min", "max", "step", "list", "break-even", "owner", "version"):
        t.add_column(col)
    for action_id, spec in catalogue.pricing.items():
        for b in spec.bands:
            t.add_row(
                action_id, spec.kind, ", ".join(b.risk_bands), f"{b.min:g}", f"{b.max:g}", f"{b.step:g}",
                f"{b.list_price:g}", f"{spec.break_even(b):.2f}", spec.owner, spec.version,
            )  # fmt: skip
    console.print(t)


@app.command("fit")
def fit(
    project_file: Path | None = project_option(),
    min_rows: int = typer.Option(200, "--min-rows", help="Priced contacts an action needs to get an estimate."),
) -> None:
    """Fit the price-response estimate from the logged contacts' offered prices (docs/pricing.md)."""
    from nextbest.commands.monitor import project_settings
    from nextbest.console import console
    from training.price_response import fit_project

    settings, project = project_settings(project_file)
    out = fit_project(settings, project, min_rows=min_rows)
    console.print(f"price response {out.response.version} from {out.contacts:,} priced contacts: {out.path}")
    for action_id, (below, above) in out.response.coefficients.items():
        n = out.response.rows.get(action_id, 0)
        console.print(f"  {action_id}: slope below list {below:+.2f}, above list {above:+.2f} ({n:,} contacts)")


def register(main: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    main.add_typer(app, name="pricing")
