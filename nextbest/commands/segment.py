"""CLI commands: segment (`nextbest segment list|size|export [NAME] [--as-of DATE] [--project FILE]`).

`list` shows a project's segment definitions, validated against its features; `size` and `export` read the
point-in-time features the segments need for every entity as of a date through Feast (`nextbest.segments`) and print
the sizes or write the members (CSV, or parquet for a `.parquet` output) under the project's home by default.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from nextbest.features.project import FeatureProject
    from nextbest.segments import Segments

segment_app = typer.Typer(help="Customer segments: definitions, sizes and members as of a date (through Feast).")

_PROJECT = typer.Option(
    None, "--project", "-p", metavar="FILE", help="Project file (default: the simulated bank, configs/simbank.yaml)."
)
_AS_OF = typer.Option(
    None,
    "--as-of",
    metavar="DATE",
    help="Membership as of this date (YYYY-MM-DD = 00:00 UTC, or an ISO datetime); default: the newest feature rows.",
)


def _fail(exc: Exception) -> typer.Exit:
    from nextbest.commands.features import one_line

    typer.echo(f"error: {one_line(str(exc))}", err=True)
    return typer.Exit(code=2)


def _segments(project: Path | None) -> tuple[FeatureProject, Segments]:
    from nextbest.commands.features import project_features
    from nextbest.errors import NextbestError
    from nextbest.segments import project_segments

    features = project_features(project)
    try:
        return features, project_segments(features.project, features)
    except NextbestError as exc:
        raise _fail(exc) from None


@segment_app.command("list")
def list_cmd(project: Path | None = _PROJECT) -> None:
    """The project's segments: rule, the features read, what it is for (validated against the feature service)."""
    from rich.markup import escape
    from rich.table import Table

    from nextbest.console import console

    features, segments = _segments(project)
    table = Table(title=f"{features.project.name}: segments of entity {segments.entity!r}")
    for col in ("segment", "rule", "reads", "description"):
        table.add_column(col, overflow="fold")
    for name in segments.names:
        spec = segments.spec(name)
        table.add_row(name, escape(spec.rule), ", ".join(segments.reads(name)), escape(spec.description))
    console.print(table)


@segment_app.command("size")
def size_cmd(
    names: list[str] = typer.Argument(None, metavar="[NAME]...", help="Segments to size (default: all)."),
    as_of: str | None = _AS_OF,
    project: Path | None = _PROJECT,
) -> None:
    """How many entities are in each segment as of a date (point-in-time features from Feast's offline store)."""
    from rich.table import Table

    from nextbest.console import console
    from nextbest.errors import NextbestError
    from nextbest.segments import members_as_of, parse_as_of

    features, segments = _segments(project)
    try:
        found = members_as_of(segments, features, list(names or segments.names), parse_as_of(as_of))
    except NextbestError as exc:
        raise _fail(exc) from None
    when = f"{found[0].as_of:%Y-%m-%d %H:%M} UTC" if found else "-"
    known = found[0].known if found else 0
    console.print(f"{features.project.name}: segment sizes as of {when} ({known:,} entities known)")
    table = Table()
    table.add_column("segment")
    table.add_column("members", justify="right")
    table.add_column("share", justify="right")
    for m in found:
        table.add_row(m.segment, f"{m.size:,}", f"{m.share:.1%}")
    console.print(table)


@segment_app.command("export")
def export_cmd(
    name: str = typer.Argument(..., metavar="NAME", help="The segment."),
    as_of: str | None = _AS_OF,
    project: Path | None = _PROJECT,
    output: Path | None = typer.Option(
        None, "--output", "-o", metavar="FILE", help="CSV or .parquet file (default: <project home>/segments/)."
    ),
) -> None:
    """Write the members of a segment as of a date (one entity key per row)."""
    import pandas as pd

    from nextbest.console import console
    from nextbest.errors import NextbestError
    from nextbest.segments import members_as_of, parse_as_of

    features, segments = _segments(project)
    try:
        (found,) = members_as_of(segments, features, [name], parse_as_of(as_of))
    except NextbestError as exc:
        raise _fail(exc) from None
    if output is None:
        folder = features.project.home(features.settings) / "segments"
        output = folder / f"{name}_{found.as_of:%Y%m%d}.csv"
    output.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({segments.schema.key: found.members})
    if output.suffix == ".parquet":
        frame.to_parquet(output, index=False)
    else:
        frame.to_csv(output, index=False)
    console.print(
        f"{name}: {found.size:,} of {found.known:,} entities as of {found.as_of:%Y-%m-%d %H:%M} UTC -> {output}"
    )


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.add_typer(segment_app, name="segment")
