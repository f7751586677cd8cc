"""CLI commands: onboard a bank's own tables by configuration (`nextbest onboard build|apply|materialize|train|all`).

`build`, `apply` and `materialize` are `nextbest features build|apply|materialize` (the project's
`FeatureProject`); `train` trains the project's models with the onboarding job (`nextbest.jobs.onboard`); `all`
runs the four steps in order (what a first onboarding wants). `--project FILE` names the project file
(`--config` is its older name); every step prints where its results went.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from nextbest.commands import features as feature_commands

if TYPE_CHECKING:
    from nextbest.project import Project

DEFAULT_PROJECT = Path("configs/berka.yaml")

onboard_app = typer.Typer(
    name="onboard",
    help="Bring your own bank: build a Feast project and models from a project file (docs/onboarding.md).",
    no_args_is_help=True,
)

_PROJECT = typer.Option(
    DEFAULT_PROJECT, "--project", "--config", "-p", "-c", help="Project file (see configs/berka.yaml)."
)


@onboard_app.command("build")
def build_cmd(project: Path = _PROJECT) -> None:
    """Compute the feature tables (point-in-time snapshots) from the bank's files."""
    feature_commands.build(project=project, every_days=1)


@onboard_app.command("apply")
def apply_cmd(project: Path = _PROJECT) -> None:
    """Register the generated entities, feature views and feature services in the project's Feast registry."""
    feature_commands.apply_cmd(project=project, online=None)


@onboard_app.command("materialize")
def materialize_cmd(project: Path = _PROJECT) -> None:
    """Load every entity's latest features into the project's online store."""
    feature_commands.materialize_cmd(project=project, method=feature_commands.Method.fast, online=None, end=None)


def _table_project(path: Path) -> Project:
    loaded = feature_commands.load_project_or_exit(path)
    if loaded.tables is None:
        typer.echo(f"error: project {loaded.name!r} has no table mapping; train it with `nextbest train`", err=True)
        raise typer.Exit(code=2)
    return loaded


@onboard_app.command("train")
def train_cmd(
    project: Path = _PROJECT,
    model: list[str] | None = typer.Option(None, "--model", "-m", help="Model name(s) from the project; default all."),
    trials: int | None = typer.Option(None, "--trials", help="Optuna trials (default: the project's, else settings)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the study and validation folds."),
    no_validate: bool = typer.Option(False, "--no-validate", help="Skip the repeated CV / rolling-origin estimate."),
) -> None:
    """Train, tune, track, register and gate the project's models with the shared training code."""
    from rich.table import Table

    from nextbest.console import console
    from nextbest.jobs import onboard as job
    from nextbest.settings import load_settings

    loaded = _table_project(project)
    cfg = loaded.tables
    assert cfg is not None
    settings = load_settings().model_copy(update={"project": loaded.source})
    names = model or [m.name for m in cfg.models]
    for name in names:
        cfg.model(name)  # unknown names fail before any work
    table = Table(title=f"{cfg.project}: trained models")
    for col in ("model", "rows (pos)", "version", "champion", "holdout AUC (pos)", "validation", "tuned", "plain"):
        table.add_column(col)
    for name in names:
        with console.status(f"training {name}"):
            result = job.train(cfg, settings, name, trials=trials, seed=seed, validate_model=not no_validate)
        by_recipe = {cv.recipe: cv.summary() for cv in result.validation}
        auc = result.train.metrics.get("test_roc_auc", float("nan"))
        table.add_row(
            name,
            f"{result.rows} ({result.positives})",
            str(result.train.version),
            "yes" if result.train.promoted else "no",
            f"{auc:.3f} ({result.holdout_positives})",
            result.validation[0].method if result.validation else "skipped",
            *(_auc(by_recipe.get(r)) for r in ("tuned", "plain_xgboost")),
        )
        console.print(f"MLflow run {result.train.run_id} in experiment {result.train.experiment_name}")
    console.print(table)
    console.print(f"tracking: {settings.mlflow_tracking_uri}")


def _auc(summary: dict[str, float] | None) -> str:
    if not summary:
        return "-"
    return f"{summary['roc_auc_mean']:.3f} +- {summary['roc_auc_std']:.3f} (n={int(summary['n_folds'])})"


@onboard_app.command("all")
def all_cmd(
    project: Path = _PROJECT,
    trials: int | None = typer.Option(None, "--trials", help="Optuna trials per model."),
) -> None:
    """build + apply + materialize + train, in order."""
    _table_project(project)  # a genome project fails before any work
    build_cmd(project)
    apply_cmd(project)
    materialize_cmd(project)
    train_cmd(project, model=None, trials=trials, seed=None, no_validate=False)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.add_typer(onboard_app, name="onboard")
