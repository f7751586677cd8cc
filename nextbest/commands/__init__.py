"""CLI command modules, one per area; each exposes `register(app)`."""

from __future__ import annotations

from typing import Any

import typer

PROJECT_HELP = "Project file (nextbest/project.py; default: the settings' project, configs/simbank.yaml)."


def project_option(help: str = PROJECT_HELP) -> Any:
    """The `--project FILE` option every command shares (an existing file; None: the settings' project)."""
    return typer.Option(None, "--project", exists=True, dir_okay=False, metavar="FILE", help=help)
