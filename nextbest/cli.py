"""The one `nextbest` command line: thin Typer commands over plain functions, one module per area.

Each area registers its commands from `nextbest/commands/<area>.py`; heavy libraries are imported inside the
command functions so `nextbest --help` stays fast.
"""

from __future__ import annotations

import logging

import typer

from nextbest.commands import (
    campaign,
    demo,
    erase,
    evaluate,
    features,
    keys,
    loop,
    monitor,
    onboard,
    pricing,
    replay,
    scorecard,
    segment,
    serve,
    simulate,
    train,
    twin,
)
from nextbest.console import quiet_third_parties

app = typer.Typer(
    name="nextbest",
    help="Nextbest: next-best-action experimentation and serving for retail banking.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"nextbest {version('nextbest')}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level; show library warnings."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    from rich.logging import RichHandler

    if not verbose:
        quiet_third_parties()

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(rich_tracebacks=False, show_path=False)],
    )
    for noisy in ("feast", "alembic", "urllib3", "numexpr", "bentoml", "httpx", "matplotlib", "distributed"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


for _module in (
    simulate,
    features,
    segment,
    campaign,
    train,
    evaluate,
    serve,
    replay,
    monitor,
    scorecard,
    loop,
    onboard,
    demo,
    erase,
    keys,
    twin,
    pricing,
):
    _module.register(app)


def main() -> None:
    """Console entry point: known errors become a one-line message and exit status 2, not a traceback."""
    from nextbest.console import console
    from nextbest.errors import NextbestError

    try:
        app()
    except NextbestError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise SystemExit(2) from None


if __name__ == "__main__":  # python -m nextbest.cli
    main()
