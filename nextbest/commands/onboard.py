"""CLI commands: onboard a bank's own tables by configuration (`nextbest onboard build|apply|materialize|train`).

Thin commands over `nextbest.jobs.onboard`; every step prints where its results went. `all` runs the four
steps in order (what a first onboarding wants).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from nextbest.onboarding.config import OnboardingConfig
    from nextbest.settings import Settings

DEFAULT_CONFIG = Path("configs/berka.yaml")

onboard_app = typer.Typer(
    name="onboard",
    help="Bring your own bank: build a Feast project and models from an onboarding config (docs/onboarding.md).",
    no_args_is_help=True,
)

_CONFIG = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="Onboarding YAML (see configs/berka.yaml).")


def _load(config_path: Path) -> tuple[OnboardingConfig, Settings]:
    from nextbest.onboarding.config import load_config
    from nextbest.settings import load_settings

    settings = load_settings()
    return load_config(config_path), settings


@onboard_app.command("build")
def build_cmd(config: Path = _CONFIG) -> None:
    """Compute the feature tables (point-in-time snapshots) from the bank's files."""
    from nextbest.console import console
    from nextbest.onboarding import pipeline

    cfg, settings = _load(config)
    with console.status(f"building feature tables of {cfg.project}"):
        written = pipeline.build(cfg, settings)
    for view, path in written.items():
        console.print(f"[green]built[/] {view}: {path}")


@onboard_app.command("apply")
def apply_cmd(config: Path = _CONFIG) -> None:
    """Register the generated entities, feature views and feature services in the project's Feast registry."""
    from nextbest.console import console
    from nextbest.onboarding import pipeline
    from nextbest.onboarding.features import project_paths

    cfg, settings = _load(config)
    with console.status(f"applying Feast project {cfg.project}"):
        pipeline.apply(cfg, settings, config)
    paths = project_paths(cfg, settings)
    console.print(f"[green]applied[/] Feast project {cfg.project}: registry {paths.registry}")
    console.print(f"feast CLI: cd {paths.repo_dir} && feast feature-services list")


@onboard_app.command("materialize")
def materialize_cmd(config: Path = _CONFIG) -> None:
    """Load every entity's latest features into the project's online store."""
    from nextbest.console import console
    from nextbest.onboarding import pipeline

    cfg, settings = _load(config)
    stats = pipeline.materialize(cfg, settings)
    where = settings.features.online_store
    console.print(f"[green]materialized[/] {stats.views} views of {cfg.project} into {where} in {stats.seconds:.1f} s")


@onboard_app.command("train")
def train_cmd(
    config: Path = _CONFIG,
    model: list[str] = typer.Option(None, "--model", "-m", help="Model name(s) from the config; default all."),
    trials: int = typer.Option(None, "--trials", help="Optuna trials (default: the config's, else settings)."),
    seed: int = typer.Option(None, "--seed", help="Seed of the study and validation folds."),
    no_validate: bool = typer.Option(False, "--no-validate", help="Skip the repeated CV / rolling-origin estimate."),
) -> None:
    """Train, tune, track, register and gate the config's models with the shared training code."""
    from rich.table import Table

    from nextbest.console import console
    from nextbest.onboarding import pipeline

    cfg, settings = _load(config)
    names = model or [m.name for m in cfg.models]
    table = Table(title=f"{cfg.project}: trained models")
    for col in ("model", "rows (pos)", "version", "champion", "holdout AUC (pos)", "validation", "tuned", "plain"):
        table.add_column(col)
    for name in names:
        cfg.model(name)  # unknown names fail before any work
        with console.status(f"training {name}"):
            result = pipeline.train(cfg, settings, name, trials=trials, seed=seed, validate_model=not no_validate)
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
    config: Path = _CONFIG,
    trials: int = typer.Option(None, "--trials", help="Optuna trials per model."),
) -> None:
    """build + apply + materialize + train, in order."""
    build_cmd(config)
    apply_cmd(config)
    materialize_cmd(config)
    train_cmd(config, model=None, trials=trials, seed=None, no_validate=False)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.add_typer(onboard_app, name="onboard")
