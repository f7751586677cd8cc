"""Shared rich console and progress factory for CLI commands (library code logs; commands render)."""

from __future__ import annotations

import os

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

console = Console()


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
