"""CLI commands: train (tune + track + register + gate), promote (manual, audited), promotions (the gate's log).

`nextbest train [MODEL ...] [--project FILE]` trains any project's models: the simulated bank's through
`training.pipeline.train_model` (its genome builders), a bank's own tables through the onboarding job
(`nextbest.jobs.onboard.train`, with its small-data validation); both use the same trainer and gate. Heavy imports
happen inside the command functions so `nextbest --help` stays fast.
"""

from __future__ import annotations

import json
import os
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from nextbest.project import Project
    from nextbest.settings import Settings
    from training.pipeline import TrainResult


class CalibrationChoice(StrEnum):
    platt = "platt"
    isotonic = "isotonic"


def _quiet_mlflow() -> None:
    # Artifact download bars would interleave with our progress bar; the CLI prints where results went instead.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


_PROJECT = typer.Option(
    None, "--project", "-p", metavar="FILE", help="Project file (default: the simulated bank, configs/simbank.yaml)."
)


def train(
    models: list[str] | None = typer.Argument(None, metavar="MODEL", help="Models of the project (default all)."),
    project: Path | None = _PROJECT,
    trials: int | None = typer.Option(None, "--trials", "-n", min=1, help="Optuna trials (default: settings)."),
    timeout: float | None = typer.Option(None, "--timeout", min=1, help="Stop tuning after this many seconds."),
    storage: str | None = typer.Option(
        None, "--storage", help="Optuna storage URI (default: settings; e.g. postgresql+psycopg2://...)."
    ),
    study_name: str | None = typer.Option(
        None, "--study-name", help="Optuna study (default: model + data fingerprint; same name resumes)."
    ),
    horizon_days: int | None = typer.Option(None, "--horizon-days", min=1, help="Churn label horizon H in days."),
    seed: int | None = typer.Option(None, "--seed", help="Sampler/booster seed (default: settings)."),
    calibration: CalibrationChoice = typer.Option(CalibrationChoice.platt, help="Probability calibration method."),
    register: bool = typer.Option(True, "--register/--no-register", help="Register the model as a new version."),
    promote: bool = typer.Option(True, "--gate/--no-gate", help="Run the promotion gate after registering."),
    threads: int = typer.Option(1, "--threads", min=1, help="XGBoost threads (1 is fastest on a busy shared host)."),
    purge_days: int = typer.Option(
        0,
        "--purge-days",
        min=0,
        help="Drop rows this many days before each split boundary (churn learns only labels known before its test).",
    ),
    validate: bool = typer.Option(True, "--validate/--no-validate", help="A bank's tables: repeated CV estimate."),
) -> None:
    """Tune, train, calibrate and log models to MLflow; register each as `challenger` and run the promotion gate."""
    from nextbest import distributed
    from nextbest.commands.features import load_project_or_exit
    from nextbest.settings import load_settings

    _quiet_mlflow()
    loaded = load_project_or_exit(project)
    names = list(models or loaded.model_names)
    unknown = [n for n in names if n not in loaded.model_names]
    if unknown:
        typer.echo(
            f"error: project {loaded.name!r} has no model {unknown}; its models: {list(loaded.model_names)}", err=True
        )
        raise typer.Exit(code=2)
    settings = load_settings()
    if project is not None:
        settings = settings.model_copy(update={"project": loaded.source})
    with distributed.client(settings):  # compute: dask -> one cluster for every model's trials and fits
        for name in names:
            if loaded.kind == "genome":
                options = dict(timeout=timeout, storage=storage, study_name=study_name, horizon_days=horizon_days)
                options.update(seed=seed, register=register, promote=promote, calibration=calibration.value)
                _train_genome(settings, name, trials or settings.training.trials, options, threads, purge_days)
            else:
                _train_tables(settings, loaded, name, trials, seed, validate)


def _train_genome(
    settings: Settings, name: str, trials: int, options: dict[str, Any], threads: int, purge_days: int
) -> None:
    from nextbest.console import console, progress
    from training.pipeline import train_model
    from training.tune import TuningConfig

    with progress(transient=True) as bar:
        task = bar.add_task(f"tuning {name}", total=trials)
        result = train_model(
            settings,
            name,
            trials,
            config=TuningConfig(nthread=threads),
            purge_days=purge_days,
            progress=lambda done, total: bar.update(task, completed=done),
            **options,
        )
    _print_result(name, result)
    console.print(f"see it: mlflow ui --backend-store-uri {settings.mlflow_tracking_uri}")


def _train_tables(
    settings: Settings, project: Project, name: str, trials: int | None, seed: int | None, validate: bool
) -> None:
    from nextbest.console import console
    from nextbest.jobs.onboard import train as train_table_model
    from training.registry import gate_rule

    assert project.tables is not None
    rule = gate_rule(project.model(name).gate)
    with console.status(f"training {name}"):
        result = train_table_model(
            project.tables, settings, name, trials=trials, seed=seed, validate_model=validate, rule=rule
        )
    _print_result(name, result.train)
    for cv in result.validation:
        summary = cv.summary()
        console.print(
            f"validation ({cv.method}, {cv.recipe}): AUC {summary['roc_auc_mean']:.3f} +- "
            f"{summary['roc_auc_std']:.3f} over {int(summary['n_folds'])} folds"
        )
    console.print(f"see it: mlflow ui --backend-store-uri {settings.mlflow_tracking_uri}")


def _print_result(name: str, result: TrainResult) -> None:
    """The registered model's own holdout figures (refit on train + validation, scored on the test split), the
    plain XGBoost beside them, and what the registry and the gate did, with why."""
    from rich.table import Table

    from nextbest.console import console

    m = result.metrics
    table = Table(
        title=f"{name}: the registered model on the test split (most recent {int(m.get('test_rows', 0))} rows; "
        f"refit on {int(m.get('refit_rows', 0))} rows, {int(m.get('refit_rounds', 0))} rounds)"
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    low, high = m.get("test_roc_auc_ci_low", float("nan")), m.get("test_roc_auc_ci_high", float("nan"))
    table.add_row("roc_auc [95% bootstrap]", f"{m.get('test_roc_auc', float('nan')):.4f} [{low:.4f}, {high:.4f}]")
    table.add_row("plain XGBoost roc_auc (same rows)", f"{m.get('baseline_test_roc_auc', float('nan')):.4f}")
    for key in ("pr_auc", "log_loss", "ece", "lift_top_decile", "base_rate"):
        table.add_row(key, f"{m.get(f'test_{key}', float('nan')):.4f}")
    for key in ("policy_value_snips_eur", "logging_value_eur"):
        if key in m:
            table.add_row(key, f"{m[key]:.2f}")
    console.print(table)
    console.print(
        f"study [bold]{result.study_name}[/] ({result.trials_run} trials this run), best: {result.best_params}"
    )
    console.print(f"MLflow run {result.run_id} in experiment {result.experiment_name}")
    if result.unchanged:
        console.print(f"[bold]{name}[/]: {result.unchanged}")
    if result.version is not None:
        verdict = "[green]promoted to champion[/]" if result.promoted else "[yellow]not promoted[/]"
        reason = f": {result.decision.reason}" if result.decision else ""
        console.print(f"registered [bold]{name}[/] version {result.version} (challenger), {verdict}{reason}")


def promote_version(
    model: str = typer.Argument(..., help="Registered model name (e.g. churn, nba, berka_default)."),
    version: str = typer.Argument(..., help="Version to make champion."),
    reason: str = typer.Option(..., "--reason", help="Why (recorded in the promotion log)."),
) -> None:
    """Make a version champion by hand (rollback, new feature set); recorded like the gate's decisions."""
    from nextbest.console import console
    from nextbest.settings import load_settings
    from training.registry import promote

    _quiet_mlflow()
    decision = promote(load_settings(), model, version, reason)
    console.print(f"{model} version {version} is champion (was {decision.champion_version or 'none'})")


def promotions(
    model: str | None = typer.Argument(None, help="Only this registered model."),
    as_json: bool = typer.Option(False, "--json", help="Print raw JSON lines."),
) -> None:
    """Show the promotion log: every gate decision, promoted or not, with who, when, why and both metrics."""
    from rich.table import Table

    from nextbest.console import console
    from nextbest.settings import load_settings
    from training.registry import promotion_log_path, read_promotion_log

    settings = load_settings()
    records = read_promotion_log(settings, model)
    if as_json:
        for record in records:
            console.print_json(json.dumps(record))
        return
    table = Table(title=f"promotion log ({promotion_log_path(settings)})")
    for col in ("when", "model", "challenger", "champion", "promoted", "AUC (chall/champ)", "reason"):
        table.add_column(col)
    for r in records:
        c, k = r.get("challenger_metrics") or {}, r.get("champion_metrics") or {}
        auc = f"{c.get('roc_auc') or float('nan'):.4f} / {k.get('roc_auc') or float('nan'):.4f}"
        table.add_row(
            r["when"], r["model"], r["challenger_version"], r.get("champion_version") or "-",
            "yes" if r["promoted"] else "no", auc, r["reason"],
        )  # fmt: skip
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.command("train")(train)
    app.command("promote")(promote_version)
    app.command("promotions")(promotions)
