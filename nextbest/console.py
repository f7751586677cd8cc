"""Shared rich console and progress factory for CLI commands (library code logs; commands render)."""

from __future__ import annotations

import os

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

console = Console()
#: set by `quiet_third_parties`, so that worker processes spawned after it are quiet too
QUIET_ENV = "NEXTBEST_QUIET_THIRD_PARTIES"


def progress(transient: bool = False) -> Progress:
    """A rich progress bar with the columns every long Nextbest job uses."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=transient,
    )


def quiet_third_parties() -> None:
    """Deprecation and future warnings of the libraries (Feast, ibis, SQLAlchemy, MLflow, pandas) are theirs to
    fix, not the user's to read (the CLI without `--verbose`, the benchmarks); MLflow's artefact-download progress
    bars stay off."""
    import warnings

    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", message=".*is an experimental feature.*")
    warnings.filterwarnings("ignore", module=r"(feast|mlflow|ibis|sqlalchemy|pydantic|bentoml|_bentoml_.*)(\..*)?$")
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning,ignore::FutureWarning")  # child processes
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ[QUIET_ENV] = "1"  # spawned workers (the campaign's) call this too: see `quiet_if_parent_was`


def quiet_if_parent_was() -> None:
    """In a spawned worker process: the parent's `quiet_third_parties`, when it had called it (a library's warning
    filters, e.g. SQLAlchemy's own, are not inherited through PYTHONWARNINGS alone)."""
    if os.environ.get(QUIET_ENV) == "1":
        quiet_third_parties()
