"""CLI commands: onboard a bank's own tables by configuration (`nextbest onboard check|build|apply|materialize|train|
all`).

`check` validates the mapping and the data in seconds, before anything is built (`nextbest.onboarding.check`:
types, keys, labels, timestamps and the split they allow, inferred categories, leakage candidates). `build`,
`apply` and `materialize` are `nextbest features build|apply|materialize` (the project's `FeatureProject`);
`train` trains the project's models with the onboarding job (`nextbest.jobs.onboard`) and prints each registered
model's own holdout AUC with its 95% bootstrap interval, the plain XGBoost beside it and the gate's decision with
why; `all` runs check, then the four steps in order, skipping each step whose inputs did not change since it last
ran (`--force` runs them all). `--project FILE` names the project file (`--config` is its older name); every step
prints where its results went.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from nextbest.commands import features as feature_commands

if TYPE_CHECKING:
    from nextbest.jobs.onboard import OnboardTrainResult
    from nextbest.onboarding.check import CheckReport
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


@onboard_app.command("check")
def check_cmd(project: Path = _PROJECT) -> None:
    """Validate the mapping and the data in seconds: types, keys, labels, timestamps, leakage candidates."""
    report = _check(_table_project(project))
    if not report.ok:
        raise typer.Exit(code=2)


def _check(loaded: Project) -> CheckReport:
    """Run and print the check of a table project (errors, warnings, then notes; the plan of every model)."""
    from nextbest.console import console
    from nextbest.onboarding.check import check_project
    from nextbest.settings import load_settings

    assert loaded.tables is not None
    settings = load_settings().model_copy(update={"project": loaded.source})
    with console.status(f"checking {loaded.name}"):
        report = check_project(loaded.tables, settings)
    styles = {"error": "bold red", "warning": "yellow", "note": "dim"}
    for level in ("error", "warning", "note"):
        for finding in report.of(level):  # type: ignore[arg-type]
            console.print(f"[{styles[level]}]{finding.level}[/]: {finding.subject}: {finding.message}", highlight=False)
    verdict = "[green]ok[/]" if report.ok else f"[bold red]{len(report.of('error'))} error(s)[/]"
    console.print(
        f"check {loaded.name}: {verdict}, {len(report.of('warning'))} warning(s), in {report.seconds:.1f} s",
        highlight=False,
    )
    return report


@onboard_app.command("train")
def train_cmd(
    project: Path = _PROJECT,
    model: list[str] | None = typer.Option(None, "--model", "-m", help="Model name(s) from the project; default all."),
    trials: int | None = typer.Option(None, "--trials", help="Optuna trials (default: the project's, else settings)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the study and validation folds."),
    no_validate: bool = typer.Option(False, "--no-validate", help="Skip the repeated CV / rolling-origin estimate."),
) -> None:
    """Train, tune, track, register and gate the project's models with the shared training code."""
    from nextbest.console import console
    from nextbest.jobs import onboard as job
    from nextbest.settings import load_settings
    from training.registry import gate_rule

    loaded = _table_project(project)
    cfg = loaded.tables
    assert cfg is not None
    settings = load_settings().model_copy(update={"project": loaded.source})
    names = model or [m.name for m in cfg.models]
    for name in names:
        cfg.model(name)  # unknown names fail before any work
    for name in names:
        with console.status(f"training {name}"):
            result = job.train(
                cfg, settings, name, trials=trials, seed=seed, validate_model=not no_validate,
                rule=gate_rule(loaded.model(name).gate),
            )  # fmt: skip
        for line in _result_lines(name, result):
            console.print(line, highlight=False)
    console.print(f"tracking: {settings.mlflow_tracking_uri}")


def _result_lines(name: str, result: OnboardTrainResult) -> list[str]:
    """One trained model as a person reads it: rows and plan, the registered model's own holdout score (95%
    bootstrap interval) beside the plain XGBoost, the validation folds, what the registry and the gate did."""
    m = result.train.metrics
    auc, low, high = (m.get(k, float("nan")) for k in ("test_roc_auc", "test_roc_auc_ci_low", "test_roc_auc_ci_high"))
    lines = [f"[bold]{name}[/]: {result.rows:,} rows ({result.positives:,} positive)"]
    if result.plan is not None:
        lines.append(f"  plan: {result.plan.describe().split(': ', 1)[1]}")
    lines.append(
        f"  holdout ({result.holdout_rows:,} rows, {result.holdout_positives:,} positive; the registered model, "
        f"refit on {int(m.get('refit_rows', 0)):,} rows): AUC {auc:.3f} [{low:.3f}, {high:.3f}] (95% bootstrap); "
        f"plain XGBoost on the same rows {m.get('baseline_test_roc_auc', float('nan')):.3f}"
    )
    if result.validation:
        cv = result.validation[0]
        how = cv.method + (f" by {cv.period}" if cv.period else "")
        by_recipe = {c.recipe: c.summary() for c in result.validation}
        lines.append(
            f"  validation ({how}): same recipe {_auc(by_recipe.get('tuned'))}, "
            f"plain XGBoost {_auc(by_recipe.get('plain_xgboost'))}"
        )
    lines += [
        f"  {_decision_line(name, result)}",
        f"  MLflow run {result.train.run_id} ({result.train.experiment_name})",
    ]
    return lines


def _decision_line(name: str, result: OnboardTrainResult) -> str:
    """What the registry and the gate did with the model, and why."""
    train = result.train
    if train.unchanged:
        return f"{name}: {train.unchanged}"
    if train.version is None:
        return f"{name}: not registered"
    if train.decision is None:
        return f"{name}: registered version {train.version} (challenger), not gated"
    verdict = "[green]promoted to champion[/]" if train.promoted else "[yellow]NOT promoted[/]"
    return f"{name}: version {train.version} {verdict}: {train.decision.reason}"


def _auc(summary: dict[str, float] | None) -> str:
    if not summary:
        return "-"
    return f"{summary['roc_auc_mean']:.3f} +- {summary['roc_auc_std']:.3f} (n={int(summary['n_folds'])})"


@onboard_app.command("all")
def all_cmd(
    project: Path = _PROJECT,
    trials: int | None = typer.Option(None, "--trials", help="Optuna trials per model."),
    force: bool = typer.Option(False, "--force", help="Run every step, also those whose inputs did not change."),
) -> None:
    """check, then build + apply + materialize + train in order, skipping steps that are up to date."""
    from nextbest.console import console
    from nextbest.jobs import onboard as job
    from nextbest.settings import load_settings

    loaded = _table_project(project)  # a genome project fails before any work
    report = _check(loaded)
    if not report.ok:
        console.print("fix the errors above first: nothing was built", highlight=False)
        raise typer.Exit(code=2)
    cfg = loaded.tables
    assert cfg is not None
    settings = load_settings().model_copy(update={"project": loaded.source})
    steps = {"build": build_cmd, "apply": apply_cmd, "materialize": materialize_cmd}
    for step, run in steps.items():
        if not force and job.is_up_to_date(cfg, settings, step):  # type: ignore[arg-type]
            console.print(f"{step}: up to date (nothing it reads changed since it last ran); skipped")
            continue
        run(project)
        job.mark_done(cfg, settings, step)  # type: ignore[arg-type]
    if not force and job.is_up_to_date(cfg, settings, "train", trials):
        console.print("train: up to date (same features, models and trials as the last run); skipped")
        return
    train_cmd(project, model=None, trials=trials, seed=None, no_validate=False)
    from training.registry import CHALLENGER, alias_version

    versions = {m.name: alias_version(settings, m.name, CHALLENGER) for m in cfg.models}
    job.mark_done(cfg, settings, "train", trials, versions=versions)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.add_typer(onboard_app, name="onboard")
